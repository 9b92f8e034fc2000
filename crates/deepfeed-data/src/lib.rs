//! deepfeed-data: the project's training-data format (`record`), conversion from the common
//! dataset formats (`convert`) and validation with quarantine of bad lines (`validate`).
//! `ingest` turns documents, chat logs and crawled pages into records with provenance, `clean`
//! runs the ordered cleaning pipeline, `pii` masks personal data, `dedup` finds (near-)duplicates,
//! `review` is the human review queue and `synth` writes Q&A pairs from chunks with a model.
pub mod clean;
pub mod clean_config;
pub mod convert;
pub mod dedup;
pub mod error;
pub mod ingest;
pub mod pii;
pub mod plot;
pub mod progress;
pub mod side_file;
pub mod stats;
pub mod record;
pub mod review;
pub mod synth;
pub mod validate;

pub use error::{DataError, Result};
pub use record::{Message, Record};
