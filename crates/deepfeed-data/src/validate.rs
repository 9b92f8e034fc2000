//! `deepfeed validate`: checks a project JSONL file line by line — UTF-8, JSON, the record
//! shape and its fields, and (with a tokenizer) the token length. Invalid lines are copied to
//! `FILE.invalid.jsonl` with their line number and reason; the input is never changed.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{DataError, Result};
use crate::progress::ProgressReader;
use crate::record::Record;
use crate::side_file::SideFile;

/// Counts tokens of a text (the model's tokenizer; kept abstract so this crate needs no model).
pub trait TokenCounter {
    fn count(&self, text: &str) -> usize;
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ValidateReport {
    pub lines: usize,
    pub valid: usize,
    pub invalid: usize,
    /// Valid records per shape: pair, preference, chat, text.
    pub shapes: BTreeMap<String, usize>,
    /// Longest record in tokens (with a tokenizer).
    pub max_tokens_seen: Option<usize>,
    /// The first errors, as `file:line: field …: message`.
    pub errors: Vec<String>,
    pub quarantine_file: Option<PathBuf>,
}

const SHOWN_ERRORS: usize = 20;

/// `train.jsonl` -> `train.invalid.jsonl`
pub fn quarantine_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().map_or("data".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}.invalid.jsonl"))
}

/// Checks every line of `path`; invalid lines go, with their errors, to the quarantine file next
/// to it. `progress`: show progress on stderr.
pub fn validate(path: &Path, tokens: Option<(&dyn TokenCounter, usize)>, progress: bool) -> Result<ValidateReport> {
    let file = ProgressReader::open(path, "validate", progress).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut report = ValidateReport::default();
    let mut quarantined = SideFile::new(quarantine_path(path));
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(|e| DataError::io(path, e))? == 0 {
            break;
        }
        n += 1;
        let raw = String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']).to_string();
        if raw.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        let checked = check_line(&line, tokens).map(|(shape, len)| {
            *report.shapes.entry(shape.into()).or_default() += 1;
            if let Some(len) = len {
                report.max_tokens_seen = Some(report.max_tokens_seen.unwrap_or(0).max(len));
            }
        });
        match checked {
            Ok(()) => report.valid += 1,
            Err(message) => {
                report.invalid += 1;
                if report.errors.len() < SHOWN_ERRORS {
                    report.errors.push(format!("{}:{n}: {message}", path.display()));
                }
                quarantined.push(&json!({"line": n, "error": message, "raw": raw}))?;
            }
        }
    }
    if report.lines == 0 {
        return Err(DataError::Invalid(format!("{}: the file has no records", path.display())));
    }
    report.quarantine_file = quarantined.finish()?;
    Ok(report)
}

/// The shape of a valid line and its token count; or why it is invalid.
fn check_line(bytes: &[u8], tokens: Option<(&dyn TokenCounter, usize)>) -> std::result::Result<(&'static str, Option<usize>), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not valid UTF-8 (byte {})", e.valid_up_to()))?;
    let text = text.trim_start_matches('\u{feff}');
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let record = Record::parse(&v).map_err(|e| e.to_string())?;
    let shape = match &record {
        Record::Pair { rejected: Some(_), .. } => "preference",
        Record::Pair { .. } => "pair",
        Record::Chat { .. } => "chat",
        Record::Text { .. } => "text",
    };
    let len = match tokens {
        Some((counter, max)) => {
            let n: usize = record.texts().iter().map(|t| counter.count(t)).sum();
            if n > max {
                return Err(format!("{n} tokens, more than the limit of {max} (it would be cut in training)"));
            }
            Some(n)
        }
        None => None,
    };
    Ok((shape, len))
}
