//! The one error type of `deepfeed-train`.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] deepfeed_model::ModelError),

    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    /// A problem in the training configuration (YAML field or CLI flag).
    #[error("{0}")]
    Config(String),

    /// A problem in the dataset, with file and line.
    #[error("{path}:{line}: {message}")]
    Data { path: PathBuf, line: usize, message: String },

    #[error("{0}")]
    Dataset(String),

    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    #[error("{0}")]
    Resources(String),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), err: source }
    }
}
