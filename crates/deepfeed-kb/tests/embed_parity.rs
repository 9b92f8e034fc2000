//! Sentence embeddings against sentence-transformers: exact parity on a Python-made tiny BERT
//! (tests/fixtures, scripts/make_kb_reference.py), and on the real all-MiniLM-L6-v2 (ignored:
//! needs `scripts/fetch_models.sh`; run with
//! `cargo test --release -p deepfeed-kb --test embed_parity -- --ignored`).
mod common;
use common::TempDir;

use std::path::{Path, PathBuf};

use deepfeed_kb::embed::SentenceEncoder;
use deepfeed_kb::{Embedder, TextKind};
use deepfeed_model::backend::inference_device;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn reference(name: &str) -> (Vec<String>, Vec<Vec<f32>>) {
    let v: Value = serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap();
    let texts = v.get("texts").or_else(|| v.get("sentences")).unwrap().as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let emb = v["embeddings"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect();
    (texts, emb)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

#[test]
fn tiny_bert_matches_sentence_transformers_in_batches_with_padding_and_truncation() {
    let (texts, expected) = reference("tiny-bert-expected.json");
    let mut enc = SentenceEncoder::load(&fixture("tiny-bert"), &inference_device()).unwrap();
    assert_eq!(enc.max_seq_length, 24, "from sentence_bert_config.json");
    assert!(enc.normalize);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for batch in [1, 5, 32] {
        enc.batch_size = batch;
        let got = enc.encode_raw(&refs).unwrap();
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            let max_diff = g.iter().zip(e).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(max_diff < 2e-5, "batch {batch}, text {i} ({:?}): max |diff| {max_diff}", texts[i]);
        }
    }
}

#[test]
fn embedder_returns_unit_vectors_and_names_itself() {
    let e = Embedder::encoder(&fixture("tiny-bert"), &inference_device()).unwrap();
    assert_eq!(e.dim(), 32);
    assert_eq!(e.id(), "encoder:tiny-bert");
    let v = e.embed(&["hello", "保修期"], TextKind::Query).unwrap();
    for x in &v {
        assert!((x.iter().map(|a| a * a).sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn a_directory_that_is_not_an_encoder_is_a_clear_error() {
    let d = TempDir::new();
    let err = SentenceEncoder::load(d.path(), &inference_device()).err().unwrap().to_string();
    assert!(err.contains("not an encoder directory") && err.contains("config.json"), "{err}");
    std::fs::write(d.path().join("config.json"), r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8, "max_position_embeddings": 8}"#).unwrap();
    let err = SentenceEncoder::load(d.path(), &inference_device()).err().unwrap().to_string();
    assert!(err.contains("model_type") && err.contains("llama"), "{err}");
}

fn minilm_dir() -> PathBuf {
    let cache = std::env::var_os("DEEPFEED_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/deepfeed"));
    cache.join("all-minilm-l6-v2")
}

#[test]
#[ignore = "needs the real all-MiniLM-L6-v2: scripts/fetch_models.sh"]
fn minilm_matches_sentence_transformers_on_50_sentences() {
    let dir = minilm_dir();
    assert!(dir.is_dir(), "{} missing: run scripts/fetch_models.sh", dir.display());
    let (texts, expected) = reference("minilm_reference.json");
    assert_eq!(texts.len(), 50);
    let mut enc = SentenceEncoder::load(&dir, &inference_device()).unwrap();
    enc.batch_size = 16;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = enc.encode_raw(&refs).unwrap();
    let mut worst = 1f32;
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        let c = cosine(g, e);
        worst = worst.min(c);
        assert!(c >= 0.9999, "sentence {i} ({:?}): cosine {c}", texts[i]);
    }
    eprintln!("MiniLM parity: worst cosine over 50 sentences {worst:.7}");
}

