//! `eval.yaml`: every field of `deepfeed eval`, flags override it. Paths are relative to the
//! YAML file's directory.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// How a record's generated answer is judged (`metadata.eval.kind`, or `task.kind` for the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Answer equals the target after normalisation (NFKC, lower case, no punctuation, single spaces).
    #[default]
    Exact,
    /// The normalised target occurs in the normalised answer.
    Contains,
    /// The answer matches `pattern` (Rust regex syntax).
    Regex,
    /// Multiple choice: the option with the highest log-likelihood is the model's answer
    /// (lm-evaluation-harness `acc`; `acc_norm` divides by the option's UTF-8 byte length).
    Choice,
    /// The answer is mapped onto one of `labels`; correct when that label is the target.
    Label,
    /// Perplexity and text overlap only, no accuracy.
    None,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Exact => "exact",
            TaskKind::Contains => "contains",
            TaskKind::Regex => "regex",
            TaskKind::Choice => "choice",
            TaskKind::Label => "label",
            TaskKind::None => "none",
        }
    }
}

/// The default task of the records without `metadata.eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDefaults {
    /// Task name used in the report and for `thresholds` (default: the kind).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub kind: TaskKind,
    /// For kind `regex` when a record has no `pattern` of its own.
    #[serde(default)]
    pub pattern: Option<String>,
    /// For kind `label` when a record has no `labels` of its own.
    #[serde(default)]
    pub labels: Vec<String>,
}

impl Default for TaskDefaults {
    fn default() -> Self {
        TaskDefaults { name: None, kind: TaskKind::Exact, pattern: None, labels: vec![] }
    }
}

/// Pass/fail gates; `null` switches one off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// In-domain perplexity must be at least this fraction lower than the base model's (needs
    /// `baseline`). 0.10 = 10% lower.
    #[serde(default = "default_ppl_improvement")]
    pub min_ppl_improvement: Option<f64>,
    /// Accuracy every task must reach (overridden per task by `thresholds`).
    #[serde(default = "default_accuracy")]
    pub min_accuracy: Option<f64>,
    /// The 95th percentile of end-to-end latency (generation of up to `max_new_tokens`), in ms.
    #[serde(default = "default_p95")]
    pub max_p95_latency_ms: Option<f64>,
    /// Largest allowed relative rise of perplexity on the general text (forgetting), e.g. 0.2;
    /// off by default.
    #[serde(default)]
    pub max_general_ppl_increase: Option<f64>,
    /// Per-task accuracy thresholds (task name -> fraction), replacing `min_accuracy` for them.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
}

fn default_ppl_improvement() -> Option<f64> {
    Some(0.10)
}
fn default_accuracy() -> Option<f64> {
    Some(0.85)
}
fn default_p95() -> Option<f64> {
    Some(500.0)
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            min_ppl_improvement: default_ppl_improvement(),
            min_accuracy: default_accuracy(),
            max_p95_latency_ms: default_p95(),
            max_general_ppl_increase: None,
            thresholds: BTreeMap::new(),
        }
    }
}

/// Where the general-ability (forgetting) text comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GeneralText {
    /// `true`: the built-in mixed English/Chinese sample (assets/general.txt); `false`: skip.
    Builtin(bool),
    /// A plain-text file of your own.
    File(PathBuf),
}

impl Default for GeneralText {
    fn default() -> Self {
        GeneralText::Builtin(true)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Base model directory (Hugging Face layout).
    pub model: PathBuf,
    /// PEFT adapter to evaluate (LoRA/DoRA/prefix); without it the base model itself is evaluated.
    #[serde(default)]
    pub adapter: Option<PathBuf>,
    /// Evaluation data, project JSONL.
    pub data: PathBuf,
    /// Also evaluate the model without the adapter, in the same run.
    #[serde(default)]
    pub baseline: bool,
    /// Report directory (default: `<run dir>/report` when the adapter sits in a training run
    /// directory, else `eval-report`); must not exist yet.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Most tokens generated per answer (greedy).
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Perplexity window: tokens per forward pass (default: the model's context, at most 1024).
    #[serde(default)]
    pub context: Option<usize>,
    /// Perplexity window step (default: context - 1).
    #[serde(default)]
    pub stride: Option<usize>,
    /// Generations run before timing starts (not counted in latency).
    #[serde(default = "default_warmup")]
    pub warmup: usize,
    #[serde(default)]
    pub general_text: GeneralText,
    #[serde(default)]
    pub task: TaskDefaults,
    #[serde(default)]
    pub gates: GateConfig,
    /// Evaluate even when adapter_config.json names another base model (shapes must still fit).
    #[serde(default)]
    pub allow_base_mismatch: bool,
    /// Worst-scoring samples shown side by side in the report.
    #[serde(default = "default_worst")]
    pub worst_samples: usize,
    /// Hash the model files (sha256) into report.json; slow for multi-GB models.
    #[serde(default = "default_true")]
    pub hash_model: bool,
    /// How the base's weight matrices are kept in memory: f32, bf16 or quantized.
    #[serde(default)]
    pub base_dtype: deepfeed_model::weights::WeightDType,
}

fn default_max_new_tokens() -> usize {
    64
}
fn default_warmup() -> usize {
    1
}
fn default_worst() -> usize {
    8
}
fn default_true() -> bool {
    true
}

impl EvalConfig {
    /// A config with every default.
    pub fn new(model: PathBuf, data: PathBuf) -> Self {
        EvalConfig {
            model,
            adapter: None,
            data,
            baseline: false,
            out: None,
            max_new_tokens: default_max_new_tokens(),
            context: None,
            stride: None,
            warmup: default_warmup(),
            general_text: GeneralText::default(),
            task: TaskDefaults::default(),
            gates: GateConfig::default(),
            allow_base_mismatch: false,
            worst_samples: default_worst(),
            hash_model: true,
            base_dtype: Default::default(),
        }
    }

    /// Reads a YAML config as JSON-like value (so that the CLI can lay its flags on top).
    pub fn yaml_value(path: &Path) -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        let mut v: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| {
            let msg = e.to_string();
            EvalError::Config(format!("{}: {}", path.display(), msg.lines().next().unwrap_or_default().trim_start_matches("error: ")))
        })?;
        if v.is_null() {
            v = serde_json::json!({});
        }
        if !v.is_object() {
            return Err(EvalError::Config(format!("{}: expected a mapping of eval settings at the top level", path.display())));
        }
        let base = path.parent().unwrap_or(Path::new(""));
        let obj = v.as_object_mut().unwrap();
        for key in ["model", "adapter", "data", "out", "general_text"] {
            if let Some(serde_json::Value::String(p)) = obj.get(key) {
                let p = PathBuf::from(p);
                if p.is_relative() {
                    obj.insert(key.into(), serde_json::json!(base.join(p)));
                }
            }
        }
        Ok(v)
    }

    /// Builds the config from a JSON value (YAML + flags), naming a missing or unknown field.
    pub fn from_value(v: serde_json::Value) -> Result<Self> {
        let cfg: EvalConfig = serde_json::from_value(v).map_err(|e| {
            let msg = e.to_string();
            match msg.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
                Some(field) => EvalError::Config(format!("eval: `{field}` is required: give --{} or `{field}:` in the YAML config", field.replace('_', "-"))),
                None => EvalError::Config(format!("eval config: {msg}")),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EvalError::Config(m));
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        let g = &self.gates;
        for (name, v) in [("gates.min_ppl_improvement", g.min_ppl_improvement), ("gates.min_accuracy", g.min_accuracy)] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return bad(format!("{name} must be a fraction in [0, 1], found {v}"));
                }
            }
        }
        for (task, v) in &g.thresholds {
            if !(0.0..=1.0).contains(v) {
                return bad(format!("gates.thresholds.{task} must be a fraction in [0, 1], found {v}"));
            }
        }
        if let Some(v) = g.max_p95_latency_ms {
            if v <= 0.0 {
                return bad(format!("gates.max_p95_latency_ms must be > 0, found {v}"));
            }
        }
        if self.task.kind == TaskKind::Choice {
            return bad("task.kind: choice needs per-record `metadata.eval.choices`; set it per record, not for the file".into());
        }
        if let Some(p) = &self.task.pattern {
            regex::Regex::new(p).map_err(|e| EvalError::Config(format!("task.pattern: not a valid regex: {e}")))?;
        }
        Ok(())
    }
}
