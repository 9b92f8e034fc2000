//! deepfeed-model: load Hugging Face model directories (Llama, Qwen2, Qwen3 families), run them on
//! burn, generate text with the model's chat template and score text.
pub mod adapters;
pub mod arch;
pub mod backend;
pub mod chat_template;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod gguf;
pub mod generate;
pub mod layers;
pub mod lora;
pub mod peft;
pub mod model;
pub mod perplexity;
pub mod prefix;
pub mod quantized;
pub mod sequence;
pub mod think;
pub mod tiny;
pub mod tokenizer;
pub mod weights;

pub use chat_template::ChatMessage;
pub use config::{Architecture, ModelConfig};
pub use error::{ModelError, Result};
pub use generate::{generate, GenerateOptions, Generation};
pub use model::Model;
pub use sequence::Sequence;
