//! Export to GGUF: a whole model (adapters merged) as F16, Q8_0 or Q4_K_M with the metadata
//! llama.cpp reads (hyper-parameters, gpt2-style BPE vocabulary, chat template), and a PEFT LoRA
//! adapter in llama.cpp's GGUF adapter format (what `convert_lora_to_gguf.py` writes and
//! `llama-adapter.cpp` checks).
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::names::{gguf_name, norm_weight_offset, permute_qk_rows, permutes_qk};
use super::quantize::{quantize, tensor_type, FileType};
use super::types::{GgmlType, GgufArray};
use super::{GgufFile, GgufWriter};
use crate::config::{ModelConfig, RopeScaling};
use crate::error::{read_json, ModelError, Result};
use crate::lora::LoraConfig;
use crate::model::Model;
use crate::peft::{is_adapter_param, param_values};
use crate::weights::WeightFiles;

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub path: PathBuf,
    pub n_tensors: usize,
    pub bytes: u64,
    /// Tensor count per ggml type.
    pub types: BTreeMap<String, usize>,
}

impl ExportReport {
    fn new(path: &Path, types: BTreeMap<String, usize>) -> Self {
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        ExportReport { path: path.to_path_buf(), n_tensors: types.values().sum(), bytes, types }
    }
}

/// llama.cpp's `general.architecture` for a model config.
pub fn gguf_arch(cfg: &ModelConfig) -> &'static str {
    match cfg.architecture {
        crate::config::Architecture::Gemma3 => "gemma3",
        other => other.model_type(),
    }
}

/// DeepSeek-V2/V3 would need llama.cpp's `deepseek2` layout (split kv_b_proj, stacked experts),
/// which the exporter does not write.
fn refuse_deepseek(cfg: &ModelConfig) -> Result<()> {
    if cfg.architecture.is_deepseek() {
        return Err(ModelError::Invalid(format!(
            "GGUF export of {} (llama.cpp `deepseek2`) is not supported; export the merged model with save_pretrained and convert it with llama.cpp's convert_hf_to_gguf.py",
            cfg.architecture.hf_name()
        )));
    }
    Ok(())
}

/// llama.cpp's token types (`enum llama_token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// The vocabulary of a gpt2-style (byte-level BPE) `tokenizer.json`, as llama.cpp stores it.
#[derive(Debug, Clone)]
pub struct BpeVocab {
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    /// `tokenizer.ggml.pre`: which pre-tokenizer regex llama.cpp applies.
    pub pre: String,
}

/// Reads `tokenizer.json` of `dir` into `vocab_size` tokens (ids the tokenizer lacks become
/// `[PAD<id>]`, unused), as `convert_hf_to_gguf.py`'s `get_vocab_base` does.
pub fn read_bpe_vocab(dir: &Path, vocab_size: usize) -> Result<BpeVocab> {
    let path = dir.join("tokenizer.json");
    let tj: Value = read_json(&path)?;
    let err = |field: &str, message: String| ModelError::Config { path: path.clone(), field: field.into(), message };
    let model = tj.get("model").ok_or_else(|| err("model", "missing".into()))?;
    match model.get("type").and_then(|t| t.as_str()) {
        Some("BPE") => {}
        other => return Err(err("model.type", format!("GGUF export supports byte-level BPE tokenizers (\"BPE\"), found {other:?}"))),
    }
    if model.get("byte_fallback").and_then(|b| b.as_bool()) == Some(true) {
        return Err(err(
            "model.byte_fallback",
            "this is a SentencePiece-style tokenizer (byte_fallback); GGUF export supports gpt2-style byte-level BPE (DeepSeek, Qwen, Llama 3)".into(),
        ));
    }
    let vocab = model.get("vocab").and_then(|v| v.as_object()).ok_or_else(|| err("model.vocab", "expected an object".into()))?;
    let mut by_id: HashMap<usize, (String, i32)> = HashMap::with_capacity(vocab.len());
    for (tok, id) in vocab {
        let id = id.as_u64().ok_or_else(|| err("model.vocab", format!("token {tok:?}: expected an id, found {id}")))? as usize;
        by_id.insert(id, (tok.clone(), token_type::NORMAL));
    }
    for t in tj.get("added_tokens").and_then(|a| a.as_array()).into_iter().flatten() {
        let (Some(id), Some(content)) = (t.get("id").and_then(|i| i.as_u64()), t.get("content").and_then(|c| c.as_str())) else {
            return Err(err("added_tokens", format!("expected id and content, found {t}")));
        };
        let special = t.get("special").and_then(|s| s.as_bool()).unwrap_or(false);
        by_id.insert(id as usize, (content.to_string(), if special { token_type::CONTROL } else { token_type::USER_DEFINED }));
    }
    if let Some(max) = by_id.keys().max() {
        if *max >= vocab_size {
            return Err(err("model.vocab", format!("token id {max} does not fit the model's vocab_size {vocab_size}")));
        }
    }
    let mut tokens = Vec::with_capacity(vocab_size);
    let mut token_types = Vec::with_capacity(vocab_size);
    for id in 0..vocab_size {
        match by_id.remove(&id) {
            Some((t, ty)) => {
                tokens.push(t);
                token_types.push(ty);
            }
            None => {
                tokens.push(format!("[PAD{id}]"));
                token_types.push(token_type::UNUSED);
            }
        }
    }
    let merges = match model.get("merges").and_then(|m| m.as_array()) {
        None => vec![],
        Some(list) => list
            .iter()
            .map(|m| match m {
                Value::String(s) => Ok(s.clone()),
                Value::Array(pair) if pair.len() == 2 => Ok(format!("{} {}", pair[0].as_str().unwrap_or(""), pair[1].as_str().unwrap_or(""))),
                other => Err(err("model.merges", format!("expected \"a b\" or [a, b], found {other}"))),
            })
            .collect::<Result<_>>()?,
    };
    Ok(BpeVocab { tokens, token_types, merges, pre: detect_pre_tokenizer(&tj) })
}

/// Picks llama.cpp's pre-tokenizer name from the `pre_tokenizer` of tokenizer.json (llama.cpp
/// itself hashes a tokenisation; matching the regex gives the same answer for the families here).
fn detect_pre_tokenizer(tj: &Value) -> String {
    let pre = tj.get("pre_tokenizer").map(|p| p.to_string()).unwrap_or_default();
    let name = if pre.contains(r"\\p{N}{1,3}") {
        "llama-bpe" // Llama 3, DeepSeek-R1-Distill-Llama
    } else if pre.contains(r"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|") {
        "qwen2" // Qwen2/2.5/3, DeepSeek-R1-Distill-Qwen
    } else if pre.contains(r"\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ") {
        "deepseek-llm"
    } else if pre.contains("\"ByteLevel\"") && pre.contains("\"use_regex\":true") && !pre.contains("Split") {
        "gpt-2" // plain GPT-2 byte-level regex
    } else {
        "default"
    };
    name.to_string()
}

/// The chat template of a model directory (chat_template.jinja or tokenizer_config.json).
pub fn hf_chat_template(dir: &Path) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return Ok(Some(String::from_utf8_lossy(&crate::error::read_file(&jinja)?).into_owned()));
    }
    let tc_path = dir.join("tokenizer_config.json");
    if !tc_path.is_file() {
        return Ok(None);
    }
    let tc: Value = read_json(&tc_path)?;
    Ok(match tc.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template").and_then(|s| s.as_str()).map(String::from)),
        _ => None,
    })
}

/// Architecture hyper-parameters and tokenizer metadata of a loaded model, keyed as llama.cpp
/// reads them.
pub fn model_metadata(model: &Model, ft: FileType) -> Result<GgufWriter> {
    let cfg = &model.config;
    refuse_deepseek(cfg)?;
    let arch = gguf_arch(cfg);
    let mut w = GgufWriter::new();
    w.set_str("general.architecture", arch);
    let name = model.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    w.set_str("general.name", name);
    w.set_u32("general.file_type", ft.llama_ftype());
    w.set_u32("general.quantization_version", 2);
    let k = |s: &str| format!("{arch}.{s}");
    w.set_u32(k("vocab_size"), cfg.vocab_size as u32);
    w.set_u32(k("context_length"), cfg.max_position_embeddings as u32);
    w.set_u32(k("embedding_length"), cfg.hidden_size as u32);
    w.set_u32(k("block_count"), cfg.num_hidden_layers as u32);
    w.set_u32(k("feed_forward_length"), cfg.intermediate_size as u32);
    w.set_u32(k("attention.head_count"), cfg.num_attention_heads as u32);
    w.set_u32(k("attention.head_count_kv"), cfg.num_key_value_heads as u32);
    w.set_u32(k("attention.key_length"), cfg.head_dim as u32);
    w.set_u32(k("attention.value_length"), cfg.head_dim as u32);
    w.set_f32(k("attention.layer_norm_rms_epsilon"), cfg.rms_norm_eps as f32);
    w.set_f32(k("rope.freq_base"), cfg.rope_theta as f32);
    w.set_u32(k("rope.dimension_count"), cfg.head_dim as u32);
    if let Some(g) = &cfg.gemma3 {
        // llama.cpp requires the window; like it, the loader takes every 6th layer as global
        w.set_u32(k("attention.sliding_window"), g.sliding_window as u32);
        if let Some(cap) = g.final_logit_softcapping {
            w.set_f32(k("final_logit_softcapping"), cap as f32);
        }
    }
    match cfg.rope_scaling {
        RopeScaling::None | RopeScaling::Llama3 { .. } => {} // llama3: rope_freqs.weight tensor
        RopeScaling::Linear { factor } => {
            w.set_str(k("rope.scaling.type"), "linear");
            w.set_f32(k("rope.scaling.factor"), factor as f32);
        }
        RopeScaling::Dynamic { .. } => {
            return Err(ModelError::Invalid(
                "dynamic NTK rope scaling has no llama.cpp equivalent; cannot export this model to GGUF".into(),
            ))
        }
        RopeScaling::Yarn { .. } => {
            return Err(ModelError::Invalid("GGUF export of a model with YaRN rope scaling is not supported".into()))
        }
    }

    let vocab = read_bpe_vocab(&model.dir, cfg.vocab_size)?;
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_str("tokenizer.ggml.pre", vocab.pre);
    w.set_array("tokenizer.ggml.tokens", GgufArray::String(vocab.tokens));
    w.set_array("tokenizer.ggml.token_type", GgufArray::I32(vocab.token_types));
    w.set_array("tokenizer.ggml.merges", GgufArray::String(vocab.merges));
    let tok = &model.tokenizer;
    if let Some(id) = tok.bos_id {
        w.set_u32("tokenizer.ggml.bos_token_id", id);
    }
    if let Some(&id) = tok.eos_ids.first() {
        w.set_u32("tokenizer.ggml.eos_token_id", id);
    }
    if let Some(id) = tok.pad_id {
        w.set_u32("tokenizer.ggml.padding_token_id", id);
    }
    let tc_path = model.dir.join("tokenizer_config.json");
    let tc: Value = if tc_path.is_file() { read_json(&tc_path)? } else { Value::Null };
    w.set_bool("tokenizer.ggml.add_bos_token", tc.get("add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false));
    w.set_bool("tokenizer.ggml.add_eos_token", tc.get("add_eos_token").and_then(|v| v.as_bool()).unwrap_or(false));
    if let Some(t) = hf_chat_template(&model.dir)? {
        w.set_str("tokenizer.chat_template", t);
    }
    Ok(w)
}

/// The metadata of a model that was loaded from a GGUF file: the source file's own keys in their
/// order (architecture, hyper-parameters llama.cpp reads, such as Gemma 3's sliding window, the
/// vocabulary in its own tokenizer model, chat template), with the file type set to `ft`.
/// Fine-tuning changes weights only, so this describes the merged model exactly, also for
/// SentencePiece vocabularies (`tokenizer.ggml.model = llama`) that [`model_metadata`] cannot
/// rebuild from a `tokenizer.json`.
pub fn metadata_from_gguf(source: &GgufFile, ft: FileType) -> GgufWriter {
    let mut w = GgufWriter::new();
    for (key, value) in &source.metadata {
        // the writer aligns to 32 (llama.cpp's default) unless told otherwise
        if key != "general.alignment" {
            w.set(key.clone(), value.clone());
        }
    }
    w.set_u32("general.file_type", ft.llama_ftype());
    w.set_u32("general.quantization_version", 2);
    w
}

/// Llama 3.x rope frequency factors (`rope_freqs.weight`), as `convert_hf_to_gguf.py` computes them.
fn llama3_rope_factors(cfg: &ModelConfig) -> Option<Vec<f32>> {
    let RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } = cfg.rope_scaling else {
        return None;
    };
    let dim = cfg.head_dim;
    let old_len = original_max_position_embeddings as f64;
    let (low_wavelen, high_wavelen) = (old_len / low_freq_factor, old_len / high_freq_factor);
    Some(
        (0..dim / 2)
            .map(|i| {
                let freq = 1.0 / cfg.rope_theta.powf((2 * i) as f64 / dim as f64);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                let f = if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor
                } else {
                    let smooth = (old_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                };
                f as f32
            })
            .collect(),
    )
}

/// Writes `model` (its attached LoRA/DoRA adapters merged first) to `out` as GGUF of type `ft`.
pub fn export_model(model: &mut Model, ft: FileType, out: &Path) -> Result<ExportReport> {
    if model.network.prefix().is_some() {
        return Err(ModelError::Invalid("a prefix-tuning adapter cannot be merged into the weights, so it cannot be exported to GGUF".into()));
    }
    let mut w = match super::load::gguf_path(&model.dir)? {
        Some(source) => metadata_from_gguf(&GgufFile::open(&source)?, ft),
        None => model_metadata(model, ft)?,
    };
    model.merge_adapters();
    let cfg = model.config.clone();
    let arch = gguf_arch(&cfg);
    let has_output = model.network.lm_head().is_some();
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for (name, p) in model.network.params_mut() {
        if is_adapter_param(&name) {
            continue;
        }
        let gname = gguf_name(arch, &name).ok_or_else(|| ModelError::Invalid(format!("tensor `{name}` has no GGUF name for architecture {arch}")))?;
        let shape = p.shape();
        let mut values = param_values(&p)?;
        if permutes_qk(arch) {
            let cols = if shape.len() == 2 { shape[1] } else { 1 };
            if name.contains(".q_proj.") {
                values = permute_qk_rows(&values, cols, cfg.num_attention_heads);
            } else if name.contains(".k_proj.") {
                values = permute_qk_rows(&values, cols, cfg.num_key_value_heads);
            }
        }
        let offset = norm_weight_offset(arch);
        if offset != 0.0 && gname.ends_with("norm.weight") {
            values.iter_mut().for_each(|v| *v += offset);
        }
        let ty = tensor_type(ft, &gname, &shape, cfg.num_hidden_layers, has_output);
        let data = quantize(ty, &values, *shape.last().unwrap())?;
        w.add_tensor(gname, &shape, ty, data)?;
        *types.entry(ty.name().to_string()).or_default() += 1;
    }
    if let Some(factors) = llama3_rope_factors(&cfg) {
        w.add_f32("rope_freqs.weight", &[factors.len()], &factors)?;
        *types.entry("F32".into()).or_default() += 1;
    }
    w.write(out)?;
    Ok(ExportReport::new(out, types))
}

/// What the adapter export needs to know about the base model: its GGUF architecture, head counts
/// (for llama's q/k row permutation) and the row-major shape of each base tensor by GGUF name.
#[derive(Debug, Clone)]
pub struct BaseInfo {
    pub arch: String,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub shapes: HashMap<String, Vec<usize>>,
}

impl BaseInfo {
    /// From a Hugging Face model directory (config.json + safetensors headers; no weights read).
    pub fn from_hf_dir(dir: &Path) -> Result<BaseInfo> {
        let cfg = ModelConfig::from_dir(dir)?;
        refuse_deepseek(&cfg)?;
        let arch = gguf_arch(&cfg).to_string();
        let weights = WeightFiles::open(dir)?;
        let shapes = weights
            .names()
            .filter_map(|n| Some((gguf_name(&arch, n)?, weights.shape(n)?)))
            .collect();
        Ok(BaseInfo { arch, n_head: cfg.num_attention_heads, n_head_kv: cfg.num_key_value_heads, shapes })
    }

    /// From a GGUF model file.
    pub fn from_gguf(f: &GgufFile) -> Result<BaseInfo> {
        let arch = f.require("general.architecture", "a string", |v| v.as_str().map(String::from))?;
        let n_head = f.require(&format!("{arch}.attention.head_count"), "an integer", |v| v.as_u64())? as usize;
        let n_head_kv = f.get_u64(&format!("{arch}.attention.head_count_kv")).map(|n| n as usize).unwrap_or(n_head);
        let shapes = f.tensors.iter().map(|t| (t.name.clone(), t.shape())).collect();
        Ok(BaseInfo { arch, n_head, n_head_kv, shapes })
    }

    /// From a model directory or a `.gguf` file.
    pub fn from_path(path: &Path) -> Result<BaseInfo> {
        if path.is_file() {
            BaseInfo::from_gguf(&GgufFile::open(path)?)
        } else {
            BaseInfo::from_hf_dir(path)
        }
    }
}

const PEFT_PREFIX: &str = "base_model.model.";

/// Converts the PEFT LoRA adapter in `adapter_dir` to llama.cpp's GGUF LoRA format at `out`:
/// `general.type=adapter`, `adapter.type=lora`, `adapter.lora.alpha`, and for each adapted module
/// `<base tensor>.lora_a` (ggml [in, r] = PEFT `lora_A` [r, in]) and `<base tensor>.lora_b`
/// (ggml [r, out] = PEFT `lora_B` [out, r]), F32. llama.cpp scales by alpha / r, so an rsLoRA
/// adapter (scale alpha / √r) is written with alpha · √r.
pub fn export_lora_adapter(adapter_dir: &Path, base: &BaseInfo, out: &Path) -> Result<ExportReport> {
    let cfg_path = adapter_dir.join("adapter_config.json");
    if !cfg_path.is_file() {
        return Err(ModelError::MissingFile { dir: adapter_dir.into(), what: "adapter_config.json".into(), expected: "a PEFT LoRA adapter directory".into() });
    }
    let raw: Value = read_json(&cfg_path)?;
    let field_err = |field: &str, message: String| ModelError::Config { path: cfg_path.clone(), field: field.into(), message };
    if raw.get("peft_type").and_then(|v| v.as_str()) != Some("LORA") {
        return Err(field_err("peft_type", format!("GGUF adapters are LoRA; found {}", raw.get("peft_type").unwrap_or(&Value::Null))));
    }
    for field in ["rank_pattern", "alpha_pattern"] {
        if raw.get(field).and_then(|v| v.as_object()).is_some_and(|o| !o.is_empty()) {
            return Err(field_err(field, "per-module ranks or alphas cannot be expressed in one adapter.lora.alpha".into()));
        }
    }
    if raw.get("modules_to_save").and_then(|v| v.as_array()).is_some_and(|a| !a.is_empty()) {
        return Err(field_err("modules_to_save", "fully trained modules cannot go into a GGUF LoRA adapter; merge the model instead (deepfeed export gguf --adapter)".into()));
    }
    let cfg: LoraConfig = serde_json::from_value(raw.clone()).map_err(|e| field_err("(root)", e.to_string()))?;
    if cfg.use_dora {
        return Err(field_err("use_dora", "llama.cpp has no DoRA adapters; merge the model instead (deepfeed export gguf --adapter)".into()));
    }
    let alpha = if cfg.use_rslora { cfg.lora_alpha * (cfg.r as f64).sqrt() } else { cfg.lora_alpha };

    let weights = WeightFiles::open_file(&adapter_dir.join("adapter_model.safetensors"))?;
    let mut names: Vec<&str> = weights.names().collect();
    names.sort();
    let mut w = GgufWriter::new();
    w.set_str("general.architecture", base.arch.clone());
    w.set_str("general.type", "adapter");
    w.set_str("adapter.type", "lora");
    w.set_f32("adapter.lora.alpha", alpha as f32);
    w.set_str("general.name", adapter_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let mut n = 0;
    for name in names {
        if name.contains("lora_embedding_") {
            return Err(ModelError::Invalid(format!("{}: `{name}`: LoRA on embeddings is not supported by llama.cpp adapters", adapter_dir.display())));
        }
        let Some(module) = name.strip_suffix(".lora_A.weight") else {
            if name.ends_with(".lora_B.weight") {
                continue;
            }
            return Err(ModelError::Invalid(format!(
                "{}: tensor `{name}` is neither lora_A nor lora_B; GGUF adapters hold LoRA matrices only",
                adapter_dir.display()
            )));
        };
        let module = module.strip_prefix(PEFT_PREFIX).unwrap_or(module);
        let base_name = gguf_name(&base.arch, &format!("{module}.weight")).ok_or_else(|| {
            ModelError::Invalid(format!("adapter module `{module}` has no tensor in a {} GGUF model (llama.cpp adapters cover the decoder linears)", base.arch))
        })?;
        let base_shape = base.shapes.get(&base_name).ok_or_else(|| ModelError::MissingTensor {
            tensor: base_name.clone(),
            hint: format!(" in the base model (adapter module `{module}`)"),
        })?;
        let &[out_f, in_f] = base_shape.as_slice() else {
            return Err(ModelError::Invalid(format!("base tensor `{base_name}` has shape {base_shape:?}, expected a matrix")));
        };
        let a = weights.read_f32(name, &[cfg.r, in_f])?;
        let b_name = name.replace(".lora_A.weight", ".lora_B.weight");
        let mut b = weights.read_f32(&b_name, &[out_f, cfg.r])?;
        if permutes_qk(&base.arch) {
            if module.ends_with(".q_proj") {
                b = permute_qk_rows(&b, cfg.r, base.n_head);
            } else if module.ends_with(".k_proj") {
                b = permute_qk_rows(&b, cfg.r, base.n_head_kv);
            }
        }
        w.add_f32(format!("{base_name}.lora_a"), &[cfg.r, in_f], &a)?;
        w.add_f32(format!("{base_name}.lora_b"), &[out_f, cfg.r], &b)?;
        n += 2;
    }
    if n == 0 {
        return Err(ModelError::Invalid(format!("{}: the adapter holds no lora_A/lora_B tensors", adapter_dir.display())));
    }
    w.write(out)?;
    let types = BTreeMap::from([(GgmlType::F32.name().to_string(), n)]);
    Ok(ExportReport::new(out, types))
}
