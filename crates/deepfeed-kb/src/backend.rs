//! The seam between the `kb` commands / retrieval and where chunks live: the embedded store
//! ([`KbStore`], a directory) or a Qdrant collection ([`QdrantStore`], `http(s)://host:6333/NAME`).
//! [`crate::add::add_sources`] and [`crate::retrieve::Retriever`] work on `dyn KbBackend`.
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::qdrant::QdrantStore;
use crate::store::{Chunk, DocInfo, EmbedderInfo, KbStats, KbStore, NewChunk, Replaced};

/// What a knowledge base must do for `kb add/search/stats/delete`, chat and the server.
pub trait KbBackend: Send {
    /// The embedder the stored vectors came from.
    fn embedder(&self) -> &EmbedderInfo;
    /// Where `kb add` may write its temporary ingest file.
    fn scratch_dir(&self) -> PathBuf;
    /// The sha256 a document was stored with (`None`: not stored).
    fn document_sha(&self, doc_id: &str) -> Result<Option<String>>;
    /// Stores a document's chunks, replacing an older version.
    fn replace_document(&mut self, doc_id: &str, source: &str, sha256: &str, chunks: &[NewChunk]) -> Result<Replaced>;
    /// Removes a document; returns the number of chunks removed.
    fn delete_document(&mut self, doc_id: &str) -> Result<usize>;
    /// Makes what was written durable (the embedded store saves its index).
    fn flush(&mut self) -> Result<()>;
    /// Nearest chunks to a unit vector: (chunk id, cosine similarity), best first.
    fn vector_search(&self, query: &[f32], k: usize) -> Result<Vec<(i64, f32)>>;
    /// BM25 over CJK-aware tokens: (chunk id, score), best first.
    fn bm25_search(&self, query: &str, k: usize) -> Result<Vec<(i64, f32)>>;
    fn chunk(&self, id: i64) -> Result<Chunk>;
    fn documents(&self) -> Result<Vec<DocInfo>>;
    fn stats(&self) -> Result<KbStats>;
}

impl KbBackend for KbStore {
    fn embedder(&self) -> &EmbedderInfo {
        &self.embedder
    }
    fn scratch_dir(&self) -> PathBuf {
        self.dir.clone()
    }
    fn document_sha(&self, doc_id: &str) -> Result<Option<String>> {
        KbStore::document_sha(self, doc_id)
    }
    fn replace_document(&mut self, doc_id: &str, source: &str, sha256: &str, chunks: &[NewChunk]) -> Result<Replaced> {
        KbStore::replace_document(self, doc_id, source, sha256, chunks)
    }
    fn delete_document(&mut self, doc_id: &str) -> Result<usize> {
        KbStore::delete_document(self, doc_id)
    }
    fn flush(&mut self) -> Result<()> {
        KbStore::flush(self)
    }
    fn vector_search(&self, query: &[f32], k: usize) -> Result<Vec<(i64, f32)>> {
        KbStore::vector_search(self, query, k)
    }
    fn bm25_search(&self, query: &str, k: usize) -> Result<Vec<(i64, f32)>> {
        KbStore::bm25_search(self, query, k)
    }
    fn chunk(&self, id: i64) -> Result<Chunk> {
        KbStore::chunk(self, id)
    }
    fn documents(&self) -> Result<Vec<DocInfo>> {
        KbStore::documents(self)
    }
    fn stats(&self) -> Result<KbStats> {
        KbStore::stats(self)
    }
}

/// `--kb` names a Qdrant collection (`http://` or `https://` URL) rather than a directory.
pub fn is_remote(kb: &Path) -> bool {
    kb.to_str().is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"))
}

/// Opens an existing knowledge base: a directory, or a Qdrant collection URL.
pub fn open(kb: &Path) -> Result<Box<dyn KbBackend>> {
    match kb.to_str().filter(|_| is_remote(kb)) {
        Some(url) => Ok(Box::new(QdrantStore::open(url)?)),
        None => Ok(Box::new(KbStore::open(kb)?)),
    }
}

/// Opens a knowledge base, creating it for `embedder` when it does not exist yet.
pub fn open_or_create(kb: &Path, embedder: &EmbedderInfo) -> Result<Box<dyn KbBackend>> {
    match kb.to_str().filter(|_| is_remote(kb)) {
        Some(url) => Ok(Box::new(QdrantStore::open_or_create(url, embedder)?)),
        None => Ok(Box::new(KbStore::open_or_create(kb, embedder)?)),
    }
}
