//! Text generation with a KV cache: greedy or sampled (temperature, top-k, top-p), repetition
//! penalty, stop on EOS or stop strings, streaming callback, seeded and reproducible.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::sequence::Sequence;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 1.0 = off (transformers' `repetition_penalty`).
    pub repetition_penalty: f32,
    pub seed: u64,
    /// Generation ends when the text contains one of these; it is not part of the output.
    pub stop: Vec<String>,
    /// End at the model's EOS token(s) (off only for tests and benchmarks).
    pub stop_on_eos: bool,
    /// Hide DeepSeek-R1 `<think>…</think>` reasoning from the streamed and returned text.
    pub hide_think: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 256,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
            stop: vec![],
            stop_on_eos: true,
            hide_think: false,
        }
    }
}

impl GenerateOptions {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Invalid(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature must be >= 0, found {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], found {}", self.top_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!("repetition_penalty must be > 0, found {}", self.repetition_penalty));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// EOS token or stop string.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated text (stop string and EOS excluded; reasoning removed when `hide_think`).
    pub text: String,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
    /// Seconds spent on the prompt (prefill) and on the generated tokens.
    pub prefill_secs: f64,
    pub decode_secs: f64,
}

/// Picks the next token from logits, transformers-style: repetition penalty, then temperature,
/// top-k and top-p; greedy when temperature is 0.
pub struct Sampler {
    rng: StdRng,
    opts: GenerateOptions,
}

impl Sampler {
    pub fn new(opts: &GenerateOptions) -> Self {
        Sampler { rng: StdRng::seed_from_u64(opts.seed), opts: opts.clone() }
    }

    pub fn next(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let o = &self.opts;
        if o.repetition_penalty != 1.0 {
            for &t in history {
                let l = &mut logits[t as usize];
                *l = if *l > 0.0 { *l / o.repetition_penalty } else { *l * o.repetition_penalty };
            }
        }
        if o.temperature == 0.0 {
            return argmax(logits);
        }
        let mut cand: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l / o.temperature)).collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1));
        if o.top_k > 0 {
            cand.truncate(o.top_k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if o.top_p < 1.0 {
            let mut acc = 0.0;
            let keep = probs.iter().position(|p| {
                acc += p;
                acc >= o.top_p
            });
            let keep = keep.map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            cand.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (c, p) in cand.iter().zip(&probs) {
            r -= p;
            if r <= 0.0 {
                return c.0;
            }
        }
        cand[probs.len() - 1].0
    }
}

pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Generates from `prompt_ids`, calling `on_text` with each new piece of visible text.
pub fn generate(model: &Model, prompt_ids: &[u32], opts: &GenerateOptions, on_text: &mut dyn FnMut(&str)) -> Result<Generation> {
    let mut seq = Sequence::new(model, prompt_ids, opts)?;
    while seq.finish_reason().is_none() {
        let piece = seq.step(model)?;
        if !piece.is_empty() {
            on_text(&piece);
        }
    }
    Ok(seq.into_generation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_penalty() {
        let mut s = Sampler::new(&GenerateOptions::default());
        assert_eq!(s.next(&mut [0.1, 2.0, 1.0], &[]), 1);
        let opts = GenerateOptions { repetition_penalty: 4.0, ..Default::default() };
        let mut s = Sampler::new(&opts);
        // 2.0 / 4 = 0.5 < 1.0: the repeated token loses
        assert_eq!(s.next(&mut [0.1, 2.0, 1.0], &[1]), 2);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_respects_top_k() {
        let opts = GenerateOptions { temperature: 1.0, top_k: 2, seed: 7, ..Default::default() };
        let logits = [1.0f32, 1.1, 0.9, 5.0, 4.9];
        let run = || {
            let mut s = Sampler::new(&opts);
            (0..50).map(|_| s.next(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().all(|&t| t == 3 || t == 4));
        assert!(a.contains(&3) && a.contains(&4));
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        let opts = GenerateOptions { temperature: 1.0, top_p: 0.5, seed: 1, ..Default::default() };
        let mut s = Sampler::new(&opts);
        for _ in 0..20 {
            assert_eq!(s.next(&mut [0.0, 10.0, 0.0], &[]), 1);
        }
    }
}
