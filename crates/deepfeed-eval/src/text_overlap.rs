//! ROUGE-1/2/L F1 and BLEU-4 between generated answers and targets, with CJK-aware tokens:
//! runs of Chinese characters are segmented into words with jieba (jieba-rs, HMM on, the same
//! dictionary as Python's `jieba`), everything else is split into runs of letters and digits,
//! lower-cased; punctuation and spaces are dropped.
//!
//! The formulas are those of Google's `rouge-score` (n-gram F1 with clipped counts; ROUGE-L =
//! sentence-level LCS F1; corpus value = mean over samples) and `sacrebleu` (BLEU-4 with the
//! `exp` smoothing and brevity penalty, on a 0–100 scale: corpus BLEU from summed n-gram
//! statistics; per-sample BLEU as `sentence_bleu`, i.e. with effective order).
//! `scripts/make_eval_reference.py` checks them against those packages.
use std::collections::HashMap;
use std::sync::OnceLock;

use jieba_rs::Jieba;
use serde::Serialize;

fn jieba() -> &'static Jieba {
    static J: OnceLock<Jieba> = OnceLock::new();
    J.get_or_init(Jieba::new)
}

/// The characters jieba treats as Chinese (its `re_han_default` range).
fn is_han(c: char) -> bool {
    ('\u{4E00}'..='\u{9FD5}').contains(&c)
}

/// Splits `text` into the tokens ROUGE and BLEU compare.
pub fn tokens(text: &str) -> Vec<String> {
    let text = text.to_lowercase();
    let mut out = Vec::new();
    let mut word = String::new();
    let mut han = String::new();
    let flush_word = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word));
        }
    };
    let flush_han = |han: &mut String, out: &mut Vec<String>| {
        if !han.is_empty() {
            out.extend(jieba().cut(han, true).into_iter().map(|t| t.word.to_string()));
            han.clear();
        }
    };
    for c in text.chars() {
        if is_han(c) {
            flush_word(&mut word, &mut out);
            han.push(c);
        } else {
            flush_han(&mut han, &mut out);
            if c.is_alphanumeric() {
                word.push(c);
            } else {
                flush_word(&mut word, &mut out);
            }
        }
    }
    flush_word(&mut word, &mut out);
    flush_han(&mut han, &mut out);
    out
}

fn ngrams(toks: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m = HashMap::new();
    if toks.len() >= n {
        for w in toks.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// ROUGE-N F1 of `pred` against `target` (rouge-score's `_score_ngrams`).
pub fn rouge_n(target: &[String], pred: &[String], n: usize) -> f64 {
    let (t, p) = (ngrams(target, n), ngrams(pred, n));
    let inter: usize = p.iter().map(|(g, &c)| c.min(*t.get(g).unwrap_or(&0))).sum();
    let (tc, pc): (usize, usize) = (t.values().sum(), p.values().sum());
    f1(inter as f64 / pc.max(1) as f64, inter as f64 / tc.max(1) as f64)
}

fn lcs(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    for x in a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ROUGE-L F1 (longest common subsequence, rouge-score's `rougeL`).
pub fn rouge_l(target: &[String], pred: &[String]) -> f64 {
    if target.is_empty() || pred.is_empty() {
        return 0.0;
    }
    let l = lcs(target, pred) as f64;
    f1(l / pred.len() as f64, l / target.len() as f64)
}

/// The n-gram statistics BLEU is computed from (summed over sentences for corpus BLEU).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BleuStats {
    pub correct: [usize; 4],
    pub total: [usize; 4],
    pub sys_len: usize,
    pub ref_len: usize,
}

impl BleuStats {
    pub fn of(target: &[String], pred: &[String]) -> Self {
        let mut s = BleuStats { sys_len: pred.len(), ref_len: target.len(), ..Default::default() };
        for n in 1..=4 {
            let (t, p) = (ngrams(target, n), ngrams(pred, n));
            s.correct[n - 1] = p.iter().map(|(g, &c)| c.min(*t.get(g).unwrap_or(&0))).sum();
            s.total[n - 1] = pred.len().saturating_sub(n - 1);
        }
        s
    }

    pub fn add(&mut self, o: &BleuStats) {
        for n in 0..4 {
            self.correct[n] += o.correct[n];
            self.total[n] += o.total[n];
        }
        self.sys_len += o.sys_len;
        self.ref_len += o.ref_len;
    }

    /// BLEU-4 on a 0–100 scale, sacrebleu's `compute_bleu` with `exp` smoothing.
    pub fn bleu(&self, effective_order: bool) -> f64 {
        // no n-gram matches at all: 0 (sacrebleu's early stop)
        if self.correct.iter().all(|&c| c == 0) {
            return 0.0;
        }
        let mut precisions = [0.0f64; 4];
        let mut smooth = 1.0;
        let mut order = 4;
        for n in 1..=4 {
            if self.total[n - 1] == 0 {
                break;
            }
            if effective_order {
                order = n;
            }
            precisions[n - 1] = if self.correct[n - 1] == 0 {
                smooth *= 2.0;
                100.0 / (smooth * self.total[n - 1] as f64)
            } else {
                100.0 * self.correct[n - 1] as f64 / self.total[n - 1] as f64
            };
        }
        let bp = if self.sys_len < self.ref_len {
            if self.sys_len > 0 {
                (1.0 - self.ref_len as f64 / self.sys_len as f64).exp()
            } else {
                0.0
            }
        } else {
            1.0
        };
        let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
        let s: f64 = precisions[..order].iter().map(|&p| log(p)).sum();
        bp * (s / order as f64).exp()
    }
}

/// Overlap scores of one answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OverlapScores {
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
    /// sacrebleu `sentence_bleu`, 0–100.
    pub bleu: f64,
}

pub fn score_pair(target: &str, pred: &str) -> (OverlapScores, BleuStats) {
    let (t, p) = (tokens(target), tokens(pred));
    let stats = BleuStats::of(&t, &p);
    (OverlapScores { rouge1: rouge_n(&t, &p, 1), rouge2: rouge_n(&t, &p, 2), rouge_l: rouge_l(&t, &p), bleu: stats.bleu(true) }, stats)
}

/// Corpus values: mean ROUGE F1 over samples, corpus BLEU-4.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CorpusOverlap {
    pub samples: usize,
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
    pub bleu: f64,
}

/// Scores `(target, prediction)` pairs.
pub fn corpus(pairs: &[(&str, &str)]) -> Option<CorpusOverlap> {
    if pairs.is_empty() {
        return None;
    }
    let mut total = BleuStats::default();
    let (mut r1, mut r2, mut rl) = (0.0, 0.0, 0.0);
    for (t, p) in pairs {
        let (s, stats) = score_pair(t, p);
        total.add(&stats);
        r1 += s.rouge1;
        r2 += s.rouge2;
        rl += s.rouge_l;
    }
    let n = pairs.len() as f64;
    Some(CorpusOverlap { samples: pairs.len(), rouge1: r1 / n, rouge2: r2 / n, rouge_l: rl / n, bleu: total.bleu(false) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn segmentation_mixes_words_and_jieba() {
        assert_eq!(tokens("Hello, World! 42"), ["hello", "world", "42"]);
        let zh = tokens("我们去公园散步吧。DeepSeek模型");
        assert_eq!(zh.last().unwrap(), "模型");
        assert!(zh.contains(&"公园".to_string()) && zh.contains(&"deepseek".to_string()), "{zh:?}");
    }

    #[test]
    fn rouge_and_bleu_by_hand() {
        // 3 of 4 unigrams, 1 of 3 bigrams shared; LCS "the cat sat" = 3
        let (r, p) = (t("the cat sat down"), t("the cat sat up"));
        assert!((rouge_n(&r, &p, 1) - 0.75).abs() < 1e-12);
        assert!((rouge_n(&r, &p, 2) - 2.0 / 3.0).abs() < 1e-12);
        assert!((rouge_l(&r, &p) - 0.75).abs() < 1e-12);
        assert_eq!(rouge_l(&r, &[]), 0.0);
        // identical sentences of 4+ tokens: BLEU 100
        assert!((BleuStats::of(&r, &r).bleu(false) - 100.0).abs() < 1e-9);
        // no 4-gram match and no effective order: sacrebleu's exp smoothing, 1/(2·1)
        let s = BleuStats::of(&r, &p);
        assert_eq!(s.correct, [3, 2, 1, 0]);
        let expect = ((0.75f64 * (2.0 / 3.0) * 0.5 * 0.5).ln() / 4.0).exp() * 100.0;
        assert!((s.bleu(false) - expect).abs() < 1e-9, "{} vs {expect}", s.bleu(false));
    }
}
