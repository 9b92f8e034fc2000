//! Building blocks shared by the architectures: linear projections in Hugging Face layout,
//! RMSNorm, rotary position embeddings and the causal mask. Each mirrors its transformers
//! counterpart (`nn.Linear`, `LlamaRMSNorm`, `LlamaRotaryEmbedding`, `apply_rotary_pos_emb`).
use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::config::{ModelConfig, RopeScaling};
use crate::error::Result;
use crate::lora::LoraAdapter;
use crate::quantized::QuantizedMatrix;
use crate::weights::{WeightDType, WeightFiles};

/// A weight as f32 for computation (bf16-stored weights are widened here).
pub fn as_f32<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(DType::F32)
    }
}

/// A weight matrix `[rows, cols]`: a burn parameter, or, for a frozen base loaded with
/// `base_dtype: bf16` or `quantized`, blocks that are widened to f32 a tile at a time whenever the
/// matrix is used (`quantized/`); that form is never trained.
#[derive(Module, Debug)]
pub enum MatrixWeight {
    Dense(Param<Tensor<2>>),
    Quantized(QuantizedMatrix),
}

impl MatrixWeight {
    /// `[rows, cols]`
    pub fn dims(&self) -> [usize; 2] {
        match self {
            MatrixWeight::Dense(p) => p.dims(),
            MatrixWeight::Quantized(q) => q.dims(),
        }
    }

    /// The values as an f32 tensor on `device` (a quantised matrix is dequantised whole: use it
    /// for merging and exporting, not in a training step).
    pub fn dense(&self, device: &Device) -> Tensor<2> {
        match self {
            MatrixWeight::Dense(p) => as_f32(p.val()),
            MatrixWeight::Quantized(q) => Tensor::from_data(TensorData::new(q.to_f32(), q.dims()), device),
        }
    }

    /// `x Wᵀ`: x `[n, cols]` -> `[n, rows]`.
    pub fn matmul_t(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            MatrixWeight::Dense(p) => x.matmul(as_f32(p.val()).transpose()),
            MatrixWeight::Quantized(q) => crate::quantized::matmul_t(x, q),
        }
    }

    /// Rows `ids` as f32 `[n, cols]` (an embedding lookup).
    pub fn rows(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        match self {
            MatrixWeight::Dense(p) => as_f32(p.val().select(0, ids)),
            MatrixWeight::Quantized(q) => {
                let device = ids.device();
                let ids: Vec<usize> = ids.into_data().iter::<i64>().map(|i| i as usize).collect();
                Tensor::from_data(TensorData::new(q.gather_rows(&ids), [ids.len(), q.dims()[1]]), &device)
            }
        }
    }

    /// The parameter, unless the matrix is kept quantised.
    pub fn param_mut(&mut self) -> Option<&mut Param<Tensor<2>>> {
        match self {
            MatrixWeight::Dense(p) => Some(p),
            MatrixWeight::Quantized(_) => None,
        }
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, MatrixWeight::Quantized(_))
    }
}

/// `y = x Wᵀ + b` with `W` stored as `[out, in]`, exactly like `torch.nn.Linear`.
#[derive(Module, Debug)]
pub struct Linear {
    /// [out_features, in_features]
    pub weight: MatrixWeight,
    /// [out_features]
    pub bias: Option<Param<Tensor<1>>>,
    /// A LoRA adapter added to the output, when one is attached.
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    /// Loads `{prefix}.weight` (kept as `dtype`) and `{prefix}.bias` when `bias`.
    pub fn load(w: &WeightFiles, prefix: &str, in_f: usize, out_f: usize, bias: bool, device: &Device, dtype: WeightDType) -> Result<Self> {
        let weight = w.matrix(&format!("{prefix}.weight"), [out_f, in_f], device, dtype)?;
        let bias = if bias { Some(Param::from_tensor(w.tensor(&format!("{prefix}.bias"), [out_f], device)?)) } else { None };
        Ok(Linear { weight, bias, lora: None })
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Folds the LoRA adapter into the weight (`W + scale·BA`) and removes it; a quantised
    /// weight becomes a dense f32 one.
    pub fn merge_lora(&mut self, device: &Device) {
        if let Some(lora) = self.lora.take() {
            let merged = lora.merged_weight(self.weight.dense(device).detach()).detach();
            self.weight = MatrixWeight::Dense(Param::from_tensor(merged));
        }
    }

    /// x: [b, s, in] -> [b, s, out]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, i] = x.dims();
        let out = self.out_features();
        let x = x.reshape([b * s, i]);
        let base = self.weight.matmul_t(x.clone()); // [b*s, out]
        let y = match &self.lora {
            Some(lora) => {
                // DoRA needs W itself; a quantised W is dequantised for it (outside the graph)
                let dora_weight = lora.magnitude.is_some().then(|| self.weight.dense(&x.device()));
                base.clone() + lora.forward(x, dora_weight.as_ref(), &base)
            }
            None => base,
        };
        let y = match &self.bias {
            Some(bias) => y + bias.val().unsqueeze::<2>(),
            None => y,
        };
        y.reshape([b, s, out])
    }
}

/// `x / sqrt(mean(x²) + eps) * weight` over the last dimension (LlamaRMSNorm).
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// [dim]
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    pub fn load(w: &WeightFiles, name: &str, dim: usize, eps: f64, device: &Device) -> Result<Self> {
        Ok(RmsNorm { weight: Param::from_tensor(w.tensor(&format!("{name}.weight"), [dim], device)?), eps })
    }

    /// Normalises the last dimension of a rank-`D` tensor.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let variance = x.clone().square().mean_dim(D - 1); // [..., 1]
        let normed = x * (variance + self.eps).sqrt().recip();
        normed * self.weight.val().unsqueeze::<D>()
    }
}

/// Token embedding table `[vocab, hidden]` (`nn.Embedding`).
#[derive(Module, Debug)]
pub struct Embedding {
    pub weight: MatrixWeight,
}

impl Embedding {
    /// ids: [b, s] -> [b, s, hidden]
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, s] = ids.dims();
        let hidden = self.weight.dims()[1];
        self.weight.rows(ids.reshape([b * s])).reshape([b, s, hidden])
    }

    /// The tied output head: hidden [b, s, h] -> logits [b, s, vocab].
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, s, h] = hidden.dims();
        let vocab = self.weight.dims()[0];
        self.weight.matmul_t(hidden.reshape([b * s, h])).reshape([b, s, vocab])
    }
}

/// Rotary position embedding frequencies (`LlamaRotaryEmbedding`, with its `rope_scaling` types).
#[derive(Debug, Clone)]
pub struct Rotary {
    head_dim: usize,
    base: f64,
    scaling: RopeScaling,
    /// inverse frequencies for the unscaled / statically scaled case, [head_dim / 2]
    inv_freq: Vec<f32>,
}

impl Rotary {
    pub fn new(cfg: &ModelConfig) -> Self {
        let inv_freq = inverse_frequencies(cfg.head_dim, cfg.rope_theta, &cfg.rope_scaling);
        Rotary { head_dim: cfg.head_dim, base: cfg.rope_theta, scaling: cfg.rope_scaling.clone(), inv_freq }
    }

    /// Unscaled rotary embedding with base `theta` (Gemma 3's sliding layers).
    pub fn unscaled(head_dim: usize, theta: f64) -> Self {
        let inv_freq = inverse_frequencies(head_dim, theta, &RopeScaling::None);
        Rotary { head_dim, base: theta, scaling: RopeScaling::None, inv_freq }
    }

    /// cos and sin for `positions` (one row of `s` positions per batch element, `b*s` values),
    /// each shaped [b, 1, s, head_dim] to broadcast over heads.
    pub fn cos_sin(&self, positions: &[usize], b: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let s = positions.len() / b;
        let dynamic;
        let inv_freq = match self.scaling {
            RopeScaling::Dynamic { factor, original_max_position_embeddings: orig } => {
                // NTK-aware: once the sequence is longer than the original context, grow the base.
                let seq_len = positions.iter().max().map_or(0, |p| p + 1);
                if seq_len > orig {
                    let d = self.head_dim as f64;
                    let base = self.base * ((factor * seq_len as f64 / orig as f64) - (factor - 1.0)).powf(d / (d - 2.0));
                    dynamic = inverse_frequencies(self.head_dim, base, &RopeScaling::None);
                    &dynamic
                } else {
                    &self.inv_freq
                }
            }
            _ => &self.inv_freq,
        };
        // YaRN scales cos and sin (so q·k of the rotated part) by its attention factor
        let magnitude = match self.scaling {
            RopeScaling::Yarn { attention_factor, .. } => attention_factor as f32,
            _ => 1.0,
        };
        let half = self.head_dim / 2;
        let mut cos = Vec::with_capacity(positions.len() * self.head_dim);
        let mut sin = Vec::with_capacity(positions.len() * self.head_dim);
        for &p in positions {
            // emb = cat(freqs, freqs): the two halves of a head share frequencies (rotate_half layout)
            for _ in 0..2 {
                for f in &inv_freq[..half] {
                    let angle = p as f32 * f;
                    cos.push(angle.cos() * magnitude);
                    sin.push(angle.sin() * magnitude);
                }
            }
        }
        let shape = [b, 1, s, self.head_dim];
        (
            Tensor::from_data(TensorData::new(cos, shape), device),
            Tensor::from_data(TensorData::new(sin, shape), device),
        )
    }
}

fn inverse_frequencies(head_dim: usize, base: f64, scaling: &RopeScaling) -> Vec<f32> {
    // transformers computes these in float32: 1 / base^(2i/d)
    let base_freq: Vec<f32> =
        (0..head_dim / 2).map(|i| 1.0 / (base as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
    match *scaling {
        RopeScaling::None | RopeScaling::Dynamic { .. } => base_freq,
        RopeScaling::Linear { factor } => base_freq.iter().map(|f| f / factor as f32).collect(),
        RopeScaling::Yarn { factor, original_max_position_embeddings, beta_fast, beta_slow, truncate, .. } => {
            // transformers `_compute_yarn_parameters`: the correction range in f64, the blend in f32
            let dim = head_dim as f64;
            let correction_dim =
                |rotations: f64| dim * (original_max_position_embeddings as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln());
            let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
            if truncate {
                low = low.floor();
                high = high.ceil();
            }
            let (low, mut high) = (low.max(0.0) as f32, high.min(dim - 1.0) as f32);
            if low == high {
                high += 0.001; // as transformers: no division by zero
            }
            let factor = factor as f32;
            base_freq
                .iter()
                .enumerate()
                .map(|(i, &extrapolation)| {
                    // base_freq is 1 / base^(2i/d); transformers divides by factor * base^(2i/d)
                    let pos_freq = 1.0 / extrapolation;
                    let interpolation = 1.0 / (factor * pos_freq);
                    let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
                    let extrapolation_factor = 1.0 - ramp;
                    interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
                })
                .collect()
        }
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            let old = original_max_position_embeddings as f32;
            let (factor, low, high) = (factor as f32, low_freq_factor as f32, high_freq_factor as f32);
            let low_freq_wavelen = old / low;
            let high_freq_wavelen = old / high;
            base_freq
                .iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_freq_wavelen {
                        f
                    } else if wavelen > low_freq_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

/// `x * cos + rotate_half(x) * sin` where rotate_half(x) = cat(-x[.., d/2..], x[.., ..d/2]).
/// x: [b, heads, s, head_dim]; cos/sin: [b, 1, s, head_dim]
pub fn apply_rotary(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, s, d] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..s, 0..d / 2]);
    let x2 = x.clone().slice([0..b, 0..h, 0..s, d / 2..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// Rotary embedding on interleaved pairs (x0, x1), (x2, x3)…, each pair turned by one frequency,
/// written back de-interleaved: `cat(x_even·cos − x_odd·sin, x_odd·cos + x_even·sin)`
/// (transformers' `apply_rotary_pos_emb_interleave`, DeepSeek's layout). cos/sin are the usual
/// `cat(freqs, freqs)` tables; their first half holds each pair's angle.
/// x: [b, heads, s, d]; cos/sin: [b, 1, s, d]
pub fn apply_rotary_interleaved(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, s, d] = x.dims();
    let half = d / 2;
    let cos = cos.clone().slice([0..b, 0..1, 0..s, 0..half]); // [b, 1, s, d/2]
    let sin = sin.clone().slice([0..b, 0..1, 0..s, 0..half]);
    let pairs = x.reshape([b, h, s, half, 2]);
    let even = pairs.clone().slice([0..b, 0..h, 0..s, 0..half, 0..1]).reshape([b, h, s, half]);
    let odd = pairs.slice([0..b, 0..h, 0..s, 0..half, 1..2]).reshape([b, h, s, half]);
    Tensor::cat(
        vec![even.clone() * cos.clone() - odd.clone() * sin.clone(), odd * cos + even * sin],
        3,
    )
}

/// The attention mask of `s` new tokens after `past` cached ones. A given `mask` [b, 1, s, s]
/// covers the new tokens only: it is widened so that every query also sees the cached positions.
/// Without one: the causal mask, or none for a single token (it sees everything before it).
pub fn attention_mask(mask: Option<Tensor<4>>, b: usize, s: usize, past: usize, device: &Device) -> Option<Tensor<4>> {
    match mask {
        Some(m) if past > 0 => Some(Tensor::cat(vec![Tensor::zeros([b, 1, s, past], device), m], 3)),
        Some(m) => Some(m),
        None => (s > 1).then(|| causal_mask(s, past, device)),
    }
}

/// Additive causal mask for `s` new queries attending to `past + s` keys: [1, 1, s, past + s],
/// 0 where allowed and -inf where a key lies in the query's future.
pub fn causal_mask(s: usize, past: usize, device: &Device) -> Tensor<4> {
    let t = past + s;
    let mut m = vec![0f32; s * t];
    for i in 0..s {
        for j in (past + i + 1)..t {
            m[i * t + j] = f32::NEG_INFINITY;
        }
    }
    Tensor::from_data(TensorData::new(m, [1, 1, s, t]), device)
}

/// Additive mask hiding keys more than `window - 1` positions behind their query (transformers'
/// `sliding_window_overlay`: key j is seen by query i when j > i - window), for `s` new queries
/// after `past` cached positions: [1, 1, s, past + s]. Combine it with the causal mask.
pub fn sliding_window_mask(s: usize, past: usize, window: usize, device: &Device) -> Tensor<4> {
    let t = past + s;
    let mut m = vec![0f32; s * t];
    for i in 0..s {
        let q = past + i;
        for j in 0..t {
            if j + window <= q {
                m[i * t + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_data(TensorData::new(m, [1, 1, s, t]), device)
}
