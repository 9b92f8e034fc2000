//! Text to vectors. Two embedders:
//! - [`SentenceEncoder`]: a sentence-transformers directory (BERT weights + `tokenizer.json`,
//!   `modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`, optional `Normalize`
//!   module), batched with padding masks; matches `SentenceTransformer.encode`.
//! - [`ChatModelEmbedder`]: the fallback when no encoder is given: mean-pooled last hidden states
//!   of the chat model itself (weaker for retrieval, but needs nothing extra).
//!
//! Every vector leaves here L2-normalised, so cosine similarity is a dot product and the store
//! can use one metric for both.
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use deepfeed_model::Model;
use serde_json::Value;

use crate::bert::{BertConfig, BertModel};
use crate::error::{KbError, Result};

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Pooling {
    Mean,
    Cls,
    Max,
    MeanSqrtLen,
}

/// Which side of a search a text is on: some encoders (E5, BGE) prefix queries and passages
/// differently (`prompts` in `config_sentence_transformers.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Query,
    Passage,
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| KbError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| KbError::Config { path: path.into(), message: format!("not valid JSON: {e}") })
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// A sentence-transformers model directory on burn.
pub struct SentenceEncoder {
    pub dir: PathBuf,
    bert: BertModel,
    tokenizer: tokenizers::Tokenizer,
    pub pooling: Pooling,
    /// `Normalize` module present in modules.json (vectors are normalised for the store anyway).
    pub normalize: bool,
    pub max_seq_length: usize,
    lowercase: bool,
    pad_id: u32,
    query_prompt: String,
    passage_prompt: String,
    /// Texts per forward pass.
    pub batch_size: usize,
}

impl SentenceEncoder {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.join("config.json").is_file() {
            return Err(KbError::Config {
                path: dir.into(),
                message: "not an encoder directory: expected config.json, model.safetensors and tokenizer.json (a sentence-transformers / Hugging Face BERT model)".into(),
            });
        }
        let config = BertConfig::from_dir(dir)?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| KbError::Config { path: tok_path.clone(), message: format!("cannot load tokenizer: {e}") })?;

        // pooling: 1_Pooling/config.json (or the module path modules.json names); default mean
        let modules_path = dir.join("modules.json");
        let modules: Vec<Value> = if modules_path.is_file() { read_json(&modules_path)?.as_array().cloned().unwrap_or_default() } else { vec![] };
        let module_type = |v: &Value| v.get("type").and_then(|t| t.as_str()).unwrap_or("").to_string();
        let pool_dir = modules
            .iter()
            .find(|m| module_type(m).ends_with("Pooling"))
            .and_then(|m| m.get("path").and_then(|p| p.as_str()))
            .map(|p| dir.join(p))
            .unwrap_or_else(|| dir.join("1_Pooling"));
        let pooling = if pool_dir.join("config.json").is_file() {
            let p = read_json(&pool_dir.join("config.json"))?;
            let on = |k: &str| p.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
            // sentence-transformers >= 6 writes "pooling_mode": "mean" | "cls" | "max" | ...
            let mode = p.get("pooling_mode").and_then(|v| v.as_str()).unwrap_or("");
            if mode == "cls" || on("pooling_mode_cls_token") {
                Pooling::Cls
            } else if mode == "max" || on("pooling_mode_max_tokens") {
                Pooling::Max
            } else if mode.starts_with("mean_sqrt") || on("pooling_mode_mean_sqrt_len_tokens") {
                Pooling::MeanSqrtLen
            } else if !matches!(mode, "" | "mean") {
                return Err(KbError::Config { path: pool_dir.join("config.json"), message: format!("pooling_mode {mode:?} is not supported (mean, cls, max, mean_sqrt_len_tokens)") });
            } else if on("pooling_mode_cls_token") {
                Pooling::Cls
            } else if on("pooling_mode_max_tokens") {
                Pooling::Max
            } else if on("pooling_mode_mean_sqrt_len_tokens") {
                Pooling::MeanSqrtLen
            } else {
                Pooling::Mean
            }
        } else {
            Pooling::Mean
        };
        let normalize = modules.iter().any(|m| module_type(m).ends_with("Normalize"));

        // max_seq_length: sentence_bert_config.json, else tokenizer_config.json, else the position table
        let sb_path = dir.join("sentence_bert_config.json");
        let sb = if sb_path.is_file() { read_json(&sb_path)? } else { Value::Null };
        let lowercase = sb.get("do_lower_case").and_then(|v| v.as_bool()).unwrap_or(false);
        // (sentence-transformers >= 6 keeps it as tokenizer_config.json's model_max_length)
        let tc_path = dir.join("tokenizer_config.json");
        let tc = if tc_path.is_file() { read_json(&tc_path)? } else { Value::Null };
        let max_seq_length = sb
            .get("max_seq_length")
            .and_then(|v| v.as_u64())
            .or_else(|| tc.get("model_max_length").and_then(|v| v.as_u64()))
            .map(|v| v as usize)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        // sentence-transformers truncates to max_seq_length and pads to the longest text of a
        // batch, whatever tokenizer.json says (MiniLM's file pads to a fixed 128)
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_seq_length, ..Default::default() }))
            .map_err(|e| KbError::Config { path: tok_path.clone(), message: format!("truncation: {e}") })?;
        tokenizer.with_padding(None);
        let pad_id = tokenizer.token_to_id("[PAD]").or_else(|| tokenizer.token_to_id("<pad>")).unwrap_or(0);

        let st_path = dir.join("config_sentence_transformers.json");
        let prompts = if st_path.is_file() { read_json(&st_path)?.get("prompts").cloned().unwrap_or(Value::Null) } else { Value::Null };
        let prompt = |k: &[&str]| k.iter().find_map(|k| prompts.get(*k).and_then(|v| v.as_str())).unwrap_or("").to_string();
        let bert = BertModel::load(dir, config, device)?;
        Ok(SentenceEncoder {
            dir: dir.into(),
            bert,
            tokenizer,
            pooling,
            normalize,
            max_seq_length,
            lowercase,
            pad_id,
            query_prompt: prompt(&["query"]),
            passage_prompt: prompt(&["passage", "document"]),
            batch_size: 32,
        })
    }

    pub fn dim(&self) -> usize {
        self.bert.config.hidden_size
    }

    /// Sentence vectors as sentence-transformers computes them (pooling, then `Normalize` when
    /// the model has it), without the extra normalisation the store applies.
    pub fn encode_raw(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        // texts of similar length share a batch: less padding
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut results: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for group in order.chunks(self.batch_size.max(1)) {
            let encs: Vec<Vec<u32>> = group
                .iter()
                .map(|&i| {
                    // as sentence-transformers' Transformer.tokenize: stripped, lower-cased when
                    // sentence_bert_config.json says do_lower_case
                    let t = texts[i].trim();
                    let t = if self.lowercase { t.to_lowercase() } else { t.to_string() };
                    self.tokenizer
                        .encode(t, true)
                        .map(|e| e.get_ids().to_vec())
                        .map_err(|e| KbError::Invalid(format!("{}: cannot tokenize text {i}: {e}", self.dir.display())))
                })
                .collect::<Result<_>>()?;
            for (k, v) in self.encode_ids(&encs).into_iter().enumerate() {
                results[group[k]] = Some(v);
            }
        }
        for r in results {
            out.push(r.expect("every text encoded"));
        }
        Ok(out)
    }

    fn encode_ids(&self, encs: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let s = encs.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let ids: Vec<Vec<u32>> = encs.iter().map(|e| e.iter().copied().chain(std::iter::repeat(self.pad_id)).take(s).collect()).collect();
        let mask: Vec<Vec<u8>> = encs.iter().map(|e| (0..s).map(|j| (j < e.len()) as u8).collect()).collect();
        let hidden = self.bert.forward(&ids, &mask); // [b, s, h]
        let [b, _, h] = hidden.dims();
        let data = hidden.into_data().try_into_vec::<f32>().expect("f32 hidden states");
        (0..b)
            .map(|r| {
                let n = encs[r].len();
                let row = |j: usize| &data[(r * s + j) * h..(r * s + j + 1) * h];
                let mut v = vec![0f32; h];
                match self.pooling {
                    Pooling::Cls => v.copy_from_slice(row(0)),
                    Pooling::Max => {
                        v.fill(f32::MIN);
                        for j in 0..n {
                            v.iter_mut().zip(row(j)).for_each(|(a, &x)| *a = a.max(x));
                        }
                    }
                    Pooling::Mean | Pooling::MeanSqrtLen => {
                        for j in 0..n {
                            v.iter_mut().zip(row(j)).for_each(|(a, &x)| *a += x);
                        }
                        let div = if self.pooling == Pooling::Mean { n.max(1) as f32 } else { (n.max(1) as f32).sqrt() };
                        v.iter_mut().for_each(|a| *a /= div);
                    }
                }
                if self.normalize {
                    normalize(&mut v);
                }
                v
            })
            .collect()
    }
}

/// The chat model as an embedder: mean of its last hidden states (after the final norm).
pub struct ChatModelEmbedder<'m> {
    pub model: &'m Model,
    /// Tokens read per text (longer texts are cut).
    pub max_tokens: usize,
}

impl ChatModelEmbedder<'_> {
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for t in texts {
            let mut ids = self.model.tokenizer.encode(t, false)?;
            ids.truncate(self.max_tokens);
            if ids.is_empty() {
                ids = self.model.tokenizer.encode(" ", false)?;
            }
            self.model.check_ids(&ids)?;
            let positions: Vec<usize> = (0..ids.len()).collect();
            let data: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
            let ids_t = Tensor::from_data(TensorData::new(data, [1, ids.len()]), &self.model.device);
            let hidden = self.model.network.forward_hidden(ids_t, &self.model.rotary, &positions, None, None); // [1, s, h]
            let mean = hidden.mean_dim(1); // [1, 1, h]
            out.push(mean.into_data().try_into_vec::<f32>().map_err(|e| KbError::Invalid(format!("reading hidden states: {e:?}")))?);
        }
        Ok(out)
    }
}

/// What turns text into the store's vectors.
pub enum Embedder<'m> {
    Encoder(Box<SentenceEncoder>),
    ChatModel(ChatModelEmbedder<'m>),
}

impl<'m> Embedder<'m> {
    /// A sentence encoder directory (`--embedder DIR`).
    pub fn encoder(dir: &Path, device: &Device) -> Result<Self> {
        Ok(Embedder::Encoder(Box::new(SentenceEncoder::load(dir, device)?)))
    }

    pub fn chat_model(model: &'m Model) -> Self {
        Embedder::ChatModel(ChatModelEmbedder { model, max_tokens: 512 })
    }

    pub fn dim(&self) -> usize {
        match self {
            Embedder::Encoder(e) => e.dim(),
            Embedder::ChatModel(c) => c.model.config.hidden_size,
        }
    }

    /// Names the embedder in the store, so a knowledge base is never searched with vectors from
    /// another model: `encoder:<dir name>` or `chat-model:<dir name>`.
    pub fn id(&self) -> String {
        let name = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match self {
            Embedder::Encoder(e) => format!("encoder:{}", name(&e.dir)),
            Embedder::ChatModel(c) => format!("chat-model:{}", name(&c.model.dir)),
        }
    }

    /// Unit vectors for `texts`.
    pub fn embed(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Vec<f32>>> {
        let mut v = match self {
            Embedder::Encoder(e) => {
                let prompt = if kind == TextKind::Query { &e.query_prompt } else { &e.passage_prompt };
                if prompt.is_empty() {
                    e.encode_raw(texts)?
                } else {
                    let prefixed: Vec<String> = texts.iter().map(|t| format!("{prompt}{t}")).collect();
                    e.encode_raw(&prefixed.iter().map(String::as_str).collect::<Vec<_>>())?
                }
            }
            Embedder::ChatModel(c) => c.encode(texts)?,
        };
        v.iter_mut().for_each(|x| normalize(x));
        Ok(v)
    }
}
