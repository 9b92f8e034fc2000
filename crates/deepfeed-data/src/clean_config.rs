//! The `deepfeed clean` pipeline as the user writes it (`--config clean.yaml`): an ordered list
//! of steps, each switchable by leaving it out. See examples/clean.yaml and docs/data.md.
//!
//! ```yaml
//! steps:
//!   - nfkc
//!   - control
//!   - whitespace
//!   - chinese: t2s
//!   - language: { keep: [zh, en] }
//!   - quality: { min_chars: 10, max_symbol_ratio: 0.5 }
//!   - pii: { pseudonyms: true, disable: [ADDRESS] }
//!   - dedup
//!   - near_dup: { threshold: 0.8 }
//! ```
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{DataError, Result};
use crate::pii::PiiOptions;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanConfig {
    pub steps: Vec<Step>,
}

/// One step of the pipeline. Text steps change every text field of a record; filter steps keep
/// or drop the whole record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Unicode NFKC (also makes full-width letters, digits and punctuation half-width, and
    /// expands ①, ㎏, ﬁ …).
    Nfkc,
    /// Only U+FF01–U+FF5E and U+3000 to their ASCII forms (keeps ①, ㎏ … that NFKC would expand).
    FullWidth,
    /// Control (except newline and tab) and zero-width characters removed.
    Control,
    /// Spaces collapsed, lines trimmed, at most one empty line in a row.
    Whitespace,
    /// Simplified/traditional conversion with OpenCC: s2t, t2s, s2tw, tw2s, s2twp, tw2sp, s2hk, hk2s, t2tw, tw2t, t2hk, hk2t.
    Chinese(String),
    /// Detect the language (`metadata.language`); with `keep`, drop the others.
    Language(LanguageStep),
    /// Length, symbol-ratio and repetition filters (Gopher-style).
    Quality(QualityStep),
    /// Mask personal data.
    Pii(PiiStep),
    /// Drop records whose normalised text was already seen.
    Dedup,
    /// Drop records whose MinHash Jaccard similarity to an earlier one reaches the threshold.
    NearDup(NearDupStep),
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageStep {
    /// Languages to keep (ISO 639-1 such as `zh`, `en`, or 639-3 such as `cmn`); empty: keep all.
    #[serde(default)]
    pub keep: Vec<String>,
}

fn some<const N: usize>(v: [f64; N]) -> Option<[f64; N]> {
    Some(v)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityStep {
    /// Fewest non-space characters in a record.
    #[serde(default)]
    pub min_chars: Option<usize>,
    /// Most non-space characters in a record.
    #[serde(default)]
    pub max_chars: Option<usize>,
    /// Highest share of characters that are neither letters, digits nor spaces.
    #[serde(default = "default_symbol_ratio")]
    pub max_symbol_ratio: Option<f64>,
    /// Highest share of non-empty lines that repeat an earlier line (Gopher: 0.30).
    #[serde(default = "default_dup_lines")]
    pub max_duplicate_line_fraction: Option<f64>,
    /// For n = 2, 3, 4: highest share of units (words; CJK characters) covered by the most
    /// frequent n-gram (Gopher: 0.20, 0.18, 0.16).
    #[serde(default = "default_top_ngram")]
    pub max_top_ngram_fraction: Option<[f64; 3]>,
    /// For n = 5 … 10: highest share of units inside n-grams that occur more than once (Gopher:
    /// 0.15 … 0.10).
    #[serde(default = "default_dup_ngram")]
    pub max_duplicate_ngram_fraction: Option<[f64; 6]>,
    /// The line and n-gram rules apply to records of at least this many units.
    #[serde(default = "default_min_units")]
    pub repetition_min_units: usize,
}

fn default_symbol_ratio() -> Option<f64> {
    Some(0.5)
}
fn default_dup_lines() -> Option<f64> {
    Some(0.3)
}
fn default_top_ngram() -> Option<[f64; 3]> {
    some([0.20, 0.18, 0.16])
}
fn default_dup_ngram() -> Option<[f64; 6]> {
    some([0.15, 0.14, 0.13, 0.12, 0.11, 0.10])
}
fn default_min_units() -> usize {
    50
}

impl Default for QualityStep {
    fn default() -> Self {
        QualityStep {
            min_chars: None,
            max_chars: None,
            max_symbol_ratio: default_symbol_ratio(),
            max_duplicate_line_fraction: default_dup_lines(),
            max_top_ngram_fraction: default_top_ngram(),
            max_duplicate_ngram_fraction: default_dup_ngram(),
            repetition_min_units: default_min_units(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiStep {
    /// Numbered placeholders per distinct value in a record (`<PHONE_1>`, `<PHONE_2>`).
    #[serde(default)]
    pub consistent: bool,
    /// Consistent fake values of the same format instead of placeholders.
    #[serde(default)]
    pub pseudonyms: bool,
    /// Names or terms to mask as `<NAME>`.
    #[serde(default)]
    pub terms: Vec<String>,
    /// A file of names or terms, one per line (relative to the config file).
    #[serde(default)]
    pub terms_file: Option<PathBuf>,
    /// Extra types: TYPE → regex.
    #[serde(default)]
    pub patterns: BTreeMap<String, String>,
    /// Built-in types to leave alone (ID_CARD, BANK_CARD, PHONE, IP, EMAIL, ADDRESS, NAME).
    #[serde(default)]
    pub disable: Vec<String>,
}

impl PiiStep {
    pub fn options(&self) -> Result<PiiOptions> {
        let mut terms = self.terms.clone();
        if let Some(p) = &self.terms_file {
            terms.extend(std::fs::read_to_string(p).map_err(|e| DataError::io(p, e))?.lines().map(String::from));
        }
        Ok(PiiOptions {
            consistent: self.consistent,
            patterns: self.patterns.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            terms,
            disable: self.disable.clone(),
            pseudonyms: self.pseudonyms,
            pseudonym_seed: None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearDupStep {
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

fn default_threshold() -> f64 {
    0.8
}

impl Step {
    /// The name used in the config, the summary and the dropped-records file.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Nfkc => "nfkc",
            Step::FullWidth => "full_width",
            Step::Control => "control",
            Step::Whitespace => "whitespace",
            Step::Chinese(_) => "chinese",
            Step::Language(_) => "language",
            Step::Quality(_) => "quality",
            Step::Pii(_) => "pii",
            Step::Dedup => "dedup",
            Step::NearDup(_) => "near_dup",
        }
    }
}

impl CleanConfig {
    /// The pipeline without a config file: NFKC, control, whitespace, PII, exact and near dedup.
    pub fn default_steps() -> Vec<Step> {
        vec![Step::Nfkc, Step::Control, Step::Whitespace, Step::Pii(PiiStep::default()), Step::Dedup, Step::NearDup(NearDupStep { threshold: 0.8 })]
    }

    pub fn from_yaml(text: &str, origin: &Path) -> Result<Self> {
        let mut c: CleanConfig = serde_saphyr::from_str(text).map_err(|e| DataError::Invalid(format!("{}: {e}", origin.display())))?;
        // files named in the config are relative to it
        let base = origin.parent().unwrap_or(Path::new("."));
        for s in &mut c.steps {
            if let Step::Pii(PiiStep { terms_file: Some(p), .. }) = s {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        c.check().map_err(|e| DataError::Invalid(format!("{}: {e}", origin.display())))?;
        Ok(c)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::from_yaml(&text, path)
    }

    /// Values in range, each step at most once.
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for s in &self.steps {
            if !seen.insert(s.name()) {
                return Err(format!("step `{}` is listed twice", s.name()));
            }
            match s {
                Step::Chinese(mode) if crate::clean::opencc_config(mode).is_none() => {
                    return Err(format!("chinese: {mode:?} is not a conversion; expected one of {}", crate::clean::OPENCC_MODES.join(", ")));
                }
                Step::NearDup(n) if !(n.threshold > 0.0 && n.threshold <= 1.0) => {
                    return Err(format!("near_dup.threshold {}: expected a similarity in (0, 1]", n.threshold));
                }
                Step::Quality(q) => {
                    for (name, v) in [("max_symbol_ratio", q.max_symbol_ratio), ("max_duplicate_line_fraction", q.max_duplicate_line_fraction)] {
                        if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                            return Err(format!("quality.{name} {}: expected a fraction in [0, 1]", v.unwrap()));
                        }
                    }
                    if let (Some(a), Some(b)) = (q.min_chars, q.max_chars) {
                        if a > b {
                            return Err(format!("quality: min_chars {a} is above max_chars {b}"));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_example_and_rejects_mistakes() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/clean.yaml");
        let c = CleanConfig::from_file(&path).unwrap();
        assert_eq!(c.steps[0], Step::Nfkc);
        assert!(c.steps.iter().any(|s| matches!(s, Step::Language(l) if l.keep == ["zh", "en"])));
        let yaml = "steps:\n  - nfkc\n  - quality: { min_chars: 5, max_top_ngram_fraction: null }\n  - near_dup: { threshold: 0.9 }\n";
        let c = CleanConfig::from_yaml(yaml, Path::new("c.yaml")).unwrap();
        let Step::Quality(q) = &c.steps[1] else { panic!() };
        assert_eq!((q.min_chars, q.max_top_ngram_fraction, q.max_symbol_ratio), (Some(5), None, Some(0.5)));
        for (bad, want) in [
            ("steps:\n  - nfkd\n", "nfkd"),
            ("steps:\n  - quality: { min_char: 5 }\n", "min_char"),
            ("steps:\n  - chinese: x2y\n", "x2y"),
            ("steps:\n  - dedup\n  - dedup\n", "twice"),
            ("steps:\n  - near_dup: { threshold: 2 }\n", "threshold"),
            ("step: []\n", "step"),
        ] {
            let e = CleanConfig::from_yaml(bad, Path::new("c.yaml")).unwrap_err().to_string();
            assert!(e.contains("c.yaml") && e.contains(want), "{bad}: {e}");
        }
    }
}
