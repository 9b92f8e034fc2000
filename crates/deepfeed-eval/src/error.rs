//! The one error type of `deepfeed-eval`. Every message says what was expected, what was found
//! and where (file, line, field).
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    /// A problem with one record of the evaluation data.
    #[error("{path}:{line}: {message}")]
    Data { path: PathBuf, line: usize, message: String },

    #[error("{0}")]
    Config(String),

    /// The adapter was trained for another base model.
    #[error("{0}")]
    AdapterMismatch(String),

    #[error(transparent)]
    Model(#[from] deepfeed_model::ModelError),

    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;

impl EvalError {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        EvalError::Io { path: path.into(), err }
    }
}
