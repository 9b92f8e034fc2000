//! `deepfeed clean`: an ordered, switchable pipeline (`clean_config::Step`) over the text fields
//! of project records. Text steps: Unicode NFKC, full-width → half-width, removal of control and
//! zero-width characters, whitespace normalisation, simplified/traditional conversion (OpenCC),
//! de-identification. Filter steps: language, quality (length, symbols, repetition), exact and
//! near-duplicate removal (also against earlier datasets). Punctuation is kept: stripping it
//! harms LLM training. Every step counts the records it changed and dropped, with reasons;
//! dropped records can be written to a side file with the step that dropped them.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use ferrous_opencc::config::BuiltinConfig;
use ferrous_opencc::OpenCC;
use serde_json::{json, Value};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

pub use crate::clean_config::{CleanConfig, LanguageStep, NearDupStep, PiiStep, QualityStep, Step};
use crate::convert::rejected_path;
use crate::side_file::SideFile;
use crate::dedup::{is_cjk, units, NearDupIndex};
use crate::error::{DataError, Result};
use crate::pii::{Deidentifier, PiiCounts};
use crate::progress::Progress;
use crate::record::Record;

#[derive(Debug, Clone)]
pub struct CleanOptions {
    /// The pipeline, in order.
    pub steps: Vec<Step>,
    /// Earlier datasets (project JSONL): records like theirs are dropped by the dedup steps, so a
    /// new feeding phase does not repeat old data.
    pub against: Vec<PathBuf>,
    /// Write every dropped record here with the step and reason that dropped it.
    pub dropped: Option<PathBuf>,
    /// Show progress on stderr.
    pub progress: bool,
}

impl Default for CleanOptions {
    fn default() -> Self {
        CleanOptions { steps: CleanConfig::default_steps(), against: vec![], dropped: None, progress: false }
    }
}

/// What one step did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StepReport {
    pub step: String,
    /// Records whose text this step changed.
    pub changed: usize,
    pub dropped: usize,
    /// Why records were dropped, with counts.
    pub reasons: BTreeMap<String, usize>,
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
    /// Records left empty by a text step.
    pub empty_dropped: usize,
    /// Lines that are not valid project records (kept, with reasons, in OUT.rejected.jsonl).
    pub invalid: usize,
    /// Personal data masked, per type (counts only).
    pub pii: PiiCounts,
    /// Detected languages of the records written (with a language step).
    pub languages: BTreeMap<String, usize>,
    /// Per step, in pipeline order.
    pub steps: Vec<StepReport>,
    pub rejected_file: Option<PathBuf>,
    pub dropped_file: Option<PathBuf>,
}

fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}')
}

pub const OPENCC_MODES: [&str; 12] = ["s2t", "t2s", "s2tw", "tw2s", "s2twp", "tw2sp", "s2hk", "hk2s", "t2tw", "tw2t", "t2hk", "hk2t"];

pub(crate) fn opencc_config(mode: &str) -> Option<BuiltinConfig> {
    Some(match mode {
        "s2t" => BuiltinConfig::S2t,
        "t2s" => BuiltinConfig::T2s,
        "s2tw" => BuiltinConfig::S2tw,
        "tw2s" => BuiltinConfig::Tw2s,
        "s2twp" => BuiltinConfig::S2twp,
        "tw2sp" => BuiltinConfig::Tw2sp,
        "s2hk" => BuiltinConfig::S2hk,
        "hk2s" => BuiltinConfig::Hk2s,
        "t2tw" => BuiltinConfig::T2tw,
        "tw2t" => BuiltinConfig::Tw2t,
        "t2hk" => BuiltinConfig::T2hk,
        "hk2t" => BuiltinConfig::Hk2t,
        _ => return None,
    })
}

/// NFKC of `s`, or None when NFKC leaves it as it is. Only the stretches that may change are
/// normalised: ASCII and the CJK unified ideographs are "stable" starters (NFKC quick check Yes,
/// combining class 0, never the second half of a composition), so the text can be cut before any
/// of them and each piece normalised on its own with the same result (UAX #15, section 9). Most
/// Chinese/English text is such characters, and this avoids running the full decomposition and
/// recomposition over whole records for one full-width comma.
pub fn nfkc(s: &str) -> Option<String> {
    let stable = |c: char| c.is_ascii() || matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF);
    let mut out: Option<String> = None;
    let mut copied = 0; // bytes of `s` accounted for in `out`
    let mut piece_start = 0; // where the current piece begins: before the last stable character
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if stable(c) {
            piece_start = i;
            continue;
        }
        // a run of other characters: the piece runs from the stable character before it to the
        // next stable character
        let mut end = s.len();
        while let Some(&(j, d)) = chars.peek() {
            if stable(d) {
                end = j;
                break;
            }
            chars.next();
        }
        let piece = &s[piece_start..end];
        if is_nfkc_quick(piece.chars()) != IsNormalized::Yes {
            let normalised: String = piece.nfkc().collect();
            if normalised != piece {
                let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
                o.push_str(&s[copied..piece_start]);
                o.push_str(&normalised);
                copied = end;
            }
        }
        piece_start = end;
    }
    out.map(|mut o| {
        o.push_str(&s[copied..]);
        o
    })
}

/// Full-width ASCII forms (U+FF01–U+FF5E) and the ideographic space to ASCII; nothing else. A
/// table of its own (not NFKC) so that ①, ㎏, ﬁ and other compatibility characters stay.
pub fn full_width_to_half(s: &str) -> Option<String> {
    let convert = |c: char| match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap(),
        0x3000 => ' ',
        _ => c,
    };
    s.chars().any(|c| matches!(c as u32, 0xFF01..=0xFF5E | 0x3000)).then(|| s.chars().map(convert).collect())
}

/// Spaces and tabs collapsed to one space inside lines, lines trimmed, at most one empty line in a
/// row, no leading or trailing blank lines.
pub fn normalize_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank_run = 0;
    for line in s.lines() {
        let mut first = true;
        let mut any = false;
        for w in line.split([' ', '\t', '\u{3000}', '\u{a0}']).filter(|w| !w.is_empty()) {
            if first {
                if !out.is_empty() {
                    out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
                }
                first = false;
            } else {
                out.push(' ');
            }
            out.push_str(w);
            any = true;
        }
        if any {
            blank_run = 0;
        } else {
            blank_run += 1;
        }
    }
    out
}

/// Whether `normalize_whitespace` would change `s` (most text is already clean: checked first
/// without allocating).
fn whitespace_is_normal(s: &str) -> bool {
    let b = s.as_bytes();
    if b.first().is_some_and(|c| c.is_ascii_whitespace()) || b.last().is_some_and(|c| c.is_ascii_whitespace()) {
        return false;
    }
    let mut prev = b'x';
    let mut newlines = 0;
    for &c in b {
        match c {
            b'\t' | b'\r' | 0x0b | 0x0c => return false,
            b' ' if prev == b' ' || prev == b'\n' => return false,
            b'\n' if prev == b' ' => return false,
            b'\n' => {
                newlines += 1;
                if newlines > 2 {
                    return false;
                }
            }
            _ => newlines = 0,
        }
        prev = c;
    }
    // ideographic and no-break spaces (U+3000: E3 80 80, U+00A0: C2 A0), other line breaks
    !(s.contains('\u{3000}') || s.contains('\u{a0}') || s.contains(['\u{85}', '\u{2028}', '\u{2029}']))
}

/// The language code written to `metadata.language`: ISO 639-1 where there is one.
fn language_code(l: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match l {
        Cmn => "zh",
        Eng => "en",
        Jpn => "ja",
        Kor => "ko",
        Fra => "fr",
        Deu => "de",
        Spa => "es",
        Por => "pt",
        Ita => "it",
        Rus => "ru",
        Ara => "ar",
        Vie => "vi",
        Tha => "th",
        Ind => "id",
        Nld => "nl",
        Tur => "tr",
        Pol => "pl",
        Ukr => "uk",
        Hin => "hi",
        _ => l.code(),
    }
}

/// The language of a text. Han script decides first (whatlang takes mixed Chinese/English such
/// as `请用 Python 调用 OpenAI 接口` for Indonesian): kana → ja, hangul → ko, else Han characters
/// weighted 3 : 1 against Latin letters → zh. Other text goes to whatlang. `und` when unknown.
pub fn detect_language(text: &str) -> String {
    let sample = match text.char_indices().nth(2000) {
        Some((i, _)) => &text[..i],
        None => text,
    };
    let (mut han, mut kana, mut hangul, mut latin) = (0usize, 0usize, 0usize, 0usize);
    for c in sample.chars() {
        match c as u32 {
            0x3040..=0x30FF => kana += 1,
            0xAC00..=0xD7AF => hangul += 1,
            _ if c.is_ascii_alphabetic() => latin += 1,
            _ if is_cjk(c) => han += 1,
            _ => {}
        }
    }
    if kana > 0 && kana * 10 >= han + kana {
        return "ja".into();
    }
    if hangul > 0 && hangul >= han {
        return "ko".into();
    }
    if han > 0 && han * 3 >= latin {
        return "zh".into();
    }
    match whatlang::detect(sample) {
        // short English is often taken for Indonesian or Latin with low confidence: unreliable
        // guesses on plain ASCII letters are taken for English
        Some(i) if !i.is_reliable() && latin > 0 && sample.is_ascii() => "en".into(),
        Some(i) => language_code(i.lang()).to_string(),
        None => "und".into(),
    }
}

/// Why `text` fails the quality rules, or None when it passes.
pub fn quality_failure(q: &QualityStep, text: &str) -> Option<String> {
    let (mut chars, mut symbols) = (0usize, 0usize);
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        chars += 1;
        if !c.is_alphanumeric() {
            symbols += 1;
        }
    }
    if let Some(min) = q.min_chars.filter(|&m| chars < m) {
        return Some(format!("fewer than {min} characters"));
    }
    if let Some(max) = q.max_chars.filter(|&m| chars > m) {
        return Some(format!("more than {max} characters"));
    }
    if let Some(r) = q.max_symbol_ratio.filter(|&r| chars > 0 && symbols as f64 / chars as f64 > r) {
        return Some(format!("symbol ratio above {r}"));
    }
    let u = units(text);
    if u.len() < q.repetition_min_units {
        return None;
    }
    if let Some(max) = q.max_duplicate_line_fraction {
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let mut seen = HashSet::new();
        let dups = lines.iter().filter(|l| !seen.insert(**l)).count();
        if !lines.is_empty() && dups as f64 / lines.len() as f64 > max {
            return Some(format!("duplicate line fraction above {max}"));
        }
    }
    let gram = |w: &[u64]| w.iter().fold(0x9E37_79B9_7F4A_7C15u64, |h, x| (h ^ x).wrapping_mul(0x100_0000_01b3).rotate_left(29));
    if let Some(max) = q.max_top_ngram_fraction {
        for (k, n) in (2..=4).enumerate() {
            let mut counts: HashMap<u64, usize> = HashMap::new();
            for w in u.windows(n) {
                *counts.entry(gram(w)).or_default() += 1;
            }
            let top = counts.values().copied().max().unwrap_or(0);
            if top > 1 && (top * n) as f64 / u.len() as f64 > max[k] {
                return Some(format!("top {n}-gram fraction above {}", max[k]));
            }
        }
    }
    if let Some(max) = q.max_duplicate_ngram_fraction {
        for (k, n) in (5..=10).enumerate() {
            let mut first: HashMap<u64, usize> = HashMap::new();
            let mut covered = vec![false; u.len()];
            for (i, w) in u.windows(n).enumerate() {
                let h = gram(w);
                if let Some(&j) = first.get(&h) {
                    covered[j..j + n].iter_mut().for_each(|c| *c = true);
                    covered[i..i + n].iter_mut().for_each(|c| *c = true);
                } else {
                    first.insert(h, i);
                }
            }
            let frac = covered.iter().filter(|&&c| c).count() as f64 / u.len() as f64;
            if frac > max[k] {
                return Some(format!("duplicate {n}-gram fraction above {}", max[k]));
            }
        }
    }
    None
}

/// 64-bit FNV-1a of the record's text with ASCII whitespace removed and ASCII letters
/// lower-cased: the key of exact deduplication. Written here because it is a few lines and must
/// be stable across runs and Rust versions (std's hasher promises neither).
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

/// A step ready to run.
enum Stage {
    Nfkc,
    FullWidth,
    Control,
    Whitespace,
    Chinese(Box<OpenCC>),
    Language(Vec<String>),
    Quality(QualityStep),
    Pii(Deidentifier),
    Dedup(HashSet<u64>),
    NearDup(NearDupIndex),
}

/// What happened to a record.
pub enum Outcome {
    /// Kept; whether a text step changed it.
    Keep(Record, bool),
    /// Dropped by step `index` for `reason`; the record as it was at that point.
    Drop { index: usize, reason: String, record: Record },
}

pub struct Cleaner {
    stages: Vec<Stage>,
    names: Vec<&'static str>,
}

impl Cleaner {
    pub fn new(steps: &[Step]) -> Result<Self> {
        CleanConfig { steps: steps.to_vec() }.check().map_err(DataError::Invalid)?;
        let stages = steps
            .iter()
            .map(|s| {
                Ok(match s {
                    Step::Nfkc => Stage::Nfkc,
                    Step::FullWidth => Stage::FullWidth,
                    Step::Control => Stage::Control,
                    Step::Whitespace => Stage::Whitespace,
                    Step::Chinese(mode) => {
                        let cfg = opencc_config(mode).ok_or_else(|| DataError::Invalid(format!("chinese: unknown conversion {mode:?}")))?;
                        Stage::Chinese(Box::new(OpenCC::from_config(cfg).map_err(|e| DataError::Invalid(format!("OpenCC {mode}: {e}")))?))
                    }
                    Step::Language(l) => Stage::Language(l.keep.iter().map(|k| normalise_language(k)).collect()),
                    Step::Quality(q) => Stage::Quality(q.clone()),
                    Step::Pii(p) => Stage::Pii(Deidentifier::new(&p.options()?)?),
                    Step::Dedup => Stage::Dedup(HashSet::new()),
                    Step::NearDup(n) => Stage::NearDup(NearDupIndex::new(n.threshold)),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Cleaner { stages, names: steps.iter().map(Step::name).collect() })
    }

    pub fn step_names(&self) -> &[&'static str] {
        &self.names
    }

    /// One text through a text step: None when the step leaves it as it is.
    fn transform(stage: &Stage, s: &str, counts: &mut PiiCounts, doc: Option<&mut crate::pii::DocumentState>) -> Option<String> {
        match stage {
            Stage::Nfkc => nfkc(s),
            Stage::FullWidth => full_width_to_half(s),
            Stage::Control => {
                let unwanted = |c: char| is_zero_width(c) || (c.is_control() && c != '\n' && c != '\t');
                s.chars().any(unwanted).then(|| s.chars().filter(|&c| !unwanted(c)).collect())
            }
            Stage::Whitespace => (!whitespace_is_normal(s)).then(|| normalize_whitespace(s)).filter(|t| t != s),
            Stage::Chinese(cc) => (!s.is_ascii()).then(|| cc.convert(s)).filter(|t| t != s),
            Stage::Pii(d) => {
                let before = counts.values().sum::<usize>();
                let t = d.mask_in(s, counts, doc.expect("a document state for PII"));
                (counts.values().sum::<usize>() != before).then_some(t)
            }
            _ => None,
        }
    }

    /// Runs the record through every step in order. `report` gets the per-step counts.
    pub fn run(&mut self, mut r: Record, report: &mut CleanReport) -> Outcome {
        if report.steps.len() != self.stages.len() {
            report.steps = self.names.iter().map(|n| StepReport { step: n.to_string(), ..Default::default() }).collect();
        }
        let mut any_change = false;
        for (i, stage) in self.stages.iter_mut().enumerate() {
            let drop = match stage {
                Stage::Language(keep) => {
                    let lang = detect_language(&r.joined_text());
                    let dropped = !keep.is_empty() && !keep.contains(&lang);
                    let reason = dropped.then(|| format!("language {lang} not in {}", keep.join(",")));
                    r.metadata_mut().insert("language".into(), Value::String(lang));
                    reason
                }
                Stage::Quality(q) => quality_failure(q, &r.joined_text()),
                Stage::Dedup(seen) => (!seen.insert(dedup_key(&r))).then(|| "exact duplicate".to_string()),
                Stage::NearDup(idx) => idx.check_and_insert(&r.joined_text()).then(|| "near duplicate".to_string()),
                Stage::Pii(d) => {
                    let changed = d.mask_document(&mut r.texts_mut(), &mut report.pii);
                    if changed {
                        report.steps[i].changed += 1;
                        any_change = true;
                    }
                    (changed && !r.is_trainable()).then(|| "left the record empty".to_string())
                }
                _ => {
                    let mut changed = false;
                    for t in r.texts_mut() {
                        if let Some(new) = Self::transform(stage, t, &mut report.pii, None) {
                            *t = new;
                            changed = true;
                        }
                    }
                    if changed {
                        report.steps[i].changed += 1;
                        any_change = true;
                    }
                    (changed && !r.is_trainable()).then(|| "left the record empty".to_string())
                }
            };
            if let Some(reason) = drop {
                let s = &mut report.steps[i];
                s.dropped += 1;
                *s.reasons.entry(reason.clone()).or_default() += 1;
                return Outcome::Drop { index: i, reason, record: r };
            }
        }
        Outcome::Keep(r, any_change)
    }

    /// Feeds an earlier dataset's record to the dedup steps only (after the text steps), so that
    /// records like it are dropped later.
    fn remember(&mut self, mut r: Record) {
        let mut scratch = PiiCounts::new();
        for stage in self.stages.iter_mut() {
            match stage {
                Stage::Dedup(seen) => {
                    seen.insert(dedup_key(&r));
                }
                Stage::NearDup(idx) => {
                    idx.check_and_insert(&r.joined_text());
                }
                Stage::Language(_) | Stage::Quality(_) => {}
                Stage::Pii(d) => {
                    d.mask_document(&mut r.texts_mut(), &mut scratch);
                }
                _ => {
                    for t in r.texts_mut() {
                        if let Some(new) = Self::transform(stage, t, &mut scratch, None) {
                            *t = new;
                        }
                    }
                }
            }
        }
    }

    /// One text through the text steps only (for tests and previews).
    pub fn clean_text(&self, s: &str, counts: &mut PiiCounts) -> String {
        let mut t = s.to_string();
        for stage in &self.stages {
            let mut doc = match stage {
                Stage::Pii(d) => Some(d.document()),
                _ => None,
            };
            if let Some(new) = Self::transform(stage, &t, counts, doc.as_mut()) {
                t = new;
            }
        }
        t
    }
}

/// `zh`, `ZH`, `cmn` → `zh`; three-letter codes with a two-letter form are mapped to it.
fn normalise_language(code: &str) -> String {
    let c = code.trim().to_ascii_lowercase();
    match whatlang::Lang::from_code(c.as_str()) {
        Some(l) => language_code(l).to_string(),
        None => c,
    }
}

/// Cleans a project JSONL file into `out` (streamed; written to a temporary file and renamed).
pub fn clean_file(input: &Path, out: &Path, opts: CleanOptions) -> Result<CleanReport> {
    if input == out || opts.dropped.as_deref() == Some(input) {
        return Err(DataError::Invalid(format!("{}: the output must be another file than the input", out.display())));
    }
    let mut cleaner = Cleaner::new(&opts.steps)?;
    let file = File::open(input).map_err(|e| DataError::io(input, e))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?);
    let mut dropped_w = match &opts.dropped {
        Some(p) => {
            let t = p.with_extension(format!("tmp-{}", std::process::id()));
            Some((t.clone(), BufWriter::new(File::create(&t).map_err(|e| DataError::io(&t, e))?)))
        }
        None => None,
    };
    let mut report = CleanReport::default();
    // earlier datasets: cleaned the same way, then remembered
    for old in &opts.against {
        let text = std::fs::read_to_string(old).map_err(|e| DataError::io(old, e))?;
        for v in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
            if let Ok(r) = Record::parse(&v) {
                cleaner.remember(r);
                report.against_records += 1;
            }
        }
    }
    let mut progress = Progress::new("clean", total, opts.progress);
    let mut rejected = SideFile::new(rejected_path(out));
    let mut read_bytes = 0u64;
    let result = (|| -> Result<()> {
        let mut line = Vec::new();
        for i in 0.. {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(|e| DataError::io(input, e))?;
            if n == 0 {
                break;
            }
            read_bytes += n as u64;
            progress.set(read_bytes);
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
                    rejected.push(&json!({"line": i + 1, "error": reason}))?;
                    continue;
                }
            };
            match cleaner.run(record, &mut report) {
                Outcome::Keep(cleaned, changed) => {
                    report.changed += changed as usize;
                    let v = cleaned.to_json();
                    if let Some(Value::String(l)) = v.get("metadata").and_then(|m| m.get("language")) {
                        *report.languages.entry(l.clone()).or_default() += 1;
                    }
                    serde_json::to_writer(&mut w, &v).map_err(|e| DataError::io(&tmp, e.into()))?;
                    w.write_all(b"\n").map_err(|e| DataError::io(&tmp, e))?;
                    report.written += 1;
                }
                Outcome::Drop { index, reason, record } => {
                    let step = cleaner.step_names()[index];
                    match (step, reason.as_str()) {
                        ("dedup", _) => report.duplicates_dropped += 1,
                        ("near_dup", _) => report.near_duplicates_dropped += 1,
                        (_, "left the record empty") => report.empty_dropped += 1,
                        _ => {}
                    }
                    if let Some((t, dw)) = dropped_w.as_mut() {
                        let v = json!({"line": i + 1, "step": step, "reason": reason, "record": record.to_json()});
                        serde_json::to_writer(&mut *dw, &v).map_err(|e| DataError::io(&*t, e.into()))?;
                        dw.write_all(b"\n").map_err(|e| DataError::io(&*t, e))?;
                    }
                }
            }
        }
        w.flush().map_err(|e| DataError::io(&tmp, e))?;
        if let Some((t, dw)) = dropped_w.as_mut() {
            dw.flush().map_err(|e| DataError::io(&*t, e))?;
        }
        Ok(())
    })();
    progress.finish();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        if let Some((t, _)) = &dropped_w {
            let _ = std::fs::remove_file(t);
        }
        return Err(e);
    }
    if report.steps.is_empty() {
        report.steps = cleaner.step_names().iter().map(|n| StepReport { step: n.to_string(), ..Default::default() }).collect();
    }
    std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))?;
    if let (Some((t, _)), Some(p)) = (dropped_w, &opts.dropped) {
        std::fs::rename(&t, p).map_err(|e| DataError::io(p, e))?;
        report.dropped_file = Some(p.clone());
    }
    report.rejected_file = rejected.finish()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaner(steps: Vec<Step>) -> Cleaner {
        Cleaner::new(&steps).unwrap()
    }

    #[test]
    fn piecewise_nfkc_equals_whole_text_nfkc() {
        // stable characters next to combining marks, Hangul jamo, full-width forms, ligatures,
        // compatibility ideographs and circled numbers
        let alphabet: Vec<char> = "ae中文，。ＡＢ１２　ﬁ①㎏\u{301}\u{308}\u{327}\u{1100}\u{1161}\u{11A8}가\u{F900}\u{2F800} \n.x".chars().collect();
        let mut state = 0x1234_5678_u64;
        for _ in 0..5000 {
            let len = (state % 12) as usize;
            let text: String = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    alphabet[(state >> 33) as usize % alphabet.len()]
                })
                .collect();
            let whole: String = text.nfkc().collect();
            assert_eq!(nfkc(&text).unwrap_or_else(|| text.clone()), whole, "{text:?}");
            assert_eq!(nfkc(&text).is_none(), whole == text, "{text:?}");
        }
    }

    #[test]
    fn text_pipeline() {
        let c = Cleaner::new(&CleanConfig::default_steps()).unwrap();
        let mut counts = PiiCounts::new();
        let s = "ＡＢＣ１２３\u{200B}  hello\t\tworld \r\n\n\n\n你好，世界。  电话13812345678";
        assert_eq!(c.clean_text(s, &mut counts), "ABC123 hello world\n\n你好,世界。 电话<PHONE>");
        let keep = cleaner(vec![Step::Control, Step::Whitespace]);
        assert_eq!(keep.clean_text("你好，世界 13812345678", &mut counts), "你好，世界 13812345678");
        // full-width only: ① and ㎏ stay, NFKC would expand them
        let fw = cleaner(vec![Step::FullWidth]);
        assert_eq!(fw.clean_text("①　ＡＢＣ，５㎏！", &mut counts), "① ABC,5㎏!");
        assert_eq!(cleaner(vec![Step::Nfkc]).clean_text("①５㎏", &mut counts), "15kg");
        for s in ["a b\nc\n\nd", "x", "a  b", " a", "a\n\n\nb", "a \nb", "a\u{3000}b", "a\tb", "a\r\nb"] {
            assert_eq!(whitespace_is_normal(s), normalize_whitespace(s) == s, "{s:?}");
        }
    }

    #[test]
    fn chinese_conversion() {
        let mut counts = PiiCounts::new();
        assert_eq!(cleaner(vec![Step::Chinese("t2s".into())]).clean_text("資料庫與軟體", &mut counts), "资料库与软体");
        assert_eq!(cleaner(vec![Step::Chinese("tw2sp".into())]).clean_text("資料庫與軟體", &mut counts), "数据库与软件");
        assert_eq!(cleaner(vec![Step::Chinese("s2t".into())]).clean_text("头发的发展", &mut counts), "頭髮的發展");
    }

    #[test]
    fn language_detection() {
        assert_eq!(detect_language("今天天气很好，我们去公园散步吧。"), "zh");
        assert_eq!(detect_language("請用 Python 調用 OpenAI 接口"), "zh");
        assert_eq!(detect_language("The quick brown fox jumps over the lazy dog while the children watch."), "en");
        assert_eq!(detect_language("これは日本語の文章です。"), "ja");
        assert_eq!(detect_language("Le chat est sur la table et il dort tranquillement depuis ce matin."), "fr");
        assert_eq!(detect_language("How do I back up the database?\nAsk Mr. John Smith at 138-1234-5678."), "en");
        assert_eq!(detect_language("12345"), "und");
    }

    #[test]
    fn quality_rules() {
        let q = QualityStep { min_chars: Some(5), max_chars: Some(200), ..Default::default() };
        assert_eq!(quality_failure(&q, "好"), Some("fewer than 5 characters".into()));
        assert_eq!(quality_failure(&q, &"长".repeat(201)), Some("more than 200 characters".into()));
        assert!(quality_failure(&q, "@@##$$%%^^&&**").unwrap().contains("symbol ratio"));
        let good = "我们的退货政策是：自收到商品之日起七天内可以无理由退货，运费由买家承担，商品需保持完好。发票可以在订单详情页申请，电子发票会在三个工作日内发送到您的邮箱。";
        assert_eq!(quality_failure(&q, good), None);
        let lines = "点击这里领取优惠\n".repeat(8) + "今天的天气很好，适合出门散步和运动，也适合在家读书。";
        assert!(quality_failure(&QualityStep::default(), &lines).unwrap().contains("duplicate line"), "{:?}", quality_failure(&QualityStep::default(), &lines));
        let spam = "buy cheap watches now ".repeat(20);
        assert!(quality_failure(&QualityStep { max_duplicate_line_fraction: None, ..Default::default() }, &spam).unwrap().contains("gram"));
        let english = "Deduplication removes repeated records from a dataset so that a model does not memorise them, and it also makes \
                       evaluation fairer because the test questions no longer leak into training. Near duplicates are found with MinHash signatures \
                       over word shingles and locality-sensitive hashing, which compares only candidate pairs instead of every pair.";
        assert_eq!(quality_failure(&QualityStep::default(), english), None);
    }

    #[test]
    fn steps_report_changes_and_drops_in_order() {
        let steps = vec![
            Step::FullWidth,
            Step::Whitespace,
            Step::Language(LanguageStep { keep: vec!["zh".into()] }),
            Step::Quality(QualityStep { min_chars: Some(4), ..Default::default() }),
            Step::Pii(PiiStep::default()),
            Step::Dedup,
        ];
        let mut c = cleaner(steps);
        let mut report = CleanReport::default();
        let rec = |t: &str| Record::Text { text: t.into(), metadata: None };
        let mut kept = vec![];
        for t in ["你好，我的电话是13812345678", "你好，我的电话是 13812345678", "Hello there, this is English text.", "好的", "ＡＢＣ是什么意思？"] {
            match c.run(rec(t), &mut report) {
                Outcome::Keep(r, _) => kept.push(r),
                Outcome::Drop { index, reason, .. } => kept.push(rec(&format!("dropped by {index}: {reason}"))),
            }
        }
        let texts: Vec<String> = kept.iter().map(|r| r.texts()[0].to_string()).collect();
        assert_eq!(
            texts,
            ["你好,我的电话是<PHONE>", "dropped by 5: exact duplicate", "dropped by 2: language en not in zh", "dropped by 3: fewer than 4 characters", "ABC是什么意思?"]
        );
        assert_eq!(kept[0].to_json()["metadata"]["language"], "zh");
        let by_step: Vec<(String, usize, usize)> = report.steps.iter().map(|s| (s.step.clone(), s.changed, s.dropped)).collect();
        assert_eq!(
            by_step,
            [("full_width".into(), 3, 0), ("whitespace".into(), 0, 0), ("language".into(), 0, 1), ("quality".into(), 0, 1), ("pii".into(), 2, 0), ("dedup".into(), 0, 1)]
        );
    }
}
