//! The GGUF reader of deepfeed-model, compiled on its own for fuzzing: its source files are
//! included as they are (path modules), with the two things they use from the rest of the crate
//! — the error type and the format constants — given here. The error variants mirror
//! `deepfeed-model/src/error.rs` (only those the reader uses).
pub mod error {
    use std::path::PathBuf;

    #[derive(Debug, thiserror::Error)]
    pub enum ModelError {
        #[error("{path}: {err}")]
        Io { path: PathBuf, err: std::io::Error },
        #[error("tensor `{tensor}` not found{hint}")]
        MissingTensor { tensor: String, hint: String },
        #[error("{path}: {message}")]
        Gguf { path: PathBuf, message: String },
        #[error("{0}")]
        Invalid(String),
    }

    impl ModelError {
        pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
            ModelError::Io { path: path.into(), err: source }
        }
    }

    pub type Result<T> = std::result::Result<T, ModelError>;
}

// At the crate root, so that the files' `super::` paths (the constants, `super::types`) resolve.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
pub const QK_K: usize = 256;

#[path = "../../crates/deepfeed-model/src/gguf/dequant.rs"]
pub mod dequant;
#[path = "../../crates/deepfeed-model/src/gguf/reader.rs"]
pub mod reader;
#[path = "../../crates/deepfeed-model/src/gguf/types.rs"]
pub mod types;

/// The paths the fuzz target uses, as in deepfeed-model.
pub mod gguf {
    pub use crate::dequant;
    pub use crate::reader::{GgufFile, GgufTensorInfo};
}
