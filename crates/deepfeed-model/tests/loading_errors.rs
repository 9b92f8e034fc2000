//! What a new user gets wrong: every mistake must give a clear error naming the file, field or
//! tensor, never a panic.
use std::path::Path;

use deepfeed_model::backend::inference_device;
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::{Architecture, Model};

fn tiny(dir: &Path) {
    write_tiny_model(&TinySpec::tiny(Architecture::Llama), dir).unwrap();
}

fn load_err(dir: &Path) -> String {
    match Model::load(dir, &inference_device()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn wrong_path() {
    let e = load_err(Path::new("/definitely/not/here"));
    assert!(e.contains("/definitely/not/here") && e.contains("not found"), "{e}");
}

#[test]
fn empty_dir() {
    let d = tempfile::tempdir().unwrap();
    let e = load_err(d.path());
    assert!(e.contains("config.json not found"), "{e}");
}

#[test]
fn truncated_safetensors() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    tiny(&m);
    let f = m.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&m);
    assert!(e.contains("model.safetensors") && e.contains("truncated or corrupt"), "{e}");
}

#[test]
fn unknown_architecture() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    tiny(&m);
    let cfg = std::fs::read_to_string(m.join("config.json")).unwrap().replace("LlamaForCausalLM", "MambaForCausalLM");
    std::fs::write(m.join("config.json"), cfg).unwrap();
    let e = load_err(&m);
    assert!(e.contains("unknown architecture") && e.contains("MambaForCausalLM") && e.contains("Qwen2ForCausalLM"), "{e}");
}

#[test]
fn corrupt_tokenizer_json() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    tiny(&m);
    std::fs::write(m.join("tokenizer.json"), b"{\"model\": {\"type\": \"BPE\", ").unwrap();
    let e = load_err(&m);
    assert!(e.contains("tokenizer.json") && e.contains("cannot load tokenizer"), "{e}");
}

#[test]
fn shape_mismatch_names_tensor_and_shapes() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    tiny(&m);
    let cfg = std::fs::read_to_string(m.join("config.json")).unwrap().replace("\"intermediate_size\": 128", "\"intermediate_size\": 96");
    std::fs::write(m.join("config.json"), cfg).unwrap();
    let e = load_err(&m);
    assert!(e.contains("model.layers.0.mlp.gate_proj.weight") && e.contains("[96, 64]") && e.contains("[128, 64]"), "{e}");
}

#[test]
fn bad_config_field() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    tiny(&m);
    let cfg = std::fs::read_to_string(m.join("config.json")).unwrap().replace("\"hidden_size\": 64", "\"hidden_size\": \"big\"");
    std::fs::write(m.join("config.json"), cfg).unwrap();
    let e = load_err(&m);
    assert!(e.contains("config.json") && e.contains("hidden_size"), "{e}");
}

#[test]
fn missing_tensor() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    tiny(&m);
    let cfg = std::fs::read_to_string(m.join("config.json")).unwrap().replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    std::fs::write(m.join("config.json"), cfg).unwrap();
    let e = load_err(&m);
    assert!(e.contains("model.layers.2.") && e.contains("missing"), "{e}");
}

#[test]
fn init_tiny_refuses_to_overwrite() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("keep.txt"), "user data").unwrap();
    let e = write_tiny_model(&TinySpec::tiny(Architecture::Llama), d.path()).unwrap_err().to_string();
    assert!(e.contains("not empty"), "{e}");
    assert_eq!(std::fs::read_to_string(d.path().join("keep.txt")).unwrap(), "user data");
}
