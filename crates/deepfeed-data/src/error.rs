//! The one error type of `deepfeed-data`.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    /// A problem with one record: file, line (1-based) and field.
    #[error("{path}:{line}: {message}")]
    Line { path: PathBuf, line: usize, message: String },

    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        DataError::Io { path: path.into(), err }
    }
}
