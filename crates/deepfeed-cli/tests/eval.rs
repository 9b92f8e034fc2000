//! `deepfeed eval` and `deepfeed compare` end to end: train a tiny model on a small Q&A set,
//! evaluate it against its base in one run, gate, compare, and refuse bad inputs.
use std::path::Path;
use std::process::{Command, Output};

fn deepfeed(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepfeed")).args(args).current_dir(cwd).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn one_line_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected exit 1, stderr: {err}");
    let last = err.trim_end().lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "no error line: {err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    last
}

const QA: [(&str, &str); 8] = [
    ("What colour is the sky?", "blue"),
    ("What colour is grass?", "green"),
    ("天空是什么颜色？", "蓝色"),
    ("草是什么颜色？", "绿色"),
    ("What is two plus two?", "four"),
    ("Capital of France?", "Paris"),
    ("Who wrote Hamlet?", "Shakespeare"),
    ("中国的首都是哪里？", "北京"),
];

fn write_data(dir: &Path) {
    let mut train = String::new();
    for (q, a) in QA {
        train += &serde_json::json!({"input_text": q, "target_text": a}).to_string();
        train.push('\n');
    }
    std::fs::write(dir.join("qa.jsonl"), &train).unwrap();
    // the same questions judged by containment, plus two multiple-choice questions
    let mut eval = String::new();
    for (q, a) in QA {
        eval += &serde_json::json!({"input_text": q, "target_text": a, "metadata": {"eval": {"kind": "contains", "task": "qa"}}}).to_string();
        eval.push('\n');
    }
    for (q, choices, answer) in [("Capital of France?", ["Rome", "Paris", "北京"], 1), ("天空是什么颜色？", ["绿色", "four", "蓝色"], 2)] {
        eval += &serde_json::json!({"input_text": q, "metadata": {"eval": {"choices": choices, "answer": answer, "task": "mc"}}}).to_string();
        eval.push('\n');
    }
    std::fs::write(dir.join("eval.jsonl"), eval).unwrap();
}

#[test]
fn train_then_eval_against_the_base_model() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    // a larger init than the default 0.02: the output head is not near-uniform, so LoRA can learn
    ok(&deepfeed(&["init-tiny", "--out", "base", "--init-std", "0.15"], p));
    write_data(p);
    ok(&deepfeed(
        &["train", "--model", "base", "--data", "qa.jsonl", "--output-dir", "runs/p1", "--epochs", "30", "--batch-size", "4", "--lr", "0.03", "--lora-r", "8", "--lora-alpha", "16", "--target-modules", "all-linear", "--val-split", "0"],
        p,
    ));

    let out = deepfeed(&["eval", "--model", "base", "--adapter", "runs/p1/adapter", "--data", "eval.jsonl", "--baseline", "--max-new-tokens", "16", "--max-p95-latency-ms", "60000"], p);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "gates should pass: {stderr}\n{}", String::from_utf8_lossy(&out.stdout));
    for f in ["report.json", "report.md", "report.html"] {
        assert!(p.join("runs/p1/report").join(f).is_file(), "{f} missing (default out is <run dir>/report)");
    }
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(p.join("runs/p1/report/report.json")).unwrap()).unwrap();
    let ppl = |m: &str| r[m]["perplexity"]["perplexity"].as_f64().unwrap();
    let acc = |m: &str| r[m]["accuracy"].as_f64().unwrap();
    assert!(ppl("tuned") < 0.9 * ppl("base"), "perplexity {} vs base {}", ppl("tuned"), ppl("base"));
    assert!(acc("tuned") > acc("base"), "accuracy {} vs base {}", acc("tuned"), acc("base"));
    assert!(r["tuned"]["general_perplexity"]["perplexity"].as_f64().unwrap() > 1.0);
    assert_eq!(r["samples"].as_array().unwrap().len(), 10);
    assert!(r["samples"][0]["tuned"]["nll"].as_f64().is_some() && r["samples"][0]["base"]["answer"].is_string());
    assert_eq!(r["data"]["sha256"].as_str().unwrap().len(), 64);
    assert!(r["model"]["files"].as_array().unwrap().iter().any(|f| f["file"] == "model.safetensors"));
    let html = std::fs::read_to_string(p.join("runs/p1/report/report.html")).unwrap();
    assert!(html.contains("Worst-scoring samples") && html.contains("天空是什么颜色"));
    if p.join("runs/p1/loss.png").is_file() {
        // a font was found: the charts are embedded
        assert!(html.contains("data:image/png;base64,") && p.join("runs/p1/report/loss.png").is_file());
    }

    // a second phase trained further, compared with the first
    ok(&deepfeed(&["train", "--model", "base", "--adapter", "runs/p1/adapter", "--data", "qa.jsonl", "--output-dir", "runs/p2", "--epochs", "10", "--batch-size", "4", "--lr", "0.03", "--val-split", "0"], p));
    ok(&deepfeed(&["eval", "--model", "base", "--adapter", "runs/p2/adapter", "--data", "eval.jsonl", "--max-new-tokens", "16", "--max-p95-latency-ms", "60000", "--min-ppl-improvement", "0", "--no-general-text"], p));
    let table = ok(&deepfeed(&["compare", "runs/p1", "runs/p2/report", "--out", "compare.html"], p));
    assert!(table.contains("| base model |") && table.contains("| p1 |") && table.contains("| p2 |"), "{table}");
    assert!(p.join("compare.html").is_file());

    // a failing gate: exit code 2, each failed gate listed, the report still written
    // (set from a YAML config this time; paths are relative to it)
    std::fs::create_dir(p.join("conf")).unwrap();
    std::fs::write(
        p.join("conf/strict.yaml"),
        "model: ../base\nadapter: ../runs/p1/adapter\ndata: ../eval.jsonl\nbaseline: true\nmax_new_tokens: 2\ngeneral_text: false\nout: ../strict\ngates:\n  min_ppl_improvement: 1.0\n  max_p95_latency_ms: 0.001\n",
    )
    .unwrap();
    let out = deepfeed(&["eval", "--config", "conf/strict.yaml"], p);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("gate failed: ppl_improvement") && err.contains("gate failed: p95_latency"), "{err}");
    assert!(p.join("strict/report.md").is_file());
    let md = std::fs::read_to_string(p.join("strict/report.md")).unwrap();
    assert!(md.contains("FAILED"));

    // mistakes: one clear line each
    std::fs::write(p.join("empty.jsonl"), "").unwrap();
    std::fs::write(p.join("typo.yaml"), "model: base\ndata: eval.jsonl\ngatez: {}\n").unwrap();
    std::fs::write(p.join("notarget.jsonl"), "{\"input_text\": \"q\"}\n").unwrap();
    std::fs::write(p.join("nochoices.jsonl"), "{\"input_text\": \"q\", \"metadata\": {\"eval\": {\"kind\": \"choice\"}}}\n").unwrap();
    ok(&deepfeed(&["init-tiny", "--out", "wide", "--hidden", "32", "--init-std", "0.15"], p));
    let cases: &[(&[&str], &str)] = &[
        (&["eval", "--model", "base", "--data", "empty.jsonl", "--out", "x"], "empty.jsonl: the file is empty"),
        (&["eval", "--model", "base", "--data", "notarget.jsonl", "--out", "x"], "notarget.jsonl:1: field `target_text`"),
        (&["eval", "--model", "base", "--data", "nochoices.jsonl", "--out", "x"], "nochoices.jsonl:1: multiple choice without `metadata.eval.choices`"),
        (&["eval", "--model", "wide", "--adapter", "runs/p1/adapter", "--data", "eval.jsonl", "--out", "x"], "trained for base model \"base\", but --model is \"wide\""),
        (&["eval", "--model", "base", "--data", "eval.jsonl", "--baseline", "--out", "x"], "give --adapter"),
        (&["eval", "--model", "base", "--data", "eval.jsonl", "--out", "strict"], "already exists"),
        (&["compare", "base"], "no report.json"),
        (&["eval", "--config", "typo.yaml"], "unknown field `gatez`"),
    ];
    for (args, expect) in cases {
        let e = one_line_error(&deepfeed(args, p));
        assert!(e.contains(expect), "{args:?}: {e}");
    }
}
