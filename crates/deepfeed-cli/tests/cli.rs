//! The `deepfeed` binary as a user runs it: the demo path works, mistakes give one-line errors
//! (exit code 1, no panic).
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
    assert!(err.starts_with("error: ") && err.trim_end().lines().count() == 1, "not a one-line error: {err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    err
}

#[test]
fn init_chat_generate_perplexity() {
    let d = tempfile::tempdir().unwrap();
    let out = ok(&deepfeed(&["init-tiny", "--arch", "qwen3", "--out", "m"], d.path()));
    assert!(out.contains("Qwen3ForCausalLM"), "{out}");
    let answer = ok(&deepfeed(&["chat", "--model", "m", "--prompt", "你好", "--max-tokens", "6", "--seed", "2", "--temperature", "0.9"], d.path()));
    assert!(!answer.trim().is_empty());
    ok(&deepfeed(&["generate", "--model", "m", "--prompt", "Hello", "--max-tokens", "4"], d.path()));

    std::fs::write(d.path().join("a.jsonl"), "{\"text\": \"hello world\"}\n\n{\"input_text\": \"问：\", \"target_text\": \"答。\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n").unwrap();
    let json = ok(&deepfeed(&["perplexity", "--model", "m", "--data", "a.jsonl", "--json"], d.path()));
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["documents"], 3);
    let ppl = r["perplexity"].as_f64().unwrap();
    // a random model is close to uniform over the 502-token vocabulary
    assert!(ppl > 100.0 && ppl < 2000.0, "{ppl}");
    // the base kept as bf16 or Q8_0 blocks (--base-dtype) scores within their rounding
    for dtype in ["bf16", "quantized"] {
        let json = ok(&deepfeed(&["perplexity", "--model", "m", "--data", "a.jsonl", "--json", "--base-dtype", dtype], d.path()));
        let p = serde_json::from_str::<serde_json::Value>(&json).unwrap()["perplexity"].as_f64().unwrap();
        assert!((p / ppl - 1.0).abs() < 0.01, "{dtype}: {p} vs f32 {ppl}");
        ok(&deepfeed(&["generate", "--model", "m", "--prompt", "Hello", "--max-tokens", "4", "--base-dtype", dtype], d.path()));
    }

    // interactive chat reads turns from stdin until EOF
    let mut child = Command::new(env!("CARGO_BIN_EXE_deepfeed"))
        .args(["chat", "--model", "m", "--max-tokens", "3"])
        .current_dir(d.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all("第一句\n/reset\nsecond\n".as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("history cleared"));
}

#[test]
fn mistakes_give_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    ok(&deepfeed(&["init-tiny", "--out", "m"], d.path()));
    std::fs::create_dir(d.path().join("empty")).unwrap();
    std::fs::write(d.path().join("empty.txt"), "").unwrap();
    std::fs::write(d.path().join("bad.jsonl"), "{\"text\": \"ok\"}\n{\"oops\": 1}\n").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["chat", "--model", "missing", "--prompt", "hi"], "missing: model directory not found"),
        (&["chat", "--model", "empty", "--prompt", "hi"], "config.json not found"),
        (&["perplexity", "--model", "m", "--data", "nope.txt"], "nope.txt"),
        (&["perplexity", "--model", "m", "--data", "empty.txt"], "empty.txt: the file is empty"),
        (&["perplexity", "--model", "m", "--data", "bad.jsonl"], "bad.jsonl:2:"),
        (&["perplexity", "--model", "m", "--data", "bad.jsonl", "--context", "1"], "context must be"),
        (&["generate", "--model", "m", "--prompt", "x", "--top-p", "0"], "top_p"),
        (&["init-tiny", "--out", "m"], "not empty"),
        (&["init-tiny", "--arch", "mamba", "--out", "n"], "mamba"),
    ];
    for (args, expect) in cases {
        let err = one_line_error(&deepfeed(args, d.path()));
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

fn write_qa(path: &Path) {
    let mut text = String::new();
    for i in 0..12 {
        text.push_str(&serde_json::json!({"input_text": format!("Code of item {i}?"), "target_text": format!("Item {i}: {}.", 100 + 7 * i)}).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn train_chat_merge() {
    let d = tempfile::tempdir().unwrap();
    ok(&deepfeed(&["init-tiny", "--arch", "llama", "--out", "base"], d.path()));
    write_qa(&d.path().join("qa.jsonl"));
    std::fs::write(
        d.path().join("run.yaml"),
        "model: base\ndata: qa.jsonl\noutput_dir: runs/a\nlora:\n  r: 4\n  alpha: 8\n  target_modules: [all-linear]\nepochs: 2\nbatch_size: 4\nlearning_rate: 0.01\nval_split: 0.25\n",
    )
    .unwrap();
    let dry = ok(&deepfeed(&["train", "run.yaml", "--dry-run"], d.path()));
    assert!(dry.contains("memory estimate") && dry.contains("fits: yes"), "{dry}");
    let out = ok(&deepfeed(&["train", "run.yaml", "--epochs", "3", "--json"], d.path()));
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["outcome"], "finished");
    assert_eq!(s["steps"], 9, "3 epochs of 9 samples in batches of 4");
    assert_eq!(s["val_samples"], 3);
    for f in ["runs/a/adapter/adapter_config.json", "runs/a/adapter/adapter_model.safetensors", "runs/a/metrics.jsonl", "runs/a/config.yaml"] {
        assert!(d.path().join(f).is_file(), "{f} missing");
    }
    ok(&deepfeed(&["chat", "--model", "base", "--adapter", "runs/a/adapter", "--prompt", "Code of item 3?", "--max-tokens", "5"], d.path()));
    ok(&deepfeed(&["merge", "--model", "base", "--adapter", "runs/a/adapter", "--out", "merged"], d.path()));
    // the merged model scores exactly like base + adapter
    let ppl = |args: &[&str]| -> f64 {
        let out = ok(&deepfeed(&[&["perplexity", "--data", "qa.jsonl", "--json"], args].concat(), d.path()));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["perplexity"].as_f64().unwrap()
    };
    let merged = ppl(&["--model", "merged"]);
    let adapted = ppl(&["--model", "base", "--adapter", "runs/a/adapter"]);
    let base = ppl(&["--model", "base"]);
    assert!((merged - adapted).abs() / adapted < 1e-4, "{merged} vs {adapted}");
    assert!(adapted < base, "training lowered perplexity: {adapted} vs {base}");

    // mistakes
    let e = one_line_error(&deepfeed(&["train", "run.yaml"], d.path()));
    assert!(e.contains("--resume"), "{e}");
    let e = one_line_error(&deepfeed(&["train", "--model", "base", "--data", "qa.jsonl"], d.path()));
    assert!(e.contains("output_dir"), "{e}");
    let e = one_line_error(&deepfeed(&["merge", "--model", "base", "--adapter", "runs/a/adapter", "--out", "merged"], d.path()));
    assert!(e.contains("already exists"), "{e}");
    let e = one_line_error(&deepfeed(&["chat", "--model", "base", "--adapter", "nope", "--prompt", "x"], d.path()));
    assert!(e.contains("adapter_config.json"), "{e}");

    // PEFT and transformers read what deepfeed wrote (needs python with torch, transformers, peft)
    if let Ok(py) = std::env::var("DEEPFEED_PYTHON") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_export.py");
        let out = Command::new(py).arg(script).args(["base", "runs/a/adapter", "merged"]).current_dir(d.path()).output().unwrap();
        assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
}

/// Ctrl-C during training saves a checkpoint and exits cleanly; --resume finishes the run.
#[test]
fn sigint_saves_a_checkpoint_and_resume_finishes() {
    let d = tempfile::tempdir().unwrap();
    ok(&deepfeed(&["init-tiny", "--out", "base"], d.path()));
    write_qa(&d.path().join("qa.jsonl"));
    let args = ["train", "--model", "base", "--data", "qa.jsonl", "--output-dir", "run", "--batch-size", "1", "--epochs", "150", "--lr", "1e-3"];
    let child = Command::new(env!("CARGO_BIN_EXE_deepfeed"))
        .args(args)
        .current_dir(d.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until training is under way, then interrupt
    let metrics = d.path().join("run/metrics.jsonl");
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 3 {
        assert!(start.elapsed().as_secs() < 60, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("interrupted"), "{stdout}");
    let ckpts: Vec<_> = std::fs::read_dir(d.path().join("run/checkpoints")).unwrap().collect();
    assert_eq!(ckpts.len(), 1);
    let done = ok(&deepfeed(&[&args[..], &["--resume", "--json"]].concat(), d.path()));
    let s: serde_json::Value = serde_json::from_str(&done).unwrap();
    assert_eq!(s["outcome"], "finished");
    assert_eq!(s["steps"], s["total_steps"]);
}

/// A disk that fills up while a checkpoint is written (simulated with a file-size limit) gives a
/// clear error, leaves no half-written checkpoint, and never damages an earlier one.
#[test]
fn full_disk_while_checkpointing_keeps_the_earlier_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    ok(&deepfeed(&["init-tiny", "--out", "base"], d.path()));
    write_qa(&d.path().join("qa.jsonl"));
    let bin = env!("CARGO_BIN_EXE_deepfeed");
    // full fine-tuning: each checkpoint holds ~570 KB of weights, above the 100 KiB limit below
    let train = |extra: &str, limited: bool| {
        let limit = if limited { "trap '' XFSZ; ulimit -f 100; " } else { "" };
        let cmd = format!("{limit}exec {bin} train --model base --data qa.jsonl --output-dir run --method full --save-every 2 --lr 1e-3 {extra}");
        Command::new("bash").args(["-c", &cmd]).current_dir(d.path()).output().unwrap()
    };

    // the very first checkpoint cannot be written
    let out = train("--max-steps 4", true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: ") && last.contains("step-2") && !err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read_dir(d.path().join("run/checkpoints")).unwrap().count(), 0, "nothing half-written is left");

    // with room, steps 2 and 4 are saved; then a resumed run fails to save step 6
    std::fs::remove_dir_all(d.path().join("run")).unwrap();
    let out = train("--max-steps 4", false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let step4 = d.path().join("run/checkpoints/step-4");
    let before: Vec<Vec<u8>> = ["trainable.safetensors", "optimizer.safetensors", "state.json"].iter().map(|f| std::fs::read(step4.join(f)).unwrap()).collect();
    let out = train("--max-steps 6 --resume", true);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let after: Vec<Vec<u8>> = ["trainable.safetensors", "optimizer.safetensors", "state.json"].iter().map(|f| std::fs::read(step4.join(f)).unwrap()).collect();
    assert_eq!(before, after, "the earlier checkpoint is untouched");
    // and the run continues from it once there is room
    let out = train("--max-steps 6 --resume --json", false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// convert -> clean -> validate -> train: the data path a user takes, and personal data never
/// reaches the output or the terminal.
#[test]
fn convert_clean_validate_train() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let mut csv = String::from("question,answer\n");
    let topics = ["退货", "换货", "发票", "物流", "会员积分", "优惠券", "售后维修", "账户安全"];
    let details = ["七天内可申请", "需保留原包装", "电子发票三日内发出", "一般三到五天送达", "积分一年内有效", "每单限用一张", "保修期一年", "请定期修改密码"];
    for i in 0..8 {
        csv.push_str(&format!("\"{}怎么办理？\",\"{}：{}，电话13812345678，邮箱 help@example.com。\"\n", topics[i], topics[i], details[i]));
    }
    csv.push_str("\"重复？\",\"是的。\"\n\"重复？\",\"是的。\"\n\"ＦＵＬＬ　ｗｉｄｔｈ\",\"身份证11010519491231002X已登记\"\n");
    // the same policy twice, written with different punctuation and one word changed
    csv.push_str("\"退货政策\",\"自收到商品之日起七天内可以无理由退货，运费由买家承担，商品需保持完好，包装齐全，赠品一并退回。\"\n");
    csv.push_str("\"退货政策?\",\"自收到商品之日起七天内可以无理由退货;运费由买家承担;商品需保持完好,包装齐全,赠品一起退回!\"\n");
    std::fs::write(p.join("faq.csv"), csv).unwrap();
    ok(&deepfeed(&["convert", "faq.csv", "--out", "faq.jsonl"], p));
    let out = deepfeed(&["clean", "faq.jsonl", "--out", "clean.jsonl"], p);
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{shown}");
    // the 8 questions on different topics share only the contact sentence: kept
    assert!(shown.contains("1 duplicates") && shown.contains("1 near-duplicates") && shown.contains("8 EMAIL") && shown.contains("1 ID_CARD"), "{shown}");
    let cleaned = std::fs::read_to_string(p.join("clean.jsonl")).unwrap();
    for secret in ["13812345678", "help@example.com", "11010519491231002X"] {
        assert!(!cleaned.contains(secret) && !shown.contains(secret), "{secret} leaked");
    }
    assert!(cleaned.contains("<PHONE>") && cleaned.contains("FULL width"), "{cleaned}");
    assert_eq!(cleaned.lines().count(), 11);
    ok(&deepfeed(&["validate", "clean.jsonl"], p));
    let stats: serde_json::Value = serde_json::from_str(&ok(&deepfeed(&["stats", "clean.jsonl", "--json", "--histogram", "len.png"], p))).unwrap();
    assert_eq!(stats["records"], 11);
    assert_eq!(stats["pii_placeholders"]["PHONE"], 8);
    assert_eq!(stats["exact_duplicates"], 0, "clean removed them");
    assert_eq!(stats["sources"][0][0], "faq.csv");
    assert!(stats["languages"]["zh"].as_u64().unwrap() >= 9, "{stats}");
    if stats.get("histogram_png").is_some() {
        assert_eq!(&std::fs::read(p.join("len.png")).unwrap()[..4], b"\x89PNG");
    }
    // a second phase cleaned against the first repeats nothing of it
    let again = ok(&deepfeed(&["clean", "faq.jsonl", "--out", "phase2.jsonl", "--against", "clean.jsonl"], p));
    assert!(again.contains("0 written"), "{again}");
    ok(&deepfeed(&["init-tiny", "--out", "base"], p));
    ok(&deepfeed(&["train", "--model", "base", "--data", "clean.jsonl", "--output-dir", "run", "--max-steps", "2"], p));
    assert!(p.join("run/adapter/adapter_model.safetensors").is_file());
}
