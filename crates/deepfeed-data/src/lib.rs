//! deepfeed-data: the project's training-data format (`record`), conversion from the common
//! dataset formats (`convert`) and validation with quarantine of bad lines (`validate`).
//! `pii` masks personal data with typed placeholders. Ingestion of documents, cleaning and
//! deduplication are still to come.
pub mod clean;
pub mod clean_config;
pub mod convert;
pub mod dedup;
pub mod error;
pub mod ingest;
pub mod pii;
pub mod plot;
pub mod progress;
pub mod stats;
pub mod record;
pub mod review;
pub mod synth;
pub mod validate;

pub use error::{DataError, Result};
pub use record::{Message, Record};
