//! Benchmarks behind `deepfeed bench kb`:
//! - retrieval quality on a labelled set (documents + questions whose answer lives in one
//!   document): recall@5 and MRR@10 for BM25, vector and hybrid search, per language;
//! - query latency of the HNSW index at scale (p50/p95), against exact brute-force search on the
//!   same vectors, with the index's recall@10.
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::embed::{Embedder, TextKind};
use crate::error::{KbError, Result};
use crate::retrieve::{Mode, Retriever};
use crate::store::{EmbedderInfo, KbStore, NewChunk};

fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    let f = std::fs::File::open(path).map_err(|e| KbError::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| KbError::io(path, e))?;
        if !line.trim().is_empty() {
            out.push(serde_json::from_str(&line).map_err(|e| KbError::Invalid(format!("{}:{}: {e}", path.display(), n + 1)))?);
        }
    }
    Ok(out)
}

fn field<'v>(v: &'v Value, k: &str, path: &Path) -> Result<&'v str> {
    v.get(k).and_then(|x| x.as_str()).ok_or_else(|| KbError::Invalid(format!("{}: a line lacks the string field `{k}`", path.display())))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModeScore {
    pub mode: Mode,
    pub lang: String,
    pub questions: usize,
    pub recall_at_5: f64,
    pub mrr_at_10: f64,
}

/// Runs the labelled set in `set_dir` (`docs.jsonl`: id, lang, title, text; `questions.jsonl`:
/// question, doc_id, lang) through a fresh knowledge base in `work_dir`.
pub fn retrieval_benchmark(set_dir: &Path, embedder: Option<&Embedder>, work_dir: &Path) -> Result<Vec<ModeScore>> {
    let docs_path = set_dir.join("docs.jsonl");
    let q_path = set_dir.join("questions.jsonl");
    let docs = read_jsonl(&docs_path)?;
    let questions = read_jsonl(&q_path)?;
    // without an embedder, BM25 only (placeholder vectors keep the store's shape)
    let info = match embedder {
        Some(e) => EmbedderInfo { id: e.id(), path: String::new(), dim: e.dim() },
        None => EmbedderInfo { id: "none".into(), path: String::new(), dim: 4 },
    };
    let mut store = KbStore::open_or_create(&work_dir.join("bench-kb"), &info)?;
    for d in &docs {
        let id = field(d, "id", &docs_path)?;
        let text = format!("{}\n{}", field(d, "title", &docs_path)?, field(d, "text", &docs_path)?);
        let embedding = match embedder {
            Some(e) => e.embed(&[&text], TextKind::Passage)?.remove(0),
            None => vec![0.5; 4],
        };
        store.replace_document(id, id, id, &[NewChunk { text, metadata: json!({"source": id}), embedding }])?;
    }
    store.flush()?;
    let retriever = Retriever::new(&store, embedder);
    let modes: &[Mode] = if embedder.is_some() { &[Mode::Bm25, Mode::Vector, Mode::Hybrid] } else { &[Mode::Bm25] };
    let mut out = Vec::new();
    for &mode in modes {
        // per language and "all": (questions, hits@5, reciprocal ranks)
        let mut acc: BTreeMap<String, (usize, usize, f64)> = BTreeMap::new();
        for q in &questions {
            let gold = field(q, "doc_id", &q_path)?;
            let lang = q.get("lang").and_then(|l| l.as_str()).unwrap_or("?").to_string();
            let hits = retriever.search(field(q, "question", &q_path)?, 10, mode)?;
            let rank = hits.iter().position(|h| h.doc_id == gold).map(|p| p + 1);
            for key in [lang, "all".to_string()] {
                let e = acc.entry(key).or_default();
                e.0 += 1;
                e.1 += rank.is_some_and(|r| r <= 5) as usize;
                e.2 += rank.map_or(0.0, |r| 1.0 / r as f64);
            }
        }
        for (lang, (n, h5, rr)) in acc {
            out.push(ModeScore { mode, lang, questions: n, recall_at_5: h5 as f64 / n as f64, mrr_at_10: rr / n as f64 });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencyReport {
    pub vectors: usize,
    pub dim: usize,
    pub queries: usize,
    pub ef_search: usize,
    pub build_secs: f64,
    pub hnsw_p50_ms: f64,
    pub hnsw_p95_ms: f64,
    pub brute_p50_ms: f64,
    pub brute_p95_ms: f64,
    /// brute-force p50 / HNSW p50
    pub speedup_p50: f64,
    pub recall_at_10: f64,
}

/// Embedding-like unit vectors: a mixture of 200 Gaussian clusters in a 24-dimensional latent
/// space mapped to `dim` dimensions by a fixed random matrix, plus noise (uniformly random
/// vectors in 384 dimensions are all nearly equidistant, unlike real embeddings).
pub fn clustered_unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut gauss = move || -> f32 {
        let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    };
    const LATENT: usize = 24;
    const CLUSTERS: usize = 200;
    // the map and centres come from a fixed stream, so base and query sets share them
    let mut fixed = StdRng::seed_from_u64(7);
    let mut fixed_gauss = move || -> f32 {
        let (u1, u2): (f32, f32) = (fixed.random::<f32>().max(1e-7), fixed.random());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    };
    let map: Vec<f32> = (0..LATENT * dim).map(|_| fixed_gauss()).collect();
    let centres: Vec<f32> = (0..CLUSTERS * LATENT).map(|_| fixed_gauss()).collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = (i * 7919 + seed as usize) % CLUSTERS;
        let z: Vec<f32> = (0..LATENT).map(|j| centres[c * LATENT + j] + 0.5 * gauss()).collect();
        let mut v: Vec<f32> = (0..dim).map(|d| (0..LATENT).map(|j| z[j] * map[j * dim + d]).sum::<f32>() + 0.5 * gauss()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        out.extend_from_slice(&v);
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Exact top-k by dot product (one thread).
fn brute_force(base: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<u64> {
    let mut best: Vec<(f32, u64)> = Vec::with_capacity(k + 1);
    for (i, v) in base.chunks_exact(dim).enumerate() {
        let s: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
        if best.len() < k || s > best[best.len() - 1].0 {
            let pos = best.partition_point(|x| x.0 >= s);
            best.insert(pos, (s, i as u64));
            best.truncate(k);
        }
    }
    best.into_iter().map(|x| x.1).collect()
}

pub fn latency_benchmark(n: usize, dim: usize, queries: usize, ef: usize, threads: usize) -> Result<LatencyReport> {
    let base = clustered_unit_vectors(n, dim, 1);
    let qs = clustered_unit_vectors(queries, dim, 2);
    let opts = IndexOptions { dimensions: dim, metric: MetricKind::Cos, quantization: ScalarKind::F32, connectivity: 16, expansion_add: 128, expansion_search: ef, multi: false };
    let err = |e: String| KbError::Index { path: "(in memory)".into(), message: e };
    let index = Index::new(&opts).map_err(|e| err(e.to_string()))?;
    let threads = threads.max(1);
    index.reserve_capacity_and_threads(n, threads).map_err(|e| err(e.to_string()))?;
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (index, base) = (&index, &base);
                s.spawn(move || -> Result<()> {
                    for i in (t..n).step_by(threads) {
                        index.add(i as u64, &base[i * dim..(i + 1) * dim]).map_err(|e| KbError::Index { path: "(in memory)".into(), message: e.to_string() })?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().expect("index thread"))
    })?;
    let build_secs = t0.elapsed().as_secs_f64();
    let (mut hnsw, mut brute) = (Vec::with_capacity(queries), Vec::with_capacity(queries));
    let mut found = 0usize;
    for q in qs.chunks_exact(dim) {
        let t = Instant::now();
        let m = index.search(q, 10).map_err(|e| err(e.to_string()))?;
        hnsw.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let exact = brute_force(&base, dim, q, 10);
        brute.push(t.elapsed().as_secs_f64() * 1e3);
        found += m.keys.iter().filter(|k| exact.contains(k)).count();
    }
    hnsw.sort_by(f64::total_cmp);
    brute.sort_by(f64::total_cmp);
    let (h50, b50) = (percentile(&hnsw, 0.5), percentile(&brute, 0.5));
    Ok(LatencyReport {
        vectors: n,
        dim,
        queries,
        ef_search: ef,
        build_secs,
        hnsw_p50_ms: h50,
        hnsw_p95_ms: percentile(&hnsw, 0.95),
        brute_p50_ms: b50,
        brute_p95_ms: percentile(&brute, 0.95),
        speedup_p50: b50 / h50.max(1e-9),
        recall_at_10: found as f64 / (10 * queries) as f64,
    })
}
