//! A side file of JSON lines (rejected or quarantined input lines, with their reasons), streamed
//! to disk as the lines come: created on the first line only, written to a temporary name and
//! renamed into place at the end, so that a file of millions of bad lines never has to fit in
//! memory and a failed run leaves no half-written side file.
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

pub struct SideFile {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
    lines: usize,
}

impl SideFile {
    /// Nothing is created until the first `push`.
    pub fn new(path: PathBuf) -> Self {
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        SideFile { path, tmp, writer: None, lines: 0 }
    }

    pub fn push(&mut self, line: &serde_json::Value) -> Result<()> {
        if self.writer.is_none() {
            let f = File::create(&self.tmp).map_err(|e| DataError::io(&self.tmp, e))?;
            self.writer = Some(BufWriter::new(f));
        }
        let w = self.writer.as_mut().expect("created above");
        serde_json::to_writer(&mut *w, line).map_err(|e| DataError::io(&self.tmp, e.into()))?;
        w.write_all(b"\n").map_err(|e| DataError::io(&self.tmp, e))?;
        self.lines += 1;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Renames the file into place; its path, or None when no line was pushed.
    pub fn finish(mut self) -> Result<Option<PathBuf>> {
        let Some(mut w) = self.writer.take() else { return Ok(None) };
        w.flush().map_err(|e| DataError::io(&self.tmp, e))?;
        drop(w);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| DataError::io(&self.path, e))?;
        Ok(Some(self.path.clone()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SideFile {
    /// Not finished (an error on the way): the temporary file goes.
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
