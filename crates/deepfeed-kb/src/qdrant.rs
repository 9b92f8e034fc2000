//! A Qdrant collection as a knowledge base (`--kb http(s)://host:6333/COLLECTION`), for
//! collections that outgrow one machine. Same `kb add/search/stats/delete`, chat and serving as
//! the embedded store.
//!
//! Why REST through ureq and not the `qdrant-client` crate: qdrant-client speaks gRPC (tonic +
//! prost + its generated code, ~200 CPU-s more to build, and a second HTTP stack next to the
//! ureq the data crate already has), while the handful of calls needed here (create, upsert,
//! delete by filter, scroll, count, query) are plain JSON over HTTP.
//!
//! Layout of the collection:
//! - named vectors: `dense` (the embedder's dimension, cosine) and the sparse `bm25` with Qdrant's
//!   IDF modifier, so hybrid search works as with the embedded store. Each chunk's sparse vector
//!   holds its tokens ([`crate::bm25::tokens`], hashed to u32) weighted by BM25's term-frequency
//!   part, tf·(k1+1) / (tf + k1·(1 − b + b·len/avg)), with k1 = 1.2, b = 0.75 and a fixed
//!   average length of 200 tokens (the default chunk size); Qdrant multiplies in the IDF at query
//!   time. Scores therefore approximate the embedded store's FTS5 BM25 (no true average length).
//! - one point per chunk, id = the first 63 bits of sha256(doc_id, seq); payload `doc_id`,
//!   `source`, `seq`, `text`, `metadata`, `sha256`, `chunks`, `embedder`, `embedder_path`.
//!   `doc_id` has a keyword index (deletes and lookups filter on it).
//! - Writes are not transactional as in SQLite: a document's old points are deleted, then its
//!   chunks upserted with `wait=true`, chunk 0 (which carries the sha256 that marks the document
//!   as stored) last — so a document cut short by a crash looks absent and the next `kb add`
//!   stores it again.
//!
//! Set `QDRANT_API_KEY` for a server that needs a key (sent as `api-key`).
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::bm25;
use crate::error::{KbError, Result};
use crate::store::{Chunk, DocInfo, EmbedderInfo, KbStats, NewChunk, Replaced};

const DENSE: &str = "dense";
const SPARSE: &str = "bm25";
const K1: f32 = 1.2;
const B: f32 = 0.75;
const AVG_TOKENS: f32 = 200.0;
/// Points per upsert request.
const BATCH: usize = 64;

pub struct QdrantStore {
    /// `http(s)://host:port` (no trailing slash).
    pub base: String,
    pub collection: String,
    agent: ureq::Agent,
    api_key: Option<String>,
    pub embedder: EmbedderInfo,
}

/// The chunk's point id: 63 bits of sha256(doc_id, NUL, seq), a valid Qdrant id and i64.
pub fn point_id(doc_id: &str, seq: usize) -> i64 {
    let h = Sha256::digest(format!("{doc_id}\0{seq}").as_bytes());
    (u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) >> 1) as i64
}

/// Sparse BM25 vector of a text: (token hash, tf weight), indices sorted and unique.
pub fn sparse_tf(text: &str) -> (Vec<u32>, Vec<f32>) {
    let toks = bm25::tokens(text);
    let len = toks.len() as f32;
    let mut tf: BTreeMap<u32, f32> = BTreeMap::new();
    for t in &toks {
        *tf.entry(token_id(t)).or_default() += 1.0;
    }
    let norm = K1 * (1.0 - B + B * len / AVG_TOKENS);
    tf.into_iter().map(|(i, f)| (i, f * (K1 + 1.0) / (f + norm))).unzip()
}

/// Query side: each distinct token once, weight 1 (Qdrant applies the IDF).
fn sparse_query(text: &str) -> (Vec<u32>, Vec<f32>) {
    let mut ids: Vec<u32> = bm25::tokens(text).iter().map(|t| token_id(t)).collect();
    ids.sort_unstable();
    ids.dedup();
    let n = ids.len();
    (ids, vec![1.0; n])
}

fn token_id(t: &str) -> u32 {
    let h = Sha256::digest(t.as_bytes());
    u32::from_be_bytes(h[..4].try_into().expect("4 bytes"))
}

/// Splits `http(s)://host:port/COLLECTION` into the server and the collection name.
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let bad = || KbError::Invalid(format!("--kb {url:?}: expected a Qdrant collection URL such as http://localhost:6333/my_kb"));
    let rest = url.split_once("://").ok_or_else(bad)?.1;
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    let collection = path.trim_end_matches('/');
    if host.is_empty() || collection.is_empty() || collection.contains('/') || !collection.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(bad());
    }
    Ok((url[..url.len() - path.len() - 1].to_string(), collection.to_string()))
}

impl QdrantStore {
    fn connect(url: &str) -> Result<Self> {
        let (base, collection) = parse_url(url)?;
        let config = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(60))).http_status_as_error(false).build();
        let api_key = std::env::var("QDRANT_API_KEY").ok().filter(|k| !k.is_empty());
        Ok(QdrantStore { base, collection, agent: config.into(), api_key, embedder: EmbedderInfo { id: String::new(), path: String::new(), dim: 0 } })
    }

    fn url(&self) -> String {
        format!("{}/{}", self.base, self.collection)
    }

    /// One REST call; `Ok(None)` for 404, the `result` field otherwise; other statuses are errors
    /// with Qdrant's own message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Option<Value>> {
        let url = format!("{}/collections/{}{path}", self.base, self.collection);
        let err = |m: String| KbError::Invalid(format!("Qdrant {method} {url}: {m}"));
        let resp = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(k) = &self.api_key {
                    r = r.header("api-key", k);
                }
                r.call()
            }
            (_, body) => {
                let mut r = match method {
                    "PUT" => self.agent.put(&url),
                    "POST" => self.agent.post(&url),
                    other => return Err(err(format!("unsupported method {other}"))),
                };
                if let Some(k) = &self.api_key {
                    r = r.header("api-key", k);
                }
                r.header("content-type", "application/json").send(body.unwrap_or(Value::Null).to_string())
            }
        };
        let mut resp = resp.map_err(|e| err(format!("cannot reach the server: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(|e| err(format!("reading the answer: {e}")))?;
        if status == 404 {
            return Ok(None);
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| err(format!("HTTP {status}, answer is not JSON ({e}): {}", text.chars().take(200).collect::<String>())))?;
        if !(200..300).contains(&status) {
            let msg = v.pointer("/status/error").and_then(|m| m.as_str()).map(String::from).unwrap_or_else(|| text.chars().take(300).collect());
            return Err(err(format!("HTTP {status}: {msg}")));
        }
        Ok(Some(v.get("result").cloned().unwrap_or(Value::Null)))
    }

    fn must(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        self.call(method, path, body)?.ok_or_else(|| KbError::Invalid(format!("{}: no such Qdrant collection; create it with `deepfeed kb add … --kb {}`", self.url(), self.url())))
    }

    /// Opens an existing collection; its dimension comes from its config, its embedder from a
    /// stored point.
    pub fn open(url: &str) -> Result<Self> {
        let mut s = Self::connect(url)?;
        let info = s.must("GET", "", None)?;
        let dim = info.pointer(&format!("/config/params/vectors/{DENSE}/size")).and_then(|v| v.as_u64()).ok_or_else(|| {
            KbError::Invalid(format!("{}: not a deepfeed knowledge base (expected a named vector {DENSE:?} in the collection config)", s.url()))
        })? as usize;
        let first = s.must("POST", "/points/scroll", Some(json!({"limit": 1, "with_payload": ["embedder", "embedder_path"], "with_vector": false})))?;
        let p = first.pointer("/points/0/payload").cloned().unwrap_or(Value::Null);
        let field = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        s.embedder = EmbedderInfo { id: field("embedder"), path: field("embedder_path"), dim };
        Ok(s)
    }

    /// Opens the collection, creating it (dense + sparse vectors, `doc_id` index) when missing.
    /// An existing one must hold vectors of the same embedder.
    pub fn open_or_create(url: &str, embedder: &EmbedderInfo) -> Result<Self> {
        let s = Self::connect(url)?;
        if s.call("GET", "", None)?.is_none() {
            s.must(
                "PUT",
                "",
                Some(json!({"vectors": {DENSE: {"size": embedder.dim, "distance": "Cosine"}}, "sparse_vectors": {SPARSE: {"modifier": "idf"}}})),
            )?;
            s.must("PUT", "/index?wait=true", Some(json!({"field_name": "doc_id", "field_schema": "keyword"})))?;
        }
        let mut s = Self::open(url)?;
        if s.embedder.id.is_empty() {
            s.embedder.id = embedder.id.clone();
            s.embedder.path = embedder.path.clone();
        }
        s.embedder.check_same(embedder, &s.url(), "another collection")?;
        Ok(s)
    }

    fn doc_filter(doc_id: &str) -> Value {
        json!({"must": [{"key": "doc_id", "match": {"value": doc_id}}]})
    }

    fn chunk_from(&self, point: &Value) -> Result<Chunk> {
        let p = point.get("payload").ok_or_else(|| KbError::Invalid(format!("{}: a point without payload: {point}", self.url())))?;
        let s = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        Ok(Chunk {
            id: point.get("id").and_then(|v| v.as_i64()).unwrap_or(0),
            doc_id: s("doc_id"),
            seq: p.get("seq").and_then(|v| v.as_i64()).unwrap_or(0),
            text: s("text"),
            metadata: p.get("metadata").cloned().unwrap_or(Value::Null),
        })
    }

    fn scored(result: &Value) -> Vec<(i64, f32)> {
        result
            .get("points")
            .and_then(|p| p.as_array())
            .map(|a| a.iter().filter_map(|p| Some((p.get("id")?.as_i64()?, p.get("score")?.as_f64()? as f32))).collect())
            .unwrap_or_default()
    }

    fn count(&self, filter: Option<Value>) -> Result<i64> {
        let mut body = json!({"exact": true});
        if let Some(f) = filter {
            body["filter"] = f;
        }
        Ok(self.must("POST", "/points/count", Some(body))?.get("count").and_then(|c| c.as_i64()).unwrap_or(0))
    }
}

impl crate::backend::KbBackend for QdrantStore {
    fn embedder(&self) -> &EmbedderInfo {
        &self.embedder
    }

    fn scratch_dir(&self) -> PathBuf {
        std::env::temp_dir()
    }

    fn document_sha(&self, doc_id: &str) -> Result<Option<String>> {
        let mut f = Self::doc_filter(doc_id);
        f["must"].as_array_mut().expect("array").push(json!({"key": "seq", "match": {"value": 0}}));
        let r = self.must("POST", "/points/scroll", Some(json!({"filter": f, "limit": 1, "with_payload": ["sha256"], "with_vector": false})))?;
        Ok(r.pointer("/points/0/payload/sha256").and_then(|v| v.as_str()).map(String::from))
    }

    fn replace_document(&mut self, doc_id: &str, source: &str, sha256: &str, chunks: &[NewChunk]) -> Result<Replaced> {
        let existed = self.document_sha(doc_id)?.is_some();
        self.must("POST", "/points/delete?wait=true", Some(json!({"filter": Self::doc_filter(doc_id)})))?;
        let point = |seq: usize, c: &NewChunk| {
            if c.embedding.len() != self.embedder.dim {
                return Err(KbError::Invalid(format!("{doc_id} chunk {seq}: vector has {} values, the collection expects {}", c.embedding.len(), self.embedder.dim)));
            }
            let (indices, values) = sparse_tf(&c.text);
            Ok(json!({
                "id": point_id(doc_id, seq),
                "vector": {DENSE: c.embedding, SPARSE: {"indices": indices, "values": values}},
                "payload": {"doc_id": doc_id, "source": source, "seq": seq, "text": c.text, "metadata": c.metadata,
                            "sha256": sha256, "chunks": chunks.len(), "embedder": self.embedder.id, "embedder_path": self.embedder.path},
            }))
        };
        // chunk 0 last: it marks the document as stored
        let order: Vec<usize> = (1..chunks.len()).chain((!chunks.is_empty()).then_some(0)).collect();
        for batch in order.chunks(BATCH) {
            let points = batch.iter().map(|&i| point(i, &chunks[i])).collect::<Result<Vec<_>>>()?;
            self.must("PUT", "/points?wait=true", Some(json!({"points": points})))?;
        }
        Ok(if existed { Replaced::Updated } else { Replaced::Added })
    }

    fn delete_document(&mut self, doc_id: &str) -> Result<usize> {
        let n = self.count(Some(Self::doc_filter(doc_id)))?;
        if n == 0 {
            return Err(KbError::Invalid(format!("{doc_id}: not in {} (see `deepfeed kb stats --docs`)", self.url())));
        }
        self.must("POST", "/points/delete?wait=true", Some(json!({"filter": Self::doc_filter(doc_id)})))?;
        Ok(n as usize)
    }

    fn flush(&mut self) -> Result<()> {
        Ok(()) // every write already waited for Qdrant to apply it
    }

    fn vector_search(&self, query: &[f32], k: usize) -> Result<Vec<(i64, f32)>> {
        if query.len() != self.embedder.dim {
            return Err(KbError::Invalid(format!("query vector has {} values, the collection expects {}", query.len(), self.embedder.dim)));
        }
        if k == 0 {
            return Ok(vec![]);
        }
        let r = self.must("POST", "/points/query", Some(json!({"query": query, "using": DENSE, "limit": k, "with_payload": false})))?;
        Ok(Self::scored(&r))
    }

    fn bm25_search(&self, query: &str, k: usize) -> Result<Vec<(i64, f32)>> {
        let (indices, values) = sparse_query(query);
        if indices.is_empty() || k == 0 {
            return Ok(vec![]);
        }
        let r = self.must("POST", "/points/query", Some(json!({"query": {"indices": indices, "values": values}, "using": SPARSE, "limit": k, "with_payload": false})))?;
        Ok(Self::scored(&r))
    }

    fn chunk(&self, id: i64) -> Result<Chunk> {
        let p = self.call("GET", &format!("/points/{id}"), None)?.ok_or_else(|| KbError::Invalid(format!("{}: no point {id}", self.url())))?;
        self.chunk_from(&p)
    }

    fn documents(&self) -> Result<Vec<DocInfo>> {
        let mut out = Vec::new();
        let mut offset = Value::Null;
        loop {
            let mut body = json!({"filter": {"must": [{"key": "seq", "match": {"value": 0}}]}, "limit": 256, "with_payload": ["doc_id", "source", "sha256", "chunks"], "with_vector": false});
            if !offset.is_null() {
                body["offset"] = offset.clone();
            }
            let r = self.must("POST", "/points/scroll", Some(body))?;
            for p in r.get("points").and_then(|p| p.as_array()).into_iter().flatten() {
                let pl = &p["payload"];
                let s = |k: &str| pl.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                out.push(DocInfo { doc_id: s("doc_id"), source: s("source"), sha256: s("sha256"), chunks: pl.get("chunks").and_then(|v| v.as_i64()).unwrap_or(0) });
            }
            offset = r.get("next_page_offset").cloned().unwrap_or(Value::Null);
            if offset.is_null() {
                break;
            }
        }
        out.sort_by(|a, b| a.doc_id.cmp(&b.doc_id));
        Ok(out)
    }

    fn stats(&self) -> Result<KbStats> {
        let chunks = self.count(None)?;
        Ok(KbStats {
            dir: PathBuf::from(self.url()),
            documents: self.count(Some(json!({"must": [{"key": "seq", "match": {"value": 0}}]})))?,
            chunks,
            vectors_in_index: chunks as usize,
            embedder: self.embedder.clone(),
            generation: 0,
            bytes_on_disk: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_ids_and_sparse_vectors() {
        assert_eq!(parse_url("http://localhost:6333/my_kb").unwrap(), ("http://localhost:6333".into(), "my_kb".into()));
        assert_eq!(parse_url("https://q.example.com/kb/").unwrap(), ("https://q.example.com".into(), "kb".into()));
        assert!(parse_url("http://localhost:6333").is_err());
        assert!(parse_url("http://localhost:6333/a/b").is_err());
        let (a, b) = (point_id("doc", 0), point_id("doc", 1));
        assert!(a >= 0 && b >= 0 && a != b && a == point_id("doc", 0));
        // tf saturates: a word said twice weighs more than once, less than twice as much
        let (idx, val) = sparse_tf("battery battery screen");
        assert_eq!(idx.len(), 2);
        let w = |t: &str| val[idx.iter().position(|&i| i == token_id(t)).unwrap()];
        assert!(w("battery") > w("screen") && w("battery") < 2.0 * w("screen"));
        assert!(idx.windows(2).all(|p| p[0] < p[1]));
    }
}
