//! Writing outputs without ever leaving a half-written result: everything goes to a temporary
//! sibling first and is renamed into place.
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// Builds directory `dst` by calling `fill` on a fresh temporary sibling, then renames it to `dst`,
/// replacing an existing `dst` only after the new one is complete.
pub fn write_dir_atomically(dst: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    let name = dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    let result = fill(&tmp).and_then(|()| {
        if dst.exists() {
            // keep the old one until the new one is in place
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            std::fs::rename(dst, &old).map_err(|e| ModelError::io(dst, e))?;
            std::fs::rename(&tmp, dst).map_err(|e| ModelError::io(dst, e))?;
            let _ = std::fs::remove_dir_all(&old);
            Ok(())
        } else {
            std::fs::rename(&tmp, dst).map_err(|e| ModelError::io(dst, e))
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Writes one file through a temporary sibling and a rename.
pub fn write_file_atomically(dst: &Path, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = dst.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ModelError::io(dst, e)
    })?;
    std::fs::rename(&tmp, dst).map_err(|e| ModelError::io(dst, e))
}
