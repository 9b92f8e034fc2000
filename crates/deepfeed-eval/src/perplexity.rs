//! Perplexity `exp(-1/N Σ log p(x_i))` over the scored tokens of the evaluation records.
//!
//! Protocol:
//! - `input_text`/`target_text` and `messages` records score the **target tokens** only: the
//!   prompt is the chat template over the conversation before the answer with the generation
//!   prompt (`add_generation_prompt=True`); the answer is what the template adds for the final
//!   assistant turn (e.g. `" 答案<｜end▁of▁sentence｜>"`), EOS appended if the template did not
//!   end with it — exactly the tokens `deepfeed train` learns. Prompt and answer are tokenized
//!   separately (no BOS added: the template has it).
//! - `text` records score every token but the first (BOS added as `tokenizer(text)` does).
//! - Long sequences use the sliding window of `deepfeed perplexity`: windows of at most `context`
//!   tokens advance by `stride` and every token is scored once, with at least `context - stride`
//!   tokens of left context when the text has them.
//! - The corpus perplexity is `exp(Σ NLL / Σ tokens)` (token-weighted); each sample's own NLL
//!   and token count are in the detailed output.
use deepfeed_model::{ChatMessage, Model};
use serde::Serialize;

use crate::dataset::{EvalSample, Shape};
use crate::error::{EvalError, Result};

/// A token sequence and which of its tokens count (`scored[t]`: token `t` is predicted and
/// scored; `scored[0]` is always false).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredIds {
    pub ids: Vec<u32>,
    pub scored: Vec<bool>,
}

impl ScoredIds {
    pub fn count(&self) -> usize {
        self.scored.iter().skip(1).filter(|&&s| s).count()
    }
}

/// The prompt text the model answers from (with the generation prompt), and its token ids.
pub fn prompt_text(model: &Model, context: &[ChatMessage]) -> Result<String> {
    if model.tokenizer.has_chat_template() {
        return Ok(model.tokenizer.apply_chat_template(context, true)?);
    }
    // no template: "role: content" lines, as `deepfeed train` renders them
    let mut s: String = context.iter().map(|m| format!("{}: {}\n", m.role, m.content)).collect();
    s.push_str("assistant: ");
    Ok(s)
}

/// The token ids of [`prompt_text`]: the template carries BOS; without a template BOS is added
/// when the tokenizer adds it to plain text (as `deepfeed train` does).
pub fn prompt_ids(model: &Model, context: &[ChatMessage]) -> Result<Vec<u32>> {
    let tok = &model.tokenizer;
    let mut ids = tok.encode(&prompt_text(model, context)?, false)?;
    if !tok.has_chat_template() {
        if let Some(bos) = tok.leading_bos()? {
            ids.insert(0, bos);
        }
    }
    Ok(ids)
}

/// The text the chat template adds after `prompt_text(context)` for the assistant answer
/// `answer` (including the end-of-turn marker the template writes, if any).
pub fn answer_text(model: &Model, context: &[ChatMessage], answer: &str) -> Result<String> {
    if !model.tokenizer.has_chat_template() {
        return Ok(format!("{answer}\n"));
    }
    let prompt = model.tokenizer.apply_chat_template(context, true)?;
    let mut full_msgs = context.to_vec();
    full_msgs.push(ChatMessage::new("assistant", answer));
    let full = model.tokenizer.apply_chat_template(&full_msgs, false)?;
    Ok(full.strip_prefix(prompt.as_str()).map(String::from).unwrap_or_else(|| answer.to_string()))
}

/// Tokens of a prompt followed by an answer, the answer's tokens scored; EOS closes the answer.
pub fn encode_answer(model: &Model, context: &[ChatMessage], answer: &str) -> Result<ScoredIds> {
    let tok = &model.tokenizer;
    let mut ids = prompt_ids(model, context)?;
    let mut scored = vec![false; ids.len()];
    let a = tok.encode(&answer_text(model, context, answer)?, false)?;
    scored.extend(std::iter::repeat_n(true, a.len()));
    ids.extend(a);
    if let Some(&eos) = tok.eos_ids.first() {
        if !tok.eos_ids.contains(ids.last().unwrap_or(&u32::MAX)) {
            ids.push(eos);
            scored.push(true);
        }
    }
    if scored.first() == Some(&true) {
        scored[0] = false;
    }
    Ok(ScoredIds { ids, scored })
}

/// What a record scores: the target of pair/chat records, the whole of text records.
pub fn encode_sample(model: &Model, s: &EvalSample) -> Result<Option<ScoredIds>> {
    match s.shape {
        Shape::Text => {
            let ids = model.tokenizer.encode(s.text.as_deref().unwrap_or_default(), true)?;
            let mut scored = vec![true; ids.len()];
            if let Some(f) = scored.first_mut() {
                *f = false;
            }
            Ok(Some(ScoredIds { ids, scored }))
        }
        _ => match &s.target {
            Some(t) => encode_answer(model, &s.context, t).map(Some),
            None => Ok(None),
        },
    }
}

/// NLL of every token of `ids` after the first (`ids.len() - 1` values, entry `k` for token
/// `k + 1`), computed in windows of `context` tokens advancing by `stride` (see module docs).
pub fn token_nlls(model: &Model, ids: &[u32], context: usize, stride: usize) -> Result<Vec<f64>> {
    let step = stride.clamp(1, context.max(2) - 1);
    let mut out = Vec::with_capacity(ids.len().saturating_sub(1));
    let mut first = 1; // first token not scored yet
    while first < ids.len() {
        let end = (first + step).min(ids.len());
        let begin = end.saturating_sub(context).min(first - 1);
        let nll = model.token_nll(&ids[begin..end])?; // nll[k] scores ids[begin + k + 1]
        out.extend((first..end).map(|j| nll[j - begin - 1] as f64));
        first = end;
    }
    Ok(out)
}

/// Summed NLL and count of the scored tokens of one sequence.
pub fn score(model: &Model, s: &ScoredIds, context: usize, stride: usize) -> Result<(f64, usize)> {
    // only the window up to the last scored token is needed
    let last = s.scored.iter().rposition(|&x| x).unwrap_or(0);
    let nll = token_nlls(model, &s.ids[..=last], context, stride)?;
    let mut sum = 0.0;
    let mut n = 0;
    for (t, &x) in s.scored.iter().enumerate().take(last + 1).skip(1) {
        if x {
            sum += nll[t - 1];
            n += 1;
        }
    }
    Ok((sum, n))
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PerplexityResult {
    pub tokens: usize,
    pub mean_nll: f64,
    pub perplexity: f64,
}

impl PerplexityResult {
    pub fn from_sums(sum: f64, tokens: usize) -> Result<Self> {
        if tokens == 0 {
            return Err(EvalError::Invalid("no token to score for perplexity (every target is empty?)".into()));
        }
        let mean_nll = sum / tokens as f64;
        Ok(PerplexityResult { tokens, mean_nll, perplexity: mean_nll.exp() })
    }
}

/// Perplexity of one plain text (the forgetting check's general sample).
pub fn text_perplexity(model: &Model, text: &str, context: usize, stride: usize) -> Result<PerplexityResult> {
    let ids = model.tokenizer.encode(text, true)?;
    let nll = token_nlls(model, &ids, context, stride)?;
    PerplexityResult::from_sums(nll.iter().sum(), nll.len())
}
