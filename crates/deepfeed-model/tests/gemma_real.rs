//! Real-model checks on Gemma 3 270M Q4_K_M loaded straight from its GGUF file (ignored: they
//! need the 253 MB file from `scripts/fetch_models.sh` and take about a minute). Run with
//!
//!     scripts/fetch_models.sh
//!     cargo test --release -p deepfeed-model --test gemma_real -- --ignored --nocapture
//!
//! References: transformers' GGUF loading (fp32 dequantised weights): `scripts/gemma_real_reference.py`
//! → tests/fixtures/gemma3_real/reference.json (token ids, greedy continuation) and
//! `scripts/gemma_real_ppl.py` → transformers_ppl.json (perplexity with llama-perplexity's protocol
//! on the same text) and llama.cpp's `llama-perplexity` on the same bytes
//! (`scripts/llama_cpp_perplexity.sh`, which also checks llama.cpp's 4,253 token ids equal these).
use std::path::PathBuf;
use std::time::Instant;

use deepfeed_model::backend::inference_device;
use deepfeed_model::generate::{generate, GenerateOptions};
use deepfeed_model::perplexity::score_chunks_llama_cpp;
use deepfeed_model::weights::WeightDType;
use deepfeed_model::Model;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// llama.cpp 0c1e570 (`scripts/build_llama_cpp.sh`) `llama-perplexity -c 512 -b 512 --no-repack`
/// on [`gpl3_20k`] (`scripts/llama_cpp_perplexity.sh`).
const LLAMA_CPP_PPL: f64 = 14.9046;

fn gguf() -> PathBuf {
    let cache = std::env::var_os("DEEPFEED_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/deepfeed"));
    let path = cache.join("gemma-3-270m-q4_k_m.gguf");
    assert!(path.is_file(), "{} missing: run scripts/fetch_models.sh first", path.display());
    path
}

fn reference() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3_real/reference.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The first 20,011 bytes of the GPL-3 shipped by Debian (base-files; 35,149 B, sha256 3972dc97…);
/// only the first 8 × 512 tokens (~19.3 KB) are scored.
fn gpl3_20k() -> String {
    let bytes = std::fs::read("/usr/share/common-licenses/GPL-3").expect("/usr/share/common-licenses/GPL-3 (Debian base-files)");
    let text = &bytes[..20011];
    let sha: String = Sha256::digest(text).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sha, "a1a018ee283e42bd5e7fc55745d2a2e56d5d2088d15e9999d7cae038b49e599f", "GPL-3 text differs from the one measured");
    String::from_utf8(text.to_vec()).unwrap()
}

/// Both ways of holding the base: dequantised to f32 at load, and kept as the file's blocks.
const DTYPES: [WeightDType; 2] = [WeightDType::F32, WeightDType::Quantized];

fn load(dtype: WeightDType) -> Model {
    let t = Instant::now();
    let model = Model::load_as(&gguf(), &inference_device(), dtype).unwrap();
    eprintln!("load ({} base + tokenizer): {:.1} s", dtype.name(), t.elapsed().as_secs_f64());
    model
}

#[test]
#[ignore = "needs the real Gemma 3 270M GGUF (scripts/fetch_models.sh)"]
fn gemma_real_tokenizer_and_greedy_match_transformers() {
    for dtype in DTYPES {
        let model = load(dtype);
        let r = reference();
        let ids = |k: &str| -> Vec<u32> { serde_json::from_value(r[k].clone()).unwrap() };

        let text = gpl3_20k();
        assert_eq!(model.tokenizer.encode(&text, true).unwrap(), ids("text_ids"), "GPL-3 text tokens");
        assert_eq!(model.tokenizer.encode(r["sample"].as_str().unwrap(), true).unwrap(), ids("sample_ids"), "sample tokens");

        let prompt = model.tokenizer.encode(r["prompt"].as_str().unwrap(), true).unwrap();
        assert_eq!(prompt, ids("prompt_ids"));
        let t = Instant::now();
        let opts = GenerateOptions { max_new_tokens: 10, stop_on_eos: false, ..Default::default() };
        let g = generate(&model, &prompt, &opts, &mut |_| {}).unwrap();
        eprintln!("greedy 10 tokens ({} base): {:?} in {:.2} s", dtype.name(), g.text, t.elapsed().as_secs_f64());
        assert_eq!(g.token_ids, ids("greedy_ids"), "{}: greedy continuation differs from transformers ({:?})", dtype.name(), r["greedy_text"]);
    }
}

#[test]
#[ignore = "needs the real Gemma 3 270M GGUF (scripts/fetch_models.sh)"]
fn gemma_real_perplexity_matches_transformers() {
    let mut ppls = vec![];
    for dtype in DTYPES {
        let model = load(dtype);
        let ids = model.tokenizer.encode(&gpl3_20k(), true).unwrap();
        let t = Instant::now();
        let (sum, count) = score_chunks_llama_cpp(&model, &ids, 512).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let ppl = (sum / count as f64).exp();
        let hf: Value = serde_json::from_slice(
            &std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3_real/transformers_ppl.json")).unwrap(),
        )
        .unwrap();
        let hf_ppl = hf["ppl"].as_f64().unwrap();
        eprintln!(
            "{} base, {} tokens, {} chunks of 512, {count} scored: PPL {ppl:.4}; transformers {hf_ppl:.4} ({:+.3}%); llama.cpp {LLAMA_CPP_PPL} ({:+.3}%); {secs:.1} s = {:.0} tok/s",
            dtype.name(),
            ids.len(),
            ids.len() / 512,
            100.0 * (ppl / hf_ppl - 1.0),
            100.0 * (ppl / LLAMA_CPP_PPL - 1.0),
            (ids.len() / 512 * 512) as f64 / secs
        );
        assert_eq!(count, hf["scored"].as_u64().unwrap() as usize);
        // same text, same tokens, same protocol, f32 both: transformers within 0.1%
        assert!((ppl / hf_ppl - 1.0).abs() < 1e-3, "PPL {ppl} vs transformers {hf_ppl}");
        // llama.cpp (same bytes, same token ids; it multiplies the quantised weights with 8-bit
        // quantised activations): within 1%, the target of issue #7
        assert!((ppl / LLAMA_CPP_PPL - 1.0).abs() < 0.01, "PPL {ppl} vs llama.cpp {LLAMA_CPP_PPL}");
        ppls.push(ppl);
    }
    // the quantised-in-memory base computes with the same dequantised values
    assert!((ppls[1] / ppls[0] - 1.0).abs() < 1e-5, "PPL f32 {} vs quantized {}", ppls[0], ppls[1]);
}

