//! `config.json` of a Hugging Face model directory, resolved into one [`ModelConfig`].
//!
//! Field names follow transformers. Both the 4.x layout (`rope_theta` + `rope_scaling`) and the 5.x
//! layout (`rope_parameters`) are understood.
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{read_json, ModelError, Result};

/// Architectures deepfeed can run, named as in `config.json`'s `architectures` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `LlamaForCausalLM`: deepseek-llm, deepseek-coder, DeepSeek-R1-Distill-Llama.
    Llama,
    /// `Qwen2ForCausalLM`: DeepSeek-R1-Distill-Qwen (q/k/v projections carry biases).
    Qwen2,
    /// `Qwen3ForCausalLM`: RMSNorm on queries and keys per head.
    Qwen3,
    /// `Gemma3ForCausalLM` (config `gemma3_text`): its own decoder, see `arch/gemma3.rs`.
    Gemma3,
    /// `DeepseekV2ForCausalLM` (config `deepseek_v2`): multi-head latent attention + mixture of
    /// experts with a softmax router, see `arch/deepseek.rs`.
    DeepseekV2,
    /// `DeepseekV3ForCausalLM` (config `deepseek_v3`): DeepSeek-V2's decoder with a sigmoid router,
    /// its bias-corrected group top-k (`noaux_tc`) and optionally non-interleaved rope.
    DeepseekV3,
}

impl Architecture {
    pub const SUPPORTED: &'static str =
        "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM, DeepseekV2ForCausalLM, DeepseekV3ForCausalLM";

    pub fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "LlamaForCausalLM" => Some(Self::Llama),
            "Qwen2ForCausalLM" => Some(Self::Qwen2),
            "Qwen3ForCausalLM" => Some(Self::Qwen3),
            "Gemma3ForCausalLM" => Some(Self::Gemma3),
            "DeepseekV2ForCausalLM" => Some(Self::DeepseekV2),
            "DeepseekV3ForCausalLM" => Some(Self::DeepseekV3),
            _ => None,
        }
    }

    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Qwen3 => "Qwen3ForCausalLM",
            Self::Gemma3 => "Gemma3ForCausalLM",
            Self::DeepseekV2 => "DeepseekV2ForCausalLM",
            Self::DeepseekV3 => "DeepseekV3ForCausalLM",
        }
    }

    /// The `model_type` field transformers writes for this architecture.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma3 => "gemma3_text",
            Self::DeepseekV2 => "deepseek_v2",
            Self::DeepseekV3 => "deepseek_v3",
        }
    }

    pub fn parse_cli(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "llama" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "qwen3" => Some(Self::Qwen3),
            "gemma3" | "gemma3_text" => Some(Self::Gemma3),
            "deepseek_v2" | "deepseek-v2" | "deepseekv2" => Some(Self::DeepseekV2),
            "deepseek_v3" | "deepseek-v3" | "deepseekv3" => Some(Self::DeepseekV3),
            _ => None,
        }
    }

    /// DeepSeek-V2/V3 (multi-head latent attention + mixture of experts).
    pub fn is_deepseek(self) -> bool {
        matches!(self, Self::DeepseekV2 | Self::DeepseekV3)
    }
}

/// How rotary position frequencies are scaled for long context (`rope_scaling.rope_type`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// NTK-aware scaling whose base grows once the sequence exceeds the original context.
    Dynamic { factor: f64, original_max_position_embeddings: usize },
    /// Llama 3.x: low frequencies divided by `factor`, high frequencies kept, smooth in between.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: usize },
    /// YaRN (transformers `_compute_yarn_parameters`): frequencies blended between interpolated
    /// (divided by `factor`) and original by a linear ramp over the dimensions whose rotation count
    /// in the original context lies between `beta_slow` and `beta_fast`; cos and sin are scaled by
    /// `attention_factor`. `mscale_all_dim` is kept for DeepSeek's softmax scale.
    Yarn {
        factor: f64,
        original_max_position_embeddings: usize,
        beta_fast: f64,
        beta_slow: f64,
        /// Given, or `mscale(factor, mscale) / mscale(factor, mscale_all_dim)` (or `mscale(factor)`).
        attention_factor: f64,
        /// `truncate`: round the ramp bounds to whole dimensions (default true).
        truncate: bool,
        mscale_all_dim: Option<f64>,
    },
}

/// YaRN's magnitude correction `0.1 · mscale · ln(scale) + 1` (1 when `scale <= 1`).
pub fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

/// Everything the architectures need, resolved from `config.json`.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (Qwen2 always; Llama when `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on o_proj (Llama `attention_bias` only).
    pub o_bias: bool,
    /// Bias on gate/up/down (Llama `mlp_bias`).
    pub mlp_bias: bool,
    /// Per-head RMSNorm on q and k before RoPE (Qwen3).
    pub qk_norm: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// Gemma 3 only: the settings its decoder adds (None for the other architectures).
    pub gemma3: Option<Gemma3Settings>,
    /// DeepSeek-V2/V3 only: latent attention and mixture-of-experts sizes (None otherwise).
    /// For these, `head_dim` is `qk_rope_head_dim` (what the rotary embedding turns) and
    /// `num_key_value_heads` equals `num_attention_heads` (keys/values are cached per head).
    pub deepseek: Option<DeepseekSettings>,
    /// The raw JSON, kept so that a merged model can be written back unchanged.
    pub raw: Map<String, Value>,
}

/// What Gemma 3's decoder needs beyond the common fields (transformers `Gemma3TextConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Settings {
    /// Attention scores are scaled by `query_pre_attn_scalar^-0.5` (not `head_dim^-0.5`).
    pub query_pre_attn_scalar: f64,
    /// A sliding layer's query sees the keys of the last `sliding_window` positions (itself included).
    pub sliding_window: usize,
    /// Per layer: true for `sliding_attention`, false for `full_attention`.
    pub sliding_layers: Vec<bool>,
    /// RoPE base of the sliding layers (`rope_local_base_freq`, unscaled); full layers use
    /// `rope_theta` with `rope_scaling`.
    pub rope_local_theta: f64,
    /// `logits = cap · tanh(logits / cap)` when set.
    pub final_logit_softcapping: Option<f64>,
    /// The same on attention scores: read, but (as in transformers' and llama.cpp's Gemma 3)
    /// not applied.
    pub attn_logit_softcapping: Option<f64>,
}

/// How a DeepSeek router picks its experts (`topk_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopkMethod {
    /// V2: the `num_experts_per_tok` highest softmax scores.
    Greedy,
    /// V2: the same among the experts of the `topk_group` groups with the highest best score.
    GroupLimitedGreedy,
    /// V3: sigmoid scores + `e_score_correction_bias` choose (groups ranked by the sum of their
    /// two best), the uncorrected scores weigh.
    NoauxTc,
}

/// What DeepSeek-V2/V3's decoder needs beyond the common fields (transformers
/// `DeepseekV2Config` / `DeepseekV3Config`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeepseekSettings {
    /// Queries go through a rank-`q_lora_rank` bottleneck (q_a_proj, q_a_layernorm, q_b_proj)
    /// when set, else one q_proj.
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    /// Rope pairs are interleaved (x0, x1), (x2, x3)… (always for V2; V3's `rope_interleave`).
    pub rope_interleave: bool,
    /// Attention scores are multiplied by this: `qk_head_dim^-0.5`, times `mscale(factor,
    /// mscale_all_dim)²` under YaRN.
    pub softmax_scale: f64,
    pub n_routed_experts: usize,
    pub n_shared_experts: usize,
    pub num_experts_per_tok: usize,
    pub moe_intermediate_size: usize,
    /// Layers `i >= first_k_dense_replace` with `i % moe_layer_freq == 0` are MoE layers.
    pub first_k_dense_replace: usize,
    pub moe_layer_freq: usize,
    pub topk_method: TopkMethod,
    pub n_group: usize,
    pub topk_group: usize,
    /// V3: the chosen weights are divided by their sum (V2 ignores it, as transformers does).
    pub norm_topk_prob: bool,
    pub routed_scaling_factor: f64,
}

impl DeepseekSettings {
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }

    pub fn is_moe_layer(&self, layer: usize) -> bool {
        self.n_routed_experts > 0 && layer >= self.first_k_dense_replace && layer % self.moe_layer_freq == 0
    }
}

struct Fields<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> ModelError {
        ModelError::Config { path: self.path.to_path_buf(), field: field.into(), message: message.into() }
    }
    fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.err(field, format!("expected a non-negative integer, found {v}"))),
        }
    }
    fn usize(&self, field: &str) -> Result<usize> {
        let v = self.opt_usize(field)?.ok_or_else(|| self.err(field, "missing"))?;
        if v == 0 {
            return Err(self.err(field, "must be greater than 0"));
        }
        Ok(v)
    }
    fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.err(field, format!("expected a number, found {v}"))),
        }
    }
    fn bool_or(&self, field: &str, default: bool) -> Result<bool> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(field, format!("expected true/false, found {v}"))),
        }
    }
    fn token_ids(&self, field: &str) -> Result<Vec<u32>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Number(n)) => Ok(vec![n.as_u64().ok_or_else(|| self.err(field, "expected a token id"))? as u32]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_u64().map(|n| n as u32).ok_or_else(|| self.err(field, format!("expected token ids, found {v}"))))
                .collect(),
            Some(v) => Err(self.err(field, format!("expected a token id or a list of them, found {v}"))),
        }
    }
}

impl ModelConfig {
    /// Reads `DIR/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                dir: dir.to_path_buf(),
                what: "config.json".into(),
                expected: "a Hugging Face model directory: config.json, *.safetensors, tokenizer.json".into(),
            });
        }
        let value: Value = read_json(&path)?;
        Self::from_json(&path, value)
    }

    /// The config of what [`crate::Model::load`] accepts: a Hugging Face directory
    /// (`config.json`), a `.gguf` file or a directory holding one (its metadata), without
    /// reading any weights.
    pub fn from_model_path(path: &Path) -> Result<Self> {
        match crate::gguf::load::gguf_path(path)? {
            Some(file) => crate::gguf::load::config_from_gguf(&crate::gguf::GgufFile::open(&file)?),
            None => Self::from_dir(path),
        }
    }

    pub fn from_json(path: &Path, value: Value) -> Result<Self> {
        let Value::Object(map) = value else {
            return Err(ModelError::Config { path: path.into(), field: "(root)".into(), message: "expected a JSON object".into() });
        };
        let f = Fields { path, map: &map };
        let mut names: Vec<String> = match map.get("architectures") {
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
            _ => vec![],
        };
        if names.is_empty() && map.get("model_type").and_then(|v| v.as_str()) == Some("gemma3_text") {
            names.push("Gemma3ForCausalLM".into());
        }
        let architecture = names
            .iter()
            .find_map(|n| Architecture::from_hf_name(n))
            .ok_or_else(|| ModelError::UnknownArchitecture {
                path: path.to_path_buf(),
                found: names.clone(),
                supported: Architecture::SUPPORTED.into(),
            })?;

        let hidden_size = f.usize("hidden_size")?;
        let num_attention_heads = f.usize("num_attention_heads")?;
        let num_key_value_heads = f.opt_usize("num_key_value_heads")?.unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(f.err(
                "num_key_value_heads",
                format!("{num_key_value_heads} does not divide num_attention_heads {num_attention_heads}"),
            ));
        }
        let head_dim = match f.opt_usize("head_dim")? {
            Some(d) => d,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => {
                return Err(f.err("head_dim", format!("missing, and hidden_size {hidden_size} is not divisible by {num_attention_heads} heads")))
            }
        };
        if head_dim % 2 != 0 {
            return Err(f.err("head_dim", format!("must be even for rotary embeddings, found {head_dim}")));
        }
        if let Some(act) = map.get("hidden_act").and_then(|v| v.as_str()).filter(|_| architecture != Architecture::Gemma3) {
            if act != "silu" && act != "swish" {
                return Err(f.err("hidden_act", format!("expected \"silu\", found {act:?}")));
            }
        }

        // rope: transformers 5 nests everything in `rope_parameters` (Gemma 3: one entry per layer
        // type, the full layers' one is the model's main rope); 4.x has `rope_theta` + `rope_scaling`.
        let mut rope_params = map.get("rope_parameters").and_then(|v| v.as_object());
        if architecture == Architecture::Gemma3 {
            rope_params = rope_params.and_then(|p| p.get("full_attention")).and_then(|v| v.as_object()).or(rope_params);
        }
        let rope_theta = match rope_params.and_then(|p| p.get("rope_theta")).and_then(|v| v.as_f64()) {
            Some(t) => t,
            None => f.opt_f64("rope_theta")?.unwrap_or(10000.0),
        };
        let scaling_obj = rope_params.or_else(|| map.get("rope_scaling").and_then(|v| v.as_object()));
        let max_position_embeddings = f.opt_usize("max_position_embeddings")?.unwrap_or(4096);
        let rope_scaling = match scaling_obj {
            None => RopeScaling::None,
            Some(s) => parse_rope_scaling(&f, s, max_position_embeddings)?,
        };

        let (qkv_bias, o_bias, mlp_bias, qk_norm) = match architecture {
            Architecture::Llama => {
                let b = f.bool_or("attention_bias", false)?;
                (b, b, f.bool_or("mlp_bias", false)?, false)
            }
            Architecture::Qwen2 => (true, false, false, false),
            Architecture::Qwen3 => (f.bool_or("attention_bias", false)?, f.bool_or("attention_bias", false)?, false, true),
            Architecture::Gemma3 => (f.bool_or("attention_bias", false)?, f.bool_or("attention_bias", false)?, false, true),
            // attention_bias: on q_a_proj, kv_a_proj_with_mqa and o_proj; mlp_bias: V2 only
            Architecture::DeepseekV2 => (f.bool_or("attention_bias", false)?, f.bool_or("attention_bias", false)?, f.bool_or("mlp_bias", false)?, false),
            Architecture::DeepseekV3 => (f.bool_or("attention_bias", false)?, f.bool_or("attention_bias", false)?, false, false),
        };
        let num_hidden_layers = f.usize("num_hidden_layers")?;
        let gemma3 = match architecture {
            Architecture::Gemma3 => Some(gemma3_settings(&f, &map, num_hidden_layers, head_dim)?),
            _ => None,
        };
        let deepseek = match architecture {
            Architecture::DeepseekV2 | Architecture::DeepseekV3 => {
                Some(deepseek_settings(&f, architecture, num_hidden_layers, &rope_scaling)?)
            }
            _ => None,
        };
        // DeepSeek: rope turns only the qk_rope_head_dim part; keys and values are per head
        let (head_dim, num_key_value_heads) = match &deepseek {
            Some(d) => (d.qk_rope_head_dim, num_attention_heads),
            None => (head_dim, num_key_value_heads),
        };
        let rope_theta = match architecture {
            // transformers' Gemma3TextConfig default for the full layers
            Architecture::Gemma3 if f.opt_f64("rope_theta")?.is_none() && rope_params.is_none() => 1_000_000.0,
            _ => rope_theta,
        };

        Ok(ModelConfig {
            architecture,
            vocab_size: f.usize("vocab_size")?,
            hidden_size,
            intermediate_size: f.usize("intermediate_size")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            // Gemma 3 configs usually leave this out: transformers' default is tied
            tie_word_embeddings: f.bool_or("tie_word_embeddings", architecture == Architecture::Gemma3)?,
            rope_theta,
            rope_scaling,
            max_position_embeddings,
            qkv_bias,
            o_bias,
            mlp_bias,
            qk_norm,
            bos_token_id: f.token_ids("bos_token_id")?.first().copied(),
            eos_token_ids: f.token_ids("eos_token_id")?,
            gemma3,
            deepseek,
            raw: map.clone(),
        })
    }

    /// Values the KV cache holds per token and layer: keys and values of every key/value head
    /// (DeepSeek: each head's dq-wide key and dv-wide value, cached after kv_b_proj).
    pub fn kv_values_per_token_per_layer(&self) -> usize {
        match &self.deepseek {
            Some(ds) => self.num_attention_heads * (ds.qk_head_dim() + ds.v_head_dim),
            None => 2 * self.num_key_value_heads * self.head_dim,
        }
    }

    /// Number of parameters of the model described (embedding counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let (h, i, d) = (self.hidden_size, self.intermediate_size, self.head_dim);
        if let Some(ds) = &self.deepseek {
            let nh = self.num_attention_heads;
            let q = match ds.q_lora_rank {
                Some(r) => h * r + r + r * nh * ds.qk_head_dim(),
                None => h * nh * ds.qk_head_dim(),
            };
            let kv = h * (ds.kv_lora_rank + ds.qk_rope_head_dim) + ds.kv_lora_rank + ds.kv_lora_rank * nh * (ds.qk_nope_head_dim + ds.v_head_dim);
            let attn = q + kv + nh * ds.v_head_dim * h + 2 * h;
            let mlp: usize = (0..self.num_hidden_layers)
                .map(|l| {
                    if ds.is_moe_layer(l) {
                        let experts = (ds.n_routed_experts + ds.n_shared_experts) * 3 * h * ds.moe_intermediate_size;
                        experts + ds.n_routed_experts * h + if ds.topk_method == TopkMethod::NoauxTc { ds.n_routed_experts } else { 0 }
                    } else {
                        3 * h * i
                    }
                })
                .sum();
            let embed = self.vocab_size * h;
            let head = if self.tie_word_embeddings { 0 } else { embed };
            return embed + head + h + self.num_hidden_layers * attn + mlp;
        }
        let q = self.num_attention_heads * d;
        let kv = self.num_key_value_heads * d;
        let norms_per_layer = if self.gemma3.is_some() { 4 } else { 2 };
        let mut layer = h * q + 2 * h * kv + q * h + 3 * h * i + norms_per_layer * h;
        if self.qkv_bias {
            layer += q + 2 * kv;
        }
        if self.qk_norm {
            layer += 2 * d;
        }
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + h + self.num_hidden_layers * layer
    }
}

/// Gemma 3's extra fields, in the 4.x layout (`rope_local_base_freq`, `sliding_window_pattern`) or
/// the 5.x one (`rope_parameters.sliding_attention`, `layer_types`).
fn gemma3_settings(f: &Fields, map: &Map<String, Value>, num_layers: usize, head_dim: usize) -> Result<Gemma3Settings> {
    if let Some(act) = map.get("hidden_activation").or_else(|| map.get("hidden_act")).and_then(|v| v.as_str()) {
        if act != "gelu_pytorch_tanh" && act != "gelu" {
            return Err(f.err("hidden_activation", format!("expected \"gelu_pytorch_tanh\", found {act:?}")));
        }
    }
    if f.bool_or("use_bidirectional_attention", false)? {
        return Err(f.err("use_bidirectional_attention", "true (an embedding model) is not supported; expected a causal language model"));
    }
    let sliding_layers = match map.get("layer_types") {
        Some(Value::Array(types)) => {
            let kinds = types
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => Ok(true),
                    Some("full_attention") => Ok(false),
                    _ => Err(f.err("layer_types", format!("expected \"sliding_attention\" or \"full_attention\", found {t}"))),
                })
                .collect::<Result<Vec<bool>>>()?;
            if kinds.len() != num_layers {
                return Err(f.err("layer_types", format!("{} entries for {num_layers} layers", kinds.len())));
            }
            kinds
        }
        _ => {
            // transformers: every `sliding_window_pattern`-th layer is global (default 6)
            let pattern = f.opt_usize("sliding_window_pattern")?.or(f.opt_usize("_sliding_window_pattern")?).unwrap_or(6).max(1);
            (0..num_layers).map(|i| (i + 1) % pattern != 0).collect()
        }
    };
    let local = map
        .get("rope_parameters")
        .and_then(|p| p.get("sliding_attention"))
        .and_then(|p| p.get("rope_theta"))
        .and_then(|v| v.as_f64());
    let rope_local_theta = match local {
        Some(t) => t,
        None => f.opt_f64("rope_local_base_freq")?.unwrap_or(10_000.0),
    };
    Ok(Gemma3Settings {
        query_pre_attn_scalar: f.opt_f64("query_pre_attn_scalar")?.unwrap_or(head_dim as f64),
        sliding_window: f.opt_usize("sliding_window")?.unwrap_or(4096).max(1),
        sliding_layers,
        rope_local_theta,
        final_logit_softcapping: f.opt_f64("final_logit_softcapping")?,
        attn_logit_softcapping: f.opt_f64("attn_logit_softcapping")?,
    })
}

/// DeepSeek-V2/V3's latent-attention and mixture-of-experts fields.
fn deepseek_settings(f: &Fields, arch: Architecture, num_layers: usize, rope: &RopeScaling) -> Result<DeepseekSettings> {
    let v3 = arch == Architecture::DeepseekV3;
    // the official V3/R1 weights are FP8 blocks with scales; refuse them before reading weights
    if let Some(method) = f.map.get("quantization_config").and_then(|q| q.get("quant_method")).and_then(|m| m.as_str()) {
        return Err(f.err(
            "quantization_config.quant_method",
            format!("{method:?} checkpoints are not supported; expected unquantised F32/F16/BF16 weights (convert FP8 DeepSeek weights to BF16 first)"),
        ));
    }
    let q_lora_rank = f.opt_usize("q_lora_rank")?;
    if q_lora_rank == Some(0) {
        return Err(f.err("q_lora_rank", "must be greater than 0 (or null for an uncompressed q_proj)"));
    }
    let qk_nope_head_dim = f.usize("qk_nope_head_dim")?;
    let qk_rope_head_dim = f.usize("qk_rope_head_dim")?;
    if qk_rope_head_dim % 2 != 0 {
        return Err(f.err("qk_rope_head_dim", format!("must be even for rotary embeddings, found {qk_rope_head_dim}")));
    }
    let mut softmax_scale = 1.0 / ((qk_nope_head_dim + qk_rope_head_dim) as f64).sqrt();
    if let RopeScaling::Yarn { factor, mscale_all_dim: Some(m), .. } = *rope {
        if m != 0.0 {
            let ms = yarn_mscale(factor, m);
            softmax_scale *= ms * ms;
        }
    }
    // 0 routed experts: every layer is dense
    let n_routed_experts = f.opt_usize("n_routed_experts")?.unwrap_or(0);
    let moe = n_routed_experts > 0;
    let need = |field: &str| -> Result<usize> { if moe { f.usize(field) } else { Ok(f.opt_usize(field)?.unwrap_or(1)) } };
    let num_experts_per_tok = need("num_experts_per_tok")?;
    let moe_intermediate_size = need("moe_intermediate_size")?;
    let topk_method = match (v3, f.map.get("topk_method").and_then(|v| v.as_str())) {
        // transformers' V3 router always does noaux_tc, whatever the field says
        (true, None | Some("noaux_tc")) => TopkMethod::NoauxTc,
        (false, None | Some("greedy")) => TopkMethod::Greedy,
        (false, Some("group_limited_greedy")) => TopkMethod::GroupLimitedGreedy,
        (_, Some(other)) => {
            let expected = if v3 { "\"noaux_tc\"" } else { "\"greedy\" or \"group_limited_greedy\"" };
            return Err(f.err("topk_method", format!("expected {expected} for {}, found {other:?}", arch.hf_name())));
        }
    };
    let grouped = moe && topk_method != TopkMethod::Greedy;
    let (n_group, topk_group) = if grouped { (f.usize("n_group")?, f.usize("topk_group")?) } else { (1, 1) };
    if grouped {
        if n_routed_experts % n_group != 0 {
            return Err(f.err("n_group", format!("{n_group} groups do not divide n_routed_experts {n_routed_experts}")));
        }
        if topk_group > n_group {
            return Err(f.err("topk_group", format!("{topk_group} is more than n_group {n_group}")));
        }
        if topk_method == TopkMethod::NoauxTc && n_routed_experts / n_group < 2 {
            return Err(f.err("n_group", format!("noaux_tc ranks groups by their two best experts; {n_group} groups of {n_routed_experts} experts leave fewer than 2 per group")));
        }
    }
    if moe && num_experts_per_tok > n_routed_experts {
        return Err(f.err("num_experts_per_tok", format!("{num_experts_per_tok} is more than n_routed_experts {n_routed_experts}")));
    }
    Ok(DeepseekSettings {
        q_lora_rank,
        kv_lora_rank: f.usize("kv_lora_rank")?,
        qk_nope_head_dim,
        qk_rope_head_dim,
        v_head_dim: f.usize("v_head_dim")?,
        rope_interleave: !v3 || f.bool_or("rope_interleave", true)?,
        softmax_scale,
        n_routed_experts,
        n_shared_experts: f.opt_usize("n_shared_experts")?.unwrap_or(0),
        num_experts_per_tok,
        moe_intermediate_size,
        first_k_dense_replace: f.opt_usize("first_k_dense_replace")?.unwrap_or(0).min(num_layers),
        moe_layer_freq: f.opt_usize("moe_layer_freq")?.unwrap_or(1).max(1),
        topk_method,
        n_group,
        topk_group,
        norm_topk_prob: v3 && f.bool_or("norm_topk_prob", false)?,
        routed_scaling_factor: f.opt_f64("routed_scaling_factor")?.unwrap_or(1.0),
    })
}

fn parse_rope_scaling(f: &Fields, s: &Map<String, Value>, max_pos: usize) -> Result<RopeScaling> {
    let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
    let num = |k: &str| s.get(k).and_then(|v| v.as_f64());
    let factor = || num("factor").ok_or_else(|| f.err("rope_scaling.factor", format!("missing for rope_type {kind:?}")));
    let original = num("original_max_position_embeddings").map(|v| v as usize).unwrap_or(max_pos);
    Ok(match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: factor()? },
        "dynamic" => RopeScaling::Dynamic { factor: factor()?, original_max_position_embeddings: original },
        "llama3" => RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: num("low_freq_factor").unwrap_or(1.0),
            high_freq_factor: num("high_freq_factor").unwrap_or(4.0),
            original_max_position_embeddings: original,
        },
        "yarn" => {
            let factor = match num("factor") {
                Some(v) => v,
                // transformers: DeepSeek-style configs may leave the factor to the context ratio
                None => max_pos as f64 / original as f64,
            };
            let mscale = num("mscale").filter(|&m| m != 0.0);
            let mscale_all_dim = num("mscale_all_dim").filter(|&m| m != 0.0);
            let attention_factor = match (num("attention_factor"), mscale, mscale_all_dim) {
                (Some(a), _, _) => a,
                (None, Some(m), Some(ma)) => yarn_mscale(factor, m) / yarn_mscale(factor, ma),
                (None, _, _) => yarn_mscale(factor, 1.0),
            };
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: original,
                beta_fast: num("beta_fast").filter(|&b| b != 0.0).unwrap_or(32.0),
                beta_slow: num("beta_slow").filter(|&b| b != 0.0).unwrap_or(1.0),
                attention_factor,
                truncate: s.get("truncate").and_then(|v| v.as_bool()).unwrap_or(true),
                mscale_all_dim,
            }
        }
        other => {
            return Err(f.err("rope_scaling.rope_type", format!("{other:?} is not supported (default, linear, dynamic, llama3, yarn)")))
        }
    })
}

