//! deepfeed-eval: did the feeding work? Perplexity on the target tokens, task accuracy (exact,
//! contains, regex, multiple choice by log-likelihood, label sets), ROUGE/BLEU with Chinese word
//! segmentation, generation latency, a forgetting check on general text, pass/fail gates, and
//! reports (JSON, Markdown, self-contained HTML with charts). See docs/eval.md.
pub mod accuracy;
pub mod adapter;
pub mod compare;
pub mod config;
pub mod dataset;
pub mod error;
pub mod evaluate;
pub mod gates;
pub mod hash;
pub mod latency;
pub mod perplexity;
pub mod plot;
pub mod report;
pub mod text_overlap;

pub use config::EvalConfig;
pub use error::{EvalError, Result};
pub use evaluate::{evaluate, Report};
