//! `deepfeed ingest`: documents to text records with provenance.
//!
//! Today: plain text and Markdown (`.txt`, `.md`, `.markdown`) and spreadsheet-like text (`.csv`,
//! `.tsv`: one record per row, `column: value` lines). Legacy encodings are detected (BOMs,
//! UTF-8, else chardetng's guess such as GBK/GB18030 or Big5) and decoded with encoding_rs.
//! Documents are split into chunks at headings and blank lines, up to a target length, with an
//! overlap of the previous chunk's last paragraphs. Every record carries `metadata.source`,
//! `sha256` (of the source file), `encoding`, `chunk` (or `row`) and `start`/`end` (byte offsets
//! in the decoded text). A file that cannot be read is reported and the run goes on.
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Target chunk length in characters.
    pub chunk_chars: usize,
    /// Characters of the previous chunk repeated at the start of the next (whole paragraphs).
    pub overlap_chars: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions { chunk_chars: 1500, overlap_chars: 200 }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestReport {
    pub files: usize,
    pub records: usize,
    /// `path: reason` for every file that was skipped.
    pub errors: Vec<String>,
}

/// Bytes to text: BOM, else UTF-8, else the detected legacy encoding. Returns the encoding name.
pub fn decode(bytes: &[u8]) -> (String, &'static str) {
    if let Some((enc, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom..]);
        return (text.into_owned(), enc.name());
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (s.to_string(), "UTF-8");
    }
    let mut det = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    det.feed(bytes, true);
    let enc = det.guess(None, chardetng::Utf8Detection::Deny);
    let (text, _, _) = enc.decode(bytes);
    (text.into_owned(), enc.name())
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

/// Chunks as byte spans: consecutive blocks up to `chunk_chars`, a heading starting a new chunk
/// once the current one is half full, the next chunk repeating up to `overlap_chars` of the last
/// blocks.
pub fn chunk(text: &str, opts: &IngestOptions) -> Vec<(usize, usize)> {
    let bl = blocks(text);
    let chars = |(s, e): (usize, usize)| text[s..e].chars().count();
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < bl.len() {
        let first = i;
        let mut len = chars(bl[i]);
        i += 1;
        while i < bl.len() {
            let heading = text[bl[i].0..bl[i].1].trim_start().starts_with('#');
            let next = chars(bl[i]);
            if len + next > opts.chunk_chars || (heading && len >= opts.chunk_chars / 2) {
                break;
            }
            len += next;
            i += 1;
        }
        chunks.push((bl[first].0, bl[i - 1].1));
        if i < bl.len() && opts.overlap_chars > 0 {
            // step back over whole blocks that fit in the overlap, never to the chunk's start
            let (mut back, mut acc) = (0, 0);
            while i - 1 - back > first {
                let c = chars(bl[i - 1 - back]);
                if acc + c > opts.overlap_chars {
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

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Records of one file.
fn ingest_file(path: &Path, opts: &IngestOptions) -> std::result::Result<Vec<Value>, String> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty".into());
    }
    let sha = sha256_hex(&bytes);
    let source = path.display().to_string();
    match ext.as_str() {
        "txt" | "md" | "markdown" | "text" => {
            let (text, encoding) = decode(&bytes);
            Ok(chunk(&text, opts)
                .into_iter()
                .enumerate()
                .map(|(k, (s, e))| {
                    json!({"text": text[s..e].trim(), "metadata": {"source": source, "sha256": sha, "encoding": encoding, "chunk": k, "start": s, "end": e}})
                })
                .collect())
        }
        "csv" | "tsv" => {
            let (text, encoding) = decode(&bytes);
            let mut rdr = csv::ReaderBuilder::new().delimiter(if ext == "tsv" { b'\t' } else { b',' }).flexible(true).from_reader(text.as_bytes());
            let headers: Vec<String> = rdr.headers().map_err(|e| format!("header row: {e}"))?.iter().map(|h| h.trim_start_matches('\u{feff}').to_string()).collect();
            let mut out = Vec::new();
            for (i, row) in rdr.records().enumerate() {
                let row = row.map_err(|e| format!("row {}: {e}", i + 2))?;
                let lines: Vec<String> = headers.iter().zip(row.iter()).filter(|(_, v)| !v.trim().is_empty()).map(|(h, v)| format!("{h}: {v}")).collect();
                if !lines.is_empty() {
                    out.push(json!({"text": lines.join("\n"), "metadata": {"source": source, "sha256": sha, "encoding": encoding, "row": i + 2}}));
                }
            }
            Ok(out)
        }
        "pdf" | "docx" | "doc" | "html" | "htm" | "xlsx" | "xls" | "png" | "jpg" | "jpeg" => {
            Err(format!(".{ext} is not supported yet (today: .txt, .md, .csv, .tsv); convert it to text first"))
        }
        _ => Err(format!("unknown file type .{ext} (supported: .txt, .md, .csv, .tsv)")),
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

/// Ingests files and directories (recursively, in name order) into `out` (project JSONL).
pub fn ingest(sources: &[PathBuf], out: &Path, opts: &IngestOptions) -> Result<IngestReport> {
    if opts.chunk_chars < 50 || opts.overlap_chars >= opts.chunk_chars {
        return Err(DataError::Invalid(format!("chunk length {} must be >= 50 and larger than the overlap {}", opts.chunk_chars, opts.overlap_chars)));
    }
    let mut files = Vec::new();
    for s in sources {
        if !s.exists() {
            return Err(DataError::io(s, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory")));
        }
        collect_files(s, &mut files).map_err(|e| DataError::io(s, e))?;
    }
    let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?);
    let mut report = IngestReport::default();
    for f in &files {
        if f == out {
            continue;
        }
        match ingest_file(f, opts) {
            Ok(records) => {
                report.files += 1;
                for r in records {
                    writeln!(w, "{r}").map_err(|e| DataError::io(&tmp, e))?;
                    report.records += 1;
                }
            }
            Err(reason) => report.errors.push(format!("{}: {reason}", f.display())),
        }
    }
    w.flush().map_err(|e| DataError::io(&tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))?;
    Ok(report)
}
