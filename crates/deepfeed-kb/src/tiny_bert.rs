//! A small random BERT sentence encoder in sentence-transformers layout, for tests, demos and
//! benchmarks: config.json, model.safetensors, the 464-token English+Chinese WordPiece tokenizer
//! trained by `scripts/make_kb_reference.py`, modules.json (Transformer, Pooling, Normalize),
//! 1_Pooling/config.json and sentence_bert_config.json. Random weights embed text consistently
//! (same text, same vector; shared words pull vectors together), which is all the tests need.
use std::path::Path;

use deepfeed_model::fsutil::write_dir_atomically;
use deepfeed_model::weights::save_f32_safetensors;
use deepfeed_model::ModelError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::error::Result;

pub const TINY_BERT_TOKENIZER_JSON: &str = include_str!("../assets/tiny-bert-tokenizer.json");

#[derive(Debug, Clone)]
pub struct TinyBertSpec {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub seed: u64,
}

impl Default for TinyBertSpec {
    fn default() -> Self {
        TinyBertSpec { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, max_position_embeddings: 128, seed: 0 }
    }
}

fn write(path: &Path, text: &str) -> std::result::Result<(), ModelError> {
    std::fs::write(path, text).map_err(|e| ModelError::io(path, e))
}

/// Writes the encoder into `dir` (which must not exist, or be empty).
pub fn write_tiny_bert(dir: &Path, spec: &TinyBertSpec) -> Result<()> {
    let vocab = serde_json::from_str::<serde_json::Value>(TINY_BERT_TOKENIZER_JSON).expect("valid tokenizer")["model"]["vocab"].as_object().map_or(0, |v| v.len());
    let (h, i) = (spec.hidden_size, spec.intermediate_size);
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut randn = |n: usize, std: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                // Box-Muller
                let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
                std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
            })
            .collect()
    };
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, data: Vec<f32>| tensors.push((name, shape, data));
    add("embeddings.word_embeddings.weight".into(), vec![vocab, h], randn(vocab * h, 0.3));
    add("embeddings.position_embeddings.weight".into(), vec![spec.max_position_embeddings, h], randn(spec.max_position_embeddings * h, 0.3));
    add("embeddings.token_type_embeddings.weight".into(), vec![2, h], randn(2 * h, 0.3));
    add("embeddings.LayerNorm.weight".into(), vec![h], vec![1.0; h]);
    add("embeddings.LayerNorm.bias".into(), vec![h], vec![0.0; h]);
    for l in 0..spec.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (name, inf, outf) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", h, i),
            ("output.dense", i, h),
        ] {
            add(format!("{p}.{name}.weight"), vec![outf, inf], randn(outf * inf, 0.3));
            add(format!("{p}.{name}.bias"), vec![outf], randn(outf, 0.05));
        }
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(format!("{p}.{name}.weight"), vec![h], vec![1.0; h]);
            add(format!("{p}.{name}.bias"), vec![h], vec![0.0; h]);
        }
    }
    let config = json!({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": vocab, "hidden_size": h,
        "num_hidden_layers": spec.num_hidden_layers, "num_attention_heads": spec.num_attention_heads,
        "intermediate_size": i, "max_position_embeddings": spec.max_position_embeddings, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": 0, "position_embedding_type": "absolute"
    });
    write_dir_atomically(dir, |tmp| {
        write(&tmp.join("config.json"), &serde_json::to_string_pretty(&config).expect("json"))?;
        save_f32_safetensors(&tmp.join("model.safetensors"), &tensors)?;
        write(&tmp.join("tokenizer.json"), TINY_BERT_TOKENIZER_JSON)?;
        write(
            &tmp.join("modules.json"),
            &json!([
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
            ])
            .to_string(),
        )?;
        std::fs::create_dir_all(tmp.join("1_Pooling")).map_err(|e| ModelError::io(tmp, e))?;
        write(&tmp.join("1_Pooling/config.json"), &json!({"word_embedding_dimension": h, "pooling_mode_mean_tokens": true}).to_string())?;
        write(&tmp.join("sentence_bert_config.json"), &json!({"max_seq_length": spec.max_position_embeddings, "do_lower_case": false}).to_string())?;
        Ok(())
    })?;
    Ok(())
}
