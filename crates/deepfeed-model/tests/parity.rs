//! Parity with transformers: fixtures written by `scripts/make_reference.py` (tiny random models
//! in HF layout + logits / perplexity / greedy tokens computed by PyTorch).
use std::path::PathBuf;

use deepfeed_model::backend::inference_device;
use deepfeed_model::generate::{generate, GenerateOptions};
use deepfeed_model::perplexity::score_ids;
use deepfeed_model::{ChatMessage, Model};
use safetensors::SafeTensors;
use serde_json::Value;

fn fixture(arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(arch)
}

fn reference_tensor(dir: &PathBuf, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let data = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    (t.shape().to_vec(), data)
}

fn check_arch(arch: &str) {
    let dir = fixture(arch);
    let reference: Value = serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let model = Model::load(&dir, &inference_device()).unwrap();

    // 1. tokenizer: same ids as transformers' tokenizer(text)
    let text = reference["text"].as_str().unwrap();
    let ids = model.tokenizer.encode(text, true).unwrap();
    let ref_ids: Vec<u32> = serde_json::from_value(reference["input_ids"].clone()).unwrap();
    assert_eq!(ids, ref_ids, "{arch}: token ids differ from transformers");
    assert_eq!(model.tokenizer.decode(&ids, true).unwrap(), text, "{arch}: decode(encode(text)) != text");

    // 2. logits for every position, max abs diff < 1e-4
    let (shape, ref_logits) = reference_tensor(&dir, "logits");
    let logits = model.logits(&ids).unwrap();
    assert_eq!(logits.dims().to_vec(), shape);
    let ours = logits.into_data().try_into_vec::<f32>().unwrap();
    let max_diff = ours.iter().zip(&ref_logits).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max_diff < 1e-4, "{arch}: max |logit diff| = {max_diff:e}");
    eprintln!("{arch}: max |logit diff| vs transformers = {max_diff:e}");

    // 3. perplexity, relative diff < 1e-5
    let (sum, count) = score_ids(&model, &ids, ids.len(), ids.len()).unwrap();
    let ppl = (sum / count as f64).exp();
    let ref_ppl = reference["perplexity"].as_f64().unwrap();
    let rel = (ppl - ref_ppl).abs() / ref_ppl;
    assert!(rel < 1e-5, "{arch}: perplexity {ppl} vs transformers {ref_ppl} (rel {rel:e})");

    // 4. chat template rendering and 20 greedy tokens through the KV cache
    let chat: Vec<ChatMessage> = serde_json::from_value(reference["chat"].clone()).unwrap();
    let prompt = model.tokenizer.apply_chat_template(&chat, true).unwrap();
    assert_eq!(prompt, reference["chat_prompt"].as_str().unwrap(), "{arch}: chat template rendering");
    let prompt_ids = model.tokenizer.encode(&prompt, false).unwrap();
    let ref_prompt_ids: Vec<u32> = serde_json::from_value(reference["chat_prompt_ids"].clone()).unwrap();
    assert_eq!(prompt_ids, ref_prompt_ids);
    let opts = GenerateOptions { max_new_tokens: 20, stop_on_eos: false, ..Default::default() };
    let g = generate(&model, &prompt_ids, &opts, &mut |_| {}).unwrap();
    let ref_greedy: Vec<u32> = serde_json::from_value(reference["greedy_ids"].clone()).unwrap();
    assert_eq!(g.token_ids, ref_greedy, "{arch}: greedy tokens differ from transformers");
}

#[test]
fn llama_matches_transformers() {
    check_arch("llama");
}

#[test]
fn qwen2_matches_transformers() {
    check_arch("qwen2");
}

#[test]
fn qwen3_matches_transformers() {
    check_arch("qwen3");
}

/// 3 layers (sliding, full, sliding) with an 8-token window, linear rope scaling on the full
/// layer, attention and final logit soft-capping, tied embeddings.
#[test]
fn gemma3_matches_transformers() {
    check_arch("gemma3");
}

/// MLA with a compressed query (q_lora_rank), YaRN (attention factor and softmax mscale),
/// 3 layers (dense, MoE, MoE) with a softmax router doing group-limited greedy top-2 of 8 experts,
/// 1 shared expert, routed_scaling_factor 1.5.
#[test]
fn deepseek_v2_matches_transformers() {
    check_arch("deepseek_v2");
}

/// MLA with an uncompressed q_proj, interleaved rope; sigmoid router with a random
/// e_score_correction_bias (noaux_tc, 2 groups, top-1 group), norm_topk_prob, scaling 2.5.
#[test]
fn deepseek_v3_matches_transformers() {
    check_arch("deepseek_v3");
}

/// The same V3 weights with `rope_interleave: false` (rotate-half rope on the rope slice).
#[test]
fn deepseek_v3_rotate_half_rope_matches_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v3");
    std::fs::create_dir(&dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        std::fs::copy(fixture("deepseek_v3").join(f), dir.join(f)).unwrap();
    }
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(fixture("deepseek_v3").join("config.json")).unwrap()).unwrap();
    cfg["rope_interleave"] = Value::Bool(false);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let reference: Value = serde_json::from_slice(&std::fs::read(fixture("deepseek_v3").join("reference.json")).unwrap()).unwrap();
    let ids: Vec<u32> = serde_json::from_value(reference["input_ids"].clone()).unwrap();
    let (shape, want) = reference_tensor(&fixture("deepseek_v3"), "logits_rotate_half");
    let model = Model::load(&dir, &inference_device()).unwrap();
    let logits = model.logits(&ids[..shape[0]]).unwrap();
    assert_eq!(logits.dims().to_vec(), shape);
    let ours = logits.into_data().try_into_vec::<f32>().unwrap();
    let max_diff = ours.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max_diff < 1e-4, "max |logit diff| = {max_diff:e}");
    // and the interleaved fixture's logits differ: the switch is not a no-op
    let (_, interleaved) = reference_tensor(&fixture("deepseek_v3"), "logits");
    assert!(ours.iter().zip(&interleaved).any(|(a, b)| (a - b).abs() > 1e-3));
}

/// The KV-cache path must give the same logits as one full pass.
#[test]
fn cached_decoding_equals_full_pass() {
    // gemma3: 3 of the sliding layers' 8-token windows pass while decoding
    // deepseek_v2: the per-head MLA keys/values and the MoE routing of single tokens
    for arch in ["qwen2", "gemma3", "deepseek_v2"] {
        check_cached_decoding(arch);
    }
}

fn check_cached_decoding(arch: &str) {
    let model = Model::load(&fixture(arch), &inference_device()).unwrap();
    let ids = model.tokenizer.encode("缓存 cache test 123: the window slides past these tokens.", true).unwrap();
    assert!(ids.len() > 12);
    let full = model.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
    let v = model.config.vocab_size;
    let mut cache = model.new_cache();
    let mut last = model.next_logits(&ids[..3], &mut cache).unwrap();
    for (i, &t) in ids.iter().enumerate().skip(3) {
        last = model.next_logits(&[t], &mut cache).unwrap();
        let want = &full[i * v..(i + 1) * v];
        let diff = last.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-4, "{arch} position {i}: cached vs full diff {diff:e}");
    }
    assert_eq!(last.len(), v);
}

/// Sliding windows score every token but the first exactly once, and a window covering the whole
/// text gives the transformers perplexity.
#[test]
fn sliding_window_scores_each_token_once() {
    let model = Model::load(&fixture("llama"), &inference_device()).unwrap();
    let reference: Value = serde_json::from_slice(&std::fs::read(fixture("llama").join("reference.json")).unwrap()).unwrap();
    let ids: Vec<u32> = serde_json::from_value(reference["input_ids"].clone()).unwrap();
    let (_, nll) = reference_tensor(&fixture("llama"), "token_nll");
    for (context, stride) in [(16, 16), (16, 5), (32, 31), (ids.len(), 1)] {
        let (sum, count) = score_ids(&model, &ids, context, stride).unwrap();
        assert_eq!(count, ids.len() - 1, "context {context} stride {stride}");
        if context == ids.len() {
            let want: f64 = nll.iter().map(|&x| x as f64).sum();
            assert!((sum - want).abs() / want < 1e-5);
        }
    }
    // more left context can only help a model that has learned something; here we just check
    // that the windows differ from one full pass when they must
    let (short, _) = score_ids(&model, &ids, 8, 8).unwrap();
    let (full, _) = score_ids(&model, &ids, ids.len(), ids.len()).unwrap();
    assert!((short - full).abs() > 1e-3);
}

/// `base_dtype` bf16 / quantized (Q8_0 at load) on DeepSeek: the blocks are really used, and
/// the logits equal those of the f32 model whose matrices hold the same rounded values (a
/// tolerance against the unrounded model would mostly measure the random experts' sensitivity to
/// routing flips).
#[test]
fn deepseek_bf16_and_quantized_bases_equal_rounded_f32() {
    use deepfeed_model::gguf::dequant::dequantize;
    use deepfeed_model::gguf::quantize::quantize;
    use deepfeed_model::gguf::GgmlType;
    use deepfeed_model::weights::{save_f32_safetensors, WeightDType};
    for arch in ["deepseek_v2", "deepseek_v3"] {
        let dir = fixture(arch);
        let reference: Value = serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        let ids: Vec<u32> = serde_json::from_value(reference["input_ids"].clone()).unwrap();
        for (dtype, ty) in [(WeightDType::Bf16, GgmlType::BF16), (WeightDType::Quantized, GgmlType::Q8_0)] {
            // the f32 twin: every matrix that `WeightFiles::matrix` encodes (not norms, not the
            // f32 routers; Q8_0 only for rows of whole 32-value blocks) rounded through `ty`
            let tmp = tempfile::tempdir().unwrap();
            for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
                std::fs::copy(dir.join(f), tmp.path().join(f)).unwrap();
            }
            let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            let mut tensors = Vec::new();
            for (name, t) in st.tensors() {
                let shape = t.shape().to_vec();
                let mut values: Vec<f32> = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                let encoded = shape.len() == 2 && !name.ends_with("mlp.gate.weight") && (ty == GgmlType::BF16 || shape[1] % 32 == 0);
                if encoded {
                    let blocks = quantize(ty, &values, shape[1]).unwrap();
                    let n = values.len();
                    dequantize(ty, &blocks, n, &mut values).unwrap();
                }
                tensors.push((name, shape, values));
            }
            save_f32_safetensors(&tmp.path().join("model.safetensors"), &tensors).unwrap();
            let want = Model::load(tmp.path(), &inference_device()).unwrap().logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();

            let mut m = Model::load_as(&dir, &inference_device(), dtype).unwrap();
            assert!(m.network.quantized_values() > 0, "{arch} {dtype:?}: no matrix kept as blocks");
            let got = m.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
            let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(max_diff < 1e-4, "{arch} {dtype:?}: max |logit diff| vs the rounded f32 model = {max_diff:e}");
        }
    }
}
