//! Task accuracy: exact match after normalisation, contains, regex, label sets, and multiple
//! choice scored by log-likelihood as lm-evaluation-harness does (`acc`: the option with the
//! highest summed log-likelihood; `acc_norm`: the highest log-likelihood per UTF-8 byte of the
//! option text — the harness's "byte-length normalised" accuracy).
use deepfeed_model::{ChatMessage, Model};
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

use crate::config::TaskKind;
use crate::dataset::Task;
use crate::error::Result;
use crate::perplexity::{answer_text, prompt_ids, score, ScoredIds};

/// NFKC, lower case, punctuation and symbols removed, whitespace collapsed: "  Paris. " and
/// "paris" compare equal, as do full-width "ＡＢＣ！" and "abc".
pub fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.nfkc().flat_map(char::to_lowercase) {
        if c.is_whitespace() || is_punctuation(c) {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// ASCII and Unicode punctuation (general categories P*), including CJK 。，、！？「」《》.
fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(c as u32,
        0x2000..=0x206F   // general punctuation (dashes, quotes, …)
        | 0x3000..=0x303F // CJK symbols and punctuation
        | 0xFE30..=0xFE4F // CJK compatibility forms
        | 0xFF00..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 // full-width punctuation
        | 0x00A1..=0x00BF) // Latin-1 punctuation and signs
}

/// The label `answer` means: the label equal to the normalised answer, else the only label
/// found in it as a whole word or phrase; `None` when none or several match.
pub fn map_label<'a>(answer: &str, labels: &'a [String]) -> Option<&'a String> {
    let a = normalise(answer);
    if let Some(l) = labels.iter().find(|l| normalise(l) == a) {
        return Some(l);
    }
    let padded = format!(" {a} ");
    let found: Vec<&String> = labels
        .iter()
        .filter(|l| {
            let n = normalise(l);
            // CJK labels have no word boundaries: plain containment
            if n.chars().any(|c| c as u32 >= 0x2E80) { a.contains(&n) } else { padded.contains(&format!(" {n} ")) }
        })
        .collect();
    (found.len() == 1).then(|| found[0])
}

/// Whether a generated `answer` is right for `task` (not for multiple choice).
pub fn judge(task: &Task, answer: &str, target: Option<&str>) -> Option<bool> {
    let target = target.unwrap_or_default();
    match task.kind {
        TaskKind::Exact => Some(normalise(answer) == normalise(target)),
        TaskKind::Contains => {
            let t = normalise(target);
            Some(!t.is_empty() && normalise(answer).contains(&t))
        }
        TaskKind::Regex => task.pattern.as_ref().map(|p| p.is_match(answer)),
        TaskKind::Label => Some(map_label(answer, &task.labels).is_some_and(|l| normalise(l) == normalise(target))),
        TaskKind::Choice | TaskKind::None => None,
    }
}

/// The log-likelihood of each option of a multiple-choice question and the options picked.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChoiceScores {
    /// Summed log-likelihood of each option's tokens given the prompt.
    pub loglik: Vec<f64>,
    /// Tokens of each option.
    pub tokens: Vec<usize>,
    /// UTF-8 bytes of each option's continuation text.
    pub bytes: Vec<usize>,
    /// argmax of `loglik` (`acc`).
    pub pick: usize,
    /// argmax of `loglik / bytes` (`acc_norm`).
    pub pick_norm: usize,
}

/// The continuation text of option `choice` after the prompt: what the chat template writes
/// before the answer's end (`" Paris"` for DeepSeek's `Assistant:` template), without the
/// end-of-turn marker — lm-evaluation-harness's `target_delimiter + choice`.
pub fn continuation(model: &Model, context: &[ChatMessage], choice: &str) -> Result<String> {
    let piece = answer_text(model, context, choice)?;
    Ok(match piece.rfind(choice) {
        Some(at) if !choice.is_empty() => piece[..at + choice.len()].to_string(),
        _ => piece,
    })
}

/// Scores every option of a multiple-choice record by its log-likelihood after the prompt.
pub fn score_choices(model: &Model, context: &[ChatMessage], choices: &[String], window: (usize, usize)) -> Result<ChoiceScores> {
    let prompt = prompt_ids(model, context)?;
    let (mut loglik, mut tokens, mut bytes) = (vec![], vec![], vec![]);
    for c in choices {
        let cont = continuation(model, context, c)?;
        let cont_ids = model.tokenizer.encode(&cont, false)?;
        let mut ids = prompt.clone();
        let mut scored = vec![false; ids.len()];
        ids.extend(&cont_ids);
        scored.extend(std::iter::repeat_n(true, cont_ids.len()));
        let (nll, n) = score(model, &ScoredIds { ids, scored }, window.0, window.1)?;
        loglik.push(-nll);
        tokens.push(n);
        bytes.push(cont.len().max(1));
    }
    let argmax = |v: &[f64]| v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best });
    let norm: Vec<f64> = loglik.iter().zip(&bytes).map(|(l, &b)| l / b as f64).collect();
    Ok(ChoiceScores { pick: argmax(&loglik), pick_norm: argmax(&norm), loglik, tokens, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TaskKind;

    fn task(kind: TaskKind) -> Task {
        Task { name: "t".into(), kind, choices: vec![], answer: None, pattern: None, labels: vec!["positive".into(), "negative".into(), "中性".into()] }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise("  Paris. "), "paris");
        assert_eq!(normalise("ＡＢＣ！ Def"), "abc def");
        assert_eq!(normalise("答案：北京。"), "答案 北京");
        assert_eq!(normalise("It's 42!"), "it s 42");
    }

    #[test]
    fn judges() {
        assert_eq!(judge(&task(TaskKind::Exact), "Paris.", Some("paris")), Some(true));
        assert_eq!(judge(&task(TaskKind::Exact), "Paris, France", Some("paris")), Some(false));
        assert_eq!(judge(&task(TaskKind::Contains), "It is Paris, France", Some("paris")), Some(true));
        assert_eq!(judge(&task(TaskKind::Contains), "anything", Some("")), Some(false));
        let mut t = task(TaskKind::Regex);
        t.pattern = Some(regex::Regex::new(r"^\d{3}$").unwrap());
        assert_eq!(judge(&t, "123", None), Some(true));
        assert_eq!(judge(&t, "1234", None), Some(false));
        let l = task(TaskKind::Label);
        assert_eq!(judge(&l, "Positive.", Some("positive")), Some(true));
        assert_eq!(judge(&l, "I think it is negative", Some("negative")), Some(true));
        assert_eq!(judge(&l, "positive or negative", Some("positive")), Some(false), "ambiguous");
        assert_eq!(judge(&l, "这是中性的", Some("中性")), Some(true));
        assert_eq!(judge(&l, "nonpositive", Some("positive")), Some(false), "whole words only");
    }
}
