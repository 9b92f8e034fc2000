//! sha256 of the inputs, so a report says exactly which model, adapter and data it measured.
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{EvalError, Result};

#[derive(Debug, Clone, Serialize)]
pub struct FileHash {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

pub fn sha256_file(path: &Path) -> Result<FileHash> {
    let mut f = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| EvalError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(FileHash { file: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), bytes, sha256 })
}

/// Hashes of the regular, non-hidden files directly in `dir`, by name.
pub fn hash_dir(dir: &Path) -> Result<Vec<FileHash>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| EvalError::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files.iter().map(|p| sha256_file(p)).collect()
}
