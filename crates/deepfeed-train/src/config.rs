//! The training configuration: one YAML file (documented field by field in docs/training.md),
//! every field also settable from the command line.
use std::path::{Path, PathBuf};

use deepfeed_model::lora::LoraConfig;
pub use deepfeed_model::weights::WeightDType;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Low-rank adapters on chosen projections; base weights frozen.
    Lora,
    /// Every weight trained.
    Full,
    /// Only the last `freeze.trainable_layers` layers (and `freeze.trainable_modules`) trained.
    Freeze,
    /// Learned key/value prefixes per layer; base weights frozen.
    Prefix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    Constant,
    Linear,
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    #[serde(default = "d_rank")]
    pub r: usize,
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "d_targets")]
    pub target_modules: Vec<String>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
}

impl Default for LoraSection {
    fn default() -> Self {
        LoraSection { r: d_rank(), alpha: d_alpha(), dropout: 0.0, target_modules: d_targets(), use_rslora: false, use_dora: false }
    }
}

impl LoraSection {
    pub fn to_lora_config(&self) -> LoraConfig {
        LoraConfig {
            r: self.r,
            lora_alpha: self.alpha,
            lora_dropout: self.dropout,
            target_modules: self.target_modules.clone(),
            use_rslora: self.use_rslora,
            use_dora: self.use_dora,
        }
    }
}

/// What the training minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Supervised fine-tuning: NLL of the answer tokens.
    #[default]
    Sft,
    /// Direct preference optimisation on `rejected_text` pairs (see the `dpo` section).
    Dpo,
}

/// The DPO loss per pair, as TRL's `loss_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpoLoss {
    /// `-logsigmoid(beta·h)` with label smoothing (the DPO paper, TRL's default).
    #[default]
    Sigmoid,
    /// `(h - 1/(2·beta))²` (IPO, Azar et al. 2023).
    Ipo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoSection {
    /// Strength of the pull towards the reference model.
    #[serde(default = "d_dpo_beta")]
    pub beta: f64,
    #[serde(default)]
    pub loss: DpoLoss,
    /// Probability that a preference label is flipped (conservative DPO); sigmoid loss only.
    #[serde(default)]
    pub label_smoothing: f64,
}

impl Default for DpoSection {
    fn default() -> Self {
        DpoSection { beta: d_dpo_beta(), loss: DpoLoss::Sigmoid, label_smoothing: 0.0 }
    }
}

fn d_dpo_beta() -> f64 {
    0.1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixSection {
    /// Learned key/value positions per layer.
    #[serde(default = "d_virtual")]
    pub num_virtual_tokens: usize,
}

impl Default for PrefixSection {
    fn default() -> Self {
        PrefixSection { num_virtual_tokens: d_virtual() }
    }
}

fn d_virtual() -> usize {
    20
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeSection {
    /// Train the last N decoder layers.
    #[serde(default)]
    pub trainable_layers: usize,
    /// Also train parameters whose name contains one of these (e.g. `lm_head`, `model.norm`).
    #[serde(default)]
    pub trainable_modules: Vec<String>,
}

fn d_rank() -> usize {
    8
}
fn d_alpha() -> f64 {
    16.0
}
fn d_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}
fn d_epochs() -> usize {
    3
}
fn d_batch() -> usize {
    4
}
fn d_one() -> usize {
    1
}
fn d_lr() -> f64 {
    2e-4
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.999
}
fn d_eps() -> f64 {
    1e-8
}
fn d_clip() -> f64 {
    1.0
}
fn d_seq() -> usize {
    1024
}
fn d_seed() -> u64 {
    42
}
fn d_keep() -> usize {
    3
}
fn d_scheduler() -> Scheduler {
    Scheduler::Cosine
}
fn d_method() -> Method {
    Method::Lora
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Base model directory (Hugging Face layout).
    pub model: PathBuf,
    /// Training data: JSONL with input_text/target_text, messages, or text.
    pub data: PathBuf,
    /// Run directory: config.yaml, metrics.jsonl, checkpoints/, adapter/ or model/.
    pub output_dir: PathBuf,
    #[serde(default = "d_method")]
    pub method: Method,
    /// `sft` (default) or `dpo` (every record a preference pair).
    #[serde(default)]
    pub objective: Objective,
    #[serde(default)]
    pub dpo: DpoSection,
    /// Continue training this PEFT adapter instead of starting a new one (method lora).
    #[serde(default)]
    pub adapter: Option<PathBuf>,
    #[serde(default)]
    pub lora: LoraSection,
    #[serde(default)]
    pub freeze: FreezeSection,
    #[serde(default)]
    pub prefix: PrefixSection,
    /// Validation data; without it `val_split` of the training data is held out.
    #[serde(default)]
    pub val_data: Option<PathBuf>,
    #[serde(default)]
    pub val_split: f64,
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Stop after this many optimizer steps (overrides epochs).
    #[serde(default)]
    pub max_steps: Option<usize>,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default = "d_one")]
    pub grad_accum: usize,
    #[serde(default = "d_lr")]
    pub learning_rate: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "d_beta1")]
    pub adam_beta1: f64,
    #[serde(default = "d_beta2")]
    pub adam_beta2: f64,
    #[serde(default = "d_eps")]
    pub adam_epsilon: f64,
    #[serde(default = "d_scheduler")]
    pub lr_scheduler: Scheduler,
    #[serde(default)]
    pub warmup_steps: usize,
    /// Fraction of the total steps used for warm-up (when warmup_steps is 0).
    #[serde(default)]
    pub warmup_ratio: f64,
    /// Global gradient-norm clipping; 0 = off.
    #[serde(default = "d_clip")]
    pub max_grad_norm: f64,
    #[serde(default = "d_seq")]
    pub max_seq_len: usize,
    /// Pack several samples into each sequence of max_seq_len tokens (no attention across them).
    #[serde(default)]
    pub packing: bool,
    /// Also compute the loss on prompt tokens.
    #[serde(default)]
    pub train_on_prompt: bool,
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Write a checkpoint every N steps (0 = only at the end / on interrupt).
    #[serde(default)]
    pub save_every: usize,
    #[serde(default = "d_keep")]
    pub keep_last: usize,
    /// Validate every N steps (0 = once per epoch).
    #[serde(default)]
    pub eval_every: usize,
    /// Stop after this many validations without improvement.
    #[serde(default)]
    pub early_stopping_patience: Option<usize>,
    /// How the frozen base weights are stored: f32; bf16 to halve their memory; or quantized to
    /// keep them as quantised blocks (a GGUF file's own, Q8_0 for safetensors). lora/prefix only.
    #[serde(default)]
    pub base_dtype: WeightDType,
    /// Recompute activations in backward to save memory (burn's gradient checkpointing).
    #[serde(default)]
    pub gradient_checkpointing: bool,
}

impl TrainConfig {
    /// Reads a YAML config; paths in it are relative to the YAML file's directory.
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let mut cfg: TrainConfig =
            serde_saphyr::from_str(&text).map_err(|e| {
                // the first line says what and where; the rest is a source snippet
                let msg = e.to_string();
                let first = msg.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
                TrainError::Config(format!("{}: {first}", path.display()))
            })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for p in [Some(&mut cfg.model), Some(&mut cfg.data), Some(&mut cfg.output_dir), cfg.adapter.as_mut(), cfg.val_data.as_mut()].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }

    /// Checks every value; messages name the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if self.grad_accum == 0 {
            return bad("grad_accum must be at least 1".into());
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            return bad("epochs must be at least 1 (or set max_steps)".into());
        }
        if self.max_steps == Some(0) {
            return bad("max_steps must be at least 1".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(format!("learning_rate must be > 0, found {}", self.learning_rate));
        }
        if !(0.0..1.0).contains(&self.val_split) {
            return bad(format!("val_split must be in [0, 1), found {}", self.val_split));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad(format!("warmup_ratio must be in [0, 1), found {}", self.warmup_ratio));
        }
        if self.max_seq_len < 2 {
            return bad(format!("max_seq_len must be at least 2, found {}", self.max_seq_len));
        }
        if self.weight_decay < 0.0 || self.max_grad_norm < 0.0 {
            return bad("weight_decay and max_grad_norm must be >= 0".into());
        }
        match self.method {
            Method::Lora => {
                self.lora.to_lora_config().resolved_targets()?;
            }
            Method::Freeze if self.freeze.trainable_layers == 0 && self.freeze.trainable_modules.is_empty() => {
                return bad("method freeze needs freeze.trainable_layers > 0 or freeze.trainable_modules".into());
            }
            _ => {}
        }
        if self.base_dtype != WeightDType::F32 && !matches!(self.method, Method::Lora | Method::Prefix) {
            return bad(format!(
                "base_dtype: {} keeps the frozen weights in {} and needs method: lora or prefix (trained weights stay f32)",
                self.base_dtype.name(),
                if self.base_dtype == WeightDType::Bf16 { "bf16" } else { "quantised blocks" }
            ));
        }
        if self.adapter.is_some() && !matches!(self.method, Method::Lora | Method::Prefix) {
            return bad("`adapter` (continue a PEFT adapter) needs method: lora or prefix".into());
        }
        if self.objective == Objective::Dpo {
            if !(self.dpo.beta > 0.0 && self.dpo.beta.is_finite()) {
                return bad(format!("dpo.beta must be > 0, found {}", self.dpo.beta));
            }
            if !(0.0..0.5).contains(&self.dpo.label_smoothing) {
                return bad(format!("dpo.label_smoothing must be in [0, 0.5), found {}", self.dpo.label_smoothing));
            }
            if self.dpo.label_smoothing > 0.0 && self.dpo.loss != DpoLoss::Sigmoid {
                return bad("dpo.label_smoothing needs dpo.loss: sigmoid".into());
            }
            if self.packing {
                return bad("packing does not apply to objective: dpo (each pair is scored as two whole sequences)".into());
            }
        }
        if self.method == Method::Prefix && self.prefix.num_virtual_tokens == 0 {
            return bad("prefix.num_virtual_tokens must be at least 1".into());
        }
        Ok(())
    }
}
