//! `LlamaForCausalLM` (transformers `models/llama/modeling_llama.py`): deepseek-llm,
//! deepseek-coder and DeepSeek-R1-Distill-Llama. Qwen2 and Qwen3 are the same decoder with
//! q/k/v biases or per-head q/k RMSNorm switched on (see `qwen2.rs`, `qwen3.rs`), so all three
//! run through this file; the switches come from [`ModelConfig`].
//!
//! Shapes: b = batch, s = new tokens, t = past + new tokens, h = hidden_size,
//! nh / nkv = query / key-value heads, d = head_dim, V = vocab.
use burn::module::{Module, Param};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::{apply_rotary, attention_mask, Embedding, Linear, RmsNorm, Rotary};
use crate::prefix::PrefixTuning;
use crate::weights::{WeightDType, WeightFiles};

/// Keys and values of the tokens seen so far, per layer: [b, nkv, t, d] each.
#[derive(Debug, Default)]
pub struct KvCache {
    pub(crate) layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    pub(crate) len: usize,
    /// Leading positions that hold prefix-tuning keys/values.
    pub(crate) prefix_len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        KvCache { layers: (0..num_layers).map(|_| None).collect(), len: 0, prefix_len: 0 }
    }

    fn fill_prefix(&mut self, p: &PrefixTuning, b: usize) {
        for (slot, kv) in self.layers.iter_mut().zip(p.key_values(b)) {
            *slot = Some(kv);
        }
        self.len = p.num_virtual_tokens();
        self.prefix_len = self.len;
    }
    /// Number of positions already cached (prefix-tuning positions included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Number of real tokens already cached (prefix-tuning positions excluded).
    pub fn tokens(&self) -> usize {
        self.len - self.prefix_len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Module, Debug)]
pub struct LlamaAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    /// Qwen3 only: RMSNorm over each head's d values of q and k.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl LlamaAttention {
    fn load(w: &WeightFiles, p: &str, cfg: &ModelConfig, device: &Device, dt: WeightDType) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let norm = |n: &str| RmsNorm::load(w, &format!("{p}.{n}"), d, cfg.rms_norm_eps, device);
        Ok(LlamaAttention {
            q_proj: Linear::load(w, &format!("{p}.q_proj"), h, nh * d, cfg.qkv_bias, device, dt)?,
            k_proj: Linear::load(w, &format!("{p}.k_proj"), h, nkv * d, cfg.qkv_bias, device, dt)?,
            v_proj: Linear::load(w, &format!("{p}.v_proj"), h, nkv * d, cfg.qkv_bias, device, dt)?,
            o_proj: Linear::load(w, &format!("{p}.o_proj"), nh * d, h, cfg.o_bias, device, dt)?,
            q_norm: if cfg.qk_norm { Some(norm("q_norm")?) } else { None },
            k_norm: if cfg.qk_norm { Some(norm("k_norm")?) } else { None },
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: d,
        })
    }

    /// x: [b, s, h] -> [b, s, h]
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

        // project and split heads: [b, s, n*d] -> [b, s, n, d]
        let mut q = self.q_proj.forward(x.clone()).reshape([b, s, nh, d]);
        let mut k = self.k_proj.forward(x.clone()).reshape([b, s, nkv, d]);
        let v = self.v_proj.forward(x).reshape([b, s, nkv, d]);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(q);
            k = kn.forward(k);
        }
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

        let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (d as f64).sqrt()); // [b, nh, s, t]
        let scores = match mask {
            Some(m) => scores + m.clone(),
            None => scores,
        };
        let probs = softmax(scores, 3);
        let out = probs.matmul(v); // [b, nh, s, d]
        self.o_proj.forward(out.swap_dims(1, 2).reshape([b, s, nh * d]))
    }
}

/// SwiGLU feed-forward: down(silu(gate(x)) * up(x)).
#[derive(Module, Debug)]
pub struct LlamaMlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl LlamaMlp {
    fn load(w: &WeightFiles, p: &str, cfg: &ModelConfig, device: &Device, dt: WeightDType) -> Result<Self> {
        let (h, i, b) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(LlamaMlp {
            gate_proj: Linear::load(w, &format!("{p}.gate_proj"), h, i, b, device, dt)?,
            up_proj: Linear::load(w, &format!("{p}.up_proj"), h, i, b, device, dt)?,
            down_proj: Linear::load(w, &format!("{p}.down_proj"), i, h, b, device, dt)?,
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj.forward(silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }
}

/// Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)).
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer {
    pub self_attn: LlamaAttention,
    pub mlp: LlamaMlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

/// The whole causal language model (`model.*` + `lm_head`).
#[derive(Module, Debug)]
pub struct LlamaForCausalLm {
    pub embed_tokens: Embedding,
    pub layers: Vec<LlamaDecoderLayer>,
    pub norm: RmsNorm,
    /// None when the embeddings are tied (`tie_word_embeddings`).
    pub lm_head: Option<Linear>,
    /// Prefix-tuning keys/values, when a prefix adapter is attached.
    pub prefix: Option<PrefixTuning>,
}

impl LlamaForCausalLm {
    /// Loads the weights named as transformers names them; matrices stored as `dt`
    /// (norms always f32).
    pub fn load(w: &WeightFiles, cfg: &ModelConfig, device: &Device, dt: WeightDType) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let embed_tokens = Embedding {
            weight: w.matrix("model.embed_tokens.weight", [cfg.vocab_size, h], device, dt)?,
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                Ok(LlamaDecoderLayer {
                    self_attn: LlamaAttention::load(w, &format!("{p}.self_attn"), cfg, device, dt)?,
                    mlp: LlamaMlp::load(w, &format!("{p}.mlp"), cfg, device, dt)?,
                    input_layernorm: RmsNorm::load(w, &format!("{p}.input_layernorm"), h, eps, device)?,
                    post_attention_layernorm: RmsNorm::load(w, &format!("{p}.post_attention_layernorm"), h, eps, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Some checkpoints tie the embeddings but still ship lm_head.weight; use it when present.
        let lm_head = if !cfg.tie_word_embeddings || w.contains("lm_head.weight") {
            Some(Linear::load(w, "lm_head", h, cfg.vocab_size, false, device, dt)?)
        } else {
            None
        };
        Ok(LlamaForCausalLm { embed_tokens, layers, norm: RmsNorm::load(w, "model.norm", h, eps, device)?, lm_head, prefix: None })
    }

    /// Runs the decoder over `ids` ([b, s]) at `positions` (b*s values, counted in real tokens:
    /// a prefix adapter shifts them itself) and returns the final normalised hidden states
    /// [b, s, h]. `mask`, when given, is [b, 1, s, s] over the new tokens. With a cache, new keys/values are appended to it and
    /// the causal mask covers the cached positions.
    pub fn forward_hidden(
        &self,
        ids: Tensor<2, Int>,
        rotary: &Rotary,
        positions: &[usize],
        mask: Option<Tensor<4>>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, s] = ids.dims();
        let device = ids.device();
        // prefix tuning: the prefixes enter as the first cached positions and shift the real
        // tokens' positions by their number (as transformers does with past_key_values)
        let mut local: Option<KvCache>;
        let mut cache = match (&self.prefix, cache) {
            (Some(p), Some(c)) if c.is_empty() => {
                c.fill_prefix(p, b);
                Some(c)
            }
            (Some(p), None) => {
                let mut c = KvCache::new(self.layers.len());
                c.fill_prefix(p, b);
                local = Some(c);
                local.as_mut()
            }
            (_, c) => c,
        };
        let shift = cache.as_ref().map_or(0, |c| c.prefix_len);
        let shifted: Vec<usize> = positions.iter().map(|x| x + shift).collect();
        let positions = &shifted[..];
        let past = cache.as_ref().map_or(0, |c| c.len);
        let (cos, sin) = rotary.cos_sin(positions, b, &device);
        let mask = attention_mask(mask, b, s, past, &device);

        let mut x = self.embed_tokens.forward(ids); // [b, s, h]
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let attn = layer.self_attn.forward(layer.input_layernorm.forward(x.clone()), &cos, &sin, mask.as_ref(), slot);
            x = x + attn;
            x = x.clone() + layer.mlp.forward(layer.post_attention_layernorm.forward(x));
        }
        if let Some(c) = cache {
            c.len += s;
        }
        self.norm.forward(x)
    }

    /// hidden [b, s, h] -> logits [b, s, V]
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => self.embed_tokens.logits(hidden),
        }
    }
}

/// A parameter reached by name (see [`LlamaForCausalLm::params_mut`]).
pub enum ParamMut<'a> {
    Vector(&'a mut Param<Tensor<1>>),
    Matrix(&'a mut Param<Tensor<2>>),
}

impl ParamMut<'_> {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            ParamMut::Vector(p) => p.shape().to_vec(),
            ParamMut::Matrix(p) => p.shape().to_vec(),
        }
    }
    pub fn num_elements(&self) -> usize {
        self.shape().iter().product()
    }

    /// Marks the parameter as trained (gradient tracked) or frozen.
    pub fn set_require_grad(&mut self, train: bool) {
        match self {
            ParamMut::Vector(p) => **p = p.clone().set_require_grad(train),
            ParamMut::Matrix(p) => **p = p.clone().set_require_grad(train),
        }
    }
}

/// The parts of one decoder layer, borrowed separately: its seven projections with their
/// transformers names, and its norms with theirs.
#[allow(clippy::type_complexity)]
fn split_layer<'a>(p: &str, layer: &'a mut LlamaDecoderLayer) -> ([(String, &'a mut Linear); 7], Vec<(String, &'a mut RmsNorm)>) {
    let LlamaDecoderLayer { self_attn, mlp, input_layernorm, post_attention_layernorm } = layer;
    let LlamaAttention { q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, .. } = self_attn;
    let mut norms = vec![
        (format!("{p}.input_layernorm"), input_layernorm),
        (format!("{p}.post_attention_layernorm"), post_attention_layernorm),
    ];
    norms.extend(q_norm.as_mut().map(|n| (format!("{p}.self_attn.q_norm"), n)));
    norms.extend(k_norm.as_mut().map(|n| (format!("{p}.self_attn.k_norm"), n)));
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

pub(crate) fn push_linear<'a>(out: &mut Vec<(String, ParamMut<'a>)>, name: &str, l: &'a mut Linear) {
    // a quantised base matrix is not a parameter (it is frozen and has no f32 values to hand out)
    if let Some(p) = l.weight.param_mut() {
        out.push((format!("{name}.weight"), ParamMut::Matrix(p)));
    }
    if let Some(b) = &mut l.bias {
        out.push((format!("{name}.bias"), ParamMut::Vector(b)));
    }
    if let Some(lora) = &mut l.lora {
        out.push((format!("{name}.lora_A.weight"), ParamMut::Matrix(&mut lora.lora_a)));
        out.push((format!("{name}.lora_B.weight"), ParamMut::Matrix(&mut lora.lora_b)));
        if let Some(m) = &mut lora.magnitude {
            out.push((format!("{name}.lora_magnitude_vector"), ParamMut::Vector(m)));
        }
    }
}

impl LlamaForCausalLm {
    /// Every linear projection of the decoder layers with its transformers name
    /// (`model.layers.3.self_attn.q_proj`); the output head is not included.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        self.layers
            .iter_mut()
            .enumerate()
            .flat_map(|(i, l)| split_layer(&format!("model.layers.{i}"), l).0)
            .collect()
    }

    /// Every parameter with its transformers name (LoRA weights as `….q_proj.lora_A.weight`).
    pub fn params_mut(&mut self) -> Vec<(String, ParamMut<'_>)> {
        let LlamaForCausalLm { embed_tokens, layers, norm, lm_head, prefix } = self;
        let mut out = Vec::new();
        if let Some(p) = embed_tokens.weight.param_mut() {
            out.push(("model.embed_tokens.weight".to_string(), ParamMut::Matrix(p)));
        }
        if let Some(p) = prefix {
            out.push(("prompt_embeddings".to_string(), ParamMut::Matrix(&mut p.prompt_embeddings)));
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
