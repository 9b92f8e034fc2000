//! `deepfeed ingest`: documents, chat exports and web pages to records with provenance.
//!
//! One reader per format turns a source into text sections with a location (page, sheet, row,
//! line, byte offsets); this module chunks the sections, masks personal data, and writes one
//! JSON record per chunk with `metadata.source`, `sha256` (of the source bytes), `format` and the
//! location. Readers: `text` (.txt/.md/.csv/.tsv, streamed, encodings detected), `html`, `pdf`,
//! `docx`, `xlsx` (also .xls/.ods), `json` (.json/.jsonl), `ocr` (images, scanned PDF pages),
//! `chatlog` (CSV/JSON chat exports to multi-turn `messages` records) and `crawl` (web pages).
//!
//! A source that cannot be read is reported with its reason and the run goes on; what it had
//! already written is taken back out of the output, so no half-read file is left behind.
pub mod chatlog;
pub mod crawl;
pub mod docx;
pub mod html;
pub mod json;
pub mod ocr;
pub mod pdf;
pub mod samples;
pub mod text;
pub mod xlsx;

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::pii::{Deidentifier, PiiCounts, PiiOptions};
use crate::validate::TokenCounter;

pub use text::decode;

/// Token counts without a tokenizer: a CJK character (Han, kana, Hangul, full-width forms)
/// counts 0.7 tokens (about 1.4 characters per token with DeepSeek/Qwen-style BPE vocabularies)
/// and any other non-space character 0.25 (about 4 characters per token for English); rounded up.
pub struct EstimatedTokens;

/// Whether `c` is a CJK character for the token estimate.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF | 0x20000..=0x3134F)
}

impl TokenCounter for EstimatedTokens {
    fn count(&self, text: &str) -> usize {
        let (mut cjk, mut other) = (0usize, 0usize);
        for c in text.chars() {
            if is_cjk(c) {
                cjk += 1;
            } else if !c.is_whitespace() {
                other += 1;
            }
        }
        (cjk * 7).div_ceil(10) + other.div_ceil(4)
    }
}

/// Limits that protect the run from hostile or broken files.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most bytes a zip container (DOCX, XLSX) may expand to, all entries together.
    pub max_unzipped_bytes: u64,
    /// Largest uncompressed/compressed ratio of a zip entry above 1 MiB.
    pub max_zip_ratio: u64,
    /// Largest file read whole (PDF, DOCX, HTML, JSON arrays, chat logs); text, CSV and JSONL stream.
    pub max_whole_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_unzipped_bytes: 512 << 20, max_zip_ratio: 100, max_whole_file_bytes: 1 << 30 }
    }
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Target chunk length in tokens (model tokenizer or [`EstimatedTokens`]).
    pub chunk_tokens: usize,
    /// Tokens of whole paragraphs of the previous chunk repeated at the start of the next.
    pub overlap_tokens: usize,
    /// JSON/JSONL: the field holding the text (default: `text`, `content`, `body`, else all
    /// scalar fields as `key: value` lines). A dotted path reaches into objects (`doc.body`).
    pub json_text_field: Option<String>,
    /// Mask personal data before anything is written (`None`: keep the text as is).
    pub pii: Option<PiiOptions>,
    pub ocr: ocr::OcrOptions,
    pub chat: chatlog::ChatLogOptions,
    pub limits: Limits,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            chunk_tokens: 512,
            overlap_tokens: 64,
            json_text_field: None,
            pii: Some(PiiOptions::default()),
            ocr: ocr::OcrOptions::default(),
            chat: chatlog::ChatLogOptions::default(),
            limits: Limits::default(),
        }
    }
}

/// What to ingest: documents (files or folders), chat-log exports, and pages to crawl.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub documents: Vec<PathBuf>,
    pub chat_logs: Vec<PathBuf>,
    pub crawl: Option<crawl::CrawlOptions>,
}

/// The outcome for one source (file or URL).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceSummary {
    pub source: String,
    pub format: String,
    pub records: usize,
    /// Why the source was skipped (nothing of it was written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was kept with a caveat or partly dropped (replaced bytes, OCR'd pages, skipped rows…).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestReport {
    /// Sources read (at least partly) and skipped.
    pub read: usize,
    pub skipped: usize,
    pub records: usize,
    /// Personal data masked, per type.
    pub pii: PiiCounts,
    pub sources: Vec<SourceSummary>,
}

impl IngestReport {
    /// `source: reason` of every skipped source.
    pub fn errors(&self) -> Vec<String> {
        self.sources.iter().filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.source))).collect()
    }
}

/// Told about the run as it goes (the CLI draws a progress bar).
pub trait Progress {
    /// The number of sources known so far (a crawl adds to it as it finds links).
    fn total(&mut self, _n: usize) {}
    /// A source is done.
    fn done(&mut self, _summary: &SourceSummary) {}
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {}

/// Where one source's records go: chunking, masking, provenance and the output.
pub struct Sink<'a> {
    out: &'a mut BufWriter<File>,
    base: Map<String, Value>,
    opts: &'a IngestOptions,
    tokens: &'a dyn TokenCounter,
    deid: Option<&'a Deidentifier>,
    pii: PiiCounts,
    next_chunk: usize,
    records: usize,
    notes: Vec<String>,
    out_path: &'a Path,
}

impl Sink<'_> {
    pub fn options(&self) -> &IngestOptions {
        self.opts
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn mask(&mut self, text: &str) -> String {
        match self.deid {
            Some(d) => d.mask(text, &mut self.pii),
            None => text.to_string(),
        }
    }

    fn write(&mut self, record: Value) -> std::result::Result<(), String> {
        writeln!(self.out, "{record}").map_err(|e| format!("writing {}: {e}", self.out_path.display()))?;
        self.records += 1;
        Ok(())
    }

    fn metadata(&self, loc: &Map<String, Value>) -> Map<String, Value> {
        let mut m = self.base.clone();
        m.extend(loc.iter().map(|(k, v)| (k.clone(), v.clone())));
        m
    }

    /// One `text` record (a table row, a JSON record…), not chunked. Empty text writes nothing.
    pub fn record(&mut self, text: &str, loc: Map<String, Value>) -> std::result::Result<(), String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let text = self.mask(text);
        let meta = self.metadata(&loc);
        self.write(json!({"text": text, "metadata": meta}))
    }

    /// `text` split into chunks, each a record with `chunk` (numbered through the source) and,
    /// when `offset` is given, `start`/`end`: byte offsets of the chunk in the source's decoded
    /// text (`offset` is where `text` starts in it).
    pub fn chunks(&mut self, text: &str, loc: Map<String, Value>, offset: Option<usize>) -> std::result::Result<(), String> {
        let spans = chunk(text, self.opts.chunk_tokens, self.opts.overlap_tokens, self.tokens);
        self.write_chunks(text, &spans, &loc, offset)
    }

    /// One window of a source read in windows (`offset`: where it starts in the source's text).
    /// Unless this is the `last` window, its last chunk is held back: the returned byte count is
    /// where that chunk starts, and the caller puts the rest of the window in front of the next
    /// one, so that chunks (and their overlap) run on across window boundaries as if the whole
    /// source had been chunked at once.
    pub fn window_chunks(&mut self, text: &str, loc: &Map<String, Value>, offset: usize, last: bool) -> std::result::Result<usize, String> {
        let mut spans = chunk(text, self.opts.chunk_tokens, self.opts.overlap_tokens, self.tokens);
        let consumed = match spans.last() {
            Some(&(s, _)) if !last && spans.len() > 1 => {
                spans.pop();
                s
            }
            _ => text.len(),
        };
        self.write_chunks(text, &spans, loc, Some(offset))?;
        Ok(consumed)
    }

    fn write_chunks(&mut self, text: &str, spans: &[(usize, usize)], loc: &Map<String, Value>, offset: Option<usize>) -> std::result::Result<(), String> {
        for &(s, e) in spans {
            let piece = text[s..e].trim();
            if piece.is_empty() {
                continue;
            }
            let piece = self.mask(piece);
            let mut meta = self.metadata(loc);
            meta.insert("chunk".into(), json!(self.next_chunk));
            if let Some(o) = offset {
                meta.insert("start".into(), json!(o + s));
                meta.insert("end".into(), json!(o + e));
            }
            self.next_chunk += 1;
            self.write(json!({"text": piece, "metadata": meta}))?;
        }
        Ok(())
    }

    /// A multi-turn `messages` record; contents are masked together so that consistent
    /// placeholders stay consistent across the turns of one conversation.
    pub fn chat(&mut self, messages: Vec<(String, String)>, loc: Map<String, Value>) -> std::result::Result<(), String> {
        const SEP: char = '\u{1e}';
        let joined: String = messages.iter().map(|(_, c)| c.replace(SEP, " ")).collect::<Vec<_>>().join(&SEP.to_string());
        let masked = self.mask(&joined);
        let contents: Vec<&str> = masked.split(SEP).collect();
        debug_assert_eq!(contents.len(), messages.len());
        let msgs: Vec<Value> = messages.iter().zip(contents).map(|((role, _), c)| json!({"role": role, "content": c})).collect();
        let meta = self.metadata(&loc);
        self.write(json!({"messages": msgs, "metadata": meta}))
    }
}

/// Paragraph blocks of a document with their byte spans; a Markdown heading always starts a block.
fn blocks(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            if let Some(s) = start.take() {
                out.push((s, pos));
            }
        } else if trimmed.starts_with('#') {
            if let Some(s) = start.take() {
                out.push((s, pos));
            }
            start = Some(pos);
        } else if start.is_none() {
            start = Some(pos);
        }
        pos += line.len();
    }
    if let Some(s) = start {
        out.push((s, pos));
    }
    out
}

/// Spans of `text[s..e]` no longer than `max` tokens each: cut after line and sentence ends
/// (。！？；.!?;), and a sentence that is still too long is cut at character boundaries.
fn split_long(text: &str, (s, e): (usize, usize), max: usize, tokens: &dyn TokenCounter) -> Vec<(usize, usize)> {
    let mut pieces = Vec::new();
    let mut at = s;
    for (i, c) in text[s..e].char_indices() {
        if matches!(c, '\n' | '。' | '！' | '？' | '；' | '.' | '!' | '?' | ';') {
            let end = s + i + c.len_utf8();
            pieces.push((at, end));
            at = end;
        }
    }
    if at < e {
        pieces.push((at, e));
    }
    // a piece still too long: cut it into equal character runs sized by its token density
    let mut fine = Vec::new();
    for (ps, pe) in pieces {
        let n = tokens.count(&text[ps..pe]);
        if n <= max {
            fine.push((ps, pe, n));
            continue;
        }
        let chars = text[ps..pe].chars().count();
        let per = (chars * max / n).max(1);
        let mut cut = ps;
        let mut count = 0;
        for (i, _) in text[ps..pe].char_indices() {
            if count == per {
                fine.push((cut, ps + i, tokens.count(&text[cut..ps + i])));
                cut = ps + i;
                count = 0;
            }
            count += 1;
        }
        fine.push((cut, pe, tokens.count(&text[cut..pe])));
    }
    // greedy merge back up to `max`
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut cur: Option<(usize, usize, usize)> = None;
    for (ps, pe, n) in fine {
        cur = match cur {
            Some((cs, _, cn)) if cn + n <= max => Some((cs, pe, cn + n)),
            Some((cs, ce, _)) => {
                out.push((cs, ce));
                Some((ps, pe, n))
            }
            None => Some((ps, pe, n)),
        };
    }
    if let Some((cs, ce, _)) = cur {
        out.push((cs, ce));
    }
    out
}

/// Chunks as byte spans: consecutive blocks (paragraphs; a Markdown heading starts one) up to
/// `max_tokens`, a heading starting a new chunk once the current one is half full, the next
/// chunk repeating whole blocks of up to `overlap_tokens` from the end of the previous one.
/// A block longer than `max_tokens` is cut at sentence ends first.
pub fn chunk(text: &str, max_tokens: usize, overlap_tokens: usize, tokens: &dyn TokenCounter) -> Vec<(usize, usize)> {
    let mut bl: Vec<(usize, usize, usize, bool)> = Vec::new(); // (start, end, tokens, is heading)
    for b in blocks(text) {
        let n = tokens.count(&text[b.0..b.1]);
        let heading = text[b.0..b.1].trim_start().starts_with('#');
        if n > max_tokens {
            for (k, (s, e)) in split_long(text, b, max_tokens, tokens).into_iter().enumerate() {
                bl.push((s, e, tokens.count(&text[s..e]), heading && k == 0));
            }
        } else {
            bl.push((b.0, b.1, n, heading));
        }
    }
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < bl.len() {
        let first = i;
        let mut len = bl[i].2;
        i += 1;
        while i < bl.len() {
            if len + bl[i].2 > max_tokens || (bl[i].3 && len >= max_tokens / 2) {
                break;
            }
            len += bl[i].2;
            i += 1;
        }
        chunks.push((bl[first].0, bl[i - 1].1));
        if i < bl.len() && overlap_tokens > 0 {
            // step back over whole blocks that fit in the overlap, never to the chunk's start
            let (mut back, mut acc) = (0, 0);
            while i - 1 - back > first {
                let c = bl[i - 1 - back].2;
                if acc + c > overlap_tokens || bl[i - back].3 {
                    break;
                }
                acc += c;
                back += 1;
            }
            i -= back;
        }
    }
    chunks
}

/// Hex SHA-256 of a file, read in blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a whole file, refusing one larger than the limit.
pub(crate) fn read_whole(path: &Path, limits: &Limits) -> std::result::Result<Vec<u8>, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > limits.max_whole_file_bytes {
        return Err(format!("{len} bytes: larger than the {} bytes this format may have (it is read whole)", limits.max_whole_file_bytes));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

/// The format name of a document path, from its extension.
pub fn format_of(path: &Path) -> String {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default()
}

/// The extensions `ingest` reads.
pub const EXTENSIONS: &str = ".txt .md .markdown .csv .tsv .html .htm .pdf .docx .xlsx .xls .ods .json .jsonl .png .jpg .jpeg .tif .tiff .bmp";

fn read_document(path: &Path, format: &str, sink: &mut Sink) -> std::result::Result<(), String> {
    match format {
        "txt" | "md" | "markdown" | "text" | "rst" => text::read_text(path, sink),
        "csv" | "tsv" => text::read_table(path, format == "tsv", sink),
        "html" | "htm" | "xhtml" => html::read(path, sink),
        "pdf" => pdf::read(path, sink),
        "docx" => docx::read(path, sink),
        "xlsx" | "xlsm" | "xls" | "ods" => xlsx::read(path, sink),
        "json" | "jsonl" | "ndjson" => json::read(path, format != "json", sink),
        "png" | "jpg" | "jpeg" | "tif" | "tiff" | "bmp" | "gif" | "webp" => ocr::read_image(path, sink),
        "doc" | "ppt" | "pptx" | "rtf" => Err(format!(".{format} is not supported (supported: {EXTENSIONS}); save it as .docx or .pdf first")),
        _ => Err(format!("unknown file type .{format} (supported: {EXTENSIONS})")),
    }
}

fn collect_files(src: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if src.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(src)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            if !e.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                collect_files(&e, out)?;
            }
        }
    } else {
        out.push(src.to_path_buf());
    }
    Ok(())
}

/// The output being written: records of each source, taken back out if the source fails.
pub(crate) struct Output<'a> {
    w: BufWriter<File>,
    path: &'a Path,
    opts: &'a IngestOptions,
    tokens: &'a dyn TokenCounter,
    deid: Option<Deidentifier>,
    pub(crate) report: IngestReport,
}

impl Output<'_> {
    /// Runs `read` for one source with its own sink; on error, truncates what it wrote.
    pub(crate) fn source(
        &mut self,
        source: &str,
        format: &str,
        base: Map<String, Value>,
        progress: &mut dyn Progress,
        read: impl FnOnce(&mut Sink) -> std::result::Result<(), String>,
    ) -> Result<()> {
        let start = self.w.stream_position().map_err(|e| DataError::io(self.path, e))?;
        let mut sink = Sink {
            out: &mut self.w,
            base,
            opts: self.opts,
            tokens: self.tokens,
            deid: self.deid.as_ref(),
            pii: PiiCounts::new(),
            next_chunk: 0,
            records: 0,
            notes: Vec::new(),
            out_path: self.path,
        };
        let result = read(&mut sink);
        let (records, notes, pii) = (sink.records, sink.notes, sink.pii);
        let mut summary = SourceSummary { source: source.to_string(), format: format.to_string(), records, error: None, notes };
        match result {
            Ok(()) if records == 0 => {
                summary.error = Some("no text found (the source is empty)".into());
            }
            Ok(()) => {}
            Err(e) => summary.error = Some(e),
        }
        if summary.error.is_some() {
            // take back what this source wrote
            self.w.seek(SeekFrom::Start(start)).map_err(|e| DataError::io(self.path, e))?;
            self.w.get_ref().set_len(start).map_err(|e| DataError::io(self.path, e))?;
            summary.records = 0;
            self.report.skipped += 1;
        } else {
            self.report.read += 1;
            self.report.records += records;
            for (k, v) in pii {
                *self.report.pii.entry(k).or_default() += v;
            }
        }
        progress.done(&summary);
        self.report.sources.push(summary);
        Ok(())
    }
}

/// Ingests documents (files and folders, recursively in name order; hidden entries skipped),
/// chat logs and crawled pages into `out` (project JSONL, written to a temporary file and
/// renamed). Fails only when the inputs are wrong or nothing at all could be read; otherwise the
/// report says, per source, how many records were written or why it was skipped.
pub fn ingest(inputs: &Inputs, out: &Path, opts: &IngestOptions, tokens: &dyn TokenCounter, progress: &mut dyn Progress) -> Result<IngestReport> {
    if opts.chunk_tokens < 16 || opts.overlap_tokens >= opts.chunk_tokens / 2 {
        return Err(DataError::Invalid(format!(
            "chunk length {} tokens: expected at least 16 and more than twice the overlap ({} tokens)",
            opts.chunk_tokens, opts.overlap_tokens
        )));
    }
    if inputs.documents.is_empty() && inputs.chat_logs.is_empty() && inputs.crawl.is_none() {
        return Err(DataError::Invalid("nothing to ingest: give files or folders, --chat-log FILE or --crawl SOURCE".into()));
    }
    let mut files = Vec::new();
    for s in inputs.documents.iter().chain(&inputs.chat_logs) {
        if !s.exists() {
            return Err(DataError::io(s, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory")));
        }
    }
    for s in &inputs.documents {
        collect_files(s, &mut files).map_err(|e| DataError::io(s, e))?;
    }
    let deid = match &opts.pii {
        Some(p) => Some(Deidentifier::new(p)?),
        None => None,
    };
    progress.total(files.len() + inputs.chat_logs.len());
    let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
    let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let mut o = Output { w: BufWriter::new(file), path: &tmp, opts, tokens, deid, report: IngestReport::default() };
    let result = (|| {
        let same = |a: &Path| a.canonicalize().ok().is_some_and(|a| out.canonicalize().is_ok_and(|b| a == b));
        for f in &files {
            if same(f) || f == &tmp {
                continue;
            }
            let format = format_of(f);
            source_file(&mut o, f, &format, progress, |p, sink| read_document(p, &format, sink))?;
        }
        for f in &inputs.chat_logs {
            source_file(&mut o, f, "chat-log", progress, chatlog::read)?;
        }
        if let Some(c) = &inputs.crawl {
            crawl::crawl(c, &mut o, progress)?;
        }
        o.w.flush().map_err(|e| DataError::io(&tmp, e))
    })();
    let report = std::mem::take(&mut o.report);
    drop(o);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if report.read == 0 {
        let _ = std::fs::remove_file(&tmp);
        let reasons: Vec<String> = report.errors().into_iter().take(20).collect();
        return Err(DataError::Invalid(format!("nothing could be read, no output written:\n  {}", reasons.join("\n  "))));
    }
    std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))?;
    Ok(report)
}

/// One file: hashes it, then runs its reader.
fn source_file(
    o: &mut Output,
    path: &Path,
    format: &str,
    progress: &mut dyn Progress,
    read: impl FnOnce(&Path, &mut Sink) -> std::result::Result<(), String>,
) -> Result<()> {
    let source = path.display().to_string();
    let sha = match sha256_file(path) {
        Ok(s) => s,
        Err(e) => {
            return o.source(&source, format, Map::new(), progress, |_| Err(format!("cannot read: {e}")));
        }
    };
    let mut base = Map::new();
    base.insert("source".into(), json!(source));
    base.insert("sha256".into(), json!(sha));
    base.insert("format".into(), json!(format));
    o.source(&source, format, base, progress, |sink| read(path, sink))
}

/// A location map from pairs.
pub(crate) fn loc<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
