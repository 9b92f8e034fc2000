//! `deepfeed export gguf | gguf-adapter | ollama` as a user runs them: train a LoRA on a tiny model,
//! export it for llama.cpp and Ollama; mistakes are one-line errors and nothing is overwritten.
use std::path::Path;
use std::process::{Command, Output};

use deepfeed_model::gguf::GgufFile;

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
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn train_then_export_gguf_adapter_and_ollama() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    ok(&deepfeed(&["init-tiny", "--arch", "llama", "--out", "base"], p));
    let qa: String = (0..8).map(|i| format!("{{\"input_text\": \"Code of item {i}?\", \"target_text\": \"It is K{i}.\"}}\n")).collect();
    std::fs::write(p.join("qa.jsonl"), qa).unwrap();
    std::fs::write(
        p.join("t.yaml"),
        "model: base\ndata: qa.jsonl\noutput_dir: run\nlora:\n  r: 4\n  alpha: 8\n  target_modules: [q_proj, k_proj, v_proj]\nepochs: 1\nbatch_size: 4\nlearning_rate: 0.01\n",
    )
    .unwrap();
    ok(&deepfeed(&["train", "t.yaml"], p));

    let out = ok(&deepfeed(&["export", "gguf", "--model", "base", "--adapter", "run/adapter", "--type", "q8_0", "--out", "m.gguf"], p));
    assert!(out.contains("m.gguf") && out.contains("Q8_0"), "{out}");
    let m = GgufFile::open(&p.join("m.gguf")).unwrap();
    assert_eq!(m.architecture(), Some("llama"));
    assert_eq!(m.tensor_info("blk.0.attn_q.weight").unwrap().ggml_type.name(), "Q8_0");

    let out = ok(&deepfeed(&["export", "gguf-adapter", "--adapter", "run/adapter", "--model", "base", "--out", "a.gguf"], p));
    assert!(out.contains("a.gguf"), "{out}");
    let a = GgufFile::open(&p.join("a.gguf")).unwrap();
    assert_eq!(a.get_str("general.type"), Some("adapter"));
    assert_eq!(a.tensors.len(), 2 * 2 * 3);
    // the base may be the GGUF file itself
    ok(&deepfeed(&["export", "gguf-adapter", "--adapter", "run/adapter", "--model", "m.gguf", "--out", "a2.gguf"], p));
    assert_eq!(std::fs::read(p.join("a.gguf")).unwrap(), std::fs::read(p.join("a2.gguf")).unwrap());

    let out = ok(&deepfeed(&["export", "ollama", "--model", "base", "--adapter", "run/adapter", "--type", "f16", "--out", "ol"], p));
    assert!(out.contains("ollama create"), "{out}");
    let mf = std::fs::read_to_string(p.join("ol/Modelfile")).unwrap();
    assert!(mf.contains("\nFROM ./model.gguf\n") && mf.contains("\nADAPTER ./adapter.gguf\n"), "{mf}");
    assert!(mf.contains("TEMPLATE \"\"\"") && mf.contains("User: {{ .Content }}"), "{mf}");
    assert!(mf.contains("PARAMETER stop \"<｜end▁of▁sentence｜>\""), "{mf}");
    assert!(GgufFile::open(&p.join("ol/model.gguf")).is_ok() && GgufFile::open(&p.join("ol/adapter.gguf")).is_ok());

    // from a GGUF file: FROM is its absolute path, the chat template comes from its metadata
    ok(&deepfeed(&["export", "ollama", "--model", "m.gguf", "--out", "ol2"], p));
    let mf = std::fs::read_to_string(p.join("ol2/Modelfile")).unwrap();
    let abs = std::fs::canonicalize(p.join("m.gguf")).unwrap();
    assert!(mf.contains(&format!("FROM {}\n", abs.display())), "{mf}");
    assert!(mf.contains("Assistant:"), "{mf}");
    assert_eq!(std::fs::read_dir(p.join("ol2")).unwrap().count(), 1);

    // mistakes
    let e = one_line_error(&deepfeed(&["export", "gguf", "--model", "base", "--out", "m.gguf"], p));
    assert!(e.contains("already exists"), "{e}");
    let e = one_line_error(&deepfeed(&["export", "gguf", "--model", "base", "--type", "q3_k", "--out", "n.gguf"], p));
    assert!(e.contains("q4_k_m"), "{e}");
    std::fs::write(p.join("bad.gguf"), b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let e = one_line_error(&deepfeed(&["export", "gguf-adapter", "--adapter", "run/adapter", "--model", "bad.gguf", "--out", "x.gguf"], p));
    assert!(e.contains("bad.gguf") && e.contains("truncated"), "{e}");
    std::fs::write(p.join("t.go"), "{{ .Prompt }}").unwrap();
    ok(&deepfeed(&["export", "ollama", "--model", "m.gguf", "--template", "t.go", "--out", "ol3"], p));
    assert!(std::fs::read_to_string(p.join("ol3/Modelfile")).unwrap().contains("TEMPLATE \"\"\"{{ .Prompt }}\"\"\""));
}
