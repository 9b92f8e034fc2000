//! Tokenizer of a model directory: `tokenizer.json` (the `tokenizers` crate), special tokens from
//! `tokenizer_config.json` / `generation_config.json` / `config.json`, and the chat template.
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chat_template::{ChatMessage, ChatTemplate};
use crate::config::ModelConfig;
use crate::error::{read_json, ModelError, Result};

#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub bos_id: Option<u32>,
    /// Every id that ends generation (generation_config, config and tokenizer_config together).
    pub eos_ids: Vec<u32>,
    pub pad_id: Option<u32>,
    /// `add_bos_token` of tokenizer_config.json: make sure plain encodings start with BOS.
    add_bos: bool,
    chat_template: Option<ChatTemplate>,
    /// The template's Jinja source, to write it back (`hf_files`).
    chat_template_source: Option<String>,
}

/// A special-token field is either `"<s>"` or `{"content": "<s>", ...}`.
fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(String::from),
        _ => None,
    }
}

fn ids_of(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_u64().map(|n| n as u32)).collect(),
        _ => vec![],
    }
}

impl TextTokenizer {
    /// Loads the tokenizer files of a model directory.
    pub fn from_dir(dir: &Path, cfg: Option<&ModelConfig>) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                dir: dir.into(),
                what: "tokenizer.json".into(),
                expected: "the Hugging Face fast-tokenizer file next to config.json".into(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| ModelError::Tokenizer { path: path.clone(), message: e.to_string() })?;
        let tc_path = dir.join("tokenizer_config.json");
        let tc: Value = if tc_path.is_file() { read_json(&tc_path)? } else { Value::Null };
        let gc_path = dir.join("generation_config.json");
        let gc: Value = if gc_path.is_file() { read_json(&gc_path)? } else { Value::Null };

        let bos_token = token_string(tc.get("bos_token"));
        let eos_token = token_string(tc.get("eos_token"));
        let pad_token = token_string(tc.get("pad_token"));
        let id = |t: &Option<String>| t.as_deref().and_then(|t| inner.token_to_id(t));
        let bos_id = ids_of(gc.get("bos_token_id")).first().copied().or(cfg.and_then(|c| c.bos_token_id)).or(id(&bos_token));
        let mut eos_ids = ids_of(gc.get("eos_token_id"));
        for extra in cfg.map(|c| c.eos_token_ids.clone()).unwrap_or_default().into_iter().chain(id(&eos_token)) {
            if !eos_ids.contains(&extra) {
                eos_ids.push(extra);
            }
        }
        let pad_id = ids_of(gc.get("pad_token_id")).first().copied().or(id(&pad_token));

        // chat template: chat_template.jinja (transformers >= 4.43) or tokenizer_config.json
        let jinja_path = dir.join("chat_template.jinja");
        let template_src = if jinja_path.is_file() {
            Some(String::from_utf8_lossy(&crate::error::read_file(&jinja_path)?).into_owned())
        } else {
            match tc.get("chat_template") {
                Some(Value::String(s)) => Some(s.clone()),
                // a list of named templates: take "default"
                Some(Value::Array(list)) => list
                    .iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .or_else(|| list.first())
                    .and_then(|t| t.get("template").and_then(|s| s.as_str()).map(String::from)),
                _ => None,
            }
        };
        let chat_template = template_src.clone().map(ChatTemplate::new).transpose()?;
        let add_bos = tc.get("add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
        Ok(TextTokenizer { inner, path, bos_token, eos_token, bos_id, eos_ids, pad_id, add_bos, chat_template, chat_template_source: template_src })
    }

    /// A tokenizer assembled elsewhere (e.g. from a GGUF file's metadata, see `gguf::tokenizer`);
    /// `path` is where it came from, for error messages.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        inner: tokenizers::Tokenizer,
        path: PathBuf,
        bos_token: Option<String>,
        eos_token: Option<String>,
        bos_id: Option<u32>,
        eos_ids: Vec<u32>,
        pad_id: Option<u32>,
        add_bos: bool,
        chat_template_source: Option<String>,
    ) -> Result<Self> {
        let chat_template = chat_template_source.clone().map(ChatTemplate::new).transpose()?;
        Ok(TextTokenizer { inner, path, bos_token, eos_token, bos_id, eos_ids, pad_id, add_bos, chat_template, chat_template_source })
    }

    /// This tokenizer as Hugging Face files: `tokenizer.json` and `tokenizer_config.json` (special
    /// tokens, `add_bos_token`, chat template). Used to save a model loaded from a GGUF file.
    pub fn hf_files(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let json = self
            .inner
            .to_string(false)
            .map_err(|e| ModelError::Tokenizer { path: self.path.clone(), message: format!("serialising: {e}") })?;
        let mut tc = serde_json::Map::new();
        tc.insert("bos_token".into(), self.bos_token.clone().into());
        tc.insert("eos_token".into(), self.eos_token.clone().into());
        tc.insert("add_bos_token".into(), self.add_bos.into());
        tc.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        if let Some(t) = &self.chat_template_source {
            tc.insert("chat_template".into(), t.clone().into());
        }
        Ok(vec![("tokenizer.json", json.into_bytes()), ("tokenizer_config.json", serde_json::to_vec_pretty(&tc).expect("JSON"))])
    }

    /// The underlying `tokenizers` tokenizer (e.g. to save it as tokenizer.json).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes `text`; with `add_special_tokens` as transformers' `tokenizer(text)` does
    /// (post-processor template, BOS when `add_bos_token`).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| ModelError::Tokenizer { path: self.path.clone(), message: e.to_string() })?;
        let mut ids = enc.get_ids().to_vec();
        if add_special_tokens && self.add_bos {
            if let Some(bos) = self.bos_id {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
        }
        Ok(ids)
    }

    /// BOS when a plain encoding starts with it (`encode(text, true)`), else None. Text written
    /// without a chat template ("role: content" lines) starts with it, as `tokenizer(text)` and
    /// llama.cpp's completion do; base models such as Gemma need it.
    pub fn leading_bos(&self) -> Result<Option<u32>> {
        let first = self.encode("", true)?.first().copied();
        Ok(first.filter(|&id| Some(id) == self.bos_id))
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| ModelError::Tokenizer { path: self.path.clone(), message: e.to_string() })
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Renders `messages` with the model's chat template (as `apply_chat_template(tokenize=False)`).
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let t = self.chat_template.as_ref().ok_or_else(|| {
            ModelError::Template(format!(
                "the model has no chat template (no chat_template in tokenizer_config.json or chat_template.jinja next to {}); use `generate` for raw text",
                self.path.display()
            ))
        })?;
        t.render(messages, add_generation_prompt, self.bos_token.as_deref().unwrap_or(""), self.eos_token.as_deref().unwrap_or(""))
    }
}
