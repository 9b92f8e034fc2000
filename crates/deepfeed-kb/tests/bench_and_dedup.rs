//! The labelled retrieval set runs (BM25 without an encoder), the latency benchmark reaches its
//! recall target on a small index, and semantic dedup drops repeats.
mod common;
use common::TempDir;

use std::path::Path;

use deepfeed_kb::bench::{latency_benchmark, retrieval_benchmark};
use deepfeed_kb::semantic_dedup::semantic_dedup;
use deepfeed_kb::tiny_bert::{write_tiny_bert, TinyBertSpec};
use deepfeed_kb::{Embedder, Mode};
use deepfeed_model::backend::inference_device;

#[test]
fn labelled_set_bm25_scores() {
    let set = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benchmarks/kb");
    let d = TempDir::new();
    let scores = retrieval_benchmark(&set, None, d.path()).unwrap();
    let all = scores.iter().find(|s| s.lang == "all").unwrap();
    assert_eq!((all.mode, all.questions), (Mode::Bm25, 240));
    for lang in ["en", "zh"] {
        let s = scores.iter().find(|s| s.lang == lang).unwrap();
        assert_eq!(s.questions, 120);
        // every question names its document's unique entity: keyword search finds most
        assert!(s.recall_at_5 > 0.6 && s.mrr_at_10 <= 1.0 && s.mrr_at_10 > 0.4, "{s:?}");
    }
}

#[test]
fn hnsw_latency_benchmark_recall() {
    let r = latency_benchmark(3000, 64, 50, 64, 2).unwrap();
    assert!(r.recall_at_10 >= 0.98, "{r:?}");
    assert!(r.hnsw_p50_ms > 0.0 && r.brute_p50_ms > 0.0);
}

#[test]
fn semantic_dedup_drops_repeats_and_keeps_order() {
    let d = TempDir::new();
    write_tiny_bert(&d.path().join("bert"), &TinyBertSpec::default()).unwrap();
    let e = Embedder::encoder(&d.path().join("bert"), &inference_device()).unwrap();
    let input = d.path().join("in.jsonl");
    // line 3 differs from line 1 only in case, which the uncased tokenizer ignores
    std::fs::write(
        &input,
        "{\"text\": \"The warranty covers parts for two years.\"}\n{\"input_text\": \"退货政策？\", \"target_text\": \"三十天内可以退货。\"}\n{\"text\": \"THE WARRANTY covers parts for two years.\"}\n{\"text\": \"Invoices are sent every month.\"}\n",
    )
    .unwrap();
    let out = d.path().join("out.jsonl");
    let r = semantic_dedup(&input, &out, &e, 0.999, 2).unwrap();
    assert_eq!((r.read, r.written, r.dropped), (4, 3, 1));
    assert_eq!((r.pairs[0].0, r.pairs[0].1), (3, 1));
    let kept = std::fs::read_to_string(&out).unwrap();
    assert!(kept.lines().next().unwrap().contains("The warranty") && !kept.contains("THE WARRANTY") && kept.contains("Invoices"));
    assert!(semantic_dedup(&input, &out, &e, 1.5, 2).unwrap_err().to_string().contains("between 0 and 1"));
}

