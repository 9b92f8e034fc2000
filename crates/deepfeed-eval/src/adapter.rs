//! The adapter under evaluation: refuses one trained for another base model (by the name in
//! `adapter_config.json` and by the LoRA shapes), and detaches/re-attaches it so that the base
//! model is evaluated from the same loaded weights (the baseline costs no second load).
use std::path::{Path, PathBuf};

use deepfeed_model::lora::LoraAdapter;
use deepfeed_model::prefix::PrefixTuning;
use deepfeed_model::weights::WeightFiles;
use deepfeed_model::Model;
use serde_json::Value;

use crate::error::{EvalError, Result};

/// `base_model_name_or_path` of a PEFT adapter directory, if it names one.
pub fn adapter_base_name(adapter: &Path) -> Result<Option<String>> {
    let path = adapter.join("adapter_config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| EvalError::Invalid(format!("{}: not valid JSON: {e}", path.display())))?;
    Ok(v.get("base_model_name_or_path").and_then(|n| n.as_str()).filter(|n| !n.trim().is_empty()).map(String::from))
}

/// The last path component, lower case: `deepseek-ai/DeepSeek-R1-Distill-Qwen-7B` and
/// `/models/deepseek-r1-distill-qwen-7b/` both give `deepseek-r1-distill-qwen-7b`.
fn stem(name: &str) -> String {
    name.trim_end_matches(['/', '\\']).rsplit(['/', '\\']).next().unwrap_or(name).to_lowercase()
}

/// The names a model directory goes by: the path as given, its canonical path, and
/// `_name_or_path` from config.json when present.
fn model_names(model: &Model) -> Vec<String> {
    let mut names = vec![model.dir.to_string_lossy().into_owned()];
    if let Ok(c) = std::fs::canonicalize(&model.dir) {
        names.push(c.to_string_lossy().into_owned());
    }
    if let Some(n) = model.config.raw.get("_name_or_path").and_then(|n| n.as_str()) {
        names.push(n.to_string());
    }
    names
}

/// Whether the adapter's base-model name denotes this model.
fn names_match(adapter_base: &str, model: &Model) -> bool {
    let canonical = std::fs::canonicalize(adapter_base).ok();
    model_names(model).iter().any(|n| stem(n) == stem(adapter_base) || canonical.as_ref().is_some_and(|c| Some(c.clone()) == std::fs::canonicalize(n).ok()))
}

/// Refuses an adapter trained for another base model: LoRA shapes that do not fit the model's
/// layers always, a different `base_model_name_or_path` unless `allow_name_mismatch`.
pub fn check_adapter_fits(model: &mut Model, adapter: &Path, allow_name_mismatch: bool) -> Result<()> {
    let base_name = adapter_base_name(adapter)?;
    let shown_base = base_name.clone().unwrap_or_else(|| "(not named)".into());
    let model_dir = model.dir.display().to_string();
    let file = adapter.join("adapter_model.safetensors");
    if file.is_file() {
        let weights = WeightFiles::open_file(&file)?;
        let linears: Vec<(String, usize, usize)> = model.network.linears_mut().into_iter().map(|(n, l)| (n, l.in_features(), l.out_features())).collect();
        for name in weights.names() {
            let (module, expect) = if let Some(m) = name.strip_prefix("base_model.model.").and_then(|n| n.strip_suffix(".lora_A.weight")) {
                (m, "A")
            } else if let Some(m) = name.strip_prefix("base_model.model.").and_then(|n| n.strip_suffix(".lora_B.weight")) {
                (m, "B")
            } else {
                continue;
            };
            let found = weights.shape(name).unwrap_or_default();
            let mismatch = |why: String| {
                EvalError::AdapterMismatch(format!(
                    "{}: adapter trained for base model {shown_base:?}, but --model is {model_dir:?} ({} layers, hidden {}): {why}",
                    adapter.display(),
                    model.config.num_hidden_layers,
                    model.config.hidden_size
                ))
            };
            let Some((_, in_f, out_f)) = linears.iter().find(|(n, _, _)| n == module) else {
                return Err(mismatch(format!("the model has no module `{module}` (tensor `{name}`)")));
            };
            let fits = match (expect, found.as_slice()) {
                ("A", [_, i]) => i == in_f,
                ("B", [o, _]) => o == out_f,
                _ => false,
            };
            if !fits {
                let want = if expect == "A" { format!("[r, {in_f}]") } else { format!("[{out_f}, r]") };
                return Err(mismatch(format!("tensor `{name}` has shape {found:?}, this model needs {want}")));
            }
        }
    }
    if let Some(b) = &base_name {
        if !allow_name_mismatch && !names_match(b, model) {
            return Err(EvalError::AdapterMismatch(format!(
                "{}: adapter trained for base model {b:?}, but --model is {model_dir:?}; evaluate it on its own base model, or set allow_base_mismatch: true (--allow-base-mismatch) if this directory is a copy of it",
                adapter.display()
            )));
        }
    }
    Ok(())
}

/// The adapter weights taken off a model.
pub struct Detached {
    loras: Vec<Option<LoraAdapter>>,
    prefix: Option<PrefixTuning>,
}

/// Takes every adapter off `model`: it then computes exactly the base model.
pub fn detach(model: &mut Model) -> Detached {
    let loras = model.network.linears_mut().into_iter().map(|(_, l)| l.lora.take()).collect();
    let prefix = model.network.prefix_slot().and_then(|slot| slot.take());
    Detached { loras, prefix }
}

/// Puts back what [`detach`] took.
pub fn attach(model: &mut Model, d: Detached) {
    for ((_, l), a) in model.network.linears_mut().into_iter().zip(d.loras) {
        l.lora = a;
    }
    if let Some(slot) = model.network.prefix_slot() {
        *slot = d.prefix;
    }
}

/// The training run directory an adapter sits in (`runs/x/adapter` → `runs/x`), when its parent
/// has `metrics.jsonl`.
pub fn run_dir_of(adapter: &Path) -> Option<PathBuf> {
    let parent = adapter.parent()?;
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    parent.join("metrics.jsonl").is_file().then(|| parent.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn stems() {
        assert_eq!(stem("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"), "deepseek-r1-distill-qwen-7b");
        assert_eq!(stem("/models/deepseek-r1-distill-qwen-7b/"), "deepseek-r1-distill-qwen-7b");
        assert_eq!(stem("base"), "base");
    }
}
