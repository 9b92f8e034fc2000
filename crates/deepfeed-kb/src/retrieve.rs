//! Retrieval over a knowledge base: BM25, vector search, or both fused by reciprocal rank fusion
//! (RRF: score = Σ 1 / (k + rank), k = 60, Cormack et al. 2009), with an optional rerank by the
//! chat model's log-likelihood. [`Retriever`] is the API the CLI and the server call.
use std::collections::HashMap;

use deepfeed_model::Model;
use serde_json::Value;

use crate::embed::{Embedder, TextKind};
use crate::error::{KbError, Result};
use crate::backend::KbBackend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Bm25,
    Vector,
    Hybrid,
}

impl std::str::FromStr for Mode {
    type Err = KbError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bm25" => Ok(Mode::Bm25),
            "vector" => Ok(Mode::Vector),
            "hybrid" => Ok(Mode::Hybrid),
            other => Err(KbError::Invalid(format!("retrieval mode {other:?}: expected bm25, vector or hybrid"))),
        }
    }
}

/// One retrieved chunk.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hit {
    pub chunk_id: i64,
    /// The fused (or single-method) score, higher is better; after a rerank, the mean
    /// log-likelihood per query token.
    pub score: f32,
    pub doc_id: String,
    pub source: String,
    pub page: Option<u64>,
    /// Chunk (or CSV row) number within the source, as ingest recorded it.
    pub chunk: Option<u64>,
    pub text: String,
    pub metadata: Value,
    /// 1-based ranks in the two lists (None: not in that list's candidates).
    pub bm25_rank: Option<usize>,
    pub vector_rank: Option<usize>,
}

pub const RRF_K: f32 = 60.0;

/// Reciprocal rank fusion of ranked id lists: (id, score), best first; ties keep first-seen order.
pub fn rrf(lists: &[&[i64]], k: f32) -> Vec<(i64, f32)> {
    let mut score: HashMap<i64, f32> = HashMap::new();
    let mut order = Vec::new();
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            let e = score.entry(*id).or_insert_with(|| {
                order.push(*id);
                0.0
            });
            *e += 1.0 / (k + rank as f32 + 1.0);
        }
    }
    let mut out: Vec<(i64, f32)> = order.into_iter().map(|id| (id, score[&id])).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

pub struct Retriever<'a> {
    pub store: &'a dyn KbBackend,
    /// Needed for vector and hybrid search.
    pub embedder: Option<&'a Embedder<'a>>,
    /// Candidates taken from each list before fusion.
    pub candidates: usize,
}

impl<'a> Retriever<'a> {
    pub fn new(store: &'a dyn KbBackend, embedder: Option<&'a Embedder<'a>>) -> Self {
        Retriever { store, embedder, candidates: 50 }
    }

    /// The `k` best chunks for `query`.
    pub fn search(&self, query: &str, k: usize, mode: Mode) -> Result<Vec<Hit>> {
        let n = self.candidates.max(k);
        let bm25: Vec<(i64, f32)> = if mode == Mode::Vector { vec![] } else { self.store.bm25_search(query, n)? };
        let vector: Vec<(i64, f32)> = if mode == Mode::Bm25 {
            vec![]
        } else {
            let embedder = self.embedder.ok_or_else(|| KbError::Invalid(format!("{mode:?} search needs an embedder (--embedder DIR), or use --mode bm25")))?;
            let q = embedder.embed(&[query], TextKind::Query)?;
            self.store.vector_search(&q[0], n)?
        };
        let ids_b: Vec<i64> = bm25.iter().map(|x| x.0).collect();
        let ids_v: Vec<i64> = vector.iter().map(|x| x.0).collect();
        let ranked: Vec<(i64, f32)> = match mode {
            Mode::Bm25 => bm25,
            Mode::Vector => vector,
            Mode::Hybrid => rrf(&[&ids_b, &ids_v], RRF_K),
        };
        let rank_in = |ids: &[i64], id: i64| ids.iter().position(|&x| x == id).map(|p| p + 1);
        ranked
            .into_iter()
            .take(k)
            .map(|(id, score)| {
                let c = self.store.chunk(id)?;
                Ok(Hit {
                    chunk_id: id,
                    score,
                    source: c.source().to_string(),
                    page: c.page(),
                    chunk: c.metadata.get("chunk").or_else(|| c.metadata.get("row")).and_then(|v| v.as_u64()),
                    doc_id: c.doc_id,
                    text: c.text,
                    metadata: c.metadata,
                    bm25_rank: rank_in(&ids_b, id),
                    vector_rank: rank_in(&ids_v, id),
                })
            })
            .collect()
    }
}

/// Reorders hits by how likely the chat model finds the query after the passage: the mean
/// log-probability of the query tokens given "passage + question" (the unsupervised passage
/// rerank of Sachan et al. 2022, with the question scored instead of generated).
pub fn rerank_by_likelihood(model: &Model, query: &str, mut hits: Vec<Hit>) -> Result<Vec<Hit>> {
    let q_ids = model.tokenizer.encode(&format!("\nQuestion: {query}"), false)?;
    if q_ids.is_empty() {
        return Ok(hits);
    }
    for h in hits.iter_mut() {
        let mut ids = model.tokenizer.encode(&format!("Passage: {}", h.text), true)?;
        // keep the passage within the context with room for the question
        let room = model.config.max_position_embeddings.saturating_sub(q_ids.len() + 1).max(1);
        ids.truncate(room);
        let start = ids.len();
        ids.extend_from_slice(&q_ids);
        let nll = model.token_nll(&ids)?; // nll[i] scores ids[i + 1]
        let q_nll = &nll[start - 1..];
        h.score = -(q_nll.iter().sum::<f32>() / q_nll.len() as f32);
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_rewards_agreement_between_lists() {
        // 2: 1/62 + 1/61 = 0.03252; 1: 1/61 + 1/63 = 0.03227; 3: 1/63 + 1/62 = 0.03200
        let fused = rrf(&[&[1, 2, 3], &[2, 3, 1]], 60.0);
        let ids: Vec<i64> = fused.iter().map(|x| x.0).collect();
        assert_eq!(ids, vec![2, 1, 3]);
        assert!((fused[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        // an id in one list only still appears
        let fused = rrf(&[&[7], &[8]], 60.0);
        assert_eq!(fused.len(), 2);
    }
}
