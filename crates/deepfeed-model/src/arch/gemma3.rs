//! `Gemma3ForCausalLM` (transformers `models/gemma3/modeling_gemma3.py`, config `gemma3_text`).
//!
//! Differences from Llama, in the order a token meets them:
//! - the embedding is multiplied by `sqrt(hidden_size)`;
//! - every RMSNorm multiplies by `(1 + weight)` (weights are stored centred on 0);
//! - each layer has four norms: before and after attention, before and after the MLP;
//! - q and k are RMS-normalised per head before RoPE (like Qwen3);
//! - attention scores are scaled by `query_pre_attn_scalar^-0.5` (`attn_logit_softcapping` is
//!   read by transformers' Gemma3Attention but never passed to its attention function, and
//!   llama.cpp ignores it for gemma3 too, so it is not applied here either);
//! - most layers are sliding-window layers (local RoPE base `rope_local_base_freq`, a query sees
//!   the last `sliding_window` positions); every few layers is a global one (`rope_theta` and
//!   `rope_scaling`, full causal attention) — `layer_types` says which;
//! - the MLP is GeGLU: `down(gelu_tanh(gate(x)) * up(x))`;
//! - the output head is tied to the embedding; logits are optionally soft-capped.
//!
//! Shapes: b = batch, s = new tokens, t = past + new tokens, h = hidden_size,
//! nh / nkv = query / key-value heads, d = head_dim, V = vocab.
use burn::module::{Module, Param};
use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::{Device, Int, Tensor};

use crate::arch::llama::KvCache;
use crate::config::{Gemma3Settings, ModelConfig};
use crate::error::{ModelError, Result};
use crate::layers::{apply_rotary, attention_mask, sliding_window_mask, Embedding, Linear, Rotary};
use crate::weights::{WeightDType, WeightFiles};

/// `Gemma3RMSNorm`: `x / sqrt(mean(x²) + eps) * (1 + weight)` over the last dimension.
#[derive(Module, Debug)]
pub struct Gemma3RmsNorm {
    /// [dim], centred on 0 (a freshly initialised norm is the identity)
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl Gemma3RmsNorm {
    fn load(w: &WeightFiles, name: &str, dim: usize, eps: f64, device: &Device) -> Result<Self> {
        Ok(Gemma3RmsNorm { weight: Param::from_tensor(w.tensor(&format!("{name}.weight"), [dim], device)?), eps })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let variance = x.clone().square().mean_dim(D - 1); // [..., 1]
        let normed = x * (variance + self.eps).sqrt().recip();
        normed * (self.weight.val() + 1.0).unsqueeze::<D>()
    }
}

#[derive(Module, Debug)]
pub struct Gemma3Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    /// RMSNorm over each head's d values of q and k, before RoPE.
    pub q_norm: Gemma3RmsNorm,
    pub k_norm: Gemma3RmsNorm,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// `query_pre_attn_scalar^-0.5`
    pub scaling: f64,
}

impl Gemma3Attention {
    fn load(w: &WeightFiles, p: &str, cfg: &ModelConfig, g: &Gemma3Settings, device: &Device, dt: WeightDType) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let bias = cfg.qkv_bias;
        Ok(Gemma3Attention {
            q_proj: Linear::load(w, &format!("{p}.q_proj"), h, nh * d, bias, device, dt)?,
            k_proj: Linear::load(w, &format!("{p}.k_proj"), h, nkv * d, bias, device, dt)?,
            v_proj: Linear::load(w, &format!("{p}.v_proj"), h, nkv * d, bias, device, dt)?,
            o_proj: Linear::load(w, &format!("{p}.o_proj"), nh * d, h, cfg.o_bias, device, dt)?,
            q_norm: Gemma3RmsNorm::load(w, &format!("{p}.q_norm"), d, cfg.rms_norm_eps, device)?,
            k_norm: Gemma3RmsNorm::load(w, &format!("{p}.k_norm"), d, cfg.rms_norm_eps, device)?,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: d,
            scaling: g.query_pre_attn_scalar.powf(-0.5),
        })
    }

    /// x: [b, s, h] -> [b, s, h]; cos/sin are the ones of this layer's kind (local or global).
    fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        mask: Option<&Tensor<4>>,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (nh, nkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);

        // project, split heads [b, s, n, d] and normalise each head
        let q = self.q_norm.forward(self.q_proj.forward(x.clone()).reshape([b, s, nh, d]));
        let k = self.k_norm.forward(self.k_proj.forward(x.clone()).reshape([b, s, nkv, d]));
        let v = self.v_proj.forward(x).reshape([b, s, nkv, d]);
        // heads first: [b, n, s, d], then rotate q and k by position
        let q = apply_rotary(q.swap_dims(1, 2), cos, sin);
        let mut k = apply_rotary(k.swap_dims(1, 2), cos, sin);
        let mut v = v.swap_dims(1, 2);

        if let Some(slot) = cache {
            if let Some((past_k, past_v)) = slot.take() {
                k = Tensor::cat(vec![past_k, k], 2); // [b, nkv, t, d]
                v = Tensor::cat(vec![past_v, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let t = k.dims()[2];

        // grouped-query attention: each kv head serves nh / nkv query heads -> [b, nh, t, d]
        let rep = nh / nkv;
        let (k, v) = if rep > 1 {
            (
                k.unsqueeze_dim::<5>(2).repeat_dim(2, rep).reshape([b, nh, t, d]),
                v.unsqueeze_dim::<5>(2).repeat_dim(2, rep).reshape([b, nh, t, d]),
            )
        } else {
            (k, v)
        };

        let scores = q.matmul(k.swap_dims(2, 3)) * self.scaling; // [b, nh, s, t]
        let scores = match mask {
            Some(m) => scores + m.clone(),
            None => scores,
        };
        let probs = softmax(scores, 3);
        let out = probs.matmul(v); // [b, nh, s, d]
        self.o_proj.forward(out.swap_dims(1, 2).reshape([b, s, nh * d]))
    }
}

/// GeGLU feed-forward: down(gelu_tanh(gate(x)) * up(x)).
#[derive(Module, Debug)]
pub struct Gemma3Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Gemma3Mlp {
    fn load(w: &WeightFiles, p: &str, cfg: &ModelConfig, device: &Device, dt: WeightDType) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Gemma3Mlp {
            gate_proj: Linear::load(w, &format!("{p}.gate_proj"), h, i, false, device, dt)?,
            up_proj: Linear::load(w, &format!("{p}.up_proj"), h, i, false, device, dt)?,
            down_proj: Linear::load(w, &format!("{p}.down_proj"), i, h, false, device, dt)?,
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj.forward(gelu_approximate(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }
}

/// Sandwich-norm residual block:
/// x + post_attn_norm(attn(input_norm(x))), then x + post_ff_norm(mlp(pre_ff_norm(x))).
#[derive(Module, Debug)]
pub struct Gemma3DecoderLayer {
    pub self_attn: Gemma3Attention,
    pub mlp: Gemma3Mlp,
    pub input_layernorm: Gemma3RmsNorm,
    pub post_attention_layernorm: Gemma3RmsNorm,
    pub pre_feedforward_layernorm: Gemma3RmsNorm,
    pub post_feedforward_layernorm: Gemma3RmsNorm,
    /// Some(window) for a `sliding_attention` layer, None for a `full_attention` one.
    pub sliding_window: Option<usize>,
}

/// The whole causal language model (`model.*`; the head is the tied embedding unless the
/// checkpoint ships `lm_head.weight`).
#[derive(Module, Debug)]
pub struct Gemma3ForCausalLm {
    pub embed_tokens: Embedding,
    pub layers: Vec<Gemma3DecoderLayer>,
    pub norm: Gemma3RmsNorm,
    pub lm_head: Option<Linear>,
    /// RoPE base of the sliding layers (the global layers use the model's [`Rotary`]).
    pub rope_local_theta: f64,
    pub head_dim: usize,
    pub final_logit_softcapping: Option<f64>,
}

impl Gemma3ForCausalLm {
    pub fn load(w: &WeightFiles, cfg: &ModelConfig, device: &Device, dt: WeightDType) -> Result<Self> {
        let g = cfg
            .gemma3
            .as_ref()
            .ok_or_else(|| ModelError::Invalid("Gemma3ForCausalLm::load: the config has no Gemma 3 settings".into()))?;
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let embed_tokens = Embedding {
            weight: w.matrix("model.embed_tokens.weight", [cfg.vocab_size, h], device, dt)?,
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                let norm = |n: &str| Gemma3RmsNorm::load(w, &format!("{p}.{n}"), h, eps, device);
                Ok(Gemma3DecoderLayer {
                    self_attn: Gemma3Attention::load(w, &format!("{p}.self_attn"), cfg, g, device, dt)?,
                    mlp: Gemma3Mlp::load(w, &format!("{p}.mlp"), cfg, device, dt)?,
                    input_layernorm: norm("input_layernorm")?,
                    post_attention_layernorm: norm("post_attention_layernorm")?,
                    pre_feedforward_layernorm: norm("pre_feedforward_layernorm")?,
                    post_feedforward_layernorm: norm("post_feedforward_layernorm")?,
                    sliding_window: g.sliding_layers[i].then_some(g.sliding_window),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if !cfg.tie_word_embeddings || w.contains("lm_head.weight") {
            Some(Linear::load(w, "lm_head", h, cfg.vocab_size, false, device, dt)?)
        } else {
            None
        };
        Ok(Gemma3ForCausalLm {
            embed_tokens,
            layers,
            norm: Gemma3RmsNorm::load(w, "model.norm", h, eps, device)?,
            lm_head,
            rope_local_theta: g.rope_local_theta,
            head_dim: cfg.head_dim,
            final_logit_softcapping: g.final_logit_softcapping,
        })
    }

    /// Runs the decoder over `ids` ([b, s]) at `positions` (b*s values) and returns the final
    /// normalised hidden states [b, s, h]. `rotary` is the global layers' RoPE. `mask`, when
    /// given, is [b, 1, s, s] over the new tokens (sliding layers add their window to it).
    pub fn forward_hidden(
        &self,
        ids: Tensor<2, Int>,
        rotary: &Rotary,
        positions: &[usize],
        mask: Option<Tensor<4>>,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, s] = ids.dims();
        let device = ids.device();
        let past = cache.as_ref().map_or(0, |c| c.len);
        let (global_cos, global_sin) = rotary.cos_sin(positions, b, &device);
        let (local_cos, local_sin) = Rotary::unscaled(self.head_dim, self.rope_local_theta).cos_sin(positions, b, &device);
        // full layers: causal (or the given mask, which also sees every cached position)
        let full_mask = attention_mask(mask, b, s, past, &device);
        // sliding layers: the same, minus keys that fell out of the window
        let window = self.layers.iter().find_map(|l| l.sliding_window);
        let sliding_mask = match window {
            Some(w) if past + s > w => {
                let band = sliding_window_mask(s, past, w, &device);
                Some(full_mask.clone().map_or(band.clone(), |m| m + band))
            }
            _ => full_mask.clone(),
        };

        let [_, h] = self.embed_tokens.weight.dims();
        let mut x = self.embed_tokens.forward(ids) * (h as f64).sqrt(); // [b, s, h]
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let (cos, sin, mask) = match layer.sliding_window {
                Some(_) => (&local_cos, &local_sin, sliding_mask.as_ref()),
                None => (&global_cos, &global_sin, full_mask.as_ref()),
            };
            let attn = layer.self_attn.forward(layer.input_layernorm.forward(x.clone()), cos, sin, mask, slot);
            x = x + layer.post_attention_layernorm.forward(attn);
            let ff = layer.mlp.forward(layer.pre_feedforward_layernorm.forward(x.clone()));
            x = x + layer.post_feedforward_layernorm.forward(ff);
        }
        if let Some(c) = cache {
            c.len += s;
        }
        self.norm.forward(x)
    }

    /// hidden [b, s, h] -> logits [b, s, V]
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let logits = match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => self.embed_tokens.logits(hidden),
        };
        match self.final_logit_softcapping {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        }
    }
}

/// The parts of one decoder layer, borrowed separately: its seven projections with their
/// transformers names, and its six norms with theirs.
#[allow(clippy::type_complexity)]
fn split_layer<'a>(p: &str, layer: &'a mut Gemma3DecoderLayer) -> ([(String, &'a mut Linear); 7], [(String, &'a mut Gemma3RmsNorm); 6]) {
    let Gemma3DecoderLayer {
        self_attn,
        mlp,
        input_layernorm,
        post_attention_layernorm,
        pre_feedforward_layernorm,
        post_feedforward_layernorm,
        ..
    } = layer;
    let Gemma3Attention { q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, .. } = self_attn;
    let norms = [
        (format!("{p}.input_layernorm"), input_layernorm),
        (format!("{p}.self_attn.q_norm"), q_norm),
        (format!("{p}.self_attn.k_norm"), k_norm),
        (format!("{p}.post_attention_layernorm"), post_attention_layernorm),
        (format!("{p}.pre_feedforward_layernorm"), pre_feedforward_layernorm),
        (format!("{p}.post_feedforward_layernorm"), post_feedforward_layernorm),
    ];
    let linears = [
        (format!("{p}.self_attn.q_proj"), q_proj),
        (format!("{p}.self_attn.k_proj"), k_proj),
        (format!("{p}.self_attn.v_proj"), v_proj),
        (format!("{p}.self_attn.o_proj"), o_proj),
        (format!("{p}.mlp.gate_proj"), &mut mlp.gate_proj),
        (format!("{p}.mlp.up_proj"), &mut mlp.up_proj),
        (format!("{p}.mlp.down_proj"), &mut mlp.down_proj),
    ];
    (linears, norms)
}

impl Gemma3ForCausalLm {
    /// Every linear projection of the decoder layers with its transformers name.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        self.layers
            .iter_mut()
            .enumerate()
            .flat_map(|(i, l)| split_layer(&format!("model.layers.{i}"), l).0)
            .collect()
    }

    /// Every parameter with its transformers name (LoRA weights as `….q_proj.lora_A.weight`).
    pub fn params_mut(&mut self) -> Vec<(String, super::llama::ParamMut<'_>)> {
        use super::llama::{push_linear, ParamMut};
        let Gemma3ForCausalLm { embed_tokens, layers, norm, lm_head, .. } = self;
        let mut out = Vec::new();
        if let Some(p) = embed_tokens.weight.param_mut() {
            out.push(("model.embed_tokens.weight".to_string(), ParamMut::Matrix(p)));
        }
        for (i, layer) in layers.iter_mut().enumerate() {
            let (linears, norms) = split_layer(&format!("model.layers.{i}"), layer);
            for (name, n) in norms {
                out.push((format!("{name}.weight"), ParamMut::Vector(&mut n.weight)));
            }
            for (name, l) in linears {
                push_linear(&mut out, &name, l);
            }
        }
        out.push(("model.norm.weight".into(), ParamMut::Vector(&mut norm.weight)));
        if let Some(head) = lm_head {
            push_linear(&mut out, "lm_head", head);
        }
        out
    }
}
