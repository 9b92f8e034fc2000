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
    /// No progress display
    #[arg(long)]
    quiet: bool,
}

pub fn run_convert(a: ConvertArgs) -> Result<()> {
    let format = match &a.from {
        Some(f) => Some(Format::parse(f).ok_or_else(|| anyhow!("--from {f:?}: expected one of {}", Format::NAMES))?),
        None => None,
    };
    crate::refuse_existing(&a.out)?;
    let opts = ConvertOptions { format, input_field: a.input_field, target_field: a.target_field, header: a.header, progress: !a.quiet };
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
    /// No progress display
    #[arg(long)]
    quiet: bool,
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
    let r = validate(&a.file, counter.as_ref().map(|c| (c as &dyn TokenCounter, a.max_tokens)), !a.quiet && !a.json)?;
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
    /// The pipeline as a YAML file (ordered steps, see examples/clean.yaml); the flags below
    /// switch its steps off or add to them
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write every dropped record here, with the step and the reason that dropped it
    #[arg(long)]
    dropped: Option<PathBuf>,
    /// Keep only records in these languages (e.g. zh,en); the detected language goes to metadata.language
    #[arg(long, value_delimiter = ',')]
    languages: Vec<String>,
    /// Simplified/traditional conversion: s2t, t2s, s2tw, tw2s, s2twp, tw2sp, s2hk, hk2s, t2tw, tw2t, t2hk, hk2t
    #[arg(long)]
    chinese: Option<String>,
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
    /// Replace personal data by consistent fakes of the same format (a name by a name, a phone
    /// number by a valid-looking one) instead of placeholders
    #[arg(long)]
    pseudonyms: bool,
    /// A file of names or terms to mask as <NAME>, one per line
    #[arg(long)]
    pii_terms: Option<PathBuf>,
    /// Extra pattern to mask, as TYPE=REGEX (repeatable), e.g. EMPLOYEE_ID=EMP-\d{6}
    #[arg(long)]
    pii_pattern: Vec<String>,
    /// Built-in PII type not to mask (repeatable): ID_CARD, BANK_CARD, PHONE, IP, EMAIL, ADDRESS, NAME
    #[arg(long)]
    pii_disable: Vec<String>,
    /// Keep exact duplicates
    #[arg(long)]
    no_dedup: bool,
    /// Jaccard similarity from which two records are near-duplicates (MinHash + LSH)
    #[arg(long)]
    near_dup: Option<f64>,
    /// Keep near-duplicates
    #[arg(long)]
    no_near_dup: bool,
    /// Earlier dataset(s) in the project format: records like theirs are dropped (repeatable)
    #[arg(long)]
    against: Vec<PathBuf>,
    /// No progress display
    #[arg(long)]
    quiet: bool,
    #[arg(long)]
    json: bool,
}

/// The pipeline: the config file's steps (or the default ones) with the flags applied.
fn clean_steps(a: &CleanArgs) -> Result<Vec<deepfeed_data::clean::Step>> {
    use deepfeed_data::clean::{CleanConfig, LanguageStep, Step};
    let mut steps = match &a.config {
        Some(p) => CleanConfig::from_file(p)?.steps,
        None => CleanConfig::default_steps(),
    };
    let off = [("nfkc", a.no_nfkc), ("control", a.no_control), ("whitespace", a.no_whitespace), ("pii", a.no_pii), ("dedup", a.no_dedup), ("near_dup", a.no_near_dup)];
    steps.retain(|s| !off.iter().any(|(name, no)| *no && s.name() == *name));
    // new filter steps go before de-identification and deduplication
    let insert_at = |steps: &Vec<Step>| steps.iter().position(|s| matches!(s.name(), "pii" | "dedup" | "near_dup")).unwrap_or(steps.len());
    if let Some(mode) = &a.chinese {
        steps.retain(|s| s.name() != "chinese");
        let at = insert_at(&steps);
        steps.insert(at, Step::Chinese(mode.clone()));
    }
    if !a.languages.is_empty() {
        match steps.iter_mut().find_map(|s| if let Step::Language(l) = s { Some(l) } else { None }) {
            Some(l) => l.keep = a.languages.clone(),
            None => {
                let at = insert_at(&steps);
                steps.insert(at, Step::Language(LanguageStep { keep: a.languages.clone() }));
            }
        }
    }
    for s in steps.iter_mut() {
        match s {
            Step::Pii(p) => {
                p.consistent |= a.consistent_pii;
                p.pseudonyms |= a.pseudonyms;
                if let Some(f) = &a.pii_terms {
                    p.terms.extend(std::fs::read_to_string(f).map_err(|e| anyhow!("{}: {e}", f.display()))?.lines().map(String::from));
                }
                for pat in &a.pii_pattern {
                    let (k, v) = pat.split_once('=').ok_or_else(|| anyhow!("--pii-pattern {pat:?}: expected TYPE=REGEX"))?;
                    p.patterns.insert(k.to_string(), v.to_string());
                }
                p.disable.extend(a.pii_disable.iter().cloned());
            }
            Step::NearDup(n) => {
                if let Some(t) = a.near_dup {
                    if !(t > 0.0 && t <= 1.0) {
                        bail!("--near-dup {t}: expected a similarity in (0, 1]");
                    }
                    n.threshold = t;
                }
            }
            _ => {}
        }
    }
    Ok(steps)
}

pub fn run_clean(a: CleanArgs) -> Result<()> {
    use deepfeed_data::clean::{clean_file, CleanOptions};
    crate::refuse_existing(&a.out)?;
    if let Some(d) = &a.dropped {
        crate::refuse_existing(d)?;
    }
    let steps = clean_steps(&a)?;
    let names: Vec<&str> = steps.iter().map(|s| s.name()).collect();
    let opts = CleanOptions { steps, against: a.against.clone(), dropped: a.dropped.clone(), progress: !a.quiet && !a.json };
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
    println!("steps: {}", names.join(" -> "));
    for s in &r.steps {
        let reasons: Vec<String> = s.reasons.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!("  {:<11} {:>8} changed {:>8} dropped{}", s.step, s.changed, s.dropped, if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join("; ")) });
    }
    if !r.languages.is_empty() {
        println!("languages kept: {}", r.languages.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
    }
    println!("personal data masked: {}", if pii.is_empty() { "none".into() } else { pii.join(", ") });
    if let Some(p) = &r.dropped_file {
        println!("dropped records with the step and reason: {}", p.display());
    }
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
    /// No progress display
    #[arg(long)]
    quiet: bool,
}

pub fn run_stats(a: StatsArgs) -> Result<()> {
    use deepfeed_data::stats::dataset_stats;
    let counter = match &a.model {
        Some(dir) => Some(Counter(TextTokenizer::from_dir(dir, None)?)),
        None => None,
    };
    let mut s = dataset_stats(&a.file, counter.as_ref().map(|c| c as &dyn TokenCounter), !a.quiet && !a.json)?;
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
