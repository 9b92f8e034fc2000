//! `deepfeed convert` and `deepfeed validate`.
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use deepfeed_data::convert::{convert, ConvertOptions, Format};
use deepfeed_data::validate::{validate, TokenCounter};
use deepfeed_model::tokenizer::TextTokenizer;

#[derive(Args)]
pub struct ConvertArgs {
    /// Input file (.tsv, .csv, .json, .jsonl, .txt, .md)
    input: PathBuf,
    /// Output JSONL (project format); rejected lines go to OUT.rejected.jsonl
    #[arg(long)]
    out: PathBuf,
    /// tsv, csv, alpaca, sharegpt, openai, preference, text, project (default: guessed)
    #[arg(long)]
    from: Option<String>,
    /// Column or key holding the prompt
    #[arg(long)]
    input_field: Option<String>,
    /// Column or key holding the answer
    #[arg(long)]
    target_field: Option<String>,
    /// TSV: the first line is a header
    #[arg(long)]
    header: bool,
}

pub fn run_convert(a: ConvertArgs) -> Result<()> {
    let format = match &a.from {
        Some(f) => Some(Format::parse(f).ok_or_else(|| anyhow!("--from {f:?}: expected one of {}", Format::NAMES))?),
        None => None,
    };
    crate::refuse_existing(&a.out)?;
    let opts = ConvertOptions { format, input_field: a.input_field, target_field: a.target_field, header: a.header };
    let r = convert(&a.input, &a.out, &opts)?;
    println!("converted {} ({}): {} records read, {} written to {}, {} rejected", a.input.display(), r.format, r.read, r.written, a.out.display(), r.rejected);
    if let Some(p) = &r.rejected_file {
        println!("rejected lines with their reasons: {}", p.display());
    }
    Ok(())
}

#[derive(Args)]
pub struct ValidateArgs {
    /// A JSONL file in the project format
    file: PathBuf,
    /// Count tokens with this model's tokenizer
    #[arg(long)]
    model: Option<PathBuf>,
    /// With --model: the most tokens a record may have (default 1024)
    #[arg(long, default_value_t = 1024)]
    max_tokens: usize,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub(crate) struct Counter(pub(crate) TextTokenizer);

impl TokenCounter for Counter {
    fn count(&self, text: &str) -> usize {
        self.0.encode(text, false).map_or(0, |ids| ids.len())
    }
}

pub fn run_validate(a: ValidateArgs) -> Result<()> {
    let counter = match &a.model {
        Some(dir) => Some(Counter(TextTokenizer::from_dir(dir, None)?)),
        None => None,
    };
    let r = validate(&a.file, counter.as_ref().map(|c| (c as &dyn TokenCounter, a.max_tokens)))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let shapes: Vec<String> = r.shapes.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!("{}: {} records, {} valid ({}), {} invalid", a.file.display(), r.lines, r.valid, shapes.join(", "), r.invalid);
        if let Some(m) = r.max_tokens_seen {
            println!("longest valid record: {m} tokens");
        }
        for e in &r.errors {
            eprintln!("{e}");
        }
        if r.invalid > r.errors.len() {
            eprintln!("… and {} more", r.invalid - r.errors.len());
        }
    }
    if let Some(q) = &r.quarantine_file {
        bail!("{} invalid line(s) copied with their reasons to {}", r.invalid, q.display());
    }
    Ok(())
}

#[derive(Args)]
pub struct CleanArgs {
    /// A JSONL file in the project format (convert other formats first)
    input: PathBuf,
    /// Output JSONL; lines that are not valid records are listed in OUT.rejected.jsonl
    #[arg(long)]
    out: PathBuf,
    /// Keep the text as is instead of Unicode NFKC (which also makes full-width characters half-width)
    #[arg(long)]
    no_nfkc: bool,
    /// Keep control and zero-width characters
    #[arg(long)]
    no_control: bool,
    /// Keep whitespace as is
    #[arg(long)]
    no_whitespace: bool,
    /// Do not mask personal data
    #[arg(long)]
    no_pii: bool,
    /// Number the placeholders per distinct value (<PHONE_1>, <PHONE_2>) within each record
    #[arg(long)]
    consistent_pii: bool,
    /// A file of names or terms to mask as <NAME>, one per line
    #[arg(long)]
    pii_terms: Option<PathBuf>,
    /// Extra pattern to mask, as TYPE=REGEX (repeatable), e.g. EMPLOYEE_ID=EMP-\d{6}
    #[arg(long)]
    pii_pattern: Vec<String>,
    /// Keep exact duplicates
    #[arg(long)]
    no_dedup: bool,
    /// Jaccard similarity from which two records are near-duplicates (MinHash + LSH)
    #[arg(long, default_value_t = 0.8)]
    near_dup: f64,
    /// Keep near-duplicates
    #[arg(long)]
    no_near_dup: bool,
    /// Earlier dataset(s) in the project format: records like theirs are dropped (repeatable)
    #[arg(long)]
    against: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run_clean(a: CleanArgs) -> Result<()> {
    use deepfeed_data::clean::{clean_file, CleanOptions};
    use deepfeed_data::pii::PiiOptions;
    crate::refuse_existing(&a.out)?;
    let pii = if a.no_pii {
        None
    } else {
        let terms = match &a.pii_terms {
            Some(p) => std::fs::read_to_string(p).map_err(|e| anyhow!("{}: {e}", p.display()))?.lines().map(String::from).collect(),
            None => vec![],
        };
        let patterns = a
            .pii_pattern
            .iter()
            .map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| anyhow!("--pii-pattern {p:?}: expected TYPE=REGEX")))
            .collect::<Result<Vec<_>>>()?;
        Some(PiiOptions { consistent: a.consistent_pii, patterns, terms })
    };
    if !(a.near_dup > 0.0 && a.near_dup <= 1.0) {
        bail!("--near-dup {}: expected a similarity in (0, 1]", a.near_dup);
    }
    let opts = CleanOptions {
        nfkc: !a.no_nfkc,
        strip_control: !a.no_control,
        normalize_whitespace: !a.no_whitespace,
        pii,
        dedup_exact: !a.no_dedup,
        near_dup: (!a.no_near_dup).then_some(a.near_dup),
        against: a.against,
    };
    let r = clean_file(&a.input, &a.out, opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let pii: Vec<String> = r.pii.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!(
        "cleaned {}: {} records read, {} written to {} ({} changed), {} duplicates, {} near-duplicates and {} emptied records dropped, {} invalid lines{}",
        a.input.display(),
        r.read,
        r.written,
        a.out.display(),
        r.changed,
        r.duplicates_dropped,
        r.near_duplicates_dropped,
        r.empty_dropped,
        r.invalid,
        if r.against_records > 0 { format!(" ({} records of earlier datasets compared)", r.against_records) } else { String::new() }
    );
    println!("personal data masked: {}", if pii.is_empty() { "none".into() } else { pii.join(", ") });
    if let Some(p) = &r.rejected_file {
        println!("invalid lines (line numbers and reasons): {}", p.display());
    }
    Ok(())
}

#[derive(Args)]
pub struct StatsArgs {
    /// A JSONL file in the project format
    file: PathBuf,
    /// Count tokens with this model's tokenizer (default: characters)
    #[arg(long)]
    model: Option<PathBuf>,
    /// Write the length histogram here (PNG)
    #[arg(long)]
    histogram: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run_stats(a: StatsArgs) -> Result<()> {
    use deepfeed_data::stats::dataset_stats;
    let counter = match &a.model {
        Some(dir) => Some(Counter(TextTokenizer::from_dir(dir, None)?)),
        None => None,
    };
    let mut s = dataset_stats(&a.file, counter.as_ref().map(|c| c as &dyn TokenCounter))?;
    if let Some(png) = &a.histogram {
        let title = format!("record length ({})", s.lengths.unit);
        if deepfeed_data::plot::write_histogram_png(png, &title, &s.lengths.unit, &s.length_values, 30)? {
            s.histogram_png = Some(png.clone());
        } else {
            eprintln!("(histogram not drawn: no system font found)");
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let list = |m: &std::collections::BTreeMap<String, usize>| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    println!("{}: {} records ({}), {} invalid lines", a.file.display(), s.records, list(&s.shapes), s.invalid_lines);
    let l = &s.lengths;
    println!("length in {}: mean {:.1}, median {}, p95 {}, max {}", l.unit, l.mean, l.median, l.p95, l.max);
    println!("languages: {}", list(&s.languages));
    println!("duplicates: {} exact, {} near (Jaccard >= 0.8)", s.exact_duplicates, s.near_duplicates);
    println!("masked personal data: {}", if s.pii_placeholders.is_empty() { "none".into() } else { list(&s.pii_placeholders) });
    if !s.sources.is_empty() {
        println!("sources: {}", s.sources.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
    }
    if let Some(p) = &s.histogram_png {
        println!("histogram: {}", p.display());
    }
    Ok(())
}
