//! LoRA (Hu et al. 2021) as PEFT implements it: `y = x Wᵀ + scale · B(A(dropout(x)))` with
//! A `[r, in]`, B `[out, r]`, `scale = alpha / r` (rsLoRA: `alpha / sqrt(r)`). A starts
//! Kaiming-uniform, B at zero, so a new adapter leaves the model unchanged.
//!
//! DoRA (Liu et al. 2024, PEFT `use_dora`) adds a magnitude `m` per output row: the adapted
//! weight is `m · (W + scale·BA) / ‖W + scale·BA‖_row`, the norm treated as a constant in
//! backward; `m` starts at `‖W‖_row`.
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Module names LoRA can target in the Llama-family decoder.
pub const LINEAR_MODULES: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// Module names LoRA can target in DeepSeek-V2/V3's decoder: the latent-attention projections
/// (`q_proj` when the query is not compressed, else `q_a_proj` + `q_b_proj`) and the SwiGLU
/// projections of the dense layers, of every routed expert (`mlp.experts.E.gate_proj`) and of
/// the shared experts. As in PEFT a name matches every module whose path ends with it; the
/// routers (`mlp.gate`) are not linears and are never adapted.
pub const DEEPSEEK_LINEAR_MODULES: [&str; 9] =
    ["q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// Every module name some architecture has; `all-linear` expands to these (a name the loaded
/// architecture lacks adapts nothing, and the saved adapter lists only the adapted ones).
fn known_modules() -> Vec<&'static str> {
    let mut all: Vec<&str> = LINEAR_MODULES.iter().chain(DEEPSEEK_LINEAR_MODULES.iter()).copied().collect();
    all.sort();
    all.dedup();
    all
}

/// The LoRA hyper-parameters, with PEFT's field names (`adapter_config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    /// Module names (`q_proj`, …) or `["all-linear"]`.
    pub target_modules: Vec<String>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { r: 8, lora_alpha: 16.0, lora_dropout: 0.0, target_modules: vec!["q_proj".into(), "v_proj".into()], use_rslora: false, use_dora: false }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// Checks the values and expands `all-linear`; returns the module names to adapt.
    pub fn resolved_targets(&self) -> Result<Vec<String>> {
        if self.r == 0 {
            return Err(ModelError::Invalid("lora.r (rank) must be at least 1, found 0".into()));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(ModelError::Invalid(format!("lora.dropout must be in [0, 1), found {}", self.lora_dropout)));
        }
        let known = known_modules();
        if self.target_modules.is_empty() {
            return Err(ModelError::Invalid(format!("lora.target_modules is empty; choose from {} or all-linear", known.join(", "))));
        }
        let mut out = Vec::new();
        for t in &self.target_modules {
            if t == "all-linear" {
                out.extend(known.iter().map(|s| s.to_string()));
            } else if known.contains(&t.as_str()) {
                out.push(t.clone());
            } else {
                return Err(ModelError::Invalid(format!("unknown LoRA target module {t:?}; choose from {} or all-linear", known.join(", "))));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// [r, in]
    pub lora_a: Param<Tensor<2>>,
    /// [out, r]
    pub lora_b: Param<Tensor<2>>,
    /// DoRA only: magnitude per output row, [out]
    pub magnitude: Option<Param<Tensor<1>>>,
    pub scale: f64,
    pub dropout: f64,
    /// While training: the seed of this step's dropout mask (drawn on the host so that a resumed
    /// run repeats it exactly). `None`: no dropout (inference).
    pub dropout_seed: Option<u64>,
}

impl LoraAdapter {
    /// A new adapter for a `[out, in]` weight: A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's
    /// kaiming_uniform with a = sqrt(5)), B = 0; DoRA's magnitude = ‖W‖_row, so `weight` (f32)
    /// is read only when `cfg.use_dora`.
    pub fn init(dims: [usize; 2], weight: impl FnOnce() -> Tensor<2>, device: &Device, cfg: &LoraConfig, rng: &mut StdRng) -> Self {
        let [out_f, in_f] = dims;
        let bound = 1.0 / (in_f as f32).sqrt();
        let a: Vec<f32> = (0..cfg.r * in_f).map(|_| rng.random_range(-bound..bound)).collect();
        let magnitude = cfg.use_dora.then(|| Param::from_tensor(row_norm(weight().detach()).detach()));
        LoraAdapter {
            lora_a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [cfg.r, in_f]), device)),
            lora_b: Param::from_tensor(Tensor::zeros([out_f, cfg.r], device)),
            magnitude,
            scale: cfg.scale(),
            dropout: cfg.lora_dropout,
            dropout_seed: None,
        }
    }

    /// What the adapter adds to the base output `base = x Wᵀ` (bias excluded), x: [n, in] -> [n, out].
    /// LoRA: `scale · B A x`. DoRA: `(s − 1) ⊙ x Wᵀ + s ⊙ scale · B A x` with
    /// `s = m / ‖W + scale·BA‖_row` (PEFT's `DoraLinearLayer.forward`). `weight` (W, f32) is
    /// needed for DoRA only.
    pub fn forward(&self, x: Tensor<2>, weight: Option<&Tensor<2>>, base: &Tensor<2>) -> Tensor<2> {
        let dropped = self.dropout_seed.is_some() && self.dropout > 0.0;
        let x = self.apply_dropout(x);
        let lora = x.clone().matmul(self.lora_a.val().transpose()).matmul(self.lora_b.val().transpose()) * self.scale;
        let Some(m) = &self.magnitude else { return lora };
        let weight = weight.expect("DoRA needs the base weight");
        let s = self.dora_scale(m, weight).unsqueeze::<2>(); // [1, out]
        // with dropout the base term uses the dropped-out input, as PEFT does
        let base = if dropped { x.matmul(weight.clone().transpose()) } else { base.clone() };
        base * (s.clone() - 1.0) + lora * s
    }

    /// m / ‖W + scale·BA‖_row, the norm detached: [out]
    fn dora_scale(&self, m: &Param<Tensor<1>>, weight: &Tensor<2>) -> Tensor<1> {
        let adapted = weight.clone() + self.lora_b.val().matmul(self.lora_a.val()).detach() * self.scale;
        m.val() / row_norm(adapted).detach()
    }

    fn apply_dropout(&self, x: Tensor<2>) -> Tensor<2> {
        match self.dropout_seed {
            Some(seed) if self.dropout > 0.0 => {
                let [n, d] = x.dims();
                let mut rng = StdRng::seed_from_u64(seed);
                let keep = 1.0 - self.dropout;
                let mask: Vec<f32> = (0..n * d).map(|_| if rng.random::<f64>() < keep { 1.0 / keep as f32 } else { 0.0 }).collect();
                x.clone() * Tensor::<2>::from_data(TensorData::new(mask, [n, d]), &x.device())
            }
            _ => x,
        }
    }

    /// The adapted weight `W + scale·BA` (DoRA: rescaled to the magnitude per row): [out, in].
    pub fn merged_weight(&self, weight: Tensor<2>) -> Tensor<2> {
        let adapted = weight.clone() + self.lora_b.val().matmul(self.lora_a.val()) * self.scale;
        match &self.magnitude {
            None => adapted,
            Some(m) => adapted * self.dora_scale(m, &weight).unsqueeze_dim::<2>(1),
        }
    }
}

/// L2 norm of each row: [out, in] -> [out]
fn row_norm(w: Tensor<2>) -> Tensor<1> {
    let [out, _] = w.dims();
    w.square().sum_dim(1).sqrt().reshape([out])
}
