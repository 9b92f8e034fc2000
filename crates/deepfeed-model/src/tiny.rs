//! `init-tiny`: a small randomly initialised model in exact Hugging Face layout (config.json,
//! model.safetensors, tokenizer.json, tokenizer_config.json with a chat template,
//! generation_config.json). Tests, demos and benchmarks use these.
use std::path::{Path, PathBuf};


use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::config::Architecture;
use crate::error::{read_file, read_json, ModelError, Result};
use crate::fsutil::write_dir_atomically;
use crate::weights::save_f32_safetensors;

/// The small byte-level BPE tokenizer (English + Chinese, DeepSeek special tokens) trained by
/// `scripts/make_reference.py`; used when no tokenizer is given.
pub const TINY_TOKENIZER_JSON: &str = include_str!("../assets/tiny-tokenizer.json");
const TINY_TOKENIZER_CONFIG: &str = include_str!("../assets/tiny-tokenizer_config.json");
/// deepseek-llm-chat's template, used when the tokenizer brings none.
pub const DEFAULT_CHAT_TEMPLATE: &str = "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

#[derive(Debug, Clone)]
pub struct TinySpec {
    pub architecture: Architecture,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub seed: u64,
    /// Standard deviation of the random weights (transformers' `initializer_range`).
    pub init_std: f32,
    /// A tokenizer.json to use instead of the built-in tiny one (e.g. the real DeepSeek one).
    pub tokenizer: Option<PathBuf>,
}

impl TinySpec {
    /// 2 layers, hidden 64: loads and runs in milliseconds.
    pub fn tiny(architecture: Architecture) -> Self {
        TinySpec {
            architecture,
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 2048,
            tie_word_embeddings: false,
            seed: 0,
            init_std: 0.02,
            tokenizer: None,
        }
    }

    /// About 100M parameters (hidden 768, 14 layers): a realistic size for benchmarks.
    pub fn m100(architecture: Architecture) -> Self {
        TinySpec {
            hidden_size: 768,
            intermediate_size: 2304,
            num_hidden_layers: 14,
            num_attention_heads: 12,
            num_key_value_heads: 4,
            ..Self::tiny(architecture)
        }
    }
}

/// The DeepSeek-V2/V3 sizes of a tiny model, derived from the spec: head_dim = hidden / heads
/// for the no-rope query/key part and the values, 8 rope dims, latent rank hidden / 2, query
/// rank 3·hidden / 4 for V2 (V3: no query compression), 8 routed experts (top-2, 1 shared) of
/// width intermediate / 4; layer 0 dense, the others MoE.
struct TinyDeepseek {
    heads: usize,
    q_lora_rank: Option<usize>,
    kv_lora_rank: usize,
    nope: usize,
    rope: usize,
    v: usize,
    experts: usize,
    moe_intermediate: usize,
    v3: bool,
}

impl TinyDeepseek {
    fn new(spec: &TinySpec) -> Self {
        let (h, heads) = (spec.hidden_size, spec.num_attention_heads);
        let v3 = spec.architecture == Architecture::DeepseekV3;
        TinyDeepseek {
            heads,
            q_lora_rank: (!v3).then_some(3 * h / 4),
            kv_lora_rank: h / 2,
            nope: h / heads,
            rope: 8,
            v: h / heads,
            experts: 8,
            moe_intermediate: (spec.intermediate_size / 4).max(1),
            v3,
        }
    }

    /// Adds one decoder layer's tensors, named and shaped as transformers saves them.
    fn add_layer(&self, p: &str, layer: usize, h: usize, i: usize, add: &mut dyn FnMut(String, Vec<usize>, &str)) {
        let dq = self.nope + self.rope;
        let a = format!("{p}.self_attn");
        match self.q_lora_rank {
            Some(rq) => {
                add(format!("{a}.q_a_proj.weight"), vec![rq, h], "normal");
                add(format!("{a}.q_a_layernorm.weight"), vec![rq], "ones");
                add(format!("{a}.q_b_proj.weight"), vec![self.heads * dq, rq], "normal");
            }
            None => add(format!("{a}.q_proj.weight"), vec![self.heads * dq, h], "normal"),
        }
        add(format!("{a}.kv_a_proj_with_mqa.weight"), vec![self.kv_lora_rank + self.rope, h], "normal");
        add(format!("{a}.kv_a_layernorm.weight"), vec![self.kv_lora_rank], "ones");
        add(format!("{a}.kv_b_proj.weight"), vec![self.heads * (self.nope + self.v), self.kv_lora_rank], "normal");
        add(format!("{a}.o_proj.weight"), vec![h, self.heads * self.v], "normal");
        let mut mlp = |prefix: String, width: usize| {
            for (name, out_f, in_f) in [("gate_proj", width, h), ("up_proj", width, h), ("down_proj", h, width)] {
                add(format!("{prefix}.{name}.weight"), vec![out_f, in_f], "normal");
            }
        };
        if layer == 0 {
            mlp(format!("{p}.mlp"), i);
        } else {
            for e in 0..self.experts {
                mlp(format!("{p}.mlp.experts.{e}"), self.moe_intermediate);
            }
            mlp(format!("{p}.mlp.shared_experts"), self.moe_intermediate);
            add(format!("{p}.mlp.gate.weight"), vec![self.experts, h], "normal");
            if self.v3 {
                add(format!("{p}.mlp.gate.e_score_correction_bias"), vec![self.experts], "zeros");
            }
        }
        add(format!("{p}.input_layernorm.weight"), vec![h], "ones");
        add(format!("{p}.post_attention_layernorm.weight"), vec![h], "ones");
    }
}

/// Normal(0, std) from a seeded RNG (Box-Muller; rand itself ships no normal distribution).
fn normal(rng: &mut StdRng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
            let u2: f32 = rng.random();
            std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
}

/// Writes the model into `out`, which must not exist yet or be empty. Everything is written to a
/// temporary sibling directory first and renamed into place at the end.
pub fn write_tiny_model(spec: &TinySpec, out: &Path) -> Result<()> {
    if out.exists() {
        let empty = out.is_dir() && std::fs::read_dir(out).map_err(|e| ModelError::io(out, e))?.next().is_none();
        if !empty {
            return Err(ModelError::Invalid(format!("{}: already exists and is not empty; choose a new directory", out.display())));
        }
    }
    let (tokenizer_json, mut tokenizer_config) = match &spec.tokenizer {
        None => (TINY_TOKENIZER_JSON.as_bytes().to_vec(), serde_json::from_str::<Value>(TINY_TOKENIZER_CONFIG).expect("built-in tokenizer config")),
        Some(path) => {
            let bytes = read_file(path)?;
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| ModelError::Tokenizer { path: path.clone(), message: e.to_string() })?;
            let sibling = path.with_file_name("tokenizer_config.json");
            let tc = if sibling.is_file() { read_json(&sibling)? } else { json!({}) };
            (bytes, tc)
        }
    };
    let tokenizer = tokenizers::Tokenizer::from_bytes(&tokenizer_json).expect("checked above");
    let vocab_size = tokenizer.get_vocab_size(true);
    let tc = tokenizer_config.as_object_mut().ok_or_else(|| ModelError::Invalid("tokenizer_config.json: expected an object".into()))?;
    let special = |v: Option<&Value>| match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o.get("content").and_then(|c| c.as_str()).map(String::from),
        _ => None,
    };
    let bos = special(tc.get("bos_token")).and_then(|t| tokenizer.token_to_id(&t));
    let eos = special(tc.get("eos_token")).and_then(|t| tokenizer.token_to_id(&t));
    tc.entry("chat_template").or_insert(Value::String(DEFAULT_CHAT_TEMPLATE.into()));

    let a = spec.architecture;
    let head_dim = spec.hidden_size / spec.num_attention_heads;
    let mut config = json!({
        "architectures": [a.hf_name()],
        "model_type": a.model_type(),
        "vocab_size": vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": spec.max_position_embeddings,
        "rms_norm_eps": 1e-6,
        "rope_theta": if a == Architecture::Llama { 10000.0 } else { 1000000.0 },
        "tie_word_embeddings": spec.tie_word_embeddings,
        "initializer_range": spec.init_std,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    });
    if a == Architecture::Llama {
        config["attention_bias"] = json!(false);
        config["mlp_bias"] = json!(false);
    }
    let ds = TinyDeepseek::new(spec);
    if a.is_deepseek() {
        let c = config.as_object_mut().expect("object");
        c.insert("num_key_value_heads".into(), json!(spec.num_attention_heads));
        c.insert("head_dim".into(), json!(ds.rope));
        c.insert("q_lora_rank".into(), json!(ds.q_lora_rank));
        c.insert("kv_lora_rank".into(), json!(ds.kv_lora_rank));
        c.insert("qk_nope_head_dim".into(), json!(ds.nope));
        c.insert("qk_rope_head_dim".into(), json!(ds.rope));
        c.insert("v_head_dim".into(), json!(ds.v));
        c.insert("n_routed_experts".into(), json!(ds.experts));
        c.insert("n_shared_experts".into(), json!(1));
        c.insert("num_experts_per_tok".into(), json!(2));
        c.insert("moe_intermediate_size".into(), json!(ds.moe_intermediate));
        c.insert("first_k_dense_replace".into(), json!(1));
        c.insert("moe_layer_freq".into(), json!(1));
        c.insert("attention_bias".into(), json!(false));
        c.insert("rope_theta".into(), json!(10000.0));
        if a == Architecture::DeepseekV3 {
            c.insert("topk_method".into(), json!("noaux_tc"));
            c.insert("n_group".into(), json!(2));
            c.insert("topk_group".into(), json!(1));
            c.insert("norm_topk_prob".into(), json!(true));
            c.insert("routed_scaling_factor".into(), json!(2.5));
            c.insert("rope_interleave".into(), json!(true));
        } else {
            c.insert("topk_method".into(), json!("greedy"));
            c.insert("norm_topk_prob".into(), json!(false));
            c.insert("routed_scaling_factor".into(), json!(1.0));
            c.insert("mlp_bias".into(), json!(false));
        }
    }
    let gemma = a == Architecture::Gemma3;
    if gemma {
        // every 6th layer (and the last one of a shorter model) is a global layer
        let pattern = spec.num_hidden_layers.min(6);
        let types: Vec<&str> = (0..spec.num_hidden_layers)
            .map(|i| if (i + 1) % pattern == 0 { "full_attention" } else { "sliding_attention" })
            .collect();
        let c = config.as_object_mut().expect("object");
        c.remove("hidden_act");
        c.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
        c.insert("query_pre_attn_scalar".into(), json!(head_dim));
        c.insert("rope_local_base_freq".into(), json!(10000.0));
        c.insert("sliding_window".into(), json!(spec.max_position_embeddings.min(64)));
        c.insert("layer_types".into(), json!(types));
        c.insert("attention_bias".into(), json!(false));
        c.insert("final_logit_softcapping".into(), Value::Null);
        c.insert("attn_logit_softcapping".into(), Value::Null);
    }

    // weights, named and shaped as transformers saves them
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let (h, i, d) = (spec.hidden_size, spec.intermediate_size, head_dim);
    let (q, kv) = (spec.num_attention_heads * d, spec.num_key_value_heads * d);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, init: &str, rng: &mut StdRng| {
        let n = shape.iter().product();
        let data = match init {
            "ones" => vec![1.0; n],
            "zeros" => vec![0.0; n],
            _ => normal(rng, n, spec.init_std),
        };
        tensors.push((name, shape, data));
    };
    add("model.embed_tokens.weight".into(), vec![vocab_size, h], "normal", &mut rng);
    for l in 0..spec.num_hidden_layers {
        let p = format!("model.layers.{l}");
        if a.is_deepseek() {
            ds.add_layer(&p, l, h, i, &mut |name, shape, init| add(name, shape, init, &mut rng));
            continue;
        }
        for (name, out_f, in_f) in [("q_proj", q, h), ("k_proj", kv, h), ("v_proj", kv, h), ("o_proj", h, q)] {
            add(format!("{p}.self_attn.{name}.weight"), vec![out_f, in_f], "normal", &mut rng);
            if a == Architecture::Qwen2 && name != "o_proj" {
                add(format!("{p}.self_attn.{name}.bias"), vec![out_f], "zeros", &mut rng);
            }
        }
        // Gemma's norms multiply by (1 + w): zeros are the identity, as transformers initialises them
        let unit = if gemma { "zeros" } else { "ones" };
        if a == Architecture::Qwen3 || gemma {
            add(format!("{p}.self_attn.q_norm.weight"), vec![d], unit, &mut rng);
            add(format!("{p}.self_attn.k_norm.weight"), vec![d], unit, &mut rng);
        }
        for (name, out_f, in_f) in [("gate_proj", i, h), ("up_proj", i, h), ("down_proj", h, i)] {
            add(format!("{p}.mlp.{name}.weight"), vec![out_f, in_f], "normal", &mut rng);
        }
        add(format!("{p}.input_layernorm.weight"), vec![h], unit, &mut rng);
        add(format!("{p}.post_attention_layernorm.weight"), vec![h], unit, &mut rng);
        if gemma {
            add(format!("{p}.pre_feedforward_layernorm.weight"), vec![h], unit, &mut rng);
            add(format!("{p}.post_feedforward_layernorm.weight"), vec![h], unit, &mut rng);
        }
    }
    add("model.norm.weight".into(), vec![h], if gemma { "zeros" } else { "ones" }, &mut rng);
    if !spec.tie_word_embeddings {
        add("lm_head.weight".into(), vec![vocab_size, h], "normal", &mut rng);
    }

    write_dir_atomically(out, |tmp| {
        let write = |name: &str, bytes: &[u8]| std::fs::write(tmp.join(name), bytes).map_err(|e| ModelError::io(tmp.join(name), e));
        write("config.json", serde_json::to_string_pretty(&config).unwrap().as_bytes())?;
        write("generation_config.json", serde_json::to_string_pretty(&json!({"bos_token_id": bos, "eos_token_id": eos})).unwrap().as_bytes())?;
        write("tokenizer.json", &tokenizer_json)?;
        write("tokenizer_config.json", serde_json::to_string_pretty(&tokenizer_config).unwrap().as_bytes())?;
        save_f32_safetensors(&tmp.join("model.safetensors"), &tensors)
    })
}
