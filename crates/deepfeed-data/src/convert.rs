//! `deepfeed convert`: common dataset formats to the project JSONL (see [`crate::record`]).
//!
//! | format | input | output |
//! |---|---|---|
//! | `tsv` | `input<TAB>target` per line (`--header` skips a first line) | pair |
//! | `csv` | a header row; columns chosen by `--input-field` / `--target-field` (default: the first of input_text, input, question, prompt, instruction / target_text, target, answer, response, output) | pair |
//! | `alpaca` | `instruction`, `input`, `output` (+ `system`) | pair, or chat when there is a system prompt |
//! | `sharegpt` | `conversations: [{from: human/gpt/system, value}]` | pair for one exchange, chat for more |
//! | `openai` | `messages: [{role, content}]` | pair for one exchange, chat for more |
//! | `preference` | `prompt`, `chosen`, `rejected` | pair with `rejected_text` |
//! | `text` | a plain-text file | one text record |
//! | `project` | already the project format | checked and copied |
//!
//! Every output record gets `metadata.source` (file), `metadata.line` and `metadata.format`,
//! merged into any metadata the input had. Lines that cannot be converted go to
//! `OUT.rejected.jsonl` with their line number and reason; nothing is dropped silently. Input is
//! streamed line by line (except a `.json` file holding one array); output is written to a
//! temporary file and renamed.
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{DataError, Result};
use crate::progress::ProgressReader;
use crate::record::{kind, Message, Record};
use crate::side_file::SideFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tsv,
    Csv,
    Alpaca,
    ShareGpt,
    OpenAi,
    Preference,
    Text,
    Project,
}

impl Format {
    pub const NAMES: &'static str = "tsv, csv, alpaca, sharegpt, openai, preference, text, project";

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "tsv" => Self::Tsv,
            "csv" => Self::Csv,
            "alpaca" => Self::Alpaca,
            "sharegpt" => Self::ShareGpt,
            "openai" | "messages" => Self::OpenAi,
            "preference" | "dpo" => Self::Preference,
            "text" | "txt" => Self::Text,
            "project" | "jsonl" => Self::Project,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Tsv => "tsv",
            Self::Csv => "csv",
            Self::Alpaca => "alpaca",
            Self::ShareGpt => "sharegpt",
            Self::OpenAi => "openai",
            Self::Preference => "preference",
            Self::Text => "text",
            Self::Project => "project",
        }
    }

    /// Guesses a JSON record's format from its keys.
    fn of_json(v: &Value) -> Option<Self> {
        let has = |k: &str| v.get(k).is_some();
        Some(if has("conversations") {
            Self::ShareGpt
        } else if has("chosen") && has("rejected") {
            Self::Preference
        } else if has("instruction") && has("output") {
            Self::Alpaca
        } else if has("input_text") || has("text") || (has("messages") && has("metadata")) {
            Self::Project
        } else if has("messages") {
            Self::OpenAi
        } else {
            return None;
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// None: from the extension (.tsv, .csv, .txt/.md) or the first JSON record's keys.
    pub format: Option<Format>,
    /// Column / key of the prompt (csv, and JSON formats whose keys differ from the defaults).
    pub input_field: Option<String>,
    /// Column / key of the answer.
    pub target_field: Option<String>,
    /// TSV: the first line is a header.
    pub header: bool,
    /// Show progress on stderr.
    pub progress: bool,
}

/// The input file, read through a progress display.
type Input = BufReader<ProgressReader<File>>;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConvertReport {
    pub format: String,
    pub read: usize,
    pub written: usize,
    pub rejected: usize,
    /// Where rejected lines went (when there were any).
    pub rejected_file: Option<PathBuf>,
}

fn messages_to_record(messages: Vec<Message>) -> std::result::Result<Record, String> {
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err("no assistant turn: nothing to learn".into());
    }
    if let [user, assistant] = &messages[..] {
        if user.role == "user" && assistant.role == "assistant" {
            return Ok(Record::Pair { input: user.content.clone(), target: assistant.content.clone(), rejected: None, metadata: None });
        }
    }
    Ok(Record::Chat { messages, metadata: None })
}

fn string_field<'a>(v: &'a Value, key: &str) -> std::result::Result<&'a str, String> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("field `{key}` must be a string, found {}", kind(other))),
        None => Err(format!("field `{key}` is missing")),
    }
}

/// One JSON record of `format` to a project record.
fn convert_json(format: Format, v: &Value, opts: &ConvertOptions) -> std::result::Result<Record, String> {
    let pick = |given: &Option<String>, default: &str| given.clone().unwrap_or_else(|| default.to_string());
    match format {
        Format::Project => Record::parse(v).map_err(|e| e.to_string()),
        Format::Alpaca => {
            let instruction = string_field(v, &pick(&opts.input_field, "instruction"))?;
            let output = string_field(v, &pick(&opts.target_field, "output"))?;
            let input = v.get("input").and_then(|x| x.as_str()).unwrap_or("");
            let prompt = if input.trim().is_empty() { instruction.to_string() } else { format!("{instruction}\n\n{input}") };
            match v.get("system").and_then(|x| x.as_str()).filter(|s| !s.trim().is_empty()) {
                Some(system) => Ok(Record::Chat {
                    messages: vec![Message::new("system", system), Message::new("user", &prompt), Message::new("assistant", output)],
                    metadata: None,
                }),
                None => Ok(Record::Pair { input: prompt, target: output.into(), rejected: None, metadata: None }),
            }
        }
        Format::ShareGpt => {
            let key = pick(&opts.input_field, "conversations");
            let turns = v.get(&key).and_then(|c| c.as_array()).ok_or_else(|| format!("field `{key}` must be a list of turns"))?;
            let mut messages = Vec::new();
            for (i, t) in turns.iter().enumerate() {
                let from = t.get("from").and_then(|f| f.as_str()).ok_or_else(|| format!("{key}[{i}].from must be a string"))?;
                let role = match from {
                    "human" | "user" => "user",
                    "gpt" | "assistant" | "chatgpt" | "bing" | "bard" => "assistant",
                    "system" => "system",
                    other => return Err(format!("{key}[{i}].from: {other:?} is not supported (human, gpt, system)")),
                };
                let value = t.get("value").and_then(|x| x.as_str()).ok_or_else(|| format!("{key}[{i}].value must be a string"))?;
                messages.push(Message::new(role, value));
            }
            messages_to_record(messages)
        }
        Format::OpenAi => {
            let key = pick(&opts.input_field, "messages");
            let parsed = Record::parse(&json!({ "messages": v.get(&key).cloned().unwrap_or(Value::Null) })).map_err(|e| e.to_string())?;
            match parsed {
                Record::Chat { messages, .. } => messages_to_record(messages),
                _ => unreachable!("a messages record parses as chat"),
            }
        }
        Format::Preference => {
            let prompt = string_field(v, &pick(&opts.input_field, "prompt"))?;
            let chosen = string_field(v, &pick(&opts.target_field, "chosen"))?;
            let rejected = string_field(v, "rejected")?;
            if chosen == rejected {
                return Err("`chosen` and `rejected` are identical: nothing to prefer".into());
            }
            Ok(Record::Pair { input: prompt.into(), target: chosen.into(), rejected: Some(rejected.into()), metadata: None })
        }
        Format::Tsv | Format::Csv | Format::Text => unreachable!("not a JSON format"),
    }
}

/// Adds source/line/format to the record's metadata (keeping what the input had).
fn with_provenance(mut r: Record, original: Option<&Value>, source: &Path, line: usize, format: Format) -> Record {
    let mut meta = original.and_then(|v| v.get("metadata")).and_then(|m| m.as_object()).cloned().unwrap_or_default();
    meta.entry("source").or_insert_with(|| source.display().to_string().into());
    meta.entry("line").or_insert_with(|| line.into());
    meta.entry("format").or_insert_with(|| format.name().into());
    let slot = match &mut r {
        Record::Pair { metadata, .. } | Record::Chat { metadata, .. } | Record::Text { metadata, .. } => metadata,
    };
    let mut merged: Map<String, Value> = slot.take().unwrap_or_default();
    merged.extend(meta);
    *slot = Some(merged);
    r
}

struct Sink {
    out: PathBuf,
    tmp: PathBuf,
    writer: BufWriter<File>,
    rejected: SideFile,
    report: ConvertReport,
}

impl Sink {
    fn new(out: &Path, format: Format) -> Result<Self> {
        let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        Ok(Sink { out: out.into(), tmp, writer: BufWriter::with_capacity(1 << 20, file), rejected: SideFile::new(rejected_path(out)), report: ConvertReport { format: format.name().into(), ..Default::default() } })
    }

    fn push(&mut self, line: usize, result: std::result::Result<Record, String>, raw: &str) -> Result<()> {
        self.report.read += 1;
        match result {
            Ok(r) => {
                serde_json::to_writer(&mut self.writer, &r.to_json()).map_err(|e| DataError::io(&self.tmp, e.into()))?;
                self.writer.write_all(b"\n").map_err(|e| DataError::io(&self.tmp, e))?;
                self.report.written += 1;
            }
            Err(reason) => {
                self.report.rejected += 1;
                self.rejected.push(&json!({"line": line, "error": reason, "raw": raw}))?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<ConvertReport> {
        self.writer.flush().map_err(|e| DataError::io(&self.tmp, e))?;
        drop(self.writer);
        std::fs::rename(&self.tmp, &self.out).map_err(|e| DataError::io(&self.out, e))?;
        self.report.rejected_file = self.rejected.finish()?;
        Ok(self.report)
    }
}

/// `train.jsonl` -> `train.rejected.jsonl`
pub fn rejected_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().map_or("out".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}.rejected.jsonl"))
}

/// Converts `input` into the project JSONL at `out`.
pub fn convert(input: &Path, out: &Path, opts: &ConvertOptions) -> Result<ConvertReport> {
    if input == out {
        return Err(DataError::Invalid(format!("{}: the output must be another file than the input", out.display())));
    }
    let file = ProgressReader::open(input, "convert", opts.progress).map_err(|e| DataError::io(input, e))?;
    let ext = input.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let format = match opts.format {
        Some(f) => f,
        None => match ext.as_str() {
            "tsv" => Format::Tsv,
            "csv" => Format::Csv,
            "txt" | "md" => Format::Text,
            "json" | "jsonl" => detect_json(&mut reader, input)?,
            _ => return Err(DataError::Invalid(format!("{}: cannot tell the format from the extension; give --from ({})", input.display(), Format::NAMES))),
        },
    };
    let mut sink = Sink::new(out, format)?;
    let result = match format {
        Format::Tsv => convert_tsv(reader, input, opts, &mut sink),
        Format::Csv => convert_csv(reader, input, opts, &mut sink),
        Format::Text => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut reader, &mut text).map_err(|e| DataError::io(input, e))?;
            let r = if text.trim().is_empty() { Err("the file is empty".to_string()) } else { Ok(Record::Text { text, metadata: None }) };
            sink.push(1, r.map(|r| with_provenance(r, None, input, 1, format)), "")
        }
        _ => convert_json_lines(reader, input, format, opts, &mut sink),
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&sink.tmp);
        return Err(e);
    }
    if sink.report.read == 0 {
        let _ = std::fs::remove_file(&sink.tmp);
        return Err(DataError::Invalid(format!("{}: no records (the file is empty)", input.display())));
    }
    sink.finish()
}

/// Peeks at the first JSON record without consuming it.
fn detect_json(reader: &mut Input, path: &Path) -> Result<Format> {
    let buf = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    let head = String::from_utf8_lossy(buf);
    let first = head.trim_start();
    let sample: Option<Value> = if first.starts_with('[') {
        // an array: parse the first element out of the peeked bytes when it fits
        serde_json::Deserializer::from_str(&first[1..]).into_iter::<Value>().next().and_then(|r| r.ok())
    } else {
        first.lines().find(|l| !l.trim().is_empty()).and_then(|l| serde_json::from_str(l).ok())
    };
    sample
        .as_ref()
        .and_then(Format::of_json)
        .ok_or_else(|| DataError::Invalid(format!("{}: cannot tell the JSON format from its first record; give --from ({})", path.display(), Format::NAMES)))
}

fn convert_json_lines(mut reader: Input, path: &Path, format: Format, opts: &ConvertOptions, sink: &mut Sink) -> Result<()> {
    let starts_with_array = reader.fill_buf().map_err(|e| DataError::io(path, e))?.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if starts_with_array {
        // one JSON array (common for Alpaca files): read whole, items numbered from 1
        let items: Vec<Value> = serde_json::from_reader(reader).map_err(|e| DataError::Line { path: path.into(), line: e.line(), message: format!("not valid JSON: {e}") })?;
        for (i, v) in items.iter().enumerate() {
            let r = convert_json(format, v, opts).map(|r| with_provenance(r, Some(v), path, i + 1, format));
            sink.push(i + 1, r, &v.to_string())?;
        }
        return Ok(());
    }
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(|e| DataError::io(path, e))? == 0 {
            return Ok(());
        }
        n += 1;
        let Ok(text) = std::str::from_utf8(&line) else {
            sink.push(n, Err("not valid UTF-8".into()), &String::from_utf8_lossy(&line))?;
            continue;
        };
        let text = text.trim_end_matches(['\n', '\r']).trim_start_matches('\u{feff}');
        if text.trim().is_empty() {
            continue;
        }
        let r = match serde_json::from_str::<Value>(text) {
            Ok(v) => convert_json(format, &v, opts).map(|r| with_provenance(r, Some(&v), path, n, format)),
            Err(e) => Err(format!("not valid JSON: {e}")),
        };
        sink.push(n, r, text)?;
    }
}

fn pair(input: &str, target: &str) -> std::result::Result<Record, String> {
    if target.trim().is_empty() {
        return Err("the target is empty".into());
    }
    Ok(Record::Pair { input: input.into(), target: target.into(), rejected: None, metadata: None })
}

fn convert_tsv(reader: Input, path: &Path, opts: &ConvertOptions, sink: &mut Sink) -> Result<()> {
    for (i, line) in reader.split(b'\n').enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| DataError::io(path, e))?;
        if n == 1 && opts.header {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            sink.push(n, Err("not valid UTF-8".into()), &String::from_utf8_lossy(&line))?;
            continue;
        };
        let text = text.trim_end_matches('\r').trim_start_matches('\u{feff}');
        if text.trim().is_empty() {
            continue;
        }
        let r = match text.split_once('\t') {
            // escaped newlines (\n) inside a TSV field are common: restore them
            Some((a, b)) => pair(&a.replace("\\n", "\n"), &b.replace("\\n", "\n")),
            None => Err("expected input<TAB>target, found no tab".into()),
        };
        sink.push(n, r.map(|r| with_provenance(r, None, path, n, Format::Tsv)), text)?;
    }
    Ok(())
}

fn convert_csv(reader: Input, path: &Path, opts: &ConvertOptions, sink: &mut Sink) -> Result<()> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| DataError::Line { path: path.into(), line: 1, message: format!("cannot read the header row: {e}") })?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    let find = |given: &Option<String>, defaults: &[&str], what: &str| -> Result<usize> {
        let wanted: Vec<&str> = match given {
            Some(g) => vec![g.as_str()],
            None => defaults.to_vec(),
        };
        wanted.iter().find_map(|w| headers.iter().position(|h| h.eq_ignore_ascii_case(w))).ok_or_else(|| DataError::Line {
            path: path.into(),
            line: 1,
            message: format!("no {what} column: looked for {wanted:?} in the header {headers:?} (choose one with --{what}-field)"),
        })
    };
    let input_col = find(&opts.input_field, &["input_text", "input", "question", "prompt", "instruction"], "input")?;
    let target_col = find(&opts.target_field, &["target_text", "target", "answer", "response", "output"], "target")?;
    for (i, row) in rdr.records().enumerate() {
        let n = i + 2; // the header is line 1 (multi-line fields make this the record number + 1)
        let r = match &row {
            Ok(rec) => match (rec.get(input_col), rec.get(target_col)) {
                (Some(a), Some(b)) => pair(a, b),
                _ => Err(format!("row has {} fields, the header {}", rec.len(), headers.len())),
            },
            Err(e) => Err(format!("not valid CSV: {e}")),
        };
        let raw = row.as_ref().map(|r| r.iter().collect::<Vec<_>>().join(",")).unwrap_or_default();
        sink.push(n, r.map(|r| with_provenance(r, None, path, n, Format::Csv)), &raw)?;
    }
    Ok(())
}
