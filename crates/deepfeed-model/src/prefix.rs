//! Prefix tuning (Li & Liang 2021) as PEFT implements it: `num_virtual_tokens` learned key/value
//! vectors per layer, seen by every token as if they were earlier context. The real tokens'
//! positions start after them. PEFT stores them as `prompt_embeddings`
//! `[num_virtual_tokens, num_layers · 2 · num_kv_heads · head_dim]`, keys and values of layer `l`
//! at chunks `2l` and `2l + 1` of the second dimension.
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::ModelConfig;

#[derive(Module, Debug)]
pub struct PrefixTuning {
    /// [num_virtual_tokens, num_layers * 2 * num_kv_heads * head_dim]
    pub prompt_embeddings: Param<Tensor<2>>,
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl PrefixTuning {
    /// Width of `prompt_embeddings` for a model.
    pub fn width(cfg: &ModelConfig) -> usize {
        cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim
    }

    /// New prefixes ~ N(0, 1), as PEFT's `nn.Embedding` starts them.
    pub fn init(num_virtual_tokens: usize, cfg: &ModelConfig, seed: u64, device: &Device) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = num_virtual_tokens * Self::width(cfg);
        let values: Vec<f32> = (0..n)
            .map(|_| {
                let (u1, u2): (f32, f32) = (rng.random::<f32>().max(f32::MIN_POSITIVE), rng.random());
                (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
            })
            .collect();
        let t = Tensor::from_data(TensorData::new(values, [num_virtual_tokens, Self::width(cfg)]), device);
        Self::from_tensor(t, cfg)
    }

    pub fn from_tensor(t: Tensor<2>, cfg: &ModelConfig) -> Self {
        PrefixTuning {
            prompt_embeddings: Param::from_tensor(t),
            num_layers: cfg.num_hidden_layers,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
        }
    }

    pub fn num_virtual_tokens(&self) -> usize {
        self.prompt_embeddings.shape()[0]
    }

    /// Keys and values of every layer for a batch of `b`: each [b, nkv, N, d].
    pub fn key_values(&self, b: usize) -> Vec<(Tensor<4>, Tensor<4>)> {
        let n = self.num_virtual_tokens();
        let (nkv, d) = (self.num_kv_heads, self.head_dim);
        // [N, L*2, nkv, d] -> [L*2, nkv, N, d]
        let e = self.prompt_embeddings.val().reshape([n, self.num_layers * 2, nkv, d]).permute([1, 2, 0, 3]);
        let part = |i: usize| e.clone().slice([i..i + 1, 0..nkv, 0..n, 0..d]).repeat_dim(0, b);
        (0..self.num_layers).map(|l| (part(2 * l), part(2 * l + 1))).collect()
    }
}
