//! deepfeed-data: the project's training-data format (`record`), conversion from the common
//! dataset formats (`convert`) and validation with quarantine of bad lines (`validate`).
//! Ingestion of documents, cleaning, de-identification and deduplication are still to come.
pub mod convert;
pub mod error;
pub mod record;
pub mod validate;

pub use error::{DataError, Result};
pub use record::{Message, Record};
