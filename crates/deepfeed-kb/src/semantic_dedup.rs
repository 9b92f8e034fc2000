//! Near-duplicate training samples by meaning: each record's text is embedded and looked up in
//! an HNSW index of the records kept so far; a record whose nearest kept neighbour has cosine
//! similarity ≥ the threshold is dropped. Order is kept: the first of a group survives.
use std::io::{BufRead, Write};
use std::path::Path;

use deepfeed_data::record::Record;
use serde_json::Value;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::embed::{Embedder, TextKind};
use crate::error::{KbError, Result};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DedupReport {
    pub read: usize,
    pub written: usize,
    pub dropped: usize,
    /// (dropped line, kept line it duplicates, cosine), 1-based line numbers.
    pub pairs: Vec<(usize, usize, f32)>,
}

/// Text used for the comparison: all text fields of a project record, or `text` of any JSON.
fn record_text(v: &Value) -> String {
    match Record::parse(v) {
        Ok(r) => r.texts().join("\n"),
        Err(_) => v.get("text").and_then(|t| t.as_str()).unwrap_or("").to_string(),
    }
}

pub fn semantic_dedup(input: &Path, out: &Path, embedder: &Embedder, threshold: f32, batch: usize) -> Result<DedupReport> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(KbError::Invalid(format!("--threshold {threshold}: expected a cosine similarity between 0 and 1")));
    }
    let f = std::fs::File::open(input).map_err(|e| KbError::io(input, e))?;
    let mut lines: Vec<(usize, String, String)> = Vec::new(); // (line number, raw line, text)
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| KbError::io(input, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| KbError::Invalid(format!("{}:{}: not valid JSON: {e}", input.display(), n + 1)))?;
        lines.push((n + 1, line, record_text(&v)));
    }
    let opts = IndexOptions { dimensions: embedder.dim(), metric: MetricKind::Cos, quantization: ScalarKind::F32, connectivity: 16, expansion_add: 128, expansion_search: 64, multi: false };
    let ierr = |e: String| KbError::Index { path: input.into(), message: e };
    let index = Index::new(&opts).map_err(|e| ierr(e.to_string()))?;
    index.reserve(lines.len().max(1)).map_err(|e| ierr(e.to_string()))?;
    let mut report = DedupReport { read: lines.len(), ..Default::default() };
    let mut keep = vec![false; lines.len()];
    for (b, group) in lines.chunks(batch.max(1)).enumerate() {
        let texts: Vec<&str> = group.iter().map(|l| l.2.as_str()).collect();
        let vecs = embedder.embed(&texts, TextKind::Passage)?;
        for (j, v) in vecs.iter().enumerate() {
            let i = b * batch.max(1) + j;
            let nearest = if index.size() > 0 {
                let m = index.search(v.as_slice(), 1).map_err(|e| ierr(e.to_string()))?;
                m.keys.first().map(|&k| (k as usize, 1.0 - m.distances[0]))
            } else {
                None
            };
            match nearest {
                Some((k, cos)) if cos >= threshold => report.pairs.push((lines[i].0, lines[k].0, cos)),
                _ => {
                    index.add(i as u64, v.as_slice()).map_err(|e| ierr(e.to_string()))?;
                    keep[i] = true;
                }
            }
        }
    }
    let mut body = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if keep[i] {
            writeln!(body, "{}", l.1).expect("writing to memory");
            report.written += 1;
        }
    }
    report.dropped = report.read - report.written;
    deepfeed_model::fsutil::write_file_atomically(out, &body)?;
    Ok(report)
}
