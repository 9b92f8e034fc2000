//! `Qwen3ForCausalLM` (transformers `models/qwen3/modeling_qwen3.py`).
//!
//! Qwen3's decoder is Llama's plus an RMSNorm over each head's `head_dim` values of the queries
//! and keys, applied after the projections and before the rotary embedding
//! (`self_attn.q_norm`, `self_attn.k_norm`; `qk_norm = true` in
//! [`ModelConfig`](crate::config::ModelConfig)). `head_dim` is explicit in its config and need not
//! equal hidden_size / num_attention_heads.
pub use super::llama::LlamaForCausalLm as Qwen3ForCausalLm;
