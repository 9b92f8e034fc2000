//! LoRA (Hu et al. 2021) as PEFT implements it: `y = x Wᵀ + scale · B(A(dropout(x)))` with
//! A `[r, in]`, B `[out, r]`, `scale = alpha / r` (rsLoRA: `alpha / sqrt(r)`). A starts
//! Kaiming-uniform, B at zero, so a new adapter leaves the model unchanged.
use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Module names LoRA can target in the Llama-family decoder.
pub const LINEAR_MODULES: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

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
        if self.use_dora {
            return Err(ModelError::Invalid("DoRA (use_dora) is not implemented yet; use plain LoRA or rsLoRA".into()));
        }
        if self.target_modules.is_empty() {
            return Err(ModelError::Invalid(format!("lora.target_modules is empty; choose from {} or all-linear", LINEAR_MODULES.join(", "))));
        }
        let mut out = Vec::new();
        for t in &self.target_modules {
            if t == "all-linear" {
                out.extend(LINEAR_MODULES.iter().map(|s| s.to_string()));
            } else if LINEAR_MODULES.contains(&t.as_str()) {
                out.push(t.clone());
            } else {
                return Err(ModelError::Invalid(format!(
                    "unknown LoRA target module {t:?}; choose from {} or all-linear",
                    LINEAR_MODULES.join(", ")
                )));
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
    pub scale: f64,
    pub dropout: f64,
    /// While training: the seed of this step's dropout mask (drawn on the host so that a resumed
    /// run repeats it exactly). `None`: no dropout (inference).
    pub dropout_seed: Option<u64>,
}

impl LoraAdapter {
    /// A new adapter: A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform with a = sqrt(5)), B = 0.
    pub fn init(in_f: usize, out_f: usize, cfg: &LoraConfig, rng: &mut StdRng, device: &burn::tensor::Device) -> Self {
        let bound = 1.0 / (in_f as f32).sqrt();
        let a: Vec<f32> = (0..cfg.r * in_f).map(|_| rng.random_range(-bound..bound)).collect();
        LoraAdapter {
            lora_a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [cfg.r, in_f]), device)),
            lora_b: Param::from_tensor(Tensor::zeros([out_f, cfg.r], device)),
            scale: cfg.scale(),
            dropout: cfg.lora_dropout,
            dropout_seed: None,
        }
    }

    /// x: [n, in] -> scale · B A x: [n, out]
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = match self.dropout_seed {
            Some(seed) if self.dropout > 0.0 => {
                let [n, d] = x.dims();
                let mut rng = StdRng::seed_from_u64(seed);
                let keep = 1.0 - self.dropout;
                let mask: Vec<f32> = (0..n * d).map(|_| if rng.random::<f64>() < keep { 1.0 / keep as f32 } else { 0.0 }).collect();
                x.clone() * Tensor::<2>::from_data(TensorData::new(mask, [n, d]), &x.device())
            }
            _ => x,
        };
        x.matmul(self.lora_a.val().transpose()).matmul(self.lora_b.val().transpose()) * self.scale
    }

    /// The weight delta `scale · B A`: [out, in].
    pub fn delta(&self) -> Tensor<2> {
        self.lora_b.val().matmul(self.lora_a.val()) * self.scale
    }
}
