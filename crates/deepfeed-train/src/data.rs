//! From the project's JSONL to token sequences with loss masks.
//!
//! Each line is one of
//! - `{"input_text": "...", "target_text": "...", "metadata": {...}}`: a prompt and its answer,
//!   rendered as one user turn + one assistant turn with the model's chat template;
//! - `{"messages": [{"role": "...", "content": "..."}, ...]}`: a conversation; every assistant turn
//!   is trained, everything else is context;
//! - `{"text": "..."}`: plain text for continued pre-training, every token trained.
//!
//! Prompt tokens are masked from the loss unless `train_on_prompt`; EOS ends every sample;
//! sequences longer than `max_seq_len` are cut (and counted).
use std::path::Path;

use deepfeed_data::Record;
use deepfeed_model::tokenizer::TextTokenizer;
use deepfeed_model::ChatMessage;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::Value;

use crate::error::{Result, TrainError};

/// One training sequence: `ids[t]` is trained (predicted from `ids[..t]`) where `train[t]`.
/// A packed sequence holds several samples back to back: `segments` lists their lengths, and
/// no token attends across a segment boundary (empty = one segment).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pub ids: Vec<u32>,
    pub train: Vec<bool>,
    pub segments: Vec<usize>,
}

impl Sample {
    pub fn new(ids: Vec<u32>, train: Vec<bool>) -> Self {
        Sample { ids, train, segments: vec![] }
    }

    /// Number of tokens that carry loss (position 0 never does: nothing predicts it).
    pub fn trained_tokens(&self) -> usize {
        self.train.iter().skip(1).filter(|&&t| t).count()
    }
}

#[derive(Debug, Default, Clone)]
pub struct DatasetStats {
    pub samples: usize,
    pub truncated: usize,
    /// Dropped because nothing trainable was left after truncation.
    pub dropped: usize,
    pub tokens: usize,
}

pub struct Tokenized {
    pub samples: Vec<Sample>,
    pub stats: DatasetStats,
}

struct Builder<'a> {
    tok: &'a TextTokenizer,
    ids: Vec<u32>,
    train: Vec<bool>,
}

impl Builder<'_> {
    fn push(&mut self, text: &str, train: bool) -> deepfeed_model::Result<()> {
        let ids = self.tok.encode(text, false)?;
        self.train.extend(std::iter::repeat_n(train, ids.len()));
        self.ids.extend(ids);
        Ok(())
    }
    /// Appends EOS (trained like the turn it closes) unless the text already ended with it.
    fn close(&mut self, train: bool) {
        if let Some(&eos) = self.tok.eos_ids.first() {
            if !self.tok.eos_ids.contains(self.ids.last().unwrap_or(&u32::MAX)) {
                self.ids.push(eos);
                self.train.push(train);
            }
        }
    }
}

/// Renders a conversation turn by turn so each piece of text can be masked or trained; falls back
/// to "everything but the last assistant answer is prompt" when the template rewrites history.
fn encode_messages(tok: &TextTokenizer, messages: &[ChatMessage]) -> deepfeed_model::Result<Sample> {
    let mut b = Builder { tok, ids: vec![], train: vec![] };
    if !tok.has_chat_template() {
        // no template: BOS (when the tokenizer adds it) and "role: content" lines, assistant lines trained
        if let Some(bos) = tok.leading_bos()? {
            b.ids.push(bos);
            b.train.push(false);
        }
        for m in messages {
            b.push(&format!("{}: ", m.role), false)?;
            b.push(&format!("{}\n", m.content), m.role == "assistant")?;
        }
        b.close(true);
        return Ok(Sample::new(b.ids, b.train));
    }
    let mut rendered = String::new();
    let mut consistent = true;
    for (k, m) in messages.iter().enumerate() {
        if m.role == "assistant" {
            let with_prompt = tok.apply_chat_template(&messages[..k], true)?;
            match with_prompt.strip_prefix(rendered.as_str()) {
                Some(p) => b.push(p, false)?,
                None => consistent = false,
            }
            rendered = with_prompt;
        }
        let upto = tok.apply_chat_template(&messages[..=k], false)?;
        match upto.strip_prefix(rendered.as_str()) {
            Some(piece) => b.push(piece, m.role == "assistant")?,
            None => consistent = false,
        }
        if m.role == "assistant" {
            b.close(true);
        }
        rendered = upto;
        if !consistent {
            break;
        }
    }
    if consistent {
        return Ok(Sample::new(b.ids, b.train));
    }
    // the template rewrites earlier turns (e.g. R1 drops old <think> blocks): train the last answer only
    let last = messages.iter().rposition(|m| m.role == "assistant").unwrap_or(messages.len());
    let prompt = tok.apply_chat_template(&messages[..last], true)?;
    let full = tok.apply_chat_template(&messages[..=last.min(messages.len() - 1)], false)?;
    let mut b = Builder { tok, ids: vec![], train: vec![] };
    b.push(&prompt, false)?;
    let answer = full.strip_prefix(prompt.as_str()).map(String::from).unwrap_or_else(|| messages[last].content.clone());
    b.push(&answer, true)?;
    b.close(true);
    Ok(Sample::new(b.ids, b.train))
}

/// One record of the project format (checked by `deepfeed_data::Record::parse`) to a sample.
fn encode_record(tok: &TextTokenizer, v: &Value) -> std::result::Result<Sample, String> {
    let record = Record::parse(v).map_err(|e| e.to_string())?;
    let model_err = |e: deepfeed_model::ModelError| e.to_string();
    match record {
        // preference pairs train on the chosen answer here (DPO uses `rejected_text`)
        Record::Pair { input, target, .. } => {
            let messages = [ChatMessage::new("user", &input), ChatMessage::new("assistant", &target)];
            encode_messages(tok, &messages).map_err(model_err)
        }
        Record::Chat { messages, .. } => {
            let messages: Vec<ChatMessage> = messages.iter().map(|m| ChatMessage::new(&m.role, &m.content)).collect();
            encode_messages(tok, &messages).map_err(model_err)
        }
        Record::Text { text, .. } => {
            let ids = tok.encode(&text, true).map_err(model_err)?;
            let mut b = Builder { tok, train: vec![true; ids.len()], ids };
            b.close(true);
            Ok(Sample::new(b.ids, b.train))
        }
    }
}

/// The non-empty lines of a JSONL file's `text` as (1-based line number, value); a line that is
/// not JSON is an error naming the file and line.
fn json_lines<'a>(path: &'a Path, text: &'a str) -> impl Iterator<Item = Result<(usize, Value)>> + 'a {
    text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(move |(n, l)| {
        serde_json::from_str(l)
            .map(|v| (n + 1, v))
            .map_err(|e| TrainError::Data { path: path.into(), line: n + 1, message: format!("not valid JSON: {e}") })
    })
}

/// Reads and tokenizes a JSONL dataset. Errors name the file and line.
pub fn load_dataset(path: &Path, tok: &TextTokenizer, max_seq_len: usize, train_on_prompt: bool) -> Result<Tokenized> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut samples = Vec::new();
    let mut stats = DatasetStats::default();
    for item in json_lines(path, &text) {
        let (line, v) = item?;
        let err = |message: String| TrainError::Data { path: path.into(), line, message };
        let mut s = encode_record(tok, &v).map_err(err)?;
        if train_on_prompt {
            s.train.iter_mut().for_each(|t| *t = true);
        }
        if s.ids.len() > max_seq_len {
            s.ids.truncate(max_seq_len);
            s.train.truncate(max_seq_len);
            stats.truncated += 1;
        }
        if s.trained_tokens() == 0 {
            stats.dropped += 1;
            continue;
        }
        stats.tokens += s.ids.len();
        samples.push(s);
    }
    if samples.is_empty() && stats.dropped == 0 {
        return Err(TrainError::Dataset(format!("{}: no usable sample: the file holds no records", path.display())));
    }
    if samples.is_empty() {
        return Err(TrainError::Dataset(format!(
            "{}: no usable sample ({} lines dropped after truncation to max_seq_len {max_seq_len})",
            path.display(),
            stats.dropped
        )));
    }
    stats.samples = samples.len();
    Ok(Tokenized { samples, stats })
}

/// A preference pair for DPO: the same prompt with the chosen and the rejected answer, each a
/// whole sequence whose answer tokens (and closing EOS) are marked in `train`.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSample {
    pub chosen: Sample,
    pub rejected: Sample,
}

/// Reads and tokenizes a JSONL dataset of preference pairs (`input_text`, `target_text` = the
/// chosen answer, `rejected_text`). Any other record is an error naming the file and line.
pub fn load_preference_dataset(path: &Path, tok: &TextTokenizer, max_seq_len: usize, train_on_prompt: bool) -> Result<(Vec<PairSample>, DatasetStats)> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut pairs = Vec::new();
    let mut stats = DatasetStats::default();
    for item in json_lines(path, &text) {
        let (line, v) = item?;
        let err = |message: String| TrainError::Data { path: path.into(), line, message };
        let record = Record::parse(&v).map_err(|e| err(e.to_string()))?;
        let Record::Pair { input, target, rejected: Some(rejected), .. } = record else {
            return Err(err(format!(
                "objective: dpo needs a preference pair (input_text, target_text, rejected_text), found a {} record",
                match record {
                    Record::Pair { .. } => "pair without rejected_text",
                    Record::Chat { .. } => "messages",
                    Record::Text { .. } => "text",
                }
            )));
        };
        let mut encode = |answer: &str| -> Result<Sample> {
            let messages = [ChatMessage::new("user", &input), ChatMessage::new("assistant", answer)];
            let mut s = encode_messages(tok, &messages).map_err(|e| err(e.to_string()))?;
            if train_on_prompt {
                s.train.iter_mut().for_each(|t| *t = true);
            }
            if s.ids.len() > max_seq_len {
                s.ids.truncate(max_seq_len);
                s.train.truncate(max_seq_len);
                stats.truncated += 1;
            }
            Ok(s)
        };
        let (chosen, rejected) = (encode(&target)?, encode(&rejected)?);
        if chosen.trained_tokens() == 0 || rejected.trained_tokens() == 0 {
            stats.dropped += 1;
            continue;
        }
        stats.tokens += chosen.ids.len() + rejected.ids.len();
        pairs.push(PairSample { chosen, rejected });
    }
    if pairs.is_empty() {
        return Err(TrainError::Dataset(format!(
            "{}: no usable preference pair ({} dropped after truncation to max_seq_len {max_seq_len})",
            path.display(),
            stats.dropped
        )));
    }
    stats.samples = pairs.len();
    Ok((pairs, stats))
}

/// Splits off a validation set of `fraction` of the samples (at least one when fraction > 0).
pub fn split<T>(samples: Vec<T>, fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    if fraction <= 0.0 || samples.len() < 2 {
        return (samples, vec![]);
    }
    let mut idx: Vec<usize> = (0..samples.len()).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x5EED_5EED));
    let n_val = ((samples.len() as f64 * fraction).round() as usize).clamp(1, samples.len() - 1);
    let mut val_idx = idx[..n_val].to_vec();
    val_idx.sort();
    let mut train = Vec::new();
    let mut val = Vec::new();
    for (i, s) in samples.into_iter().enumerate() {
        if val_idx.binary_search(&i).is_ok() {
            val.push(s);
        } else {
            train.push(s);
        }
    }
    (train, val)
}

/// Packs samples into sequences of at most `max_len` tokens (first fit, in a seeded order), so
/// that short samples do not waste compute on padding. The first token of each segment is never
/// trained (nothing in its own segment predicts it).
pub fn pack(samples: &[Sample], max_len: usize, seed: u64) -> Vec<Sample> {
    let mut idx: Vec<usize> = (0..samples.len()).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed ^ 0xFACC_ED00));
    let mut rows: Vec<Sample> = Vec::new();
    for i in idx {
        let s = &samples[i];
        let row = match rows.iter_mut().find(|r| r.ids.len() + s.ids.len() <= max_len) {
            Some(r) => r,
            None => {
                rows.push(Sample::default());
                rows.last_mut().unwrap()
            }
        };
        row.ids.extend(&s.ids);
        row.train.push(false);
        row.train.extend(&s.train[1..]);
        row.segments.push(s.ids.len());
    }
    rows
}

/// The batches of one epoch, as indices into the samples: shuffled with `seed + epoch`, grouped
/// by length inside windows of 50 batches so that padding stays small, then shuffled again.
pub fn epoch_batches(lengths: &[usize], batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut idx: Vec<usize> = (0..lengths.len()).collect();
    idx.shuffle(&mut rng);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for window in idx.chunks(batch_size * 50) {
        let mut w = window.to_vec();
        w.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(w.chunks(batch_size).map(|c| c.to_vec()));
    }
    batches.shuffle(&mut rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_each_sample_once_and_are_reproducible() {
        let lengths: Vec<usize> = (0..23).map(|i| (i * 7) % 13 + 1).collect();
        let b = epoch_batches(&lengths, 4, 1, 0);
        let mut all: Vec<usize> = b.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..23).collect::<Vec<_>>());
        assert_eq!(b, epoch_batches(&lengths, 4, 1, 0));
        assert_ne!(b, epoch_batches(&lengths, 4, 1, 1));
    }

    #[test]
    fn packing_keeps_every_token_once() {
        let samples: Vec<Sample> = (1..=9).map(|n| Sample::new(vec![n; n as usize], vec![true; n as usize])).collect();
        let rows = pack(&samples, 12, 0);
        assert!(rows.iter().all(|r| r.ids.len() <= 12 && r.segments.iter().sum::<usize>() == r.ids.len()));
        let tokens: usize = rows.iter().map(|r| r.ids.len()).sum();
        assert_eq!(tokens, (1..=9).sum::<usize>());
        let trained: usize = rows.iter().map(|r| r.trained_tokens() + 1).sum::<usize>() - rows.len();
        assert_eq!(trained, samples.iter().map(|s| s.trained_tokens()).sum::<usize>());
        assert!(rows.len() < samples.len());
    }

    #[test]
    fn split_is_seeded_and_disjoint() {
        let samples: Vec<Sample> = (0..10).map(|i| Sample::new(vec![i, i], vec![true, true])).collect();
        let (t, v) = split(samples.clone(), 0.2, 3);
        assert_eq!((t.len(), v.len()), (8, 2));
        assert!(v.iter().all(|s| !t.contains(s)));
        assert_eq!(split(samples, 0.2, 3).1, v);
    }
}
