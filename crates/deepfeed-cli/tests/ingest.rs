//! `deepfeed ingest` as a user runs it: a mixed folder (documents of every kind, broken files,
//! an image without OCR tools installed), a chat export, token counting with a model's tokenizer,
//! and the exit-code rule (non-zero only when nothing could be read).
use std::path::Path;
use std::process::{Command, Output};

use deepfeed_data::ingest::samples::{self, DocxPart, PdfPage};
use serde_json::Value;

fn deepfeed(args: &[&str], cwd: &Path, path_env: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepfeed"));
    c.args(args).current_dir(cwd);
    if let Some(p) = path_env {
        c.env("PATH", p);
    }
    c.output().unwrap()
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn ingest_a_mixed_folder() {
    let d = tempfile::tempdir().unwrap();
    let docs = d.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("faq.md"), "# 常见问题\n\n退货：七天内申请。客服电话 13812345678。\n").unwrap();
    let (gbk, _, _) = encoding_rs::GBK.encode("旧系统导出的说明：发票在订单页申请，七个工作日内开具。");
    std::fs::write(docs.join("legacy.txt"), &gbk).unwrap();
    std::fs::write(docs.join("guide.docx"), samples::docx(&[DocxPart::Heading(1, "保修"), DocxPart::Para("整机保修两年。")])).unwrap();
    std::fs::write(docs.join("prices.xlsx"), samples::xlsx("价格", &[&["型号", "价格"], &["A1", "199"]])).unwrap();
    std::fs::write(docs.join("manual.pdf"), samples::pdf(&[PdfPage::Latin(&["Warranty: two years."])])).unwrap();
    std::fs::write(docs.join("broken.pdf"), "%PDF-1.7\n1 0 obj <<").unwrap();
    std::fs::write(docs.join("scan.png"), b"\x89PNG\r\n\x1a\n").unwrap();
    // an empty PATH: tesseract cannot be found, whatever is installed on this machine
    let empty_path = d.path().join("no-tools");
    std::fs::create_dir_all(&empty_path).unwrap();
    let out = deepfeed(&["ingest", "docs", "--out", "records.jsonl"], d.path(), Some(&empty_path));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("ingested 5 source(s) into 5 records in records.jsonl; 2 skipped"), "{stdout}");
    assert!(stdout.contains("personal data masked: 1 PHONE"), "{stdout}");
    assert!(stdout.contains("skipped docs/broken.pdf: not a readable PDF"), "{stdout}");
    assert!(stdout.contains("apt-get install tesseract-ocr tesseract-ocr-chi-sim poppler-utils"), "{stdout}");
    // not a terminal: one plain progress line per source
    assert_eq!(stderr.lines().filter(|l| l.starts_with('[')).count(), 7, "{stderr}");
    let recs = records(&d.path().join("records.jsonl"));
    assert!(recs.iter().any(|v| v["text"].as_str().unwrap().contains("发票在订单页申请")));
    assert!(!recs.iter().any(|v| v["text"].as_str().unwrap().contains("13812345678")));
    // the output is never overwritten
    let again = deepfeed(&["ingest", "docs", "--out", "records.jsonl"], d.path(), None);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    // JSON report
    let json = deepfeed(&["ingest", "docs/faq.md", "--out", "one.jsonl", "--json", "--no-mask-pii"], d.path(), None);
    let r: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(r["read"], 1);
    assert!(records(&d.path().join("one.jsonl"))[0]["text"].as_str().unwrap().contains("13812345678"));
}

#[test]
fn nothing_readable_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("empty.txt"), "").unwrap();
    let out = deepfeed(&["ingest", "empty.txt", "--out", "r.jsonl"], d.path(), None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing could be read") && err.contains("empty.txt"), "{err}");
    assert!(!d.path().join("r.jsonl").exists());
    let out = deepfeed(&["ingest", "--out", "r.jsonl"], d.path(), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to ingest"));
}

#[test]
fn chat_log_and_model_tokenizer() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("chat.csv"),
        "session,speaker,time,text\n1,user,2024-03-05 10:00:00,你好，我的快递还没到\n1,小美,2024-03-05 10:00:20,抱歉，我帮您查一下。\n1,小美,2024-03-05 10:00:40,明天送达。\n",
    )
    .unwrap();
    let out = deepfeed(&["ingest", "--chat-log", "chat.csv", "--assistant", "小美", "--system", "你是客服。", "--out", "chat.jsonl"], d.path(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recs = records(&d.path().join("chat.jsonl"));
    assert_eq!(recs.len(), 1);
    let m = recs[0]["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[2]["content"], "抱歉，我帮您查一下。\n明天送达。");
    // the ingested chat validates as training data
    let v = deepfeed(&["validate", "chat.jsonl"], d.path(), None);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));

    // chunks measured with a model's tokenizer
    assert!(deepfeed(&["init-tiny", "--arch", "qwen3", "--out", "m"], d.path(), None).status.success());
    std::fs::write(d.path().join("long.md"), "退货政策说明。".repeat(200)).unwrap();
    let out = deepfeed(&["ingest", "long.md", "--model", "m", "--chunk-tokens", "64", "--overlap-tokens", "8", "--out", "tok.jsonl"], d.path(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let n_model = records(&d.path().join("tok.jsonl")).len();
    let out = deepfeed(&["ingest", "long.md", "--tokenizer", "m/tokenizer.json", "--chunk-tokens", "64", "--overlap-tokens", "8", "--out", "tok2.jsonl"], d.path(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(records(&d.path().join("tok2.jsonl")).len(), n_model);
    let v = deepfeed(&["validate", "tok.jsonl", "--model", "m", "--max-tokens", "64"], d.path(), None);
    assert!(v.status.success(), "every chunk fits in 64 tokens: {}", String::from_utf8_lossy(&v.stderr));
    let out = deepfeed(&["ingest", "long.md", "--tokenizer", "m/config.json", "--out", "x.jsonl"], d.path(), None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a file named tokenizer.json"));
}
