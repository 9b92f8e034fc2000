//! A BERT encoder in Hugging Face layout (`BertModel`: MiniLM, BGE, E5 and other sentence
//! encoders), on burn. Mirrors transformers' `modeling_bert.py`: embeddings (word + absolute
//! position + token type, then LayerNorm), post-LayerNorm encoder layers with GELU, and an
//! additive padding mask so a batch of different lengths gives the same vectors as one text at a
//! time.
use std::path::Path;

use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use deepfeed_model::layers::{Embedding, Linear};
use deepfeed_model::weights::{WeightDType, WeightFiles};

use crate::error::{KbError, Result};

/// The fields of `config.json` a BERT encoder needs.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub model_type: String,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

impl BertConfig {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).map_err(|e| KbError::io(&path, e))?;
        let cfg: BertConfig =
            serde_json::from_slice(&bytes).map_err(|e| KbError::Config { path: path.clone(), message: format!("not a BERT config: {e}") })?;
        let bad = |message: String| Err(KbError::Config { path: path.clone(), message });
        if !matches!(cfg.model_type.as_str(), "bert" | "" ) {
            return bad(format!("field `model_type`: expected \"bert\" (BertModel: MiniLM, BGE, E5), found {:?}", cfg.model_type));
        }
        if cfg.hidden_act != "gelu" {
            return bad(format!("field `hidden_act`: only \"gelu\" is supported, found {:?}", cfg.hidden_act));
        }
        if let Some(p) = &cfg.position_embedding_type {
            if p != "absolute" {
                return bad(format!("field `position_embedding_type`: only \"absolute\" is supported, found {p:?}"));
            }
        }
        if cfg.num_attention_heads == 0 || cfg.hidden_size % cfg.num_attention_heads != 0 {
            return bad(format!("hidden_size {} is not a multiple of num_attention_heads {}", cfg.hidden_size, cfg.num_attention_heads));
        }
        Ok(cfg)
    }
}

/// `nn.LayerNorm` over the last dimension: `(x - mean) / sqrt(var + eps) * weight + bias`.
#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    pub eps: f64,
}

impl LayerNorm {
    fn load(w: &WeightFiles, prefix: &str, dim: usize, eps: f64, device: &Device) -> Result<Self> {
        Ok(LayerNorm { weight: w.tensor(&format!("{prefix}.weight"), [dim], device)?, bias: w.tensor(&format!("{prefix}.bias"), [dim], device)?, eps })
    }

    /// x: [b, s, h] -> [b, s, h]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mean = x.clone().mean_dim(2); // [b, s, 1]
        let centered = x - mean;
        let var = centered.clone().square().mean_dim(2); // biased, like torch
        let normed = centered / (var + self.eps).sqrt();
        normed * self.weight.clone().unsqueeze::<3>() + self.bias.clone().unsqueeze::<3>()
    }
}

/// One encoder layer (`BertLayer`).
#[derive(Debug)]
struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

pub struct BertModel {
    pub config: BertConfig,
    word_embeddings: Embedding,
    position_embeddings: Tensor<2>,
    token_type_embeddings: Tensor<2>,
    embeddings_norm: LayerNorm,
    layers: Vec<BertLayer>,
    device: Device,
}

impl BertModel {
    /// Loads `model.safetensors` of a `BertModel` directory (tensor names with or without the
    /// `bert.` prefix that `BertFor*` checkpoints carry).
    pub fn load(dir: &Path, config: BertConfig, device: &Device) -> Result<Self> {
        let w = WeightFiles::open(dir)?;
        let p = if w.contains("embeddings.word_embeddings.weight") { "" } else { "bert." };
        let (h, i, eps) = (config.hidden_size, config.intermediate_size, config.layer_norm_eps);
        let lin = |name: String, inf: usize, outf: usize| Linear::load(&w, &name, inf, outf, true, device, WeightDType::F32);
        let word_embeddings = Embedding { weight: w.matrix(&format!("{p}embeddings.word_embeddings.weight"), [config.vocab_size, h], device, WeightDType::F32)? };
        let position_embeddings = w.tensor(&format!("{p}embeddings.position_embeddings.weight"), [config.max_position_embeddings, h], device)?;
        let token_type_embeddings = w.tensor(&format!("{p}embeddings.token_type_embeddings.weight"), [config.type_vocab_size, h], device)?;
        let embeddings_norm = LayerNorm::load(&w, &format!("{p}embeddings.LayerNorm"), h, eps, device)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let q = format!("{p}encoder.layer.{l}");
            layers.push(BertLayer {
                query: lin(format!("{q}.attention.self.query"), h, h)?,
                key: lin(format!("{q}.attention.self.key"), h, h)?,
                value: lin(format!("{q}.attention.self.value"), h, h)?,
                attention_output: lin(format!("{q}.attention.output.dense"), h, h)?,
                attention_norm: LayerNorm::load(&w, &format!("{q}.attention.output.LayerNorm"), h, eps, device)?,
                intermediate: lin(format!("{q}.intermediate.dense"), h, i)?,
                output: lin(format!("{q}.output.dense"), i, h)?,
                output_norm: LayerNorm::load(&w, &format!("{q}.output.LayerNorm"), h, eps, device)?,
            });
        }
        Ok(BertModel { config, word_embeddings, position_embeddings, token_type_embeddings, embeddings_norm, layers, device: device.clone() })
    }

    /// Last hidden states for a padded batch.
    /// ids: b rows of s token ids; mask: 1 for real tokens, 0 for padding. Returns [b, s, h].
    pub fn forward(&self, ids: &[Vec<u32>], mask: &[Vec<u8>]) -> Tensor<3> {
        let b = ids.len();
        let s = ids[0].len();
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let d = h / heads;
        let flat: Vec<i32> = ids.iter().flat_map(|r| r.iter().map(|&t| t as i32)).collect();
        let ids_t = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, s]), &self.device);

        // embeddings: word + position (0..s) + token type 0, then LayerNorm
        let pos = self.position_embeddings.clone().slice([0..s, 0..h]).unsqueeze::<3>(); // [1, s, h]
        let tt = self.token_type_embeddings.clone().slice([0..1, 0..h]).unsqueeze::<3>(); // [1, 1, h]
        let mut x = self.embeddings_norm.forward(self.word_embeddings.forward(ids_t) + pos + tt); // [b, s, h]

        // additive mask over keys: 0 where attended, float min where padding (as transformers)
        let m: Vec<f32> = mask.iter().flat_map(|r| r.iter().map(|&v| if v == 1 { 0.0 } else { f32::MIN })).collect();
        let mask_t = Tensor::<4>::from_data(TensorData::new(m, [b, 1, 1, s]), &self.device);
        let scale = 1.0 / (d as f64).sqrt();
        let split = |t: Tensor<3>| t.reshape([b, s, heads, d]).swap_dims(1, 2); // [b, heads, s, d]
        for layer in &self.layers {
            let q = split(layer.query.forward(x.clone()));
            let k = split(layer.key.forward(x.clone()));
            let v = split(layer.value.forward(x.clone()));
            let scores = q.matmul(k.transpose()) * scale + mask_t.clone(); // [b, heads, s, s]
            let ctx = softmax(scores, 3).matmul(v); // [b, heads, s, d]
            let ctx = ctx.swap_dims(1, 2).reshape([b, s, h]);
            x = layer.attention_norm.forward(layer.attention_output.forward(ctx) + x);
            let ff = layer.output.forward(gelu(layer.intermediate.forward(x.clone())));
            x = layer.output_norm.forward(ff + x);
        }
        x
    }
}
