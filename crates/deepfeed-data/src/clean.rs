//! `deepfeed clean`: an ordered, switchable pipeline over the text fields of project records —
//! Unicode NFKC (which also turns full-width letters, digits and ASCII punctuation half-width),
//! removal of control and zero-width characters, whitespace normalisation, de-identification,
//! then exact and near-duplicate removal (also against earlier datasets). Punctuation is kept:
//! stripping it harms LLM training.
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde_json::{json, Value};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

use crate::convert::rejected_path;
use crate::dedup::NearDupIndex;
use crate::error::{DataError, Result};
use crate::pii::{Deidentifier, PiiCounts, PiiOptions};
use crate::record::Record;

#[derive(Debug, Clone)]
pub struct CleanOptions {
    pub nfkc: bool,
    pub strip_control: bool,
    pub normalize_whitespace: bool,
    /// None: no de-identification.
    pub pii: Option<PiiOptions>,
    /// Drop records whose normalised text was already seen.
    pub dedup_exact: bool,
    /// Drop records whose MinHash Jaccard similarity to an earlier one reaches this (None: off).
    pub near_dup: Option<f64>,
    /// Earlier datasets (project JSONL): records like theirs are dropped too, so a new feeding
    /// phase does not repeat old data.
    pub against: Vec<std::path::PathBuf>,
}

impl Default for CleanOptions {
    fn default() -> Self {
        CleanOptions {
            nfkc: true,
            strip_control: true,
            normalize_whitespace: true,
            pii: Some(PiiOptions::default()),
            dedup_exact: true,
            near_dup: Some(0.8),
            against: vec![],
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CleanReport {
    pub read: usize,
    pub written: usize,
    /// Records whose text the pipeline changed.
    pub changed: usize,
    pub duplicates_dropped: usize,
    pub near_duplicates_dropped: usize,
    /// Records of the `against` datasets indexed before cleaning.
    pub against_records: usize,
    /// Records left empty by cleaning.
    pub empty_dropped: usize,
    /// Lines that are not valid project records (kept, with reasons, in OUT.rejected.jsonl).
    pub invalid: usize,
    /// Personal data masked, per type (counts only).
    pub pii: PiiCounts,
    pub rejected_file: Option<std::path::PathBuf>,
}

fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}')
}

pub struct Cleaner {
    opts: CleanOptions,
    pii: Option<Deidentifier>,
}

impl Cleaner {
    pub fn new(opts: CleanOptions) -> Result<Self> {
        let pii = opts.pii.as_ref().map(Deidentifier::new).transpose()?;
        Ok(Cleaner { opts, pii })
    }

    /// One text through the pipeline, in order.
    pub fn clean_text(&self, s: &str, counts: &mut PiiCounts) -> String {
        // each step first checks whether it has anything to do (most text is already clean)
        let mut t: String = if self.opts.nfkc && is_nfkc_quick(s.chars()) != IsNormalized::Yes { s.nfkc().collect() } else { s.to_string() };
        let unwanted = |c: char| is_zero_width(c) || (c.is_control() && c != '\n' && c != '\t');
        if self.opts.strip_control && t.chars().any(unwanted) {
            t = t.chars().filter(|&c| !unwanted(c)).collect();
        }
        if self.opts.normalize_whitespace {
            t = normalize_whitespace(&t);
        }
        match &self.pii {
            Some(d) => d.mask(&t, counts),
            None => t,
        }
    }

    fn clean_record(&self, r: Record, counts: &mut PiiCounts) -> Record {
        let mut c = |s: &str| self.clean_text(s, counts);
        match r {
            Record::Pair { input, target, rejected, metadata } => {
                Record::Pair { input: c(&input), target: c(&target), rejected: rejected.map(|x| c(&x)), metadata }
            }
            Record::Chat { messages, metadata } => Record::Chat {
                messages: messages.into_iter().map(|m| crate::record::Message { content: c(&m.content), role: m.role }).collect(),
                metadata,
            },
            Record::Text { text, metadata } => Record::Text { text: c(&text), metadata },
        }
    }
}

/// Spaces and tabs collapsed to one space inside lines, lines trimmed, at most one empty line in a
/// row, no leading or trailing blank lines.
pub fn normalize_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank_run = 0;
    for line in s.lines() {
        let collapsed = line.split([' ', '\t', '\u{3000}', '\u{a0}']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        if collapsed.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(&collapsed);
    }
    out
}

/// 64-bit FNV-1a of the record's text with ASCII whitespace removed and ASCII letters
/// lower-cased (cleaning has already folded other whitespace and full-width letters): the key of
/// exact deduplication. Written here because it is a few lines and must be stable across runs and
/// Rust versions (std's hasher promises neither).
fn dedup_key(r: &Record) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in r.texts() {
        for b in t.bytes().filter(|b| !b.is_ascii_whitespace()) {
            h = (h ^ b.to_ascii_lowercase() as u64).wrapping_mul(0x100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x100_0000_01b3); // field separator
    }
    h
}

/// Cleans a project JSONL file into `out` (streamed; written to a temporary file and renamed).
pub fn clean_file(input: &Path, out: &Path, opts: CleanOptions) -> Result<CleanReport> {
    if input == out {
        return Err(DataError::Invalid(format!("{}: the output must be another file than the input", out.display())));
    }
    let cleaner = Cleaner::new(opts)?;
    let reader = BufReader::new(File::open(input).map_err(|e| DataError::io(input, e))?);
    let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
    let mut w = BufWriter::new(File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?);
    let mut report = CleanReport::default();
    let mut seen = HashSet::new();
    let mut near = cleaner.opts.near_dup.map(NearDupIndex::new);
    // earlier datasets: cleaned the same way, then remembered
    for old in &cleaner.opts.against {
        let text = std::fs::read_to_string(old).map_err(|e| DataError::io(old, e))?;
        for v in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
            if let Ok(r) = Record::parse(&v) {
                let r = cleaner.clean_record(r, &mut PiiCounts::new());
                seen.insert(dedup_key(&r));
                if let Some(idx) = near.as_mut() {
                    idx.check_and_insert(&r.texts().join("\n"));
                }
                report.against_records += 1;
            }
        }
    }
    let mut rejected = Vec::new();
    let mut reader = reader;
    let result = (|| -> Result<()> {
        let mut line = Vec::new();
        for i in 0.. {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(|e| DataError::io(input, e))? == 0 {
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            report.read += 1;
            let parsed = std::str::from_utf8(&line)
                .map_err(|_| "not valid UTF-8".to_string())
                .and_then(|t| serde_json::from_str::<Value>(t.trim_start_matches('\u{feff}')).map_err(|e| format!("not valid JSON: {e}")))
                .and_then(|v| Record::parse(&v).map_err(|e| e.to_string()));
            let record = match parsed {
                Ok(r) => r,
                Err(reason) => {
                    report.invalid += 1;
                    // the raw line is not kept: it may hold personal data
                    rejected.push(json!({"line": i + 1, "error": reason}).to_string());
                    continue;
                }
            };
            let cleaned = cleaner.clean_record(record.clone(), &mut report.pii);
            if !cleaned.is_trainable() {
                report.empty_dropped += 1;
                continue;
            }
            if cleaner.opts.dedup_exact && !seen.insert(dedup_key(&cleaned)) {
                report.duplicates_dropped += 1;
                continue;
            }
            if let Some(idx) = near.as_mut() {
                if idx.check_and_insert(&cleaned.texts().join("\n")) {
                    report.near_duplicates_dropped += 1;
                    continue;
                }
            }
            if cleaned != record {
                report.changed += 1;
            }
            serde_json::to_writer(&mut w, &cleaned.to_json()).map_err(|e| DataError::io(&tmp, e.into()))?;
            w.write_all(b"\n").map_err(|e| DataError::io(&tmp, e))?;
            report.written += 1;
        }
        w.flush().map_err(|e| DataError::io(&tmp, e))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))?;
    if !rejected.is_empty() {
        let p = rejected_path(out);
        std::fs::write(&p, rejected.join("\n") + "\n").map_err(|e| DataError::io(&p, e))?;
        report.rejected_file = Some(p);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_pipeline() {
        let c = Cleaner::new(CleanOptions::default()).unwrap();
        let mut counts = PiiCounts::new();
        let s = "ＡＢＣ１２３\u{200B}  hello\t\tworld \r\n\n\n\n你好，世界。  电话13812345678";
        assert_eq!(c.clean_text(s, &mut counts), "ABC123 hello world\n\n你好,世界。 电话<PHONE>");
        let keep = Cleaner::new(CleanOptions { nfkc: false, pii: None, ..Default::default() }).unwrap();
        assert_eq!(keep.clean_text("你好，世界 13812345678", &mut counts), "你好，世界 13812345678");
    }
}
