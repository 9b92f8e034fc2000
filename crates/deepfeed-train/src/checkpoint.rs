//! Checkpoints: `run_dir/checkpoints/step-N/` holds the trainable weights, the optimizer moments
//! and the trainer state. Each is written to a temporary directory and renamed into place, so a
//! crash or a full disk never damages an earlier checkpoint; only the newest `keep_last` are kept.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use deepfeed_model::fsutil::write_dir_atomically;
use deepfeed_model::peft::{param_values, set_param_values};
use deepfeed_model::weights::save_f32_safetensors;
use deepfeed_model::weights::WeightFiles;
use deepfeed_model::Model;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::optim::AdamW;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    pub total_steps: usize,
    pub best_val_loss: Option<f64>,
    pub evals_without_improvement: usize,
    pub optimizer_t: u64,
    /// The settings that must not change across a resume, as JSON.
    pub fingerprint: serde_json::Value,
    /// DPO: the reference model's summed answer log-probs [chosen, rejected] of every training
    /// pair, then every validation pair (computed once, before the first step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_logps: Vec<[f64; 2]>,
}

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Existing checkpoints, oldest first.
pub fn list_checkpoints(run_dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(checkpoints_dir(run_dir))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("step-").and_then(|n| n.parse().ok()).map(|n| (n, e.path()))
        })
        .collect();
    v.sort();
    v
}

pub fn save(run_dir: &Path, model: &mut Model, trainable: &[String], opt: &AdamW, state: &TrainerState, keep_last: usize) -> Result<PathBuf> {
    let dir = checkpoints_dir(run_dir).join(format!("step-{}", state.step));
    let mut weights = Vec::new();
    for (name, p) in model.network.params_mut() {
        if trainable.contains(&name) {
            weights.push((name, p.shape(), param_values(&p)?));
        }
    }
    let mut moments = Vec::new();
    for name in trainable {
        if let Some((m, v)) = opt.state.get(name) {
            for (kind, t) in [("m", m), ("v", v)] {
                let data = t.clone().into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| TrainError::Checkpoint { path: dir.clone(), message: format!("{e:?}") })?;
                moments.push((format!("{kind}.{name}"), vec![data.len()], data));
            }
        }
    }
    write_dir_atomically(&dir, |tmp| {
        save_f32_safetensors(&tmp.join("trainable.safetensors"), &weights)?;
        save_f32_safetensors(&tmp.join("optimizer.safetensors"), &moments)?;
        std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state).unwrap())
            .map_err(|e| deepfeed_model::ModelError::io(tmp.join("state.json"), e))
    })
    .map_err(|e| TrainError::Checkpoint {
        path: dir.clone(),
        message: format!("cannot be written ({e}); earlier checkpoints are untouched — free some disk space and resume with --resume"),
    })?;
    let all = list_checkpoints(run_dir);
    if all.len() > keep_last.max(1) {
        for (_, old) in &all[..all.len() - keep_last.max(1)] {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(dir)
}

/// Restores trainable weights and optimizer moments from `dir`; returns the trainer state.
pub fn load(dir: &Path, model: &mut Model, trainable: &[String], opt: &mut AdamW, plain: &Device) -> Result<TrainerState> {
    let corrupt = |message: String| TrainError::Checkpoint { path: dir.to_path_buf(), message };
    let state_text = std::fs::read_to_string(dir.join("state.json")).map_err(|e| corrupt(format!("state.json: {e}")))?;
    let state: TrainerState = serde_json::from_str(&state_text).map_err(|e| corrupt(format!("state.json is corrupt: {e}")))?;
    let weights = WeightFiles::open_file(&dir.join("trainable.safetensors")).map_err(|e| corrupt(e.to_string()))?;
    let mut restored = 0;
    for (name, mut p) in model.network.params_mut() {
        if trainable.contains(&name) {
            let values = weights.read_f32(&name, &p.shape()).map_err(|e| corrupt(e.to_string()))?;
            set_param_values(&mut p, values, true);
            restored += 1;
        }
    }
    if restored != trainable.len() || weights.names().count() != trainable.len() {
        return Err(corrupt(format!(
            "holds {} trainable tensors, this run trains {} (was it made with another method or target modules?)",
            weights.names().count(),
            trainable.len()
        )));
    }
    let moments = WeightFiles::open_file(&dir.join("optimizer.safetensors")).map_err(|e| corrupt(e.to_string()))?;
    let mut state_map = HashMap::new();
    for name in trainable {
        let (mk, vk) = (format!("m.{name}"), format!("v.{name}"));
        if !moments.contains(&mk) {
            continue; // a parameter that has not been updated yet
        }
        let read = |k: &str| -> Result<Tensor<1>> {
            let len = moments.shape(k).map_or(0, |s| s.iter().product());
            let data = moments.read_f32(k, &[len]).map_err(|e| corrupt(e.to_string()))?;
            Ok(Tensor::from_data(TensorData::new(data, [len]), plain))
        };
        state_map.insert(name.clone(), (read(&mk)?, read(&vk)?));
    }
    opt.state = state_map;
    opt.t = state.optimizer_t;
    Ok(state)
}
