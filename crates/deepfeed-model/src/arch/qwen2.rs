//! `Qwen2ForCausalLM` (transformers `models/qwen2/modeling_qwen2.py`): DeepSeek-R1-Distill-Qwen.
//!
//! Qwen2's decoder is Llama's with two differences, both handled by the Llama code through
//! [`ModelConfig`](crate::config::ModelConfig):
//! - q_proj, k_proj and v_proj carry a bias (o_proj and the MLP do not): `qkv_bias = true`;
//! - a large `rope_theta` (1e6 for R1-Distill-Qwen), read from the config.
//!
//! Sliding-window attention (`use_sliding_window`) is off in every released Qwen2 checkpoint and
//! is not implemented.
pub use super::llama::LlamaForCausalLm as Qwen2ForCausalLm;
