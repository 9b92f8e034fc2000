//! Adding documents to a knowledge base: the data crate's ingest (formats, encodings, chunking,
//! sha256 provenance), then its cleaning pipeline (Unicode NFKC, control characters, whitespace,
//! PII masking), then embedding and one transaction per document. A document whose sha256 is
//! already stored is skipped; a changed one has its chunks replaced.
use std::io::BufRead;
use std::path::{Path, PathBuf};

use deepfeed_data::clean::Cleaner;
use deepfeed_data::clean_config::Step;
use deepfeed_data::ingest::{ingest, EstimatedTokens, IngestOptions, Inputs, Quiet};
use deepfeed_data::pii::{PiiCounts, PiiOptions};
use serde_json::Value;

use crate::embed::{Embedder, TextKind};
use crate::error::{KbError, Result};
use crate::backend::KbBackend;
use crate::store::{NewChunk, Replaced};

#[derive(Debug, Clone)]
pub struct AddOptions {
    pub ingest: IngestOptions,
    /// Mask personal data (e-mail, phone, ID and bank card numbers, IP) before storing.
    pub mask_pii: bool,
    /// Chunks embedded per call.
    pub embed_batch: usize,
}

impl Default for AddOptions {
    fn default() -> Self {
        // chunks of ~200 (estimated) tokens: a passage an encoder with 256-512 tokens reads whole
        AddOptions { ingest: IngestOptions { chunk_tokens: 200, overlap_tokens: 25, ..Default::default() }, mask_pii: true, embed_batch: 32 }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AddReport {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub chunks: usize,
    pub pii: PiiCounts,
    /// `path: reason` for each file ingest could not read.
    pub errors: Vec<String>,
}

/// The id a source file has in the knowledge base: its canonical path.
pub fn doc_id_for(source: &str) -> String {
    Path::new(source).canonicalize().map(|p| p.display().to_string()).unwrap_or_else(|_| source.to_string())
}

/// One source file's records, as ingest wrote them.
struct SourceRecords {
    source: String,
    sha256: String,
    records: Vec<(String, Value)>,
}

fn read_grouped(path: &Path) -> Result<Vec<SourceRecords>> {
    let f = std::fs::File::open(path).map_err(|e| KbError::io(path, e))?;
    let mut out: Vec<SourceRecords> = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| KbError::io(path, e))?;
        let v: Value = serde_json::from_str(&line).map_err(|e| KbError::Invalid(format!("{}:{}: ingest output is not JSON: {e}", path.display(), n + 1)))?;
        let text = v.get("text").and_then(|t| t.as_str()).unwrap_or("").to_string();
        let meta = v.get("metadata").cloned().unwrap_or(Value::Null);
        let source = meta.get("source").and_then(|s| s.as_str()).unwrap_or("").to_string();
        let sha = meta.get("sha256").and_then(|s| s.as_str()).unwrap_or("").to_string();
        match out.last_mut() {
            Some(g) if g.source == source => g.records.push((text, meta)),
            _ => out.push(SourceRecords { source, sha256: sha, records: vec![(text, meta)] }),
        }
    }
    Ok(out)
}

/// Adds (or updates) the documents under `sources`. `progress` is told about each document.
pub fn add_sources(store: &mut dyn KbBackend, embedder: &Embedder, sources: &[PathBuf], opts: &AddOptions, progress: &mut dyn FnMut(&str)) -> Result<AddReport> {
    // ingest output of an earlier run that was killed (one writer at a time)
    let scratch = store.scratch_dir();
    if scratch != std::env::temp_dir() {
        if let Ok(entries) = std::fs::read_dir(&scratch) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(".ingest-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    let tmp = scratch.join(format!(".ingest-{}-{:x}.jsonl", std::process::id(), rand::random::<u32>()));
    // PII is masked by ingest itself, before anything is written (also to this temporary file)
    let ingest_opts = IngestOptions { pii: opts.mask_pii.then(PiiOptions::default), ..opts.ingest.clone() };
    let inputs = Inputs { documents: sources.to_vec(), ..Default::default() };
    let ingested = ingest(&inputs, &tmp, &ingest_opts, &EstimatedTokens, &mut Quiet);
    let groups = ingested.and_then(|r| Ok((r, read_grouped(&tmp).map_err(|e| deepfeed_data::DataError::Invalid(e.to_string()))?)));
    let _ = std::fs::remove_file(&tmp);
    let (ingest_report, groups) = groups?;
    let cleaner = Cleaner::new(&[Step::Nfkc, Step::Control, Step::Whitespace])?;
    let mut report = AddReport { errors: ingest_report.errors(), pii: ingest_report.pii.clone(), ..Default::default() };
    for g in groups {
        let doc_id = doc_id_for(&g.source);
        if store.document_sha(&doc_id)?.as_deref() == Some(g.sha256.as_str()) {
            report.unchanged += 1;
            progress(&format!("unchanged  {}", g.source));
            continue;
        }
        let mut texts = Vec::new();
        let mut metas = Vec::new();
        for (text, meta) in g.records {
            let t = cleaner.clean_text(&text, &mut report.pii);
            if !t.trim().is_empty() {
                texts.push(t);
                metas.push(meta);
            }
        }
        let mut chunks = Vec::with_capacity(texts.len());
        for (batch, mb) in texts.chunks(opts.embed_batch.max(1)).zip(metas.chunks(opts.embed_batch.max(1))) {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            for ((t, m), e) in batch.iter().zip(mb).zip(embedder.embed(&refs, TextKind::Passage)?) {
                chunks.push(NewChunk { text: t.clone(), metadata: m.clone(), embedding: e });
            }
        }
        let n = chunks.len();
        match store.replace_document(&doc_id, &g.source, &g.sha256, &chunks)? {
            Replaced::Added => report.added += 1,
            Replaced::Updated => report.updated += 1,
        }
        report.chunks += n;
        progress(&format!("stored     {} ({n} chunks)", g.source));
    }
    store.flush()?;
    Ok(report)
}
