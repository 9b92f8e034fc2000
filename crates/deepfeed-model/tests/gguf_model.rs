//! GGUF files as base models: a tiny HF model written as GGUF the way llama.cpp's
//! convert_hf_to_gguf.py stores it (llama.cpp tensor names, llama q/k rows permuted, Gemma norms
//! + 1, vocabulary in `tokenizer.ggml.*`) loads back with the same config, token ids and logits.
use std::path::Path;

use deepfeed_model::backend::inference_device;
use deepfeed_model::gguf::names::{gguf_name, norm_weight_offset, permute_qk_rows, permutes_qk};
use deepfeed_model::gguf::export::export_model;
use deepfeed_model::gguf::load::GgufWeights;
use deepfeed_model::gguf::quantize::FileType;
use deepfeed_model::gguf::{GgufArray, GgufFile, GgufWriter};
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::weights::{WeightDType, WeightFiles};
use deepfeed_model::{Architecture, Model};
use serde_json::Value;

/// Writes the HF model in `dir` as `out` (f32 tensors) with its byte-level BPE vocabulary.
fn write_gguf(dir: &Path, model: &Model, out: &Path) {
    let cfg = &model.config;
    let arch = match cfg.architecture {
        Architecture::Llama => "llama",
        Architecture::Qwen2 => "qwen2",
        Architecture::Qwen3 => "qwen3",
        Architecture::Gemma3 => "gemma3",
        Architecture::DeepseekV2 | Architecture::DeepseekV3 => panic!("no GGUF layout for DeepSeek in these tests"),
    };
    let mut w = GgufWriter::new();
    w.set_str("general.architecture", arch);
    w.set_u32(format!("{arch}.context_length"), cfg.max_position_embeddings as u32);
    w.set_u32(format!("{arch}.embedding_length"), cfg.hidden_size as u32);
    w.set_u32(format!("{arch}.block_count"), cfg.num_hidden_layers as u32);
    w.set_u32(format!("{arch}.feed_forward_length"), cfg.intermediate_size as u32);
    w.set_u32(format!("{arch}.attention.head_count"), cfg.num_attention_heads as u32);
    w.set_u32(format!("{arch}.attention.head_count_kv"), cfg.num_key_value_heads as u32);
    w.set_u32(format!("{arch}.attention.key_length"), cfg.head_dim as u32);
    w.set_u32(format!("{arch}.attention.value_length"), cfg.head_dim as u32);
    w.set_f32(format!("{arch}.attention.layer_norm_rms_epsilon"), cfg.rms_norm_eps as f32);
    w.set_f32(format!("{arch}.rope.freq_base"), cfg.rope_theta as f32);
    if let Some(g) = &cfg.gemma3 {
        w.set_u32(format!("{arch}.attention.sliding_window"), g.sliding_window as u32);
    }

    // vocabulary: the tiny tokenizer is byte-level BPE, exactly what llama.cpp calls gpt2
    let tj: Value = serde_json::from_slice(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
    let mut tokens = vec![String::new(); cfg.vocab_size];
    let mut types = vec![1i32; cfg.vocab_size];
    for (t, id) in tj["model"]["vocab"].as_object().unwrap() {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    for a in tj["added_tokens"].as_array().unwrap() {
        let id = a["id"].as_u64().unwrap() as usize;
        tokens[id] = a["content"].as_str().unwrap().into();
        types[id] = if a["special"].as_bool().unwrap() { 3 } else { 4 };
    }
    let merges: Vec<String> = tj["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Value::String(s) => s.clone(),
            Value::Array(p) => format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap()),
            _ => panic!("merge {m}"),
        })
        .collect();
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_str("tokenizer.ggml.pre", "default");
    w.set_array("tokenizer.ggml.tokens", GgufArray::String(tokens));
    w.set_array("tokenizer.ggml.token_type", GgufArray::I32(types));
    w.set_array("tokenizer.ggml.merges", GgufArray::String(merges));
    w.set_u32("tokenizer.ggml.bos_token_id", model.tokenizer.bos_id.unwrap());
    w.set_u32("tokenizer.ggml.eos_token_id", model.tokenizer.eos_ids[0]);
    w.set_bool("tokenizer.ggml.add_bos_token", true);

    let weights = WeightFiles::open(dir).unwrap();
    let mut names: Vec<String> = weights.names().map(String::from).collect();
    names.sort();
    for name in names {
        let shape = weights.shape(&name).unwrap();
        let mut data = weights.read_f32(&name, &shape).unwrap();
        if permutes_qk(arch) && (name.ends_with("q_proj.weight") || name.ends_with("k_proj.weight")) {
            let heads = if name.ends_with("q_proj.weight") { cfg.num_attention_heads } else { cfg.num_key_value_heads };
            data = permute_qk_rows(&data, shape[1], heads);
        }
        if name.ends_with("norm.weight") {
            data.iter_mut().for_each(|x| *x += norm_weight_offset(arch));
        }
        w.add_f32(gguf_name(arch, &name).unwrap_or_else(|| panic!("{name} has no GGUF name")), &shape, &data).unwrap();
    }
    w.write(out).unwrap();
}

fn check(spec: TinySpec) {
    let arch = spec.architecture;
    let d = tempfile::tempdir().unwrap();
    let hf_dir = d.path().join("hf");
    write_tiny_model(&TinySpec { init_std: 0.2, ..spec }, &hf_dir).unwrap();
    let device = inference_device();
    let hf = Model::load(&hf_dir, &device).unwrap();
    // a directory holding exactly one .gguf (and no config.json) loads it too
    let gguf_dir = d.path().join("gguf");
    std::fs::create_dir(&gguf_dir).unwrap();
    let path = gguf_dir.join("model.gguf");
    write_gguf(&hf_dir, &hf, &path);
    for source in [&path, &gguf_dir] {
        let g = Model::load(source, &device).unwrap();
        assert_eq!(g.config.architecture, arch);
        assert_eq!(g.config.num_parameters(), hf.config.num_parameters(), "{arch:?}");
        assert_eq!(g.config.gemma3, hf.config.gemma3, "{arch:?}");
        let text = "Hello world! 深度求索的模型可以学习你的数据。 The quick brown fox.";
        let ids = hf.tokenizer.encode(text, true).unwrap();
        assert_eq!(g.tokenizer.encode(text, true).unwrap(), ids, "{arch:?}: token ids");
        assert_eq!(g.tokenizer.decode(&ids, true).unwrap(), text);
        let a = hf.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
        let b = g.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "{arch:?}: GGUF vs HF logits differ by {diff:e}");
    }
    // saved as a Hugging Face directory (tokenizer rebuilt from the GGUF vocabulary), it loads
    // with the same tokens and logits
    let mut g = Model::load(&path, &device).unwrap();
    let saved = d.path().join("saved");
    g.save_pretrained(&saved, usize::MAX).unwrap();
    let s = Model::load(&saved, &device).unwrap();
    let ids = hf.tokenizer.encode("Hello 深度求索", true).unwrap();
    assert_eq!(s.tokenizer.encode("Hello 深度求索", true).unwrap(), ids);
    let a = hf.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
    let b = s.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5), "{arch:?}: saved model differs");

    // exported again as F16, a model loaded from GGUF keeps the source file's metadata (also what
    // the export cannot rebuild itself) and gives the same logits up to f16 rounding
    let mut g = Model::load(&path, &device).unwrap();
    let re = d.path().join("re.gguf");
    export_model(&mut g, FileType::F16, &re).unwrap();
    let (src, out) = (GgufFile::open(&path).unwrap(), GgufFile::open(&re).unwrap());
    for (k, v) in &src.metadata {
        if k != "general.file_type" {
            assert_eq!(out.get(k), Some(v), "{arch:?}: metadata {k}");
        }
    }
    assert_eq!(out.get_u32("general.file_type"), Some(FileType::F16.llama_ftype()));
    let r = Model::load(&re, &device).unwrap();
    let b = r.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-2 * scale, "{arch:?}: re-exported F16 logits differ by {diff:e} (logit scale {scale})");

    // rows read on their own (how bf16/Q8_0 blocks are built at load) equal the whole tensor's,
    // from the GGUF (llama: q/k rows un-permuted one by one) and from the HF directory
    let q_name = "model.layers.1.self_attn.q_proj.weight";
    let shape = [hf.config.num_attention_heads * hf.config.head_dim, hf.config.hidden_size];
    let from_gguf = WeightFiles::from_gguf(GgufWeights::new(GgufFile::open(&path).unwrap(), &hf.config).unwrap());
    for w in [&from_gguf, &WeightFiles::open(&hf_dir).unwrap()] {
        let whole = w.read_f32(q_name, &shape).unwrap();
        let part = w.read_rows_f32(q_name, &shape, 3..7).unwrap();
        assert_eq!(part, whole[3 * shape[1]..7 * shape[1]], "{arch:?}");
        assert!(w.read_rows_f32(q_name, &shape, 0..shape[0] + 1).is_err());
    }

    // kept as F16 blocks in memory (base_dtype: quantized; llama's q/k rows un-permuted block-wise,
    // the tied head multiplied through the quantised embedding), the same file gives the logits
    // of dequantise-at-load
    let mut q = Model::load_as(&re, &device, WeightDType::Quantized).unwrap();
    assert!(q.network.linears_mut().iter().all(|(_, l)| l.weight.is_quantized()), "{arch:?}");
    let c = q.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
    let diff = b.iter().zip(&c).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-4 * scale, "{arch:?}: quantised-in-memory logits differ by {diff:e}");
}

#[test]
fn gguf_llama_loads_like_its_hf_directory() {
    check(TinySpec::tiny(Architecture::Llama));
}

#[test]
fn gguf_qwen2_loads_like_its_hf_directory() {
    check(TinySpec::tiny(Architecture::Qwen2));
}

#[test]
fn gguf_gemma3_loads_like_its_hf_directory() {
    // 6 layers: GGUF does not store Gemma 3's layer pattern; llama.cpp (and this loader) take every
    // 6th layer as global, as init-tiny writes it
    check(TinySpec { tie_word_embeddings: true, num_hidden_layers: 6, ..TinySpec::tiny(Architecture::Gemma3) });
}

#[test]
fn gguf_errors_name_the_problem() {
    let d = tempfile::tempdir().unwrap();
    // two .gguf files and no config.json: ambiguous
    std::fs::write(d.path().join("a.gguf"), b"GGUF").unwrap();
    std::fs::write(d.path().join("b.gguf"), b"GGUF").unwrap();
    let e = Model::load(d.path(), &inference_device()).err().unwrap().to_string();
    assert!(e.contains("2 .gguf files"), "{e}");
    // a truncated file
    let e = Model::load(&d.path().join("a.gguf"), &inference_device()).err().unwrap().to_string();
    assert!(e.contains("a.gguf"), "{e}");
    // an architecture without a decoder here
    let mut w = GgufWriter::new();
    w.set_str("general.architecture", "mamba");
    let p = d.path().join("m.gguf");
    w.write(&p).unwrap();
    let e = Model::load(&p, &inference_device()).err().unwrap().to_string();
    assert!(e.contains("mamba") && e.contains("gemma3"), "{e}");
}
