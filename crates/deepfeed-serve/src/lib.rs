//! deepfeed-serve: an OpenAI-compatible HTTP server over a deepfeed model — several LoRA
//! adapters over one base, an engine thread interleaving requests token by token, feedback
//! capture in SQLite, Prometheus metrics — and a load generator for it.
pub mod api;
pub mod engine;
pub mod error;
pub mod feedback;
pub mod loadgen;
pub mod metrics;
pub mod metrics_endpoint;
pub mod rag;
pub mod registry;
pub mod server;

pub use error::{ApiError, Result, ServeError};
pub use server::{start, RunningServer, ServeConfig};
