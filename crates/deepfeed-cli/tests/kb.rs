//! `deepfeed kb …`, `chat --kb`, `dedup --semantic` as a user runs them, including a kill -9 in
//! the middle of a bulk insert.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use deepfeed_kb::tiny_bert::{write_tiny_bert, TinyBertSpec};
use deepfeed_kb::KbStore;

fn deepfeed(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepfeed")).args(args).current_dir(cwd).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected exit 1, stderr: {err}");
    assert!(err.starts_with("error: ") && !err.contains("panicked"), "{err}");
    err
}

#[test]
fn kb_add_search_stats_delete_and_chat_with_citations() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    write_tiny_bert(&p.join("bert"), &TinyBertSpec::default()).unwrap();
    std::fs::create_dir_all(p.join("docs")).unwrap();
    std::fs::write(p.join("docs/warranty.md"), "# Warranty\n\nThe warranty covers parts and labour for two years after purchase.\n").unwrap();
    std::fs::write(p.join("docs/invoices.txt"), "发票在每个月初通过电子邮件发送。\n").unwrap();
    std::fs::write(p.join("docs/logo.png"), [0u8, 1, 2]).unwrap();

    let err = error(&deepfeed(&["kb", "add", "docs", "--kb", "kb"], p));
    assert!(err.contains("--embedder"), "{err}");
    let out = ok(&deepfeed(&["kb", "add", "docs", "--kb", "kb", "--embedder", "bert"], p));
    assert!(out.contains("2 added") && out.contains("1 files skipped"), "{out}");
    let out = ok(&deepfeed(&["kb", "add", "docs", "--kb", "kb", "--embedder", "bert"], p));
    assert!(out.contains("2 unchanged"), "{out}");

    // search reloads the encoder recorded in the knowledge base
    let out = ok(&deepfeed(&["kb", "search", "how long is the warranty", "--kb", "kb", "--k", "2"], p));
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("1. ") && first.contains("warranty.md") && first.contains("chunk 0"), "{out}");
    let out = ok(&deepfeed(&["kb", "search", "发票", "--kb", "kb", "--mode", "bm25", "--json"], p));
    let hits: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(hits[0]["source"].as_str().unwrap().ends_with("invoices.txt"), "{out}");
    let err = error(&deepfeed(&["kb", "search", "x", "--kb", "kb", "--mode", "fuzzy"], p));
    assert!(err.contains("bm25, vector or hybrid"), "{err}");

    let stats: serde_json::Value = serde_json::from_str(&ok(&deepfeed(&["kb", "stats", "--kb", "kb", "--json", "--docs"], p))).unwrap();
    assert_eq!(stats["documents"], 2);
    assert_eq!(stats["chunks"], stats["vectors_in_index"]);
    assert_eq!(stats["embedder"]["dim"], 32);

    // chat --kb: passages in the prompt, sources after the answer
    ok(&deepfeed(&["init-tiny", "--out", "m"], p));
    // --rerank-model: the same hits, reordered by the chat model's mean log-probability of the
    // question after each passage (a log-probability: finite, at most 0), best first
    let plain: serde_json::Value = serde_json::from_str(&ok(&deepfeed(&["kb", "search", "warranty 发票", "--kb", "kb", "--k", "2", "--json"], p))).unwrap();
    let reranked: serde_json::Value =
        serde_json::from_str(&ok(&deepfeed(&["kb", "search", "warranty 发票", "--kb", "kb", "--k", "2", "--json", "--rerank-model", "m"], p))).unwrap();
    let ids = |v: &serde_json::Value| {
        let mut s: Vec<String> = v.as_array().unwrap().iter().map(|h| h["source"].as_str().unwrap().to_string()).collect();
        s.sort();
        s
    };
    assert_eq!(ids(&plain), ids(&reranked));
    let scores: Vec<f64> = reranked.as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.len() == 2 && scores.iter().all(|s| s.is_finite() && *s <= 0.0) && scores[0] >= scores[1], "{scores:?}");
    let err = error(&deepfeed(&["kb", "search", "x", "--kb", "kb", "--rerank-model", "no-such-model"], p));
    assert!(err.contains("no-such-model"), "{err}");
    let out = ok(&deepfeed(&["chat", "--model", "m", "--kb", "kb", "--prompt", "How long is the warranty?", "--max-tokens", "4"], p));
    let sources = out.split("Sources:").nth(1).unwrap_or_else(|| panic!("no sources: {out}"));
    assert!(sources.contains("[1] ") && sources.contains("warranty.md"), "{out}");
    let out = ok(&deepfeed(&["chat", "--model", "m", "--kb", "kb", "--kb-mode", "bm25", "--kb-k", "1", "--prompt", "发票", "--max-tokens", "2"], p));
    assert!(out.contains("Sources:\n  [1] ") && out.contains("invoices.txt") && !out.contains("[2]"), "{out}");

    // serve --kb: knowledge-base problems stop the start, with the path named
    let err = error(&deepfeed(&["serve", "--model", "m", "--kb", "docs", "--port", "0"], p));
    assert!(err.contains("docs") && err.contains("not a knowledge base"), "{err}");
    let err = error(&deepfeed(&["serve", "--model", "m", "--kb", "kb", "--embedder", "m", "--port", "0"], p));
    assert!(err.contains("kb") && err.contains("encoder"), "{err}");
    let err = error(&deepfeed(&["serve", "--model", "m", "--adapter", "a=x,kb=", "--port", "0"], p));
    assert!(err.contains("kb="), "{err}");
    let err = error(&deepfeed(&["serve", "--model", "m", "--kb", "kb", "--kb-mode", "fuzzy", "--port", "0"], p));
    assert!(err.contains("bm25, vector or hybrid"), "{err}");

    let out = ok(&deepfeed(&["kb", "delete", "--kb", "kb", "--doc", "docs/warranty.md"], p));
    assert!(out.contains("deleted") && out.contains("warranty.md"), "{out}");
    let out = ok(&deepfeed(&["kb", "stats", "--kb", "kb"], p));
    assert!(out.contains("documents 1"), "{out}");
    let err = error(&deepfeed(&["kb", "delete", "--kb", "kb", "--doc", "docs/warranty.md"], p));
    assert!(err.contains("not in"), "{err}");
    let err = error(&deepfeed(&["kb", "stats", "--kb", "docs"], p));
    assert!(err.contains("not a knowledge base"), "{err}");
}

#[test]
fn kill_9_during_bulk_insert_loses_at_most_the_batch_in_flight() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    write_tiny_bert(&p.join("bert"), &TinyBertSpec::default()).unwrap();
    std::fs::create_dir_all(p.join("docs")).unwrap();
    let files = 400;
    for i in 0..files {
        let body: String = (0..6).map(|k| format!("Document {i} paragraph {k}: the warranty covers parts and labour for {i} years.\n\n")).collect();
        std::fs::write(p.join(format!("docs/{i:04}.txt")), body).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_deepfeed"))
        .args(["kb", "add", "docs", "--kb", "kb", "--embedder", "bert", "--chunk-tokens", "25", "--overlap-tokens", "0"])
        .current_dir(p)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stored = 0;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        if line.unwrap().starts_with("stored") {
            stored += 1;
            if stored == 40 {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(stored, 40);

    // reopens; every committed document is complete and searchable, the index matches the table
    let store = KbStore::open(&p.join("kb")).unwrap();
    let s = store.stats().unwrap();
    assert!(s.documents >= 40 && (s.documents as usize) < files, "{s:?}");
    let docs = store.documents().unwrap();
    assert_eq!(docs.iter().map(|d| d.chunks).sum::<i64>(), s.chunks);
    assert!(docs.iter().all(|d| d.chunks == 6), "no half-written document");
    assert_eq!(s.vectors_in_index as i64, s.chunks);
    let committed = s.documents as usize;
    drop(store);

    // running the same add again finishes the job and skips what was committed
    let out = ok(&deepfeed(&["kb", "add", "docs", "--kb", "kb", "--embedder", "bert", "--chunk-tokens", "25", "--overlap-tokens", "0"], p));
    assert!(out.contains(&format!("{} added, 0 updated, {committed} unchanged", files - committed)), "{out}");
    let stats: serde_json::Value = serde_json::from_str(&ok(&deepfeed(&["kb", "stats", "--kb", "kb", "--json"], p))).unwrap();
    assert_eq!(stats["documents"], files);
    assert_eq!(stats["vectors_in_index"], files * 6);
}

#[test]
fn semantic_dedup_command() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    write_tiny_bert(&p.join("bert"), &TinyBertSpec::default()).unwrap();
    std::fs::write(p.join("a.jsonl"), "{\"text\": \"Returns within thirty days.\"}\n{\"text\": \"returns within thirty days.\"}\n{\"text\": \"发票每月发送。\"}\n").unwrap();
    let err = error(&deepfeed(&["dedup", "a.jsonl", "--out", "b.jsonl", "--embedder", "bert"], p));
    assert!(err.contains("--semantic"), "{err}");
    let out = ok(&deepfeed(&["dedup", "--semantic", "--threshold", "0.999", "a.jsonl", "--out", "b.jsonl", "--embedder", "bert"], p));
    assert!(out.contains("read 3  kept 2  dropped 1"), "{out}");
    assert_eq!(std::fs::read_to_string(p.join("b.jsonl")).unwrap().lines().count(), 2);
    let err = error(&deepfeed(&["dedup", "--semantic", "a.jsonl", "--out", "b.jsonl", "--embedder", "bert"], p));
    assert!(err.contains("already exists"), "{err}");
}
