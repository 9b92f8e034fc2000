//! `export gguf` / `export gguf-adapter` on tiny models written by the test. What the files must
//! hold comes from llama.cpp: the keys it reads, the q/k row permutation of `convert_hf_to_gguf.py`
//! (checked independently by the transformers round trip in scripts/check_gguf_export.py, see
//! docs/gguf.md), and the shape rules of `llama-adapter.cpp`.
use std::path::Path;

use deepfeed_model::backend::inference_device;
use deepfeed_model::gguf::export::{export_lora_adapter, export_model, BaseInfo};
use deepfeed_model::gguf::names::unpermute_qk_rows;
use deepfeed_model::gguf::quantize::FileType;
use deepfeed_model::gguf::{GgmlType, GgufFile};
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::weights::{save_f32_safetensors, WeightFiles};
use deepfeed_model::{Architecture, Model};
use serde_json::json;

fn tiny(dir: &Path, arch: Architecture, hidden: usize) -> std::path::PathBuf {
    let out = dir.join(format!("{arch:?}-{hidden}"));
    let mut spec = TinySpec::tiny(arch);
    spec.hidden_size = hidden;
    spec.intermediate_size = 2 * hidden;
    write_tiny_model(&spec, &out).unwrap();
    out
}

fn f16_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-3 * y.abs().max(1e-2), "element {i}: {x} vs {y}");
    }
}

#[test]
fn f16_export_holds_llama_cpp_metadata_and_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path(), Architecture::Llama, 64);
    let mut model = Model::load(&dir, &inference_device()).unwrap();
    let out = tmp.path().join("m.gguf");
    let report = export_model(&mut model, FileType::F16, &out).unwrap();
    let f = GgufFile::open(&out).unwrap();
    let cfg = &model.config;
    assert_eq!(f.architecture(), Some("llama"));
    assert_eq!(f.get_u32("general.file_type"), Some(1));
    assert_eq!(f.get_u32("llama.block_count"), Some(cfg.num_hidden_layers as u32));
    assert_eq!(f.get_u32("llama.embedding_length"), Some(64));
    assert_eq!(f.get_u32("llama.attention.head_count"), Some(cfg.num_attention_heads as u32));
    assert_eq!(f.get_u32("llama.attention.head_count_kv"), Some(cfg.num_key_value_heads as u32));
    assert_eq!(f.get_f32("llama.rope.freq_base"), Some(cfg.rope_theta as f32));
    assert_eq!(f.get_str("tokenizer.ggml.model"), Some("gpt2"));
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), cfg.vocab_size);
    assert_eq!(tokens[0], "<｜begin▁of▁sentence｜>");
    assert_eq!(model.tokenizer.id_to_token(300).as_deref(), Some(tokens[300].as_str()));
    let types = f.get_i64_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!(types[0], 3, "BOS is a control token");
    assert_eq!(types[300], 1);
    let tj: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap()).unwrap();
    let merges = f.get_str_array("tokenizer.ggml.merges").unwrap();
    assert_eq!(merges.len(), tj["model"]["merges"].as_array().unwrap().len());
    assert_eq!(merges[0], "Ġ t");
    assert_eq!(f.get_u32("tokenizer.ggml.bos_token_id"), model.tokenizer.bos_id);
    assert_eq!(f.get_u32("tokenizer.ggml.eos_token_id"), model.tokenizer.eos_ids.first().copied());
    assert!(f.get_str("tokenizer.chat_template").unwrap().contains("Assistant:"));
    assert_eq!(report.n_tensors, f.tensors.len());

    // weights: every HF tensor is there; q/k come back after undoing llama's permutation
    let w = WeightFiles::open(&dir).unwrap();
    let shape = |n: &str| w.shape(n).unwrap();
    let (_, emb) = f.tensor_f32("token_embd.weight").unwrap();
    f16_close(&emb, &w.read_f32("model.embed_tokens.weight", &shape("model.embed_tokens.weight")).unwrap());
    let (qs, q) = f.tensor_f32("blk.1.attn_q.weight").unwrap();
    assert_eq!(qs, vec![64, 64]);
    let hf_q = w.read_f32("model.layers.1.self_attn.q_proj.weight", &[64, 64]).unwrap();
    f16_close(&unpermute_qk_rows(&q, 64, cfg.num_attention_heads), &hf_q);
    assert!(q != hf_q, "q rows must be permuted for llama");
    let (_, k) = f.tensor_f32("blk.0.attn_k.weight").unwrap();
    let kshape = shape("model.layers.0.self_attn.k_proj.weight");
    f16_close(&unpermute_qk_rows(&k, 64, cfg.num_key_value_heads), &w.read_f32("model.layers.0.self_attn.k_proj.weight", &kshape).unwrap());
    let norm = f.tensor_info("blk.0.attn_norm.weight").unwrap();
    assert_eq!(norm.ggml_type, GgmlType::F32);
    assert_eq!(f.tensor_f32("blk.0.attn_norm.weight").unwrap().1, w.read_f32("model.layers.0.input_layernorm.weight", &[64]).unwrap());
    let n_hf = w.names().count();
    assert_eq!(f.tensors.len(), n_hf);
}

#[test]
fn qwen2_keeps_q_k_unpermuted_with_biases_and_q4_k_m_follows_the_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path(), Architecture::Qwen2, 256);
    let mut model = Model::load(&dir, &inference_device()).unwrap();
    let out = tmp.path().join("q.gguf");
    let report = export_model(&mut model, FileType::Q4KM, &out).unwrap();
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.architecture(), Some("qwen2"));
    assert_eq!(f.get_u32("general.file_type"), Some(15));
    let ty = |n: &str| f.tensor_info(n).unwrap_or_else(|| panic!("{n}")).ggml_type;
    // 2 layers: use_more_bits(1, 2) only
    assert_eq!(ty("blk.0.attn_q.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.0.attn_v.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.1.attn_v.weight"), GgmlType::Q6_K);
    assert_eq!(ty("blk.0.ffn_down.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.1.ffn_down.weight"), GgmlType::Q6_K);
    assert_eq!(ty("blk.0.attn_q.bias"), GgmlType::F32);
    let has_output = f.tensor_info("output.weight").is_some();
    assert_eq!(ty("token_embd.weight"), if has_output { GgmlType::Q4_K } else { GgmlType::Q6_K });
    assert!(report.types["Q4_K"] > 0);
    // unpermuted: q dequantises close to the HF weights in the HF row order
    let w = WeightFiles::open(&dir).unwrap();
    let hf_bias = w.read_f32("model.layers.0.self_attn.q_proj.bias", &[256]).unwrap();
    assert_eq!(f.tensor_f32("blk.0.attn_q.bias").unwrap().1, hf_bias);
    let hf_q = w.read_f32("model.layers.0.self_attn.q_proj.weight", &[256, 256]).unwrap();
    let (_, q) = f.tensor_f32("blk.0.attn_q.weight").unwrap();
    let err: f32 = q.iter().zip(&hf_q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
    let norm: f32 = hf_q.iter().map(|b| b * b).sum::<f32>().sqrt();
    assert!(err / norm < 0.1, "relative error {}", err / norm);
}

/// A PEFT LoRA adapter with random A and B on q/k/v of a tiny llama (hidden 64, 4 heads, 2 kv heads).
fn write_adapter(dir: &Path, extra: serde_json::Value) -> std::path::PathBuf {
    let out = dir.join("adapter");
    std::fs::create_dir_all(&out).unwrap();
    let mut cfg = json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8.0, "target_modules": ["q_proj", "k_proj", "v_proj"], "lora_dropout": 0.0});
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    std::fs::write(out.join("adapter_config.json"), cfg.to_string()).unwrap();
    let mut tensors = Vec::new();
    let mut seed = 1u32;
    let mut rand = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    };
    for layer in 0..2 {
        for (m, out_f) in [("q_proj", 64), ("k_proj", 32), ("v_proj", 32)] {
            let p = format!("base_model.model.model.layers.{layer}.self_attn.{m}");
            tensors.push((format!("{p}.lora_A.weight"), vec![4, 64], rand(4 * 64)));
            tensors.push((format!("{p}.lora_B.weight"), vec![out_f, 4], rand(out_f * 4)));
        }
    }
    save_f32_safetensors(&out.join("adapter_model.safetensors"), &tensors).unwrap();
    out
}

#[test]
fn lora_adapter_follows_llama_adapter_cpp_and_equals_the_merged_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path(), Architecture::Llama, 64);
    let adapter = write_adapter(tmp.path(), json!({}));
    let base = BaseInfo::from_hf_dir(&dir).unwrap();
    let out = tmp.path().join("a.gguf");
    let r = export_lora_adapter(&adapter, &base, &out).unwrap();
    assert_eq!(r.n_tensors, 12);
    let a = GgufFile::open(&out).unwrap();
    assert_eq!(a.get_str("general.type"), Some("adapter"));
    assert_eq!(a.get_str("adapter.type"), Some("lora"));
    assert_eq!(a.get_str("general.architecture"), Some("llama"));
    assert_eq!(a.get_f32("adapter.lora.alpha"), Some(8.0));

    // base and merged model as F16 GGUF
    let base_gguf = tmp.path().join("base.gguf");
    export_model(&mut Model::load(&dir, &inference_device()).unwrap(), FileType::F16, &base_gguf).unwrap();
    let mut merged = Model::load(&dir, &inference_device()).unwrap();
    merged.load_adapter(&adapter).unwrap();
    let merged_gguf = tmp.path().join("merged.gguf");
    export_model(&mut merged, FileType::F16, &merged_gguf).unwrap();
    let (b, m) = (GgufFile::open(&base_gguf).unwrap(), GgufFile::open(&merged_gguf).unwrap());

    for t in a.tensors.iter().filter(|t| t.name.ends_with(".lora_a")) {
        let model_name = t.name.strip_suffix(".lora_a").unwrap();
        let lb = a.tensor_info(&format!("{model_name}.lora_b")).unwrap();
        let mt = b.tensor_info(model_name).unwrap();
        // llama-adapter.cpp: model.ne[0] == a.ne[0], model.ne[1] == b.ne[1], a.ne[1] == b.ne[0]
        assert_eq!(mt.dims[0], t.dims[0], "{model_name}: lora_a ne[0]");
        assert_eq!(mt.dims[1], lb.dims[1], "{model_name}: lora_b ne[1]");
        assert_eq!(t.dims[1], lb.dims[0], "{model_name}: rank");
        // llama.cpp's forward: W x + (alpha / rank) · B (A x), rank = b.ne[0]
        let rank = lb.dims[0] as usize;
        let scale = a.get_f32("adapter.lora.alpha").unwrap() / rank as f32;
        let (_, av) = a.tensor_f32(&t.name).unwrap(); // [r, in]
        let (_, bv) = a.tensor_f32(&lb.name).unwrap(); // [out, r]
        let (shape, w) = b.tensor_f32(model_name).unwrap();
        let (_, want) = m.tensor_f32(model_name).unwrap();
        let (out_f, in_f) = (shape[0], shape[1]);
        let mut got = w.clone();
        for o in 0..out_f {
            for i in 0..in_f {
                got[o * in_f + i] += scale * (0..rank).map(|k| bv[o * rank + k] * av[k * in_f + i]).sum::<f32>();
            }
        }
        let max = got.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(max < 2e-3, "{model_name}: base + adapter differs from the merged export by {max}");
        let delta = got.iter().zip(&w).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(delta > 0.01, "{model_name}: the adapter must change the weight (delta {delta})");
    }

    // the base given as the GGUF file gives the same adapter
    let out2 = tmp.path().join("a2.gguf");
    export_lora_adapter(&adapter, &BaseInfo::from_gguf(&b).unwrap(), &out2).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn adapters_llama_cpp_cannot_hold_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path(), Architecture::Llama, 64);
    let base = BaseInfo::from_hf_dir(&dir).unwrap();
    let try_cfg = |extra: serde_json::Value| {
        let d = tempfile::tempdir_in(tmp.path()).unwrap();
        let a = write_adapter(d.path(), extra);
        export_lora_adapter(&a, &base, &d.path().join("x.gguf")).map(|_| GgufFile::open(&d.path().join("x.gguf")).unwrap())
    };
    let e = try_cfg(json!({"use_dora": true})).unwrap_err().to_string();
    assert!(e.contains("use_dora") && e.contains("DoRA"), "{e}");
    let e = try_cfg(json!({"modules_to_save": ["lm_head"]})).unwrap_err().to_string();
    assert!(e.contains("modules_to_save"), "{e}");
    let e = try_cfg(json!({"rank_pattern": {"q_proj": 8}})).unwrap_err().to_string();
    assert!(e.contains("rank_pattern"), "{e}");
    let e = try_cfg(json!({"peft_type": "PREFIX_TUNING"})).unwrap_err().to_string();
    assert!(e.contains("peft_type"), "{e}");
    // rsLoRA: llama.cpp scales by alpha / r, so alpha becomes alpha·√r (8·2 = 16)
    let f = try_cfg(json!({"use_rslora": true})).unwrap();
    assert_eq!(f.get_f32("adapter.lora.alpha"), Some(16.0));
    // an adapter for another model: shapes checked against the base
    let other = tiny(tmp.path(), Architecture::Llama, 128);
    let a = write_adapter(tmp.path(), json!({}));
    let e = export_lora_adapter(&a, &BaseInfo::from_hf_dir(&other).unwrap(), &tmp.path().join("y.gguf")).unwrap_err().to_string();
    assert!(e.contains("expected shape"), "{e}");
    assert!(!tmp.path().join("y.gguf").exists());
}
