//! Perplexity of a text under a model, with a sliding window: windows of at most `context` tokens
//! advance by `stride`, and every token after the first is scored exactly once (see
//! [`score_ids`]). `stride = context` is fastest; a smaller stride gives tokens more context.
use std::path::Path;

use serde::Serialize;

use crate::error::{read_file, ModelError, Result};
use crate::model::Model;

#[derive(Debug, Clone, Copy)]
pub struct PerplexityOptions {
    /// Tokens per forward pass (default: the model's context, at most 1024).
    pub context: Option<usize>,
    /// Step between windows (default: `context`, i.e. no overlap).
    pub stride: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PerplexityReport {
    pub documents: usize,
    /// Tokens whose probability was scored (each document's first token has none).
    pub tokens: usize,
    pub mean_nll: f64,
    pub perplexity: f64,
    pub context: usize,
    pub stride: usize,
}

/// Sum of the NLL of every token of `ids` but the first, and how many were scored.
///
/// Each forward pass scores up to `stride` new tokens (`stride < context`) and fills the rest of
/// its `context`-token window with the tokens before them, so every token is scored exactly once
/// with at least `context - stride` tokens of left context (when the text has them).
pub fn score_ids(model: &Model, ids: &[u32], context: usize, stride: usize) -> Result<(f64, usize)> {
    let step = stride.clamp(1, context.max(2) - 1);
    let (mut sum, mut count) = (0.0f64, 0usize);
    let mut first = 1; // first token not scored yet
    while first < ids.len() {
        let end = (first + step).min(ids.len());
        let begin = end.saturating_sub(context).min(first - 1);
        let nll = model.token_nll(&ids[begin..end])?; // nll[k] scores ids[begin + k + 1]
        for j in first..end {
            sum += nll[j - begin - 1] as f64;
            count += 1;
        }
        first = end;
    }
    Ok((sum, count))
}

/// llama.cpp's `llama-perplexity` protocol: `ids` (BOS first) cut into whole chunks of `n_ctx`
/// tokens (a partial last chunk is dropped), each chunk's first token replaced by BOS, and only
/// the second half of each chunk scored (the token at `j` for `j` in `n_ctx/2 + 1 .. n_ctx`), so
/// every scored token has at least `n_ctx/2` tokens of context. Returns (sum of NLL, count).
pub fn score_chunks_llama_cpp(model: &Model, ids: &[u32], n_ctx: usize) -> Result<(f64, usize)> {
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Int, Tensor, TensorData};
    if n_ctx < 4 {
        return Err(ModelError::Invalid(format!("n_ctx must be at least 4, found {n_ctx}")));
    }
    model.check_ids(ids)?;
    let first = n_ctx / 2;
    let (mut sum, mut count) = (0.0f64, 0usize);
    for chunk in ids.chunks_exact(n_ctx) {
        let mut tokens = chunk.to_vec();
        if let Some(bos) = model.tokenizer.bos_id {
            tokens[0] = bos;
        }
        let data: Vec<i32> = tokens.iter().map(|&i| i as i32).collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(data, [1, n_ctx]), &model.device);
        let positions: Vec<usize> = (0..n_ctx).collect();
        let hidden = model.network.forward_hidden(input, &model.rotary, &positions, None, None); // [1, n_ctx, h]
        let h = hidden.dims()[2];
        let scored = n_ctx - 1 - first;
        // logits at first..n_ctx-1 predict tokens first+1..n_ctx
        let logp = log_softmax(model.network.logits(hidden.slice([0..1, first..n_ctx - 1, 0..h])), 2); // [1, scored, V]
        let targets: Vec<i32> = tokens[first + 1..].iter().map(|&i| i as i32).collect();
        let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [1, scored, 1]), &model.device);
        let nll = logp.gather(2, targets).neg().sum().into_scalar::<f32>();
        sum += nll as f64;
        count += scored;
    }
    Ok((sum, count))
}

/// Reads the documents of `path`: a JSONL file gives one document per line (`text`, or
/// `input_text` + `target_text`, or `messages` rendered with the chat template); any other file
/// is one plain-text document.
pub fn read_documents(model: &Model, path: &Path) -> Result<Vec<String>> {
    let bytes = read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|e| ModelError::Invalid(format!("{}: not UTF-8 text ({e})", path.display())))?;
    let is_jsonl = path.extension().is_some_and(|e| e == "jsonl");
    if !is_jsonl {
        if text.trim().is_empty() {
            return Err(ModelError::Invalid(format!("{}: the file is empty", path.display())));
        }
        return Ok(vec![text]);
    }
    let mut docs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |m: &str| ModelError::Invalid(format!("{}:{}: {m}", path.display(), n + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| err(&format!("not valid JSON: {e}")))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str());
        let doc = if let Some(t) = field("text") {
            t.to_string()
        } else if let (Some(i), Some(t)) = (field("input_text"), field("target_text")) {
            format!("{i}{t}")
        } else if let Some(m) = v.get("messages") {
            let messages: Vec<crate::chat_template::ChatMessage> =
                serde_json::from_value(m.clone()).map_err(|e| err(&format!("`messages`: {e}")))?;
            model.tokenizer.apply_chat_template(&messages, false)?
        } else {
            return Err(err("expected a `text` field, `input_text` + `target_text`, or `messages`"));
        };
        docs.push(doc);
    }
    if docs.is_empty() {
        return Err(ModelError::Invalid(format!("{}: no documents (the file has no non-empty lines)", path.display())));
    }
    Ok(docs)
}

impl PerplexityOptions {
    /// The (context, stride) to use for `cfg`, checked.
    pub fn resolve(&self, cfg: &crate::config::ModelConfig) -> Result<(usize, usize)> {
        let context = self.context.unwrap_or(cfg.max_position_embeddings.min(1024));
        let stride = self.stride.unwrap_or(context.saturating_sub(1));
        if context < 2 || context > cfg.max_position_embeddings {
            return Err(ModelError::Invalid(format!(
                "context must be between 2 and the model's {} positions, found {context}",
                cfg.max_position_embeddings
            )));
        }
        if stride == 0 || stride >= context {
            return Err(ModelError::Invalid(format!("stride must be between 1 and context - 1 ({}), found {stride}", context - 1)));
        }
        Ok((context, stride))
    }
}

pub fn perplexity(model: &Model, documents: &[String], opts: PerplexityOptions) -> Result<PerplexityReport> {
    let (context, stride) = opts.resolve(&model.config)?;
    let (mut sum, mut count) = (0.0, 0);
    for doc in documents {
        let ids = model.tokenizer.encode(doc, true)?;
        let (s, c) = score_ids(model, &ids, context, stride)?;
        sum += s;
        count += c;
    }
    if count == 0 {
        return Err(ModelError::Invalid("no token to score: every document is a single token or empty".into()));
    }
    let mean_nll = sum / count as f64;
    Ok(PerplexityReport { documents: documents.len(), tokens: count, mean_nll, perplexity: mean_nll.exp(), context, stride })
}
