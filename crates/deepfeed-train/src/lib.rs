//! deepfeed-train: fine-tune a model on the project's JSONL data — LoRA, full and freeze
//! fine-tuning with AdamW, schedules, gradient accumulation, clipping, checkpoints and resume.
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dpo;
pub mod error;
pub mod estimate;
pub mod live;
pub mod optim;
pub mod trainer;

pub use config::{Method, Objective, TrainConfig};
pub use error::{Result, TrainError};
pub use trainer::{train, Outcome, RunOptions, TrainSummary, INTERRUPTED};
