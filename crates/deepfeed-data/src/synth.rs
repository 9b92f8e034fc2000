//! `deepfeed synth`: question/answer pairs written by a model from document chunks (the output
//! of `deepfeed ingest`), as project records that keep the chunk's provenance.
//!
//! The model is anything that completes a prompt (`TextGenerator`: the CLI has a local model and
//! an OpenAI-compatible endpoint). The prompt comes from a template with `{chunk}`, `{n}` and
//! `{source}` slots (`DEFAULT_TEMPLATE`, or the user's). Answers are parsed leniently: JSON
//! objects (one per line, or an array, inside code fences or not) with question/answer keys, or
//! `Q:` / `A:` blocks (also `问：` / `答：`); anything else is ignored, and a chunk that yields no
//! pair is counted, not fatal.
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{DataError, Result};
use crate::progress::Progress;
use crate::record::Record;

/// Something that answers a prompt with text.
pub trait TextGenerator {
    fn complete(&mut self, prompt: &str) -> Result<String>;
    /// What generated the pairs (model directory or endpoint + model), kept in the metadata.
    fn name(&self) -> String;
}

pub const DEFAULT_TEMPLATE: &str = "You write training data for a question-answering assistant.\n\
Read the passage below and write {n} question-answer pairs that can be answered from the passage alone. \
Write them in the language of the passage. Make the answers complete sentences.\n\
Output only JSON, one object per line, like:\n\
{\"question\": \"...\", \"answer\": \"...\"}\n\n\
Passage (from {source}):\n{chunk}\n";

#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Prompt template with `{chunk}` (required), `{n}` and `{source}`.
    pub template: String,
    /// Pairs asked for, and kept at most, per chunk.
    pub per_chunk: usize,
    /// Chunks longer than this many characters are cut (prompt length).
    pub max_chunk_chars: usize,
    pub progress: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions { template: DEFAULT_TEMPLATE.into(), per_chunk: 3, max_chunk_chars: 4000, progress: false }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SynthReport {
    pub chunks: usize,
    pub pairs: usize,
    /// Chunks whose answer held no pair we could read.
    pub chunks_without_pairs: usize,
    /// Chunks the generator failed on (line: error).
    pub errors: Vec<String>,
    /// Lines of the input that are not records.
    pub invalid: Vec<String>,
}

/// The prompt for one chunk.
pub fn render(template: &str, chunk: &str, n: usize, source: &str) -> String {
    // {chunk} last, so that braces inside the chunk are never taken for slots
    template.replace("{n}", &n.to_string()).replace("{source}", source).replace("{chunk}", chunk)
}

/// Checks a user template: it must show the model the chunk.
pub fn check_template(template: &str, origin: &str) -> Result<()> {
    if !template.contains("{chunk}") {
        return Err(DataError::Invalid(format!("{origin}: the prompt template has no {{chunk}} slot for the document text (slots: {{chunk}}, {{n}}, {{source}})")));
    }
    Ok(())
}

fn pair_from_json(v: &Value) -> Option<(String, String)> {
    let o = v.as_object()?;
    let get = |keys: &[&str]| keys.iter().find_map(|k| o.get(*k).and_then(Value::as_str)).map(|s| s.trim().to_string());
    let q = get(&["question", "q", "Question", "Q", "input", "instruction", "prompt", "问题", "问"])?;
    let a = get(&["answer", "a", "Answer", "A", "output", "response", "答案", "答"])?;
    (!q.is_empty() && !a.is_empty()).then_some((q, a))
}

/// The question/answer pairs in a model's answer, in order, without repeats.
pub fn parse_pairs(answer: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let push = |p: (String, String), pairs: &mut Vec<(String, String)>| {
        if !pairs.iter().any(|x| x.0 == p.0) {
            pairs.push(p);
        }
    };
    // JSON: a whole array, or objects one per line (code fences and junk lines ignored)
    let trimmed = answer.trim();
    if let (Some(s), Some(e)) = (trimmed.find('['), trimmed.rfind(']')) {
        if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&trimmed[s..=e]) {
            for it in &items {
                if let Some(p) = pair_from_json(it) {
                    push(p, &mut pairs);
                }
            }
        }
    }
    for line in answer.lines() {
        let l = line.trim().trim_end_matches(',');
        if let (Some(s), Some(e)) = (l.find('{'), l.rfind('}')) {
            if s < e {
                if let Some(p) = serde_json::from_str::<Value>(&l[s..=e]).ok().as_ref().and_then(pair_from_json) {
                    push(p, &mut pairs);
                }
            }
        }
    }
    if !pairs.is_empty() {
        return pairs;
    }
    // Q:/A: blocks; an answer may run over several lines
    let label = |l: &str, names: &[&str]| -> Option<String> {
        let l = l.trim_start_matches(|c: char| c == '*' || c == '#' || c == '-' || c.is_whitespace());
        for n in names {
            if let Some(rest) = l.strip_prefix(n) {
                let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
                let rest = rest.trim_start_matches(['*', ' ']);
                if let Some(r) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('：')).or_else(|| rest.strip_prefix('.')) {
                    return Some(r.trim_start_matches('*').trim().to_string());
                }
            }
        }
        None
    };
    const Q: [&str; 6] = ["Question", "Q", "问题", "问", "question", "q"];
    const A: [&str; 6] = ["Answer", "A", "答案", "答", "answer", "a"];
    let mut q: Option<String> = None;
    let mut a: Option<String> = None;
    let finish = |q: &mut Option<String>, a: &mut Option<String>, pairs: &mut Vec<(String, String)>| {
        if let (Some(qq), Some(aa)) = (q.take(), a.take()) {
            let (qq, aa) = (qq.trim().to_string(), aa.trim().to_string());
            if !qq.is_empty() && !aa.is_empty() {
                push((qq, aa), pairs);
            }
        }
    };
    for line in answer.lines() {
        if let Some(t) = label(line, &Q) {
            finish(&mut q, &mut a, &mut pairs);
            q = Some(t);
        } else if let Some(t) = label(line, &A).filter(|_| q.is_some()) {
            a = Some(t);
        } else if let Some(aa) = a.as_mut() {
            if !line.trim().is_empty() {
                aa.push('\n');
                aa.push_str(line.trim());
            }
        }
    }
    finish(&mut q, &mut a, &mut pairs);
    pairs
}

/// Writes question/answer records for every chunk of `input` (project JSONL, usually from
/// `deepfeed ingest`) to `out`.
pub fn synth_file(input: &Path, out: &Path, generator: &mut dyn TextGenerator, opts: &SynthOptions) -> Result<SynthReport> {
    check_template(&opts.template, "template")?;
    if opts.per_chunk == 0 {
        return Err(DataError::Invalid("--per-chunk 0: expected at least one pair per chunk".into()));
    }
    let file = File::open(input).map_err(|e| DataError::io(input, e))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = BufReader::new(file);
    let tmp: PathBuf = out.with_extension(format!("tmp-{}", std::process::id()));
    let mut w = BufWriter::new(File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?);
    let mut report = SynthReport::default();
    let mut progress = Progress::new("synth", total, opts.progress);
    let gen_name = generator.name();
    let mut done = 0u64;
    let result = (|| -> Result<()> {
        for (i, line) in reader.split(b'\n').enumerate() {
            let line = line.map_err(|e| DataError::io(input, e))?;
            done += line.len() as u64 + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = std::str::from_utf8(&line)
                .map_err(|_| "not valid UTF-8".to_string())
                .and_then(|t| serde_json::from_str::<Value>(t.trim_start_matches('\u{feff}')).map_err(|e| format!("not valid JSON: {e}")))
                .and_then(|v| Record::parse(&v).map_err(|e| e.to_string()));
            let record = match parsed {
                Ok(r) => r,
                Err(e) => {
                    report.invalid.push(format!("{}:{}: {e}", input.display(), i + 1));
                    continue;
                }
            };
            report.chunks += 1;
            let meta = record.to_json().get("metadata").cloned().unwrap_or(Value::Object(Map::new()));
            let source = meta.get("source").and_then(Value::as_str).map(String::from).unwrap_or_else(|| input.display().to_string());
            let text = record.texts().join("\n\n");
            let chunk: String = text.chars().take(opts.max_chunk_chars).collect();
            let prompt = render(&opts.template, &chunk, opts.per_chunk, &source);
            let answer = match generator.complete(&prompt) {
                Ok(a) => a,
                Err(e) => {
                    report.errors.push(format!("{}:{}: {e}", input.display(), i + 1));
                    continue;
                }
            };
            let pairs = parse_pairs(&answer);
            if pairs.is_empty() {
                report.chunks_without_pairs += 1;
            }
            for (k, (q, a)) in pairs.into_iter().take(opts.per_chunk).enumerate() {
                let mut m = Map::new();
                m.insert("source".into(), Value::String(source.clone()));
                for key in ["sha256", "chunk", "page", "sheet", "row"] {
                    if let Some(v) = meta.get(key) {
                        m.insert(key.into(), v.clone());
                    }
                }
                m.insert("chunk_file".into(), Value::String(input.display().to_string()));
                m.insert("chunk_line".into(), json!(i + 1));
                m.insert("generator".into(), Value::String(gen_name.clone()));
                m.insert("pair".into(), json!(k + 1));
                let r = Record::Pair { input: q, target: a, rejected: None, metadata: Some(m) };
                serde_json::to_writer(&mut w, &r.to_json()).map_err(|e| DataError::io(&tmp, e.into()))?;
                w.write_all(b"\n").map_err(|e| DataError::io(&tmp, e))?;
                report.pairs += 1;
            }
            progress.set(done);
        }
        w.flush().map_err(|e| DataError::io(&tmp, e))
    })();
    progress.finish();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_from_json_and_blocks_amid_junk() {
        let json_lines = "Sure! Here are the pairs:\n```json\n{\"question\": \"退货期限多久？\", \"answer\": \"七天。\"}\n{\"question\": \"谁付运费？\", \"answer\": \"买家。\"},\n{\"oops\": 1}\n```\nHope this helps.";
        assert_eq!(parse_pairs(json_lines), [("退货期限多久？".into(), "七天。".into()), ("谁付运费？".into(), "买家。".into())]);
        let array = "[{\"q\": \"What is it?\", \"a\": \"A test.\"}, {\"q\": \"What is it?\", \"a\": \"Again.\"}]";
        assert_eq!(parse_pairs(array), [("What is it?".to_string(), "A test.".to_string())]);
        let blocks = "Q1: How long is the warranty?\nA1: One year\nfrom delivery.\n\n**Q2:** Who pays shipping?\n**A2:** The buyer.\n问：能开发票吗？\n答：可以。";
        assert_eq!(
            parse_pairs(blocks),
            [
                ("How long is the warranty?".into(), "One year\nfrom delivery.".into()),
                ("Who pays shipping?".into(), "The buyer.".into()),
                ("能开发票吗？".into(), "可以。".into())
            ]
        );
        for junk in ["", "random tokens 的 of 和", "Q: a question without answer", "{\"question\": \"\", \"answer\": \"x\"}"] {
            assert!(parse_pairs(junk).is_empty(), "{junk}");
        }
    }

    struct Echo(Vec<String>);
    impl TextGenerator for Echo {
        fn complete(&mut self, prompt: &str) -> Result<String> {
            self.0.push(prompt.to_string());
            if prompt.contains("FAIL") {
                return Err(DataError::Invalid("endpoint said 500".into()));
            }
            Ok("{\"question\": \"Q?\", \"answer\": \"A.\"}\n{\"question\": \"Q2?\", \"answer\": \"A2.\"}".into())
        }
        fn name(&self) -> String {
            "echo".into()
        }
    }

    #[test]
    fn records_keep_the_chunk_provenance() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("chunks.jsonl");
        std::fs::write(
            &input,
            "{\"text\":\"Returns within {7} days.\",\"metadata\":{\"source\":\"docs/policy.md\",\"sha256\":\"ab\",\"chunk\":{\"start\":0,\"end\":24}}}\n{\"text\":\"FAIL here\"}\n",
        )
        .unwrap();
        let out = d.path().join("qa.jsonl");
        let mut g = Echo(vec![]);
        let r = synth_file(&input, &out, &mut g, &SynthOptions { per_chunk: 1, ..Default::default() }).unwrap();
        assert_eq!((r.chunks, r.pairs, r.errors.len()), (2, 1, 1));
        assert!(g.0[0].contains("Returns within {7} days.") && g.0[0].contains("write 1 question-answer") && g.0[0].contains("from docs/policy.md"));
        let v: Value = serde_json::from_str(std::fs::read_to_string(&out).unwrap().lines().next().unwrap()).unwrap();
        assert_eq!(v["input_text"], "Q?");
        assert_eq!(v["metadata"]["source"], "docs/policy.md");
        assert_eq!(v["metadata"]["chunk"]["end"], 24);
        assert_eq!(v["metadata"]["chunk_line"], 1);
        assert_eq!(v["metadata"]["generator"], "echo");
        assert!(check_template("no slot", "t.txt").unwrap_err().to_string().contains("{chunk}"));
    }
}
