//! One file per architecture, each readable next to its transformers reference.
pub mod llama;
pub mod qwen2;
pub mod qwen3;
