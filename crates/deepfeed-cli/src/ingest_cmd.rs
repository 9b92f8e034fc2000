//! `deepfeed ingest`: documents, chat logs and crawled pages to project JSONL records.
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use deepfeed_data::ingest::chatlog::ChatLogOptions;
use deepfeed_data::ingest::crawl::CrawlOptions;
use deepfeed_data::ingest::{ingest, EstimatedTokens, IngestOptions, Inputs, Progress, SourceSummary};
use deepfeed_data::pii::PiiOptions;
use deepfeed_data::validate::TokenCounter;
use deepfeed_model::tokenizer::TextTokenizer;

use crate::data_cmd::Counter;

#[derive(Args)]
pub struct IngestArgs {
    /// Files or folders (searched recursively) of documents: .txt .md .csv .tsv .html .pdf .docx
    /// .xlsx .xls .ods .json .jsonl, images (.png .jpg .tif …) by OCR
    sources: Vec<PathBuf>,
    /// Output JSONL of records with provenance (must not exist yet)
    #[arg(long)]
    out: PathBuf,
    /// Target chunk length in tokens (model tokenizer with --model/--tokenizer, else an estimate)
    #[arg(long, default_value_t = 512)]
    chunk_tokens: usize,
    /// Tokens of whole paragraphs repeated from the previous chunk
    #[arg(long, default_value_t = 64)]
    overlap_tokens: usize,
    /// Count tokens with this model's tokenizer (its tokenizer.json)
    #[arg(long, conflicts_with = "tokenizer")]
    model: Option<PathBuf>,
    /// Count tokens with this tokenizer.json
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// JSON/JSONL documents: the field holding the text (dotted path for nested objects)
    #[arg(long)]
    json_text_field: Option<String>,
    /// Keep personal data as is (by default it is masked before anything is written)
    #[arg(long)]
    no_mask_pii: bool,
    /// Number placeholders per distinct value (<PHONE_1>, <PHONE_2>) within a record / conversation
    #[arg(long)]
    consistent_pii: bool,
    /// A file of names or terms to mask as <NAME>, one per line
    #[arg(long)]
    pii_terms: Option<PathBuf>,
    /// A chat-log export (.csv, .tsv, .json, .jsonl) to turn into multi-turn records (repeatable)
    #[arg(long)]
    chat_log: Vec<PathBuf>,
    /// Chat log: the session (conversation id) column [default: session, session_id, conversation_id, 会话ID, …]
    #[arg(long)]
    session_col: Option<String>,
    /// Chat log: the speaker column [default: speaker, sender, from, role, 发送者, 发言人, …]
    #[arg(long)]
    speaker_col: Option<String>,
    /// Chat log: the time column [default: time, timestamp, created_at, 时间, 发送时间, …]
    #[arg(long)]
    time_col: Option<String>,
    /// Chat log: the message text column [default: text, content, message, 内容, 消息内容, …]
    #[arg(long)]
    text_col: Option<String>,
    /// Chat log: speakers whose messages are assistant turns, comma-separated (prefix match)
    #[arg(long, value_delimiter = ',', default_value = "assistant,agent,客服,bot,support,staff,service")]
    assistant: Vec<String>,
    /// Chat log: a system prompt put first in every conversation
    #[arg(long)]
    system: Option<String>,
    /// Crawl web pages: a URL, a file of URLs, or a sitemap.xml (file or URL); http:// only
    #[arg(long)]
    crawl: Option<String>,
    /// Crawl: link depth followed from the seed pages (0: the seeds only)
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Crawl: most requests per second
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Crawl: most pages fetched
    #[arg(long, default_value_t = 100)]
    max_pages: usize,
    /// OCR languages for tesseract
    #[arg(long, default_value = "chi_sim+eng")]
    ocr_lang: String,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// A progress bar on a terminal, plain lines otherwise.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
    done: usize,
    total: usize,
}

impl Progress for Bar {
    fn total(&mut self, n: usize) {
        self.total = self.total.max(n);
        if let Some(b) = &self.bar {
            b.set_length(self.total as u64);
        }
    }

    fn done(&mut self, s: &SourceSummary) {
        self.done += 1;
        let line = match &s.error {
            Some(e) => format!("skipped {}: {e}", s.source),
            None => format!("{}: {} record(s){}", s.source, s.records, if s.notes.is_empty() { String::new() } else { format!(" ({})", s.notes.join("; ")) }),
        };
        match &self.bar {
            Some(b) => {
                b.inc(1);
                if s.error.is_some() || !s.notes.is_empty() {
                    b.println(line);
                }
            }
            None => eprintln!("[{}/{}] {line}", self.done, self.total.max(self.done)),
        }
    }
}

pub fn run_ingest(a: IngestArgs) -> Result<()> {
    crate::refuse_existing(&a.out)?;
    let counter: Box<dyn TokenCounter> = match (&a.model, &a.tokenizer) {
        (Some(dir), _) => Box::new(Counter(TextTokenizer::from_dir(dir, None)?)),
        (None, Some(file)) => {
            if file.file_name().is_none_or(|n| n != "tokenizer.json") {
                bail!("--tokenizer {}: expected a file named tokenizer.json (or give the model folder with --model)", file.display());
            }
            let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            Box::new(Counter(TextTokenizer::from_dir(dir, None)?))
        }
        (None, None) => Box::new(EstimatedTokens),
    };
    let pii = if a.no_mask_pii {
        None
    } else {
        let terms = match &a.pii_terms {
            Some(p) => std::fs::read_to_string(p).map_err(|e| anyhow!("{}: {e}", p.display()))?.lines().map(String::from).collect(),
            None => vec![],
        };
        Some(PiiOptions { consistent: a.consistent_pii, patterns: vec![], terms, ..Default::default() })
    };
    let mut opts = IngestOptions { chunk_tokens: a.chunk_tokens, overlap_tokens: a.overlap_tokens, json_text_field: a.json_text_field, pii, ..Default::default() };
    opts.ocr.lang = a.ocr_lang;
    opts.chat = ChatLogOptions { session_col: a.session_col, speaker_col: a.speaker_col, time_col: a.time_col, text_col: a.text_col, assistant: a.assistant, system: a.system };
    let crawl = a.crawl.map(|seed| CrawlOptions { seed, depth: a.depth, rate: a.rate, max_pages: a.max_pages, ..Default::default() });
    let inputs = Inputs { documents: a.sources, chat_logs: a.chat_log, crawl };
    let tty = std::io::stderr().is_terminal() && !a.json;
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} sources  {elapsed}").expect("static template"));
        b
    });
    let mut progress = Bar { bar, done: 0, total: 0 };
    let r = ingest(&inputs, &a.out, &opts, counter.as_ref(), &mut progress);
    if let Some(b) = &progress.bar {
        b.finish_and_clear();
    }
    let r = r?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let pii: Vec<String> = r.pii.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("ingested {} source(s) into {} records in {}; {} skipped", r.read, r.records, a.out.display(), r.skipped);
    if opts.pii.is_some() {
        println!("personal data masked: {}", if pii.is_empty() { "none".into() } else { pii.join(", ") });
    }
    for s in r.sources.iter().filter(|s| s.error.is_some()) {
        println!("  skipped {}: {}", s.source, s.error.as_deref().unwrap_or(""));
    }
    Ok(())
}
