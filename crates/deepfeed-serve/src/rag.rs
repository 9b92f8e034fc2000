//! Retrieval-augmented generation inside the server: knowledge bases (`deepfeed kb` directories)
//! opened once — store and query embedder — and attached to the base model (`--kb`) or to one
//! adapter (`--adapter NAME=DIR,kb=KBDIR`, or `"kb"` in `POST /admin/adapters`). Per request the
//! last user turn is searched, the passages go into that turn through the template within the
//! token budget (`deepfeed_kb::rag::build_prompt`, as `deepfeed chat --kb` does), and the
//! citations come back as an extra response field.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deepfeed_kb::rag::{build_prompt, Citation, DEFAULT_TEMPLATE};
use deepfeed_kb::{backend, Embedder, KbBackend, Mode, Retriever};
use deepfeed_model::{ChatMessage, Model};
use serde_json::Value;

use crate::error::{ApiError, ServeError};

/// How retrieval runs when a request does not say: `--kb-k`, `--kb-tokens`, `--kb-template`,
/// `--kb-mode`.
#[derive(Debug, Clone)]
pub struct RagSettings {
    /// Passages retrieved per question.
    pub k: usize,
    /// Token budget of the passages in the prompt (chat model tokenizer).
    pub max_tokens: usize,
    /// Template with `{passages}` and `{question}`.
    pub template: String,
    pub mode: Mode,
}

impl Default for RagSettings {
    fn default() -> Self {
        RagSettings { k: 4, max_tokens: 1024, template: DEFAULT_TEMPLATE.into(), mode: Mode::Hybrid }
    }
}

/// Largest `k` a request may ask for (the retriever takes 50 candidates per list).
pub const MAX_K: usize = 50;

/// What embeds the questions: a sentence encoder, or the served base model itself when the
/// knowledge base was built with `kb add --model` (the chat-model fallback).
enum QueryEmbedder {
    Encoder(Embedder<'static>),
    ChatModel(Arc<Model>),
}

/// A knowledge base opened for serving. The SQLite connection is not `Sync`, so searches take a
/// lock (a search is milliseconds next to a generation); they run on tokio's blocking pool.
pub struct KnowledgeBase {
    pub dir: PathBuf,
    store: Mutex<Box<dyn KbBackend>>,
    embedder: QueryEmbedder,
}

impl KnowledgeBase {
    /// Opens `dir` and the embedder it was built with (or `embedder_dir`, which must be the same
    /// model): every problem — missing or corrupt directory, encoder gone, another encoder, a
    /// dimension mismatch — is an error here, at startup, not at the first request.
    pub fn open(dir: &Path, embedder_dir: Option<&Path>, base: &Arc<Model>) -> Result<Self, ServeError> {
        let fail = |m: String| ServeError::Invalid(format!("knowledge base {}: {m}", dir.display()));
        let store = backend::open(dir).map_err(|e| fail(e.to_string()))?;
        let info = store.embedder().clone();
        let embedder = if info.id.starts_with("chat-model:") && embedder_dir.is_none() {
            let id = Embedder::chat_model(base).id();
            if id != info.id || base.config.hidden_size != info.dim {
                return Err(fail(format!(
                    "it was embedded with {} ({} dims) but this server's model is {id} ({} dims); serve that model or rebuild the knowledge base with --embedder",
                    info.id, info.dim, base.config.hidden_size
                )));
            }
            QueryEmbedder::ChatModel(base.clone())
        } else {
            let enc_dir = embedder_dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(&info.path));
            if !enc_dir.is_dir() {
                return Err(fail(format!("it was built with the encoder {}, which is not there; pass --embedder DIR (the same encoder)", enc_dir.display())));
            }
            let e = Embedder::encoder(&enc_dir, &base.device).map_err(|e| fail(format!("loading its encoder: {e}")))?;
            if e.id() != info.id || e.dim() != info.dim {
                return Err(fail(format!(
                    "it was built with {} ({} dims) but the encoder {} is {} ({} dims); questions must be embedded by the same encoder",
                    info.id,
                    info.dim,
                    enc_dir.display(),
                    e.id(),
                    e.dim()
                )));
            }
            QueryEmbedder::Encoder(e)
        };
        Ok(KnowledgeBase { dir: dir.to_path_buf(), store: Mutex::new(store), embedder })
    }

    /// Retrieves for `question` and builds the user turn; blocking (embeds the question, reads
    /// SQLite and the HNSW index).
    pub fn augment(&self, chat_model: &Model, question: &str, opts: &RetrievalOptions) -> Result<(ChatMessage, Vec<Citation>), deepfeed_kb::KbError> {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let holder;
        let embedder = match &self.embedder {
            QueryEmbedder::Encoder(e) => e,
            QueryEmbedder::ChatModel(m) => {
                holder = Embedder::chat_model(m);
                &holder
            }
        };
        let hits = Retriever::new(&**store, Some(embedder)).search(question, opts.k, opts.mode)?;
        drop(store);
        let count = |s: &str| chat_model.tokenizer.encode(s, false).map(|v| v.len()).unwrap_or(s.len());
        let p = build_prompt(question, &hits, &opts.template, opts.max_tokens, &count);
        Ok((p.user_message, p.citations))
    }
}

/// The retrieval one request gets.
#[derive(Debug, Clone)]
pub struct RetrievalOptions {
    pub k: usize,
    pub mode: Mode,
    pub max_tokens: usize,
    pub template: String,
}

/// Reads a request's `kb` field against the server's defaults: absent → retrieval when the model
/// has a knowledge base; `false` → off; `true` → on (400 when the model has none);
/// `{"k", "mode", "max_tokens"}` → on with those values. `Ok(None)`: no retrieval.
pub fn retrieval_for_request(field: Option<&Value>, has_kb: bool, model: &str, defaults: &RagSettings, max_prompt_tokens: usize) -> Result<Option<RetrievalOptions>, ApiError> {
    let mut o = RetrievalOptions { k: defaults.k, mode: defaults.mode, max_tokens: defaults.max_tokens, template: defaults.template.clone() };
    let no_kb = || ApiError::bad_param("kb", format!("retrieval was asked for, but no knowledge base is configured for the model {model:?} (start the server with --kb DIR, or attach one to the adapter)"));
    match field {
        None | Some(Value::Null) => return Ok(has_kb.then_some(o)),
        Some(Value::Bool(false)) => return Ok(None),
        Some(Value::Bool(true)) => {}
        Some(Value::Object(m)) => {
            for (key, v) in m {
                let bad = |what: &str| ApiError::bad_param(&format!("kb.{key}"), format!("kb.{key}: expected {what}, found {v}"));
                match key.as_str() {
                    "enabled" => match v.as_bool() {
                        Some(false) => return Ok(None),
                        Some(true) => {}
                        None => return Err(bad("true or false")),
                    },
                    "k" => {
                        o.k = v.as_u64().filter(|&k| (1..=MAX_K as u64).contains(&k)).ok_or_else(|| bad(&format!("a whole number from 1 to {MAX_K}")))? as usize;
                    }
                    "mode" => o.mode = v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| bad("\"bm25\", \"vector\" or \"hybrid\""))?,
                    "max_tokens" => {
                        o.max_tokens = v.as_u64().filter(|&t| t >= 1 && t as usize <= max_prompt_tokens).ok_or_else(|| bad(&format!("a whole number from 1 to {max_prompt_tokens}")))? as usize;
                    }
                    other => return Err(ApiError::bad_param(&format!("kb.{other}"), format!("unknown kb option {other:?}: expected enabled, k, mode or max_tokens"))),
                }
            }
        }
        Some(other) => return Err(ApiError::bad_param("kb", format!("kb: expected true, false or an object {{\"k\", \"mode\", \"max_tokens\"}}, found {other}"))),
    }
    if !has_kb {
        return Err(no_kb());
    }
    Ok(Some(o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_kb_field_turns_retrieval_on_and_off() {
        let d = RagSettings::default();
        let r = |v: Option<Value>, has: bool| retrieval_for_request(v.as_ref(), has, "m", &d, 4096);
        assert!(r(None, true).unwrap().is_some());
        assert!(r(None, false).unwrap().is_none());
        assert!(r(Some(json!(false)), true).unwrap().is_none());
        assert!(r(Some(json!({"enabled": false})), true).unwrap().is_none());
        let o = r(Some(json!({"k": 2, "mode": "bm25", "max_tokens": 100})), true).unwrap().unwrap();
        assert_eq!((o.k, o.mode, o.max_tokens), (2, Mode::Bm25, 100));
        assert_eq!(r(Some(json!(true)), false).unwrap_err().param.as_deref(), Some("kb"));
        assert_eq!(r(Some(json!({"k": 0})), true).unwrap_err().param.as_deref(), Some("kb.k"));
        assert_eq!(r(Some(json!({"mode": "fuzzy"})), true).unwrap_err().param.as_deref(), Some("kb.mode"));
        assert_eq!(r(Some(json!({"max_tokens": 5000})), true).unwrap_err().param.as_deref(), Some("kb.max_tokens"));
        assert_eq!(r(Some(json!({"top": 1})), true).unwrap_err().param.as_deref(), Some("kb.top"));
        assert_eq!(r(Some(json!("yes")), true).unwrap_err().param.as_deref(), Some("kb"));
    }
}
