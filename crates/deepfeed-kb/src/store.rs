//! The embedded knowledge base: one directory, no server.
//!
//! - `kb.sqlite` (SQLite, WAL): documents, chunks (text, metadata, embedding), a full-text table
//!   of BM25 tokens (FTS5) and a change log. SQLite is the source of truth: every batch (one
//!   document's chunks) is written in one transaction, so a crash loses at most the batch in
//!   flight.
//! - `vectors.usearch` + `vectors.json`: the HNSW index (usearch) and the change generation it
//!   reflects. It is saved (temp file + rename) at the end of a command, not per batch; at open,
//!   the changes logged after that generation are replayed onto it (idempotently), so an index
//!   left behind by a kill is brought up to date instead of trusted.
//!
//! Why usearch: measured here on 100k×384 vectors it reached recall@10 0.997 at 0.39 ms per query
//! (ef=64) with a 3 CPU-minute build and 35 crates; hnsw_rs needed ~3× the CPU per query, LanceDB
//! a 77 CPU-minute build and a 234 MB binary, and qdrant-edge does not compile on Rust 1.95
//! (docs/kb.md and the research notes have the numbers).
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::bm25;
use crate::error::{KbError, Result};

pub const DB_FILE: &str = "kb.sqlite";
pub const INDEX_FILE: &str = "vectors.usearch";
pub const INDEX_META_FILE: &str = "vectors.json";

/// HNSW parameters (usearch): graph degree 16, ef 128 while building, 64 (default) when searching.
pub const CONNECTIVITY: usize = 16;
pub const EXPANSION_ADD: usize = 128;
pub const EXPANSION_SEARCH: usize = 64;

const OP_ADD: i64 = 1;
const OP_DELETE: i64 = 2;

/// What the store knows about the embedder its vectors came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EmbedderInfo {
    /// `encoder:<name>` or `chat-model:<name>`
    pub id: String,
    /// Where it was loaded from (used when `kb search` is given no `--embedder`).
    pub path: String,
    pub dim: usize,
}

impl EmbedderInfo {
    /// An error unless `given` is the encoder (id and dimension) these vectors came from; `place`
    /// names the knowledge base, `instead` what to do about it.
    pub fn check_same(&self, given: &EmbedderInfo, place: &str, instead: &str) -> Result<()> {
        if self.id != given.id || self.dim != given.dim {
            return Err(KbError::Invalid(format!(
                "{place}: built with embedder {} ({} dims), but {} ({} dims) was given; use the same --embedder or {instead}",
                self.id, self.dim, given.id, given.dim
            )));
        }
        Ok(())
    }
}

/// A chunk to store.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub text: String,
    /// Provenance (source, chunk, page, row, …) as ingest wrote it.
    pub metadata: Value,
    /// Unit vector of length `dim`.
    pub embedding: Vec<f32>,
}

/// A stored chunk.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Chunk {
    pub id: i64,
    pub doc_id: String,
    pub seq: i64,
    pub text: String,
    pub metadata: Value,
}

impl Chunk {
    pub fn source(&self) -> &str {
        self.metadata.get("source").and_then(|s| s.as_str()).unwrap_or(&self.doc_id)
    }
    pub fn page(&self) -> Option<u64> {
        self.metadata.get("page").and_then(|p| p.as_u64())
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DocInfo {
    pub doc_id: String,
    pub source: String,
    pub sha256: String,
    pub chunks: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KbStats {
    pub dir: PathBuf,
    pub documents: i64,
    pub chunks: i64,
    pub vectors_in_index: usize,
    pub embedder: EmbedderInfo,
    pub generation: i64,
    pub bytes_on_disk: u64,
}

/// What `replace_document` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// The document was new.
    Added,
    /// An older version (other sha256) was replaced.
    Updated,
}

pub struct KbStore {
    pub dir: PathBuf,
    db: Connection,
    index: Index,
    pub embedder: EmbedderInfo,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> KbError + '_ {
    move |e| KbError::Db { path: path.to_path_buf(), message: e.to_string() }
}

fn index_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> KbError + '_ {
    move |e| KbError::Index { path: path.to_path_buf(), message: e.to_string() }
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn new_index(dim: usize, path: &Path) -> Result<Index> {
    let opts = IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: CONNECTIVITY,
        expansion_add: EXPANSION_ADD,
        expansion_search: EXPANSION_SEARCH,
        multi: false,
    };
    Index::new(&opts).map_err(index_err(path))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs(doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, sha256 TEXT NOT NULL, chunks INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY AUTOINCREMENT, doc_id TEXT NOT NULL, seq INTEGER NOT NULL,
    text TEXT NOT NULL, metadata TEXT NOT NULL, embedding BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(tokens);
CREATE TABLE IF NOT EXISTS changes(gen INTEGER NOT NULL, op INTEGER NOT NULL, chunk_id INTEGER NOT NULL);
";

impl KbStore {
    /// Opens the knowledge base in `dir`, creating it for `embedder` when it does not exist.
    /// An existing one must have been built with the same embedder (id and dimension).
    pub fn open_or_create(dir: &Path, embedder: &EmbedderInfo) -> Result<Self> {
        if !dir.join(DB_FILE).is_file() {
            if dir.exists() && std::fs::read_dir(dir).map_err(|e| KbError::io(dir, e))?.next().is_some() {
                return Err(KbError::Invalid(format!(
                    "{}: exists and is not a knowledge base (no {DB_FILE}); give a new or empty directory",
                    dir.display()
                )));
            }
            std::fs::create_dir_all(dir).map_err(|e| KbError::io(dir, e))?;
            let path = dir.join(DB_FILE);
            let db = Connection::open(&path).map_err(db_err(&path))?;
            Self::pragmas(&db, &path)?;
            db.execute_batch(SCHEMA).map_err(db_err(&path))?;
            db.execute(
                "INSERT INTO meta(key, value) VALUES ('embedder', ?1), ('embedder_path', ?2), ('dim', ?3), ('generation', '0'), ('format', '1')",
                params![embedder.id, embedder.path, embedder.dim.to_string()],
            )
            .map_err(db_err(&path))?;
        }
        let kb = Self::open(dir)?;
        kb.embedder.check_same(embedder, &dir.display().to_string(), "a new --kb directory")?;
        Ok(kb)
    }

    fn pragmas(db: &Connection, path: &Path) -> Result<()> {
        // WAL: readers never block the writer; FULL: a committed batch survives power loss too
        db.pragma_update(None, "journal_mode", "WAL").map_err(db_err(path))?;
        db.pragma_update(None, "synchronous", "FULL").map_err(db_err(path))?;
        db.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_err(path))?;
        Ok(())
    }

    /// Opens an existing knowledge base and brings its vector index up to date.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(DB_FILE);
        if !path.is_file() {
            return Err(KbError::Invalid(format!("{}: not a knowledge base ({DB_FILE} not found); create one with `deepfeed kb add`", dir.display())));
        }
        let db = Connection::open(&path).map_err(db_err(&path))?;
        Self::pragmas(&db, &path)?;
        db.execute_batch(SCHEMA).map_err(db_err(&path))?;
        let meta = |k: &str| -> Result<String> {
            db.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get::<_, String>(0))
                .optional()
                .map_err(db_err(&path))?
                .ok_or_else(|| KbError::Db { path: path.clone(), message: format!("table meta: key `{k}` missing") })
        };
        let dim: usize = meta("dim")?.parse().map_err(|_| KbError::Db { path: path.clone(), message: "meta `dim` is not a number".into() })?;
        let embedder = EmbedderInfo { id: meta("embedder")?, path: meta("embedder_path")?, dim };
        let index_path = dir.join(INDEX_FILE);
        let mut kb = KbStore { dir: dir.into(), db, index: new_index(dim, &index_path)?, embedder };
        kb.load_index()?;
        Ok(kb)
    }

    pub fn generation(&self) -> Result<i64> {
        let path = self.db_path();
        let g: String = self.db.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| r.get(0)).map_err(db_err(&path))?;
        Ok(g.parse().unwrap_or(0))
    }

    fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }

    /// Loads the saved index (if any) and replays the changes logged after it; rebuilds from the
    /// stored embeddings when the saved index is missing or unreadable.
    fn load_index(&mut self) -> Result<()> {
        let index_path = self.dir.join(INDEX_FILE);
        let meta_path = self.dir.join(INDEX_META_FILE);
        let saved_gen: Option<i64> = if index_path.is_file() && meta_path.is_file() {
            std::fs::read(&meta_path).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()).and_then(|v| v.get("generation").and_then(|g| g.as_i64()))
        } else {
            None
        };
        let loaded = match saved_gen {
            Some(g) => match self.index.load(&index_path.to_string_lossy()) {
                Ok(()) if self.index.dimensions() == self.embedder.dim => Some(g),
                _ => None,
            },
            None => None,
        };
        let path = self.db_path();
        match loaded {
            Some(g) => {
                let mut stmt = self
                    .db
                    .prepare("SELECT c.op, c.chunk_id, k.embedding FROM changes c LEFT JOIN chunks k ON k.id = c.chunk_id WHERE c.gen > ?1 ORDER BY c.rowid")
                    .map_err(db_err(&path))?;
                let rows: Vec<(i64, i64, Option<Vec<u8>>)> =
                    stmt.query_map([g], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(db_err(&path))?.collect::<std::result::Result<_, _>>().map_err(db_err(&path))?;
                drop(stmt);
                for (op, id, emb) in rows {
                    match (op, emb) {
                        // the chunk may have been deleted later in the log: then it has no row
                        (OP_ADD, Some(e)) => self.index_add(id as u64, &from_blob(&e))?,
                        (OP_ADD, None) => {}
                        _ => {
                            self.index.remove(id as u64).map_err(index_err(&index_path))?;
                        }
                    }
                }
            }
            None => self.rebuild_index()?,
        }
        Ok(())
    }

    /// Builds the vector index from the embeddings in the database.
    pub fn rebuild_index(&mut self) -> Result<()> {
        let index_path = self.dir.join(INDEX_FILE);
        self.index = new_index(self.embedder.dim, &index_path)?;
        let path = self.db_path();
        let n: i64 = self.db.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0)).map_err(db_err(&path))?;
        self.index.reserve(n as usize + 1024).map_err(index_err(&index_path))?;
        let mut stmt = self.db.prepare("SELECT id, embedding FROM chunks").map_err(db_err(&path))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))).map_err(db_err(&path))?;
        for row in rows {
            let (id, e) = row.map_err(db_err(&path))?;
            self.index.add(id as u64, &from_blob(&e)).map_err(index_err(&index_path))?;
        }
        Ok(())
    }

    /// Adds a vector unless the key is already there (replaying the log twice is harmless).
    fn index_add(&self, key: u64, v: &[f32]) -> Result<()> {
        let index_path = self.dir.join(INDEX_FILE);
        if self.index.contains(key) {
            return Ok(());
        }
        if self.index.size() + 1 > self.index.capacity() {
            let grow = (self.index.capacity() * 2).max(1024);
            self.index.reserve(grow).map_err(index_err(&index_path))?;
        }
        self.index.add(key, v).map_err(index_err(&index_path))
    }

    /// The sha256 stored for a document, if it is in the knowledge base.
    pub fn document_sha(&self, doc_id: &str) -> Result<Option<String>> {
        let path = self.db_path();
        self.db.query_row("SELECT sha256 FROM docs WHERE doc_id = ?1", [doc_id], |r| r.get(0)).optional().map_err(db_err(&path))
    }

    /// Writes a document's chunks in one transaction, replacing the chunks of an earlier version.
    pub fn replace_document(&mut self, doc_id: &str, source: &str, sha256: &str, chunks: &[NewChunk]) -> Result<Replaced> {
        self.write_document(doc_id, Some((source, sha256)), chunks)
    }

    /// One transaction: the document's old chunks out, `chunks` in, its `docs` row upserted
    /// (or deleted when `doc` is None), the generation bumped and every change logged.
    fn write_document(&mut self, doc_id: &str, doc: Option<(&str, &str)>, chunks: &[NewChunk]) -> Result<Replaced> {
        for (i, c) in chunks.iter().enumerate() {
            if c.embedding.len() != self.embedder.dim {
                return Err(KbError::Invalid(format!(
                    "{doc_id}: chunk {i}: embedding has {} values, the knowledge base expects {}",
                    c.embedding.len(),
                    self.embedder.dim
                )));
            }
        }
        let path = self.db_path();
        let e = db_err(&path);
        let tx = self.db.transaction().map_err(&e)?;
        let gen: i64 = tx.query_row("SELECT CAST(value AS INTEGER) + 1 FROM meta WHERE key = 'generation'", [], |r| r.get(0)).map_err(&e)?;
        let old: Vec<i64> = {
            let mut stmt = tx.prepare("SELECT id FROM chunks WHERE doc_id = ?1").map_err(&e)?;
            let ids = stmt.query_map([doc_id], |r| r.get(0)).map_err(&e)?.collect::<std::result::Result<_, _>>().map_err(&e)?;
            ids
        };
        for id in &old {
            tx.execute("DELETE FROM chunks_fts WHERE rowid = ?1", [id]).map_err(&e)?;
            tx.execute("INSERT INTO changes(gen, op, chunk_id) VALUES (?1, ?2, ?3)", params![gen, OP_DELETE, id]).map_err(&e)?;
        }
        tx.execute("DELETE FROM chunks WHERE doc_id = ?1", [doc_id]).map_err(&e)?;
        let mut new_ids = Vec::with_capacity(chunks.len());
        for (seq, c) in chunks.iter().enumerate() {
            tx.execute(
                "INSERT INTO chunks(doc_id, seq, text, metadata, embedding) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![doc_id, seq as i64, c.text, c.metadata.to_string(), to_blob(&c.embedding)],
            )
            .map_err(&e)?;
            let id = tx.last_insert_rowid();
            tx.execute("INSERT INTO chunks_fts(rowid, tokens) VALUES (?1, ?2)", params![id, bm25::tokens(&c.text).join(" ")]).map_err(&e)?;
            tx.execute("INSERT INTO changes(gen, op, chunk_id) VALUES (?1, ?2, ?3)", params![gen, OP_ADD, id]).map_err(&e)?;
            new_ids.push(id);
        }
        match doc {
            Some((source, sha256)) => tx.execute(
                "INSERT INTO docs(doc_id, source, sha256, chunks) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(doc_id) DO UPDATE SET source = excluded.source, sha256 = excluded.sha256, chunks = excluded.chunks",
                params![doc_id, source, sha256, chunks.len() as i64],
            ),
            None => tx.execute("DELETE FROM docs WHERE doc_id = ?1", [doc_id]),
        }
        .map_err(&e)?;
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'generation'", [gen.to_string()]).map_err(&e)?;
        tx.commit().map_err(&e)?;
        // committed: now the in-memory index (saved by `flush`)
        let index_path = self.dir.join(INDEX_FILE);
        for id in &old {
            self.index.remove(*id as u64).map_err(index_err(&index_path))?;
        }
        for (id, c) in new_ids.iter().zip(chunks) {
            self.index_add(*id as u64, &c.embedding)?;
        }
        Ok(if old.is_empty() { Replaced::Added } else { Replaced::Updated })
    }

    /// Removes a document and its chunks; returns how many chunks went.
    pub fn delete_document(&mut self, doc_id: &str) -> Result<usize> {
        if self.document_sha(doc_id)?.is_none() {
            return Err(KbError::Invalid(format!("document {doc_id:?} is not in {} (see `deepfeed kb stats --docs`)", self.dir.display())));
        }
        let n = self.chunk_ids(doc_id)?.len();
        self.write_document(doc_id, None, &[])?;
        Ok(n)
    }

    fn chunk_ids(&self, doc_id: &str) -> Result<Vec<i64>> {
        let path = self.db_path();
        let mut stmt = self.db.prepare("SELECT id FROM chunks WHERE doc_id = ?1").map_err(db_err(&path))?;
        let ids = stmt.query_map([doc_id], |r| r.get(0)).map_err(db_err(&path))?.collect::<std::result::Result<_, _>>().map_err(db_err(&path))?;
        Ok(ids)
    }

    /// Saves the vector index (temp file + rename, then its generation) and drops the change log
    /// it covers.
    pub fn flush(&mut self) -> Result<()> {
        let gen = self.generation()?;
        let index_path = self.dir.join(INDEX_FILE);
        let tmp = self.dir.join(format!("{INDEX_FILE}.tmp"));
        self.index.save(&tmp.to_string_lossy()).map_err(index_err(&tmp))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| KbError::io(&tmp, e))?;
        std::fs::rename(&tmp, &index_path).map_err(|e| KbError::io(&index_path, e))?;
        let meta_path = self.dir.join(INDEX_META_FILE);
        deepfeed_model::fsutil::write_file_atomically(&meta_path, serde_json::json!({"generation": gen, "vectors": self.index.size()}).to_string().as_bytes())?;
        let path = self.db_path();
        self.db.execute("DELETE FROM changes WHERE gen <= ?1", [gen]).map_err(db_err(&path))?;
        Ok(())
    }

    /// Nearest chunks to a unit vector: (chunk id, cosine similarity), best first.
    pub fn vector_search(&self, query: &[f32], k: usize) -> Result<Vec<(i64, f32)>> {
        if query.len() != self.embedder.dim {
            return Err(KbError::Invalid(format!("query vector has {} values, the knowledge base expects {}", query.len(), self.embedder.dim)));
        }
        let k = k.min(self.index.size());
        if k == 0 {
            return Ok(vec![]);
        }
        let m = self.index.search(query, k).map_err(index_err(&self.dir.join(INDEX_FILE)))?;
        Ok(m.keys.iter().zip(&m.distances).map(|(&key, &d)| (key as i64, 1.0 - d)).collect())
    }

    /// BM25 over CJK-aware tokens (SQLite FTS5's `bm25()`, k1 = 1.2, b = 0.75): (chunk id,
    /// score), best first.
    pub fn bm25_search(&self, query: &str, k: usize) -> Result<Vec<(i64, f32)>> {
        let mut toks = bm25::tokens(query);
        toks.sort();
        toks.dedup();
        if toks.is_empty() || k == 0 {
            return Ok(vec![]);
        }
        let expr = toks.iter().map(|t| format!("\"{}\"", t.replace('"', "\"\""))).collect::<Vec<_>>().join(" OR ");
        let path = self.db_path();
        let mut stmt = self
            .db
            .prepare("SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?1 ORDER BY bm25(chunks_fts) LIMIT ?2")
            .map_err(db_err(&path))?;
        let rows = stmt.query_map(params![expr, k as i64], |r| Ok((r.get::<_, i64>(0)?, -(r.get::<_, f64>(1)? as f32)))).map_err(db_err(&path))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err(&path))
    }

    pub fn chunk(&self, id: i64) -> Result<Chunk> {
        let path = self.db_path();
        self.db
            .query_row("SELECT id, doc_id, seq, text, metadata FROM chunks WHERE id = ?1", [id], |r| {
                Ok(Chunk { id: r.get(0)?, doc_id: r.get(1)?, seq: r.get(2)?, text: r.get(3)?, metadata: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or(Value::Null) })
            })
            .map_err(db_err(&path))
    }

    pub fn documents(&self) -> Result<Vec<DocInfo>> {
        let path = self.db_path();
        let mut stmt = self.db.prepare("SELECT doc_id, source, sha256, chunks FROM docs ORDER BY doc_id").map_err(db_err(&path))?;
        let rows = stmt.query_map([], |r| Ok(DocInfo { doc_id: r.get(0)?, source: r.get(1)?, sha256: r.get(2)?, chunks: r.get(3)? })).map_err(db_err(&path))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err(&path))
    }

    pub fn stats(&self) -> Result<KbStats> {
        let path = self.db_path();
        let count = |sql: &str| -> Result<i64> { self.db.query_row(sql, [], |r| r.get(0)).map_err(db_err(&path)) };
        let bytes_on_disk = std::fs::read_dir(&self.dir).map_err(|e| KbError::io(&self.dir, e))?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
        Ok(KbStats {
            dir: self.dir.clone(),
            documents: count("SELECT COUNT(*) FROM docs")?,
            chunks: count("SELECT COUNT(*) FROM chunks")?,
            vectors_in_index: self.index.size(),
            embedder: self.embedder.clone(),
            generation: self.generation()?,
            bytes_on_disk,
        })
    }

    /// Sets how many candidates HNSW explores per query (higher: better recall, slower).
    pub fn set_expansion_search(&self, ef: usize) {
        self.index.change_expansion_search(ef);
    }
}
