//! `deepfeed stats`: what a dataset holds — records per shape, length distribution (tokens with a
//! tokenizer, else characters) with a PNG histogram, language mix, sources, masked personal data
//! and duplicates.
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::dedup::NearDupIndex;
use crate::error::{DataError, Result};
use crate::progress::ProgressReader;
use crate::record::Record;
use crate::validate::TokenCounter;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Lengths {
    /// "tokens" or "characters"
    pub unit: String,
    pub mean: f64,
    pub median: usize,
    pub p95: usize,
    pub max: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DatasetStats {
    pub records: usize,
    pub invalid_lines: usize,
    pub shapes: BTreeMap<String, usize>,
    pub lengths: Lengths,
    /// Language of each record by its script: zh (mostly CJK), en (mostly Latin), mixed, other.
    pub languages: BTreeMap<String, usize>,
    /// `metadata.source` counts (the 20 most frequent).
    pub sources: Vec<(String, usize)>,
    /// Placeholders of masked personal data found in the text (`<PHONE>` …).
    pub pii_placeholders: BTreeMap<String, usize>,
    pub exact_duplicates: usize,
    pub near_duplicates: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram_png: Option<std::path::PathBuf>,
    #[serde(skip)]
    pub length_values: Vec<usize>,
}

/// zh / en / mixed / other, from the share of CJK and Latin letters.
pub fn script_language(text: &str) -> &'static str {
    let (mut cjk, mut latin) = (0usize, 0usize);
    for c in text.chars() {
        if matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF) {
            cjk += 1;
        } else if c.is_ascii_alphabetic() {
            latin += 1;
        }
    }
    // a CJK character carries about as much as a short word: weigh Latin letters by 1/4
    let (c, l) = (cjk as f64, latin as f64 / 4.0);
    if c + l == 0.0 {
        "other"
    } else if c / (c + l) >= 0.8 {
        "zh"
    } else if l / (c + l) >= 0.8 {
        "en"
    } else {
        "mixed"
    }
}

fn placeholders(text: &str, into: &mut BTreeMap<String, usize>) {
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if let Some(j) = rest.find('>') {
            let name = &rest[..j];
            let base = name.rsplit_once('_').filter(|(_, n)| n.chars().all(|c| c.is_ascii_digit())).map_or(name, |(b, _)| b);
            if !base.is_empty() && base.len() <= 20 && base.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                *into.entry(base.to_string()).or_default() += 1;
            }
        }
    }
}

/// `progress`: show progress on stderr.
pub fn dataset_stats(path: &Path, tokens: Option<&dyn TokenCounter>, progress: bool) -> Result<DatasetStats> {
    let file = ProgressReader::open(path, "stats", progress).map_err(|e| DataError::io(path, e))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    let mut s = DatasetStats { lengths: Lengths { unit: if tokens.is_some() { "tokens" } else { "characters" }.into(), ..Default::default() }, ..Default::default() };
    let mut seen = HashSet::new();
    let mut near = NearDupIndex::new(0.8);
    let mut sources: BTreeMap<String, usize> = BTreeMap::new();
    for line in reader.lines() {
        let line = line.map_err(|e| DataError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let Some(record) = serde_json::from_str::<Value>(&line).ok().and_then(|v| Record::parse(&v).ok()) else {
            s.invalid_lines += 1;
            continue;
        };
        s.records += 1;
        let shape = match &record {
            Record::Pair { rejected: Some(_), .. } => "preference",
            Record::Pair { .. } => "pair",
            Record::Chat { .. } => "chat",
            Record::Text { .. } => "text",
        };
        *s.shapes.entry(shape.into()).or_default() += 1;
        let text = record.texts().join("\n");
        s.length_values.push(match tokens {
            Some(t) => record.texts().iter().map(|x| t.count(x)).sum(),
            None => text.chars().count(),
        });
        *s.languages.entry(script_language(&text).into()).or_default() += 1;
        placeholders(&text, &mut s.pii_placeholders);
        let meta = match &record {
            Record::Pair { metadata, .. } | Record::Chat { metadata, .. } | Record::Text { metadata, .. } => metadata,
        };
        if let Some(src) = meta.as_ref().and_then(|m| m.get("source")).and_then(|v| v.as_str()) {
            *sources.entry(src.to_string()).or_default() += 1;
        }
        let key: String = text.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect();
        if !seen.insert(key) {
            s.exact_duplicates += 1;
        } else if near.check_and_insert(&text) {
            s.near_duplicates += 1;
        }
    }
    if s.records == 0 {
        return Err(DataError::Invalid(format!("{}: no valid records ({} invalid lines)", path.display(), s.invalid_lines)));
    }
    let mut v = s.length_values.clone();
    v.sort_unstable();
    s.lengths.mean = v.iter().sum::<usize>() as f64 / v.len() as f64;
    s.lengths.median = v[v.len() / 2];
    s.lengths.p95 = v[(v.len() * 95 / 100).min(v.len() - 1)];
    s.lengths.max = *v.last().unwrap();
    let mut src: Vec<(String, usize)> = sources.into_iter().collect();
    src.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    src.truncate(20);
    s.sources = src;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_and_placeholders() {
        assert_eq!(script_language("今天天气很好，我们去公园散步吧。"), "zh");
        assert_eq!(script_language("The weather is nice today, let's go for a walk."), "en");
        assert_eq!(script_language("LoRA 适配器 adapter training 训练"), "mixed");
        assert_eq!(script_language("12345 !!!"), "other");
        let mut m = BTreeMap::new();
        placeholders("call <PHONE> or <PHONE_2>, mail <EMAIL>; a < b > c; <div>", &mut m);
        assert_eq!(m.get("PHONE"), Some(&2));
        assert_eq!(m.get("EMAIL"), Some(&1));
        assert_eq!(m.len(), 2);
    }
}
