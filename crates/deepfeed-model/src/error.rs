//! The one error type of `deepfeed-model`. Every message says what was expected, what was found
//! and where (file, tensor, field).
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    #[error("{dir}: {what} not found (expected {expected})")]
    MissingFile { dir: PathBuf, what: String, expected: String },

    #[error("{path}: not valid JSON: {message}")]
    Json { path: PathBuf, message: String },

    #[error("{path}: field `{field}`: {message}")]
    Config { path: PathBuf, field: String, message: String },

    #[error("{path}: unknown architecture {found:?}; supported: {supported}")]
    UnknownArchitecture { path: PathBuf, found: Vec<String>, supported: String },

    #[error("{path}: not a readable safetensors file ({message}); the file may be truncated or corrupt")]
    Safetensors { path: PathBuf, message: String },

    #[error("tensor `{tensor}` missing from the model weights{hint}")]
    MissingTensor { tensor: String, hint: String },

    #[error("tensor `{tensor}` in {path}: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch { tensor: String, path: PathBuf, expected: Vec<usize>, found: Vec<usize> },

    #[error("tensor `{tensor}` in {path}: unsupported dtype {dtype} (supported: F32, F16, BF16)")]
    UnsupportedDtype { tensor: String, path: PathBuf, dtype: String },

    #[error("{path}: cannot load tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },

    #[error("chat template: {0}")]
    Template(String),

    /// A GGUF file that cannot be read: what was expected, what was found, and at which offset.
    #[error("{path}: {message}")]
    Gguf { path: PathBuf, message: String },

    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io { path: path.into(), err: source }
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ModelError::io(path, e))
}

/// Reads and parses a JSON file, naming it (and the line/column) in the error.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| ModelError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
