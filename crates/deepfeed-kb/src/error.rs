//! The one error type of `deepfeed-kb`. Every message says what was expected, what was found and
//! where (file, table, field, tensor).
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    #[error(transparent)]
    Model(#[from] deepfeed_model::ModelError),

    #[error(transparent)]
    Data(#[from] deepfeed_data::DataError),

    #[error("{path}: knowledge-base database: {message}")]
    Db { path: PathBuf, message: String },

    #[error("{path}: vector index: {message}")]
    Index { path: PathBuf, message: String },

    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = KbError> = std::result::Result<T, E>;

impl KbError {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        KbError::Io { path: path.into(), err }
    }
}
