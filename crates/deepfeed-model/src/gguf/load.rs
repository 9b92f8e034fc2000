//! A GGUF file as a base model: its metadata becomes a Hugging Face `config.json` (then the usual
//! [`ModelConfig`]), its tensors are served under their HF names, dequantised to f32 when a layer
//! asks for them (llama's q/k rows un-permuted, Gemma's `norm + 1` undone), and its vocabulary
//! becomes the tokenizer (`gguf/tokenizer.rs`).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::names::{hf_name, norm_weight_offset, permutes_qk, unpermute_qk_rows, unpermuted_row_order, SUPPORTED_ARCHS};
use super::{GgmlType, GgufFile};
use crate::quantized::QuantizedMatrix;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// The GGUF file `path` names: the file itself, or the only `*.gguf` of a directory that has no
/// `config.json`. None when `path` is a Hugging Face directory (or does not exist).
pub fn gguf_path(path: &Path) -> Result<Option<PathBuf>> {
    if path.is_file() {
        return Ok(path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")).then(|| path.to_path_buf()));
    }
    if !path.is_dir() || path.join("config.json").is_file() {
        return Ok(None);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| ModelError::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")))
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(ModelError::Invalid(format!(
            "{}: holds {n} .gguf files and no config.json; pass the one to load ({})",
            path.display(),
            found.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The `config.json` transformers would write for this GGUF model (as `from_pretrained(gguf_file=…)`
/// infers it), parsed into a [`ModelConfig`].
pub fn config_from_gguf(f: &GgufFile) -> Result<ModelConfig> {
    let err = |m: String| ModelError::Gguf { path: f.path.clone(), message: m };
    let arch = f.require("general.architecture", "a string", |v| v.as_str().map(String::from))?;
    if !SUPPORTED_ARCHS.contains(&arch.as_str()) {
        return Err(err(format!("general.architecture {arch:?} is not supported (expected one of {})", SUPPORTED_ARCHS.join(", "))));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let u = |k: &str| f.require(&key(k), "an unsigned integer", |v| v.as_u64());
    let opt_u = |k: &str| f.get(&key(k)).and_then(|v| v.as_u64());
    let opt_f = |k: &str| f.get(&key(k)).and_then(|v| v.as_f64());

    let hidden = u("embedding_length")?;
    let layers = u("block_count")?;
    let heads = u("attention.head_count")?;
    let kv_heads = opt_u("attention.head_count_kv").unwrap_or(heads);
    let head_dim = opt_u("attention.key_length").unwrap_or(hidden / heads.max(1));
    let vocab = match opt_u("vocab_size") {
        Some(v) => v,
        None => f
            .get_array("tokenizer.ggml.tokens")
            .map(|a| a.len() as u64)
            .or_else(|| f.tensor_info("token_embd.weight").map(|t| t.dims.get(1).copied().unwrap_or(0)))
            .ok_or_else(|| err("no vocabulary size: neither {arch}.vocab_size nor tokenizer.ggml.tokens".into()))?,
    };
    let tied = f.tensor_info("output.weight").is_none();
    let (hf_arch, model_type) = match arch.as_str() {
        "llama" => ("LlamaForCausalLM", "llama"),
        "qwen2" => ("Qwen2ForCausalLM", "qwen2"),
        "qwen3" => ("Qwen3ForCausalLM", "qwen3"),
        _ => ("Gemma3ForCausalLM", "gemma3_text"),
    };
    let token_id = |k: &str| f.get_u32(&format!("tokenizer.ggml.{k}"));
    let mut c = Map::new();
    c.insert("architectures".into(), json!([hf_arch]));
    c.insert("model_type".into(), json!(model_type));
    c.insert("vocab_size".into(), json!(vocab));
    c.insert("hidden_size".into(), json!(hidden));
    c.insert("intermediate_size".into(), json!(u("feed_forward_length")?));
    c.insert("num_hidden_layers".into(), json!(layers));
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("num_key_value_heads".into(), json!(kv_heads));
    c.insert("head_dim".into(), json!(head_dim));
    c.insert("max_position_embeddings".into(), json!(opt_u("context_length").unwrap_or(4096)));
    c.insert("rms_norm_eps".into(), json!(opt_f("attention.layer_norm_rms_epsilon").unwrap_or(1e-6)));
    c.insert("rope_theta".into(), json!(opt_f("rope.freq_base").unwrap_or(if arch == "llama" { 10_000.0 } else { 1_000_000.0 })));
    c.insert("tie_word_embeddings".into(), json!(tied));
    c.insert("bos_token_id".into(), json!(token_id("bos_token_id")));
    c.insert("eos_token_id".into(), json!(token_id("eos_token_id")));
    c.insert("torch_dtype".into(), json!("float32"));
    match f.get_str(&key("rope.scaling.type")) {
        None | Some("none") => {}
        Some(kind) => {
            let mut s = Map::new();
            s.insert("rope_type".into(), json!(kind));
            s.insert("factor".into(), json!(opt_f("rope.scaling.factor").unwrap_or(1.0)));
            if let Some(o) = opt_u("rope.scaling.original_context_length") {
                s.insert("original_max_position_embeddings".into(), json!(o));
            }
            c.insert("rope_scaling".into(), Value::Object(s));
        }
    }
    match arch.as_str() {
        "llama" => {
            c.insert("attention_bias".into(), json!(f.tensor_info("blk.0.attn_q.bias").is_some()));
            c.insert("mlp_bias".into(), json!(false));
            c.insert("hidden_act".into(), json!("silu"));
        }
        "qwen2" | "qwen3" => {
            c.insert("hidden_act".into(), json!("silu"));
        }
        _ => {
            // gemma3: llama.cpp does not store the layer pattern or the local rope base; it uses
            // every 6th layer global and 10000, as transformers' defaults do.
            c.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
            c.insert("sliding_window".into(), json!(opt_u("attention.sliding_window").unwrap_or(4096)));
            c.insert("rope_local_base_freq".into(), json!(opt_f("rope.freq_base_swa").unwrap_or(10_000.0)));
            c.insert("sliding_window_pattern".into(), json!(opt_u("attention.sliding_window_pattern").unwrap_or(6)));
            // llama.cpp: 1/sqrt(head_dim), except Gemma 3 27B (62 layers): 1/sqrt(hidden/heads)
            let scalar = if layers == 62 { hidden / heads } else { head_dim };
            c.insert("query_pre_attn_scalar".into(), json!(scalar));
            if let Some(cap) = opt_f("final_logit_softcapping") {
                c.insert("final_logit_softcapping".into(), json!(cap));
            }
            if let Some(cap) = opt_f("attn_logit_softcapping") {
                c.insert("attn_logit_softcapping".into(), json!(cap));
            }
        }
    }
    ModelConfig::from_json(&f.path, Value::Object(c))
}

/// The tensors of a GGUF file under their Hugging Face names (see [`crate::weights::WeightFiles`]).
pub struct GgufWeights {
    pub file: GgufFile,
    arch: String,
    /// HF parameter name → GGUF tensor name
    names: HashMap<String, String>,
    num_heads: usize,
    num_kv_heads: usize,
}

impl GgufWeights {
    pub fn new(file: GgufFile, cfg: &ModelConfig) -> Result<Self> {
        let arch = file.architecture().unwrap_or("").to_string();
        let names = file.tensors.iter().filter_map(|t| hf_name(&arch, &t.name).map(|h| (h, t.name.clone()))).collect();
        Ok(GgufWeights { file, arch, names, num_heads: cfg.num_attention_heads, num_kv_heads: cfg.num_key_value_heads })
    }

    pub fn contains(&self, hf: &str) -> bool {
        self.names.contains_key(hf)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    pub fn shape(&self, hf: &str) -> Option<Vec<usize>> {
        self.file.tensor_info(self.names.get(hf)?).map(|t| t.shape())
    }

    /// The GGUF tensor behind HF name `hf`, checked to have shape `expected`.
    fn lookup(&self, hf: &str, expected: &[usize]) -> Result<&super::GgufTensorInfo> {
        let gguf = self.names.get(hf).ok_or_else(|| ModelError::MissingTensor {
            tensor: hf.into(),
            hint: format!(" ({} has no tensor mapping to it)", self.file.path.display()),
        })?;
        let info = self.file.tensor_info(gguf).expect("names map to tensors of the file");
        if info.shape() != expected {
            return Err(ModelError::ShapeMismatch { tensor: format!("{hf} (GGUF {gguf})"), path: self.file.path.clone(), expected: expected.to_vec(), found: info.shape() });
        }
        Ok(info)
    }

    /// The number of heads of a q/k matrix llama.cpp stored with permuted rows, else None.
    fn permuted_heads(&self, hf: &str) -> Option<usize> {
        if !permutes_qk(&self.arch) {
            return None;
        }
        if hf.ends_with("self_attn.q_proj.weight") {
            Some(self.num_heads)
        } else if hf.ends_with("self_attn.k_proj.weight") {
            Some(self.num_kv_heads)
        } else {
            None
        }
    }

    /// Dequantises the tensor behind HF name `hf`, checking it has shape `expected`, and undoes
    /// llama.cpp's storage transforms.
    pub fn read_f32(&self, hf: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let info = self.lookup(hf, expected)?;
        let (shape, mut data) = self.file.tensor_f32(&info.name)?;
        if let Some(heads) = self.permuted_heads(hf) {
            data = unpermute_qk_rows(&data, shape[1], heads);
        }
        let offset = norm_weight_offset(&self.arch);
        if offset != 0.0 && hf.ends_with("norm.weight") {
            data.iter_mut().for_each(|x| *x -= offset);
        }
        Ok(data)
    }

    /// Rows `rows` of the matrix behind HF name `hf` (shape `expected`, 2-D), dequantised, in HF
    /// row order (llama's q/k rows un-permuted, as [`GgufWeights::read_f32`] does).
    pub fn read_rows_f32(&self, hf: &str, expected: &[usize], rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        if expected.len() != 2 {
            return Err(ModelError::Invalid(format!("{hf}: reading rows needs a matrix, found shape {expected:?}")));
        }
        let info = self.lookup(hf, expected)?;
        let (row_len, n_rows) = info.rows();
        let mut out = vec![0f32; rows.len() * row_len];
        match self.permuted_heads(hf) {
            Some(heads) => {
                let order = unpermuted_row_order(n_rows, heads);
                for (o, r) in out.chunks_mut(row_len.max(1)).zip(rows) {
                    self.file.tensor_rows_f32(info, order[r]..order[r] + 1, o)?;
                }
            }
            None => self.file.tensor_rows_f32(info, rows, &mut out)?,
        }
        Ok(out)
    }

    /// The matrix behind HF name `hf` (`[rows, cols]`) as its GGUF blocks, q/k rows un-permuted;
    /// None when it is stored as F32 (nothing to save) or in a type without dequantisation.
    pub fn quantized(&self, hf: &str, expected: [usize; 2]) -> Result<Option<QuantizedMatrix>> {
        let info = self.lookup(hf, &expected)?;
        let ty = info.ggml_type;
        if ty == GgmlType::F32 || !super::dequant::is_supported(ty) {
            return Ok(None);
        }
        let [rows, cols] = expected;
        let bytes = self.file.tensor_bytes(info)?;
        // rows in HF order: llama's q/k rows gathered from their GGUF places, others copied as they are
        let blocks = match self.permuted_heads(hf) {
            Some(heads) => {
                let row_bytes = bytes.len() / rows.max(1);
                unpermuted_row_order(rows, heads).into_iter().flat_map(|g| &bytes[g * row_bytes..(g + 1) * row_bytes]).copied().collect()
            }
            None => bytes.to_vec(),
        };
        let err = |e: ModelError| ModelError::Gguf { path: self.file.path.clone(), message: format!("tensor `{}`: {e}", info.name) };
        QuantizedMatrix::new(ty, rows, cols, blocks).map(Some).map_err(err)
    }
}
