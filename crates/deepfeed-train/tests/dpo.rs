//! DPO on a tiny model: the first step's loss is ln 2 (policy = reference), training separates
//! the chosen from the rejected answers, and non-preference data is refused with file and line.
use std::path::Path;

use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::Architecture;
use deepfeed_train::config::{DpoSection, LoraSection, Scheduler};
use deepfeed_train::{train, Method, Objective, RunOptions, TrainConfig};

/// Eight prompts, each with a right (chosen) and a wrong (rejected) answer.
fn preference_rows() -> Vec<serde_json::Value> {
    let fruits = ["apple", "pear", "plum", "fig"];
    (0..8)
        .map(|i| {
            serde_json::json!({
                "input_text": format!("Which fruit is item {i}?"),
                "target_text": format!("Item {i} is a {}.", fruits[i % 4]),
                "rejected_text": format!("Item {i} is a {}.", fruits[(i + 1) % 4]),
            })
        })
        .collect()
}

fn write_rows(path: &Path, rows: &[serde_json::Value]) {
    std::fs::write(path, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
}

fn dpo_config(dir: &Path) -> TrainConfig {
    let model = dir.join("base");
    write_tiny_model(&TinySpec { init_std: 0.2, ..TinySpec::tiny(Architecture::Qwen2) }, &model).unwrap();
    let data = dir.join("prefs.jsonl");
    write_rows(&data, &preference_rows());
    let yaml = format!(
        "model: {}\ndata: {}\noutput_dir: {}\nobjective: dpo\ndpo:\n  beta: 0.1\nlora:\n  r: 8\n  alpha: 16\n  target_modules: [all-linear]\n",
        model.display(),
        data.display(),
        dir.join("run").display()
    );
    std::fs::write(dir.join("dpo.yaml"), yaml).unwrap();
    let cfg = TrainConfig::from_yaml_file(&dir.join("dpo.yaml")).unwrap();
    assert_eq!((cfg.objective, cfg.dpo.clone()), (Objective::Dpo, DpoSection { beta: 0.1, ..Default::default() }));
    TrainConfig {
        method: Method::Lora,
        lora: LoraSection { r: 8, alpha: 16.0, target_modules: vec!["all-linear".into()], ..Default::default() },
        epochs: 20,
        batch_size: 8,
        learning_rate: 1e-2,
        lr_scheduler: Scheduler::Constant,
        max_seq_len: 64,
        ..cfg
    }
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn dpo_starts_at_ln2_and_learns_the_preferences() {
    let d = tempfile::tempdir().unwrap();
    let cfg = dpo_config(d.path());
    let summary = train(&cfg, &RunOptions { quiet: true, ..Default::default() }).unwrap();
    assert_eq!((summary.steps, summary.train_samples), (20, 8));
    let m = metrics(&cfg.output_dir);
    // step 1: fresh LoRA (B = 0) is the reference, so every pair's logit is 0 and the loss ln 2
    let first = m[0]["loss"].as_f64().unwrap();
    eprintln!("DPO step 1: loss {first:.9} (ln 2 = {:.9}); last: {}", std::f64::consts::LN_2, m.last().unwrap());
    assert!((first - std::f64::consts::LN_2).abs() < 1e-6, "first DPO loss {first}, expected ln 2");
    assert!(m[0]["reward_margin"].as_f64().unwrap().abs() < 1e-5, "{}", m[0]);
    let last = m.last().unwrap();
    assert_eq!(last["reward_accuracy"].as_f64(), Some(1.0), "{last}");
    let (margin0, margin1) = (m[1]["reward_margin"].as_f64().unwrap(), last["reward_margin"].as_f64().unwrap());
    assert!(margin1 > margin0 + 0.5 && margin1 > 0.5, "margin {margin0} -> {margin1}");
    assert!(last["loss"].as_f64().unwrap() < 0.3, "{last}");
    // rewards are beta·(π − ref): the chosen log-prob rose relative to the rejected one
    assert!(last["chosen_reward"].as_f64().unwrap() > last["rejected_reward"].as_f64().unwrap());
    assert!(summary.output.join("adapter_model.safetensors").exists());
}

#[test]
fn dpo_resume_reuses_the_reference_log_probs() {
    let d = tempfile::tempdir().unwrap();
    let cfg = TrainConfig { epochs: 6, ..dpo_config(d.path()) };
    let whole = TrainConfig { output_dir: d.path().join("whole"), ..cfg.clone() };
    train(&whole, &RunOptions { quiet: true, ..Default::default() }).unwrap();
    let split = TrainConfig { output_dir: d.path().join("split"), ..cfg };
    let stopped = train(&split, &RunOptions { quiet: true, stop_after: Some(3), ..Default::default() }).unwrap();
    assert_eq!(stopped.steps, 3);
    train(&split, &RunOptions { quiet: true, resume: true, ..Default::default() }).unwrap();
    // recomputing the reference with the trained model would zero the margins after the resume
    let (a, b) = (metrics(&whole.output_dir), metrics(&split.output_dir));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        for k in ["loss", "reward_margin"] {
            let (x, y) = (x[k].as_f64().unwrap(), y[k].as_f64().unwrap());
            assert!((x - y).abs() < 1e-4, "{k}: {x} vs {y}");
        }
    }
}

#[test]
fn dpo_refuses_records_that_are_not_preference_pairs() {
    let d = tempfile::tempdir().unwrap();
    let cfg = dpo_config(d.path());
    let mut rows = preference_rows();
    rows[1] = serde_json::json!({"input_text": "q", "target_text": "a"});
    write_rows(&cfg.data, &rows);
    let err = train(&cfg, &RunOptions { quiet: true, ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("prefs.jsonl:2") && err.contains("rejected_text"), "{err}");
    rows[1] = serde_json::json!({"text": "plain"});
    write_rows(&cfg.data, &rows);
    let err = train(&cfg, &RunOptions { quiet: true, ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("prefs.jsonl:2") && err.contains("text record"), "{err}");
    let err = train(&TrainConfig { packing: true, ..cfg.clone() }, &RunOptions::default()).unwrap_err().to_string();
    assert!(err.contains("packing"), "{err}");
    let err = train(&TrainConfig { dpo: DpoSection { beta: 0.0, ..Default::default() }, ..cfg }, &RunOptions::default()).unwrap_err().to_string();
    assert!(err.contains("dpo.beta"), "{err}");
}
