//! One generation advanced a token at a time: the state [`crate::generate`] loops over, exposed so
//! that a server can interleave many requests on one engine thread (each owns its KV cache and
//! sampler; every [`Sequence::step`] is exactly one forward pass).
use std::time::Instant;

use crate::arch::llama::KvCache;
use crate::error::{ModelError, Result};
use crate::generate::{FinishReason, GenerateOptions, Generation, Sampler};
use crate::model::Model;
use crate::think::{prompt_opens_think, strip_think, ThinkFilter};

pub struct Sequence {
    opts: GenerateOptions,
    sampler: Sampler,
    cache: KvCache,
    /// Tokens to feed on the next step: the prompt first, then the last sampled token.
    pending: Vec<u32>,
    history: Vec<u32>,
    generated: Vec<u32>,
    prompt_tokens: usize,
    budget: usize,
    /// Decoded text of `generated` (stop string excluded once found).
    text: String,
    /// Bytes of `text` already handed out.
    emitted: usize,
    think: Option<ThinkFilter>,
    starts_inside_think: bool,
    finish: Option<FinishReason>,
    prefill_secs: f64,
    decode_started: Option<Instant>,
    decode_secs: f64,
    kv_bytes_per_token: usize,
}

impl Sequence {
    /// Checks the options and the prompt; computes nothing yet.
    pub fn new(model: &Model, prompt_ids: &[u32], opts: &GenerateOptions) -> Result<Self> {
        opts.validate()?;
        if prompt_ids.is_empty() {
            return Err(ModelError::Invalid("the prompt is empty: nothing to generate from".into()));
        }
        model.check_ids(prompt_ids)?;
        let max_pos = model.config.max_position_embeddings;
        if prompt_ids.len() >= max_pos {
            return Err(ModelError::Invalid(format!(
                "the prompt has {} tokens, the model's context is {max_pos} (max_position_embeddings)",
                prompt_ids.len()
            )));
        }
        let starts_inside_think = opts.hide_think && prompt_opens_think(&model.tokenizer.decode(prompt_ids, false)?);
        let c = &model.config;
        Ok(Sequence {
            opts: opts.clone(),
            sampler: Sampler::new(opts),
            cache: model.new_cache(),
            pending: prompt_ids.to_vec(),
            history: prompt_ids.to_vec(),
            generated: Vec::new(),
            prompt_tokens: prompt_ids.len(),
            budget: opts.max_new_tokens.min(max_pos - prompt_ids.len()),
            text: String::new(),
            emitted: 0,
            think: opts.hide_think.then(|| ThinkFilter::new(starts_inside_think)),
            starts_inside_think,
            finish: if opts.max_new_tokens == 0 { Some(FinishReason::Length) } else { None },
            prefill_secs: 0.0,
            decode_started: None,
            decode_secs: 0.0,
            // keys and values of every layer, f32 (4 bytes)
            kv_bytes_per_token: c.num_hidden_layers * c.kv_values_per_token_per_layer() * 4,
        })
    }

    /// Runs one forward pass and samples one token; returns the text that became visible (maybe
    /// empty: a stop-string prefix or an incomplete character is held back). The first call is
    /// the prefill. Calling it after the end returns an empty string.
    pub fn step(&mut self, model: &Model) -> Result<String> {
        if self.finish.is_some() {
            return Ok(String::new());
        }
        let t = Instant::now();
        let mut logits = model.next_logits(&self.pending, &mut self.cache)?;
        if self.generated.is_empty() && self.decode_started.is_none() {
            self.prefill_secs = t.elapsed().as_secs_f64();
            self.decode_started = Some(Instant::now());
        }
        let next = self.sampler.next(&mut logits, &self.history);
        let mut out = String::new();
        if self.opts.stop_on_eos && model.tokenizer.eos_ids.contains(&next) {
            self.finish = Some(FinishReason::Stop);
        } else {
            self.generated.push(next);
            self.history.push(next);
            self.pending = vec![next];
            self.text = model.tokenizer.decode(&self.generated, true)?;
            // an incomplete UTF-8 sequence decodes to U+FFFD: wait for the next token
            if !self.text.ends_with('\u{FFFD}') {
                if let Some(at) = self.opts.stop.iter().filter_map(|s| self.text.find(s.as_str())).min() {
                    self.text.truncate(at);
                    self.finish = Some(FinishReason::Stop);
                } else {
                    let safe = self.text.len() - held_back(&self.text, &self.opts.stop);
                    if safe > self.emitted {
                        out.push_str(&self.visible(safe));
                    }
                }
            }
            if self.finish.is_none() && self.generated.len() >= self.budget {
                self.finish = Some(FinishReason::Length);
            }
        }
        if let Some(reason) = self.finish {
            // generation ended inside a multi-byte character: drop the incomplete tail
            while reason == FinishReason::Length && self.text.ends_with('\u{FFFD}') {
                self.text.pop();
            }
            if self.emitted < self.text.len() {
                out.push_str(&self.visible(self.text.len()));
            }
            if let Some(f) = self.think.as_mut() {
                out.push_str(&f.finish());
            }
            self.decode_secs = self.decode_started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        }
        Ok(out)
    }

    /// Hands out `text[emitted..upto]` through the reasoning filter.
    fn visible(&mut self, upto: usize) -> String {
        let piece = &self.text[self.emitted..upto];
        self.emitted = upto;
        match self.think.as_mut() {
            Some(f) => f.push(piece),
            None => piece.to_string(),
        }
    }

    /// `Some` once generation has ended.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// Tokens generated so far (EOS excluded).
    pub fn completion_tokens(&self) -> usize {
        self.generated.len()
    }

    /// Memory held by this sequence's KV cache (f32 keys and values of every layer).
    pub fn kv_cache_bytes(&self) -> usize {
        self.cache.len() * self.kv_bytes_per_token
    }

    /// The finished result (also usable before the end: what was generated so far).
    pub fn into_generation(self) -> Generation {
        let text = if self.opts.hide_think { strip_think(&self.text, self.starts_inside_think) } else { self.text };
        Generation {
            text,
            token_ids: self.generated,
            prompt_tokens: self.prompt_tokens,
            finish_reason: self.finish.unwrap_or(FinishReason::Length),
            prefill_secs: self.prefill_secs,
            decode_secs: self.decode_secs,
        }
    }
}

/// Length of the longest tail of `text` that is a proper prefix of one of `stops`.
pub(crate) fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|s| (1..s.len()).filter(|&n| n <= text.len() && text.is_char_boundary(text.len() - n) && s.starts_with(&text[text.len() - n..])))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_prefix_is_held_back() {
        assert_eq!(held_back("hello Us", &["User:".into()]), 2);
        assert_eq!(held_back("hello", &["User:".into()]), 0);
    }
}
