//! The embedded knowledge base end to end on a tiny random BERT written by the test: add a folder,
//! search (BM25, vector, hybrid), update a changed file, delete, and reopen after a crash left
//! the vector index behind the database.
mod common;
use common::TempDir;

use std::path::Path;

use deepfeed_kb::add::{add_sources, doc_id_for, AddOptions};
use deepfeed_kb::store::{EmbedderInfo, NewChunk, INDEX_FILE, INDEX_META_FILE};
use deepfeed_kb::tiny_bert::{write_tiny_bert, TinyBertSpec};
use deepfeed_kb::{Embedder, KbStore, Mode, Retriever, TextKind};
use serde_json::json;
use deepfeed_model::backend::inference_device;

fn setup(d: &Path) -> Embedder<'static> {
    write_tiny_bert(&d.join("bert"), &TinyBertSpec::default()).unwrap();
    let docs = d.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("warranty.md"), "# Warranty\n\nThe warranty covers parts and labour for two years after purchase.\n\nContact support@example.com for claims.\n").unwrap();
    std::fs::write(docs.join("returns.txt"), "Returns are accepted within thirty days if the product is unused.\n").unwrap();
    std::fs::write(docs.join("zh.md"), "# 保修\n\n保修期为购买后两年，包括零件和人工。\n\n# 发票\n\n发票在每个月初通过电子邮件发送。\n").unwrap();
    Embedder::encoder(&d.join("bert"), &inference_device()).unwrap()
}

fn info(e: &Embedder, d: &Path) -> EmbedderInfo {
    EmbedderInfo { id: e.id(), path: d.join("bert").display().to_string(), dim: e.dim() }
}

#[test]
fn add_search_update_delete_and_reopen() {
    let d = TempDir::new();
    let e = setup(d.path());
    let kb = d.path().join("kb");
    let mut store = KbStore::open_or_create(&kb, &info(&e, d.path())).unwrap();
    let opts = AddOptions { ingest: deepfeed_data::ingest::IngestOptions { chunk_tokens: 16, overlap_tokens: 0, ..Default::default() }, ..Default::default() };
    let r = add_sources(&mut store, &e, &[d.path().join("docs")], &opts, &mut |_| {}).unwrap();
    assert_eq!((r.added, r.updated, r.unchanged), (3, 0, 0));
    assert_eq!(r.pii.get("EMAIL"), Some(&1), "the e-mail address is masked before storing");
    let stats = store.stats().unwrap();
    assert_eq!(stats.documents, 3);
    assert!(stats.chunks >= 5, "{stats:?}");
    assert_eq!(stats.vectors_in_index as i64, stats.chunks);

    let retriever = Retriever::new(&store, Some(&e));
    let hits = retriever.search("how long is the warranty", 3, Mode::Bm25).unwrap();
    // (the short heading chunk "# Warranty" ranks first: BM25 favours short chunks)
    assert!(hits[..2].iter().all(|h| h.source.ends_with("warranty.md")) && hits[..2].iter().any(|h| h.text.contains("two years")), "{hits:?}");
    let hits = retriever.search("发票什么时候发送", 2, Mode::Bm25).unwrap();
    assert!(hits[0].text.contains("发票在每个月初"), "{hits:?}");
    // vector search finds a chunk by its own text as the best match (cosine 1)
    let hits = retriever.search("Returns are accepted within thirty days if the product is unused.", 1, Mode::Vector).unwrap();
    assert!(hits[0].source.ends_with("returns.txt") && hits[0].score > 0.999, "{hits:?}");
    let hits = retriever.search("returns within thirty days", 3, Mode::Hybrid).unwrap();
    assert!(hits[0].source.ends_with("returns.txt") && hits[0].bm25_rank == Some(1), "{hits:?}");
    assert!(hits.iter().all(|h| !h.text.contains("support@example.com")));

    // unchanged files are skipped; a changed file replaces its chunks
    let r = add_sources(&mut store, &e, &[d.path().join("docs")], &opts, &mut |_| {}).unwrap();
    assert_eq!((r.added, r.updated, r.unchanged), (0, 0, 3));
    std::fs::write(d.path().join("docs/returns.txt"), "Returns are accepted within ninety days, opened or not.\n").unwrap();
    let r = add_sources(&mut store, &e, &[d.path().join("docs")], &opts, &mut |_| {}).unwrap();
    assert_eq!((r.added, r.updated, r.unchanged), (0, 1, 2));
    let retriever = Retriever::new(&store, Some(&e));
    let hits = retriever.search("returns thirty days", 10, Mode::Hybrid).unwrap();
    assert!(hits.iter().all(|h| !h.text.contains("thirty")), "old chunks are gone: {hits:?}");
    assert!(hits.iter().any(|h| h.text.contains("ninety")));
    let chunks_before = store.stats().unwrap().chunks;

    // delete by document id
    let id = doc_id_for(&d.path().join("docs/warranty.md").display().to_string());
    let n = store.delete_document(&id).unwrap();
    assert!(n >= 1);
    store.flush().unwrap();
    assert!(store.delete_document(&id).unwrap_err().to_string().contains("not in"));
    drop(store);

    let store = KbStore::open(&kb).unwrap();
    let s = store.stats().unwrap();
    assert_eq!((s.documents, s.chunks, s.vectors_in_index as i64), (2, chunks_before - n as i64, chunks_before - n as i64));
    let retriever = Retriever::new(&store, Some(&e));
    assert!(retriever.search("warranty labour", 5, Mode::Hybrid).unwrap().iter().all(|h| !h.source.ends_with("warranty.md")));

    // another embedder cannot write into this knowledge base
    let other = EmbedderInfo { id: "encoder:other".into(), path: "x".into(), dim: 32 };
    drop(store);
    let err = KbStore::open_or_create(&kb, &other).err().unwrap().to_string();
    assert!(err.contains("built with embedder encoder:bert"), "{err}");
}

#[test]
fn a_stale_or_broken_vector_index_is_repaired_at_open() {
    let d = TempDir::new();
    let e = setup(d.path());
    let kb = d.path().join("kb");
    let mut store = KbStore::open_or_create(&kb, &info(&e, d.path())).unwrap();
    add_sources(&mut store, &e, &[d.path().join("docs")], &AddOptions::default(), &mut |_| {}).unwrap(); // saves the index
    // committed writes after the last index save, then the process dies (no flush)
    let text = "Gift cards cannot be exchanged for cash.";
    let v = e.embed(&[text], TextKind::Passage).unwrap().remove(0);
    store.replace_document("extra", "extra.txt", "sha-1", &[NewChunk { text: text.into(), metadata: json!({"source": "extra.txt"}), embedding: v }]).unwrap();
    store.delete_document(&doc_id_for(&d.path().join("docs/returns.txt").display().to_string())).unwrap();
    let expected = store.stats().unwrap().chunks;
    let db_generation = store.generation().unwrap();
    drop(store);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(kb.join(INDEX_META_FILE)).unwrap()).unwrap();
    assert!(saved["generation"].as_i64().unwrap() < db_generation, "the saved index is behind the database");

    let store = KbStore::open(&kb).unwrap();
    assert_eq!(store.stats().unwrap().vectors_in_index as i64, expected, "the change log was replayed");
    let retriever = Retriever::new(&store, Some(&e));
    let hits = retriever.search(text, 1, Mode::Vector).unwrap();
    assert!(hits[0].doc_id == "extra" && hits[0].score > 0.999, "{hits:?}");
    assert!(retriever.search("returns thirty days", 5, Mode::Hybrid).unwrap().iter().all(|h| !h.source.ends_with("returns.txt")));
    drop(store);

    // an index file that cannot be read is rebuilt from the stored embeddings
    std::fs::write(kb.join(INDEX_FILE), b"garbage").unwrap();
    let store = KbStore::open(&kb).unwrap();
    assert_eq!(store.stats().unwrap().vectors_in_index as i64, expected);
}

#[test]
fn wrong_places_are_clear_errors() {
    let d = TempDir::new();
    let err = KbStore::open(d.path()).err().unwrap().to_string();
    assert!(err.contains("not a knowledge base") && err.contains("kb add"), "{err}");
    std::fs::write(d.path().join("notes.txt"), "x").unwrap();
    let info = EmbedderInfo { id: "encoder:x".into(), path: "x".into(), dim: 4 };
    let err = KbStore::open_or_create(d.path(), &info).err().unwrap().to_string();
    assert!(err.contains("is not a knowledge base"), "{err}");
}

