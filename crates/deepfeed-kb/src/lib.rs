//! deepfeed-kb: a knowledge base the model reads at answer time.
//!
//! - [`embed`]: sentence encoders in Hugging Face / sentence-transformers layout ([`bert`]), or
//!   the chat model's mean-pooled hidden states as a fallback.
//! - [`store`]: the embedded store (SQLite + usearch HNSW in one directory, crash-safe batches);
//!   [`qdrant`]: a Qdrant collection over REST; [`backend::KbBackend`]: what both do.
//! - [`add`]: documents → ingest → clean/PII → chunks → embeddings → store.
//! - [`bm25`], [`retrieve`]: BM25 with CJK-aware tokens, vector search, reciprocal rank fusion,
//!   optional rerank by the chat model's log-likelihood. [`retrieve::Retriever`] is the API.
//! - [`rag`]: passages into a prompt within a token budget, with citations.
//! - [`semantic_dedup`]: near-duplicate samples by meaning. [`bench`]: quality and latency.
pub mod add;
pub mod backend;
pub mod bench;
pub mod bert;
pub mod bm25;
pub mod embed;
pub mod error;
pub mod qdrant;
pub mod rag;
pub mod retrieve;
pub mod semantic_dedup;
pub mod store;
pub mod tiny_bert;

pub use embed::{Embedder, TextKind};
pub use error::{KbError, Result};
pub use retrieve::{Hit, Mode, Retriever};
pub use backend::KbBackend;
pub use store::KbStore;
