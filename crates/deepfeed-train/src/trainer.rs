//! The training loop: micro-batches with gradient accumulation, clipping, AdamW, schedule,
//! validation with early stopping, checkpoints, resume, metrics and progress.
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use deepfeed_model::arch::{Network, ParamMut};
use deepfeed_model::backend::{inference_device, training_device};
use deepfeed_model::layers::Rotary;
use deepfeed_model::peft::{set_param_values, AdapterConfig};
use deepfeed_model::Model;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use crate::checkpoint::{self, TrainerState};
use crate::config::{Method, Objective, TrainConfig};
use crate::data::{epoch_batches, load_dataset, load_preference_dataset, split, PairSample, Sample};
use crate::dpo::{self, DpoStats};
use crate::error::{Result, TrainError};
use crate::optim::{clip_global_norm, learning_rate, AdamW, AdamWConfig};

/// Set by a SIGINT handler: the trainer saves a checkpoint after the current step and stops.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the newest checkpoint in the run directory.
    pub resume: bool,
    /// Stop (as if interrupted) after this many steps — for tests of resume.
    pub stop_after: Option<usize>,
    /// No progress bar or per-step lines.
    pub quiet: bool,
    /// Train even when the memory estimate says the run will not fit.
    pub ignore_memory_check: bool,
    /// Where to publish each step's numbers (for `--metrics-addr`).
    pub live: Option<std::sync::Arc<crate::live::LiveMetrics>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Finished,
    EarlyStopped,
    Interrupted,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub outcome: Outcome,
    pub steps: usize,
    pub total_steps: usize,
    pub final_train_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub train_samples: usize,
    pub val_samples: usize,
    pub truncated_samples: usize,
    pub trainable_parameters: usize,
    pub total_parameters: usize,
    pub tokens_per_second: f64,
    /// `loss.png` in the run directory (None when no font was found to draw it).
    pub loss_plot: Option<std::path::PathBuf>,
    /// Peak resident memory of this process (VmHWM), when known.
    pub peak_rss_mib: Option<f64>,
    /// Peak resident memory of the training steps alone (from the first step on: loading's
    /// transient buffers excluded), when the OS can restart the count (Linux).
    pub train_peak_rss_mib: Option<f64>,
    /// Where the result was written (adapter/ or model/), or the last checkpoint when interrupted.
    pub output: std::path::PathBuf,
}

#[derive(Serialize)]
struct MetricsLine {
    step: usize,
    epoch: f64,
    loss: f64,
    lr: f64,
    grad_norm: f64,
    tokens: usize,
    tokens_per_second: f64,
    /// Where the step's time went, in milliseconds (forward includes the loss).
    forward_ms: f64,
    backward_ms: f64,
    optimizer_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    val_loss: Option<f64>,
    /// DPO only: fraction of the step's pairs with chosen reward > rejected reward.
    #[serde(skip_serializing_if = "Option::is_none")]
    reward_accuracy: Option<f64>,
    /// DPO only: mean chosen reward − rejected reward, reward = beta·(π − ref).
    #[serde(skip_serializing_if = "Option::is_none")]
    reward_margin: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chosen_reward: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected_reward: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    val_reward_accuracy: Option<f64>,
}

/// Marks which parameters train for `cfg.method`; returns their names.
fn select_trainable(model: &mut Model, cfg: &TrainConfig) -> Result<Vec<String>> {
    let layers = model.config.num_hidden_layers;
    if cfg.method == Method::Freeze && cfg.freeze.trainable_layers > layers {
        return Err(TrainError::Config(format!("freeze.trainable_layers is {} but the model has {layers} layers", cfg.freeze.trainable_layers)));
    }
    let first_trained_layer = layers - cfg.freeze.trainable_layers.min(layers);
    let mut names = Vec::new();
    let mut matched_modules = vec![false; cfg.freeze.trainable_modules.len()];
    for (name, mut p) in model.network.params_mut() {
        let is_lora = deepfeed_model::peft::is_adapter_param(&name);
        let train = match cfg.method {
            Method::Lora | Method::Prefix => is_lora,
            Method::Full => true,
            Method::Freeze => {
                let layer: Option<usize> = name.strip_prefix("model.layers.").and_then(|r| r.split('.').next()).and_then(|n| n.parse().ok());
                let by_layer = layer.is_some_and(|l| l >= first_trained_layer && cfg.freeze.trainable_layers > 0);
                let mut by_name = false;
                for (k, m) in cfg.freeze.trainable_modules.iter().enumerate() {
                    if name.contains(m.as_str()) {
                        matched_modules[k] = true;
                        by_name = true;
                    }
                }
                by_layer || by_name
            }
        };
        p.set_require_grad(train);
        if train {
            names.push(name);
        }
    }
    if let Some(k) = matched_modules.iter().position(|m| !m).filter(|_| cfg.method == Method::Freeze) {
        return Err(TrainError::Config(format!("freeze.trainable_modules: {:?} matches no parameter of this model", cfg.freeze.trainable_modules[k])));
    }
    Ok(names)
}

/// Turns LoRA dropout on with a fresh seed per adapter (`Some(seed)`), or off (`None`).
fn set_lora_dropout(model: &mut Model, seed: Option<u64>) {
    for (i, (_, l)) in model.network.linears_mut().into_iter().enumerate() {
        if let Some(a) = &mut l.lora {
            a.dropout_seed = seed.map(|s| s ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
    }
}

/// Sum of the NLL of the trained tokens of `batch` (right-padded), and how many there are.
/// `network` runs on `device` (autodiff for training, plain for validation).
pub fn batch_loss(network: &Network, rotary: &Rotary, batch: &[&Sample], pad: u32, device: &Device) -> (Tensor<1>, usize) {
    let t = trained_token_logps(network, rotary, batch, pad, device);
    ((t.logp * t.weights).sum().neg(), t.tokens)
}

/// Summed log-probability of the trained tokens of each sequence of `batch`: [b].
pub fn sequence_logps(network: &Network, rotary: &Rotary, batch: &[&Sample], pad: u32, device: &Device) -> Tensor<1> {
    let b = batch.len();
    let t = trained_token_logps(network, rotary, batch, pad, device);
    let n = t.rows.len();
    // [b, n] one-hot of each picked row's sequence, times the [n, 1] log-probs
    let mut onehot = vec![0.0f32; b * n];
    for (k, &r) in t.rows.iter().enumerate() {
        onehot[r / t.per_seq * n + k] = 1.0;
    }
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [b, n]), device);
    let weighted = (t.logp * t.weights).reshape([n, 1]);
    onehot.matmul(weighted).reshape([b])
}

/// The log-probs of the trained tokens of a right-padded batch, one row each.
struct TokenLogps {
    /// log p(target) [n].
    logp: Tensor<1>,
    /// 1 for trained rows, 0 for the placeholder row of a batch with nothing trained [n].
    weights: Tensor<1>,
    /// Row index into the flattened [b, s-1] predictions (sequence = row / per_seq).
    rows: Vec<usize>,
    per_seq: usize,
    tokens: usize,
}

fn trained_token_logps(network: &Network, rotary: &Rotary, batch: &[&Sample], pad: u32, device: &Device) -> TokenLogps {
    let b = batch.len();
    let s = batch.iter().map(|x| x.ids.len()).max().unwrap_or(1);
    let mut ids = Vec::with_capacity(b * s);
    let mut targets = Vec::with_capacity(b * (s - 1));
    let mut weights = Vec::with_capacity(b * (s - 1));
    for x in batch {
        ids.extend(x.ids.iter().map(|&i| i as i32));
        ids.extend(std::iter::repeat_n(pad as i32, s - x.ids.len()));
        for t in 1..s {
            let trained = t < x.ids.len() && x.train[t];
            targets.push(if t < x.ids.len() { x.ids[t] as i32 } else { pad as i32 });
            weights.push(if trained { 1.0f32 } else { 0.0 });
        }
    }
    let tokens = weights.iter().filter(|&&w| w > 0.0).count();
    // positions restart at 0 in every packed segment; padding continues the last one
    let mut positions = Vec::with_capacity(b * s);
    for x in batch {
        if x.segments.is_empty() {
            positions.extend(0..x.ids.len());
        }
        for &len in &x.segments {
            positions.extend(0..len);
        }
        let next = positions.last().map_or(0, |p| p + 1);
        positions.extend(next..next + (s - x.ids.len()));
    }
    let mask = batch.iter().any(|x| x.segments.len() > 1).then(|| segment_mask(batch, s, device));
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, s]), device);
    let hidden = network.forward_hidden(ids, rotary, &positions, mask, None); // [b, s, h]
    let [_, _, h] = hidden.dims();
    // position t predicts token t+1; only the trained positions go through the output head (the
    // logits [n, V] are the largest activations of a step: prompts and padding would be wasted)
    let hidden = hidden.slice([0..b, 0..s - 1, 0..h]).reshape([b * (s - 1), h]);
    let mut rows: Vec<i32> = (0..weights.len()).filter(|&i| weights[i] > 0.0).map(|i| i as i32).collect();
    if rows.is_empty() {
        rows.push(0); // nothing trained: one row with weight 0 keeps the graph and shapes valid
    }
    let n = rows.len();
    let row_idx: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
    let targets: Vec<i32> = rows.iter().map(|&r| targets[r as usize]).collect();
    let weights: Vec<f32> = rows.iter().map(|&r| weights[r as usize]).collect();
    let hidden = hidden.select(0, Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), device)); // [n, h]
    let logp = log_softmax(network.logits(hidden.reshape([1, n, h])), 2); // [1, n, V]
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [1, n, 1]), device);
    let weights = Tensor::<1>::from_data(TensorData::new(weights, [n]), device);
    let picked = logp.gather(2, targets).reshape([n]); // log p(target)
    TokenLogps { logp: picked, weights, rows: row_idx, per_seq: (s - 1).max(1), tokens }
}

/// Additive attention mask [b, 1, s, s] for packed rows: causal inside each segment, -inf across
/// segments (padding forms a segment of its own).
fn segment_mask(batch: &[&Sample], s: usize, device: &Device) -> Tensor<4> {
    let mut m = vec![f32::NEG_INFINITY; batch.len() * s * s];
    for (r, x) in batch.iter().enumerate() {
        let mut seg_of = Vec::with_capacity(s);
        let segs = if x.segments.is_empty() { vec![x.ids.len()] } else { x.segments.clone() };
        for (k, &len) in segs.iter().enumerate() {
            seg_of.extend(std::iter::repeat_n(k, len));
        }
        seg_of.resize(s, usize::MAX);
        for i in 0..s {
            for j in 0..=i {
                if seg_of[i] == seg_of[j] {
                    m[(r * s + i) * s + j] = 0.0;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(m, [batch.len(), 1, s, s]), device)
}

/// Mean NLL per trained token over `samples`, without recording gradients.
fn validation_loss(model: &Model, samples: &[Sample], batch_size: usize, pad: u32) -> f64 {
    let plain = inference_device();
    let network = model.network.valid();
    let (mut sum, mut count) = (0.0, 0);
    let refs: Vec<&Sample> = samples.iter().collect();
    for chunk in refs.chunks(batch_size) {
        let (loss, n) = batch_loss(&network, &model.rotary, chunk, pad, &plain);
        sum += loss.into_scalar::<f32>() as f64;
        count += n;
    }
    sum / count.max(1) as f64
}

fn fingerprint(cfg: &TrainConfig, train_samples: usize) -> serde_json::Value {
    json!({
        "method": cfg.method, "lora": cfg.lora, "freeze": cfg.freeze, "batch_size": cfg.batch_size,
        "grad_accum": cfg.grad_accum, "seed": cfg.seed, "learning_rate": cfg.learning_rate,
        "lr_scheduler": cfg.lr_scheduler, "max_seq_len": cfg.max_seq_len, "train_samples": train_samples,
        "objective": cfg.objective, "dpo": (cfg.objective == Objective::Dpo).then_some(&cfg.dpo),
    })
}

fn write_metrics_line(path: &Path, line: &MetricsLine) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| TrainError::io(path, e))?;
    writeln!(f, "{}", serde_json::to_string(line).unwrap()).map_err(|e| TrainError::io(path, e))
}

/// Keeps only the metrics of steps up to `step` (after a resume).
fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s as usize <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    deepfeed_model::fsutil::write_file_atomically(path, kept.as_bytes())?;
    Ok(())
}

/// Draws metrics.jsonl (train loss and validation loss per step) into `png`.
fn plot_metrics(metrics: &Path, png: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(metrics).unwrap_or_default();
    let (mut train, mut val) = (vec![], vec![]);
    for v in text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        let step = v["step"].as_u64().unwrap_or(0) as usize;
        if let Some(l) = v["loss"].as_f64() {
            train.push((step, l));
        }
        if let Some(l) = v["val_loss"].as_f64() {
            val.push((step, l));
        }
    }
    Ok(deepfeed_data::plot::write_loss_png(png, &train, &val).map_err(|e| TrainError::Dataset(e.to_string()))?)
}

/// VmHWM of /proc/self/status.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Restarts the VmHWM count (`5` into /proc/self/clear_refs, Linux ≥ 4.0); returns the peak
/// before the restart, or None when the count cannot be restarted.
fn restart_peak_rss() -> Option<f64> {
    let before = peak_rss_mib()?;
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    Some(before)
}

/// Runs a whole training job as configured.
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<TrainSummary> {
    cfg.validate()?;
    let model_config = deepfeed_model::ModelConfig::from_model_path(&cfg.model)?;
    let ctx = model_config.max_position_embeddings;
    if cfg.max_seq_len > ctx {
        return Err(TrainError::Config(format!("max_seq_len {} is longer than the model's context of {ctx} tokens", cfg.max_seq_len)));
    }
    if !opts.ignore_memory_check {
        crate::estimate::check_fits(&crate::estimate::estimate(&model_config, cfg)?, cfg)?;
    }
    let mut device = training_device();
    if cfg.gradient_checkpointing {
        device = device.gradient_checkpointing();
    }
    let mut model = Model::load_as(&cfg.model, &device, cfg.base_dtype)?;
    let pad = model.tokenizer.pad_id.or(model.tokenizer.eos_ids.first().copied()).unwrap_or(0);

    // data
    let is_dpo = cfg.objective == Objective::Dpo;
    let (train_set, val_set, train_pairs, val_pairs, truncated) = if is_dpo {
        // DPO: pairs only; the SFT sample lists stay empty
        let (pairs, stats) = load_preference_dataset(&cfg.data, &model.tokenizer, cfg.max_seq_len, cfg.train_on_prompt)?;
        let (train_pairs, val_pairs) = match &cfg.val_data {
            Some(p) => (pairs, load_preference_dataset(p, &model.tokenizer, cfg.max_seq_len, cfg.train_on_prompt)?.0),
            None => split(pairs, cfg.val_split, cfg.seed),
        };
        (vec![], vec![], train_pairs, val_pairs, stats.truncated)
    } else {
        let data = load_dataset(&cfg.data, &model.tokenizer, cfg.max_seq_len, cfg.train_on_prompt)?;
        let (train_set, val_set) = match &cfg.val_data {
            Some(p) => (data.samples, load_dataset(p, &model.tokenizer, cfg.max_seq_len, cfg.train_on_prompt)?.samples),
            None => split(data.samples, cfg.val_split, cfg.seed),
        };
        (train_set, val_set, Vec::<PairSample>::new(), Vec::<PairSample>::new(), data.stats.truncated)
    };
    let (n_train, n_val) = if is_dpo { (train_pairs.len(), val_pairs.len()) } else { (train_set.len(), val_set.len()) };
    let train_set = if cfg.packing { crate::data::pack(&train_set, cfg.max_seq_len, cfg.seed) } else { train_set };
    if n_train == 0 {
        return Err(TrainError::Dataset(format!("{}: no training sample left after the validation split", cfg.data.display())));
    }

    // what trains: a new or continued adapter (LoRA, prefix), or base weights (full, freeze)
    let adapter: Option<AdapterConfig> = match (&cfg.adapter, cfg.method) {
        (Some(dir), _) => {
            let loaded = model.load_adapter(dir)?;
            let expected = if cfg.method == Method::Prefix { "prefix tuning" } else { "LoRA" };
            if (loaded.lora().is_some()) != (cfg.method == Method::Lora) {
                return Err(TrainError::Config(format!("{}: is not a {expected} adapter (method {:?})", dir.display(), cfg.method)));
            }
            Some(loaded)
        }
        (None, Method::Lora) => {
            model.add_lora(&cfg.lora.to_lora_config(), cfg.seed)?;
            Some(AdapterConfig::Lora(cfg.lora.to_lora_config()))
        }
        (None, Method::Prefix) => {
            model.add_prefix(cfg.prefix.num_virtual_tokens, cfg.seed)?;
            Some(AdapterConfig::Prefix { num_virtual_tokens: cfg.prefix.num_virtual_tokens })
        }
        (None, _) => None,
    };
    let trainable = select_trainable(&mut model, cfg)?;
    // looked up for every parameter of every step
    let is_trainable: std::collections::HashSet<String> = trainable.iter().cloned().collect();
    // frozen matrices kept quantised are not parameters, but count in the model's size
    let mut sizes = (0usize, model.network.quantized_values());
    for (name, p) in model.network.params_mut() {
        sizes.1 += p.num_elements();
        if is_trainable.contains(&name) {
            sizes.0 += p.num_elements();
        }
    }

    // schedule
    let lengths: Vec<usize> = if is_dpo {
        train_pairs.iter().map(|p| p.chosen.ids.len().max(p.rejected.ids.len())).collect()
    } else {
        train_set.iter().map(|s| s.ids.len()).collect()
    };
    let batches_per_epoch = n_train.div_ceil(cfg.batch_size);
    let steps_per_epoch = batches_per_epoch.div_ceil(cfg.grad_accum);
    let total_steps = cfg.max_steps.unwrap_or(steps_per_epoch * cfg.epochs);
    let warmup = if cfg.warmup_steps > 0 { cfg.warmup_steps } else { (cfg.warmup_ratio * total_steps as f64).ceil() as usize };
    let eval_every = if cfg.eval_every > 0 { cfg.eval_every } else { steps_per_epoch };

    let run_dir = &cfg.output_dir;
    std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
    let metrics_path = run_dir.join("metrics.jsonl");
    let mut opt = AdamW::new(AdamWConfig { beta1: cfg.adam_beta1, beta2: cfg.adam_beta2, eps: cfg.adam_epsilon, weight_decay: cfg.weight_decay });
    let plain = inference_device();
    let fp = fingerprint(cfg, n_train);
    let mut state = TrainerState {
        step: 0,
        total_steps,
        best_val_loss: None,
        evals_without_improvement: 0,
        optimizer_t: 0,
        fingerprint: fp.clone(),
        reference_logps: vec![],
    };

    if opts.resume {
        let Some((_, dir)) = checkpoint::list_checkpoints(run_dir).pop() else {
            return Err(TrainError::Config(format!("--resume: no checkpoint in {}", checkpoint::checkpoints_dir(run_dir).display())));
        };
        state = checkpoint::load(&dir, &mut model, &trainable, &mut opt, &plain)?;
        if state.fingerprint != fp {
            return Err(TrainError::Checkpoint {
                path: dir,
                message: format!("was made with different settings: {} (now {fp})", state.fingerprint),
            });
        }
        truncate_metrics(&metrics_path, state.step)?;
    } else {
        if !checkpoint::list_checkpoints(run_dir).is_empty() {
            return Err(TrainError::Config(format!(
                "{} already holds checkpoints of an earlier run: pass --resume to continue it, or choose another output_dir",
                run_dir.display()
            )));
        }
        let _ = std::fs::remove_file(&metrics_path);
        if is_dpo {
            // DPO reference: the model as it is before the first step (fresh adapters = the base)
            set_lora_dropout(&mut model, None);
            state.reference_logps = dpo::reference_logps(&model, &train_pairs, cfg.batch_size, pad);
            state.reference_logps.extend(dpo::reference_logps(&model, &val_pairs, cfg.batch_size, pad));
        }
    }
    if is_dpo && state.reference_logps.len() != n_train + n_val {
        return Err(TrainError::Config(format!(
            "--resume: the checkpoint holds {} DPO reference log-probs, this run has {} pairs",
            state.reference_logps.len(),
            n_train + n_val
        )));
    }
    let (train_refs, val_refs) = state.reference_logps.split_at(if is_dpo { n_train } else { 0 });
    let (train_refs, val_refs) = (train_refs.to_vec(), val_refs.to_vec());
    deepfeed_model::fsutil::write_file_atomically(&run_dir.join("config.yaml"), cfg.to_yaml().as_bytes())?;

    // loop
    let plain_log = !opts.quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log_every = (total_steps / 20).max(1);
    let bar = if opts.quiet || plain_log { ProgressBar::hidden() } else { ProgressBar::new(total_steps as u64) };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]").unwrap());
    bar.set_position(state.step as u64);
    let load_peak_rss = restart_peak_rss();
    let started = Instant::now();
    let first_step = state.step;
    let mut tokens_done = 0usize;
    let mut last_loss = None;
    let mut outcome = Outcome::Finished;
    let mut epoch_cache: (usize, Vec<Vec<usize>>) = (usize::MAX, vec![]);
    while state.step < total_steps {
        let step = state.step;
        // the micro-batches of this step, from a data order that depends only on (seed, epoch)
        let mut micro: Vec<Vec<usize>> = Vec::new();
        for k in 0..cfg.grad_accum {
            let m = step * cfg.grad_accum + k;
            let epoch = m / batches_per_epoch;
            if epoch_cache.0 != epoch {
                epoch_cache = (epoch, epoch_batches(&lengths, cfg.batch_size, cfg.seed, epoch));
            }
            micro.push(epoch_cache.1[m % batches_per_epoch].clone());
        }
        let step_tokens: usize = if is_dpo {
            micro.iter().flatten().map(|&i| train_pairs[i].chosen.trained_tokens() + train_pairs[i].rejected.trained_tokens()).sum()
        } else {
            micro.iter().flatten().map(|&i| train_set[i].trained_tokens()).sum()
        };
        let step_pairs: usize = micro.iter().map(|m| m.len()).sum();
        let mut step_dpo = DpoStats::default();
        let t0 = Instant::now();
        let mut loss_sum = 0.0;
        let mut seq_tokens = 0;
        let mut acc: Vec<(String, Tensor<1>)> = Vec::new();
        let (mut fwd_s, mut bwd_s) = (0.0, 0.0);
        for (k, mb) in micro.iter().enumerate() {
            set_lora_dropout(&mut model, Some(cfg.seed ^ ((step * cfg.grad_accum + k) as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)));
            let tf = Instant::now();
            let loss = if is_dpo {
                let pairs: Vec<&PairSample> = mb.iter().map(|&i| &train_pairs[i]).collect();
                let refs: Vec<[f64; 2]> = mb.iter().map(|&i| train_refs[i]).collect();
                seq_tokens += pairs.iter().map(|p| p.chosen.ids.len() + p.rejected.ids.len()).sum::<usize>();
                let (loss, stats) = dpo::batch_loss(&model.network, &model.rotary, &pairs, &refs, &cfg.dpo, pad, &device);
                step_dpo.add(&stats);
                // the mean over the pairs of the whole optimizer step
                loss / step_pairs.max(1) as f64
            } else {
                let batch: Vec<&Sample> = mb.iter().map(|&i| &train_set[i]).collect();
                seq_tokens += batch.iter().map(|s| s.ids.len()).sum::<usize>();
                let (loss, _) = batch_loss(&model.network, &model.rotary, &batch, pad, &device);
                // normalise by the trained tokens of the whole optimizer step
                loss / step_tokens.max(1) as f64
            };
            loss_sum += loss.clone().into_scalar::<f32>() as f64;
            fwd_s += tf.elapsed().as_secs_f64();
            let tb = Instant::now();
            let grads = loss.backward();
            let mut i = 0;
            for (name, p) in model.network.params_mut() {
                if !is_trainable.contains(&name) {
                    continue;
                }
                let g = match &p {
                    ParamMut::Vector(p) => p.val().grad(&grads),
                    ParamMut::Matrix(p) => p.val().grad(&grads).map(|g| g.reshape([-1])),
                };
                let g = g.unwrap_or_else(|| Tensor::zeros([p.num_elements()], &plain));
                if k == 0 {
                    acc.push((name, g));
                } else {
                    acc[i].1 = acc[i].1.clone() + g;
                }
                i += 1;
            }
            bwd_s += tb.elapsed().as_secs_f64();
        }
        let to = Instant::now();
        let grad_norm = clip_global_norm(&mut acc, cfg.max_grad_norm);
        let lr = learning_rate(cfg.lr_scheduler, cfg.learning_rate, step, warmup, total_steps);
        opt.begin_step();
        let mut grads = acc.into_iter();
        for (name, mut p) in model.network.params_mut() {
            if !is_trainable.contains(&name) {
                continue;
            }
            let (_, g) = grads.next().expect("one gradient per trainable parameter");
            let flat = match &p {
                ParamMut::Vector(p) => p.val().detach(),
                ParamMut::Matrix(p) => p.val().detach().reshape([-1]),
            };
            let flat = Tensor::<1>::from_data(flat.into_data(), &plain);
            let updated = opt.update(&name, flat, g, lr);
            let values = updated.into_data().try_into_vec::<f32>().expect("f32 parameters");
            set_param_values(&mut p, values, true);
        }
        let opt_s = to.elapsed().as_secs_f64();
        state.step += 1;
        state.optimizer_t = opt.t;
        tokens_done += seq_tokens;
        last_loss = Some(loss_sum);
        let tps = seq_tokens as f64 / t0.elapsed().as_secs_f64();

        let mut val_loss = None;
        let mut val_reward_accuracy = None;
        let last_step = state.step == total_steps;
        if n_val > 0 && (state.step % eval_every == 0 || last_step) {
            set_lora_dropout(&mut model, None);
            let v = if is_dpo {
                let stats = dpo::evaluate(&model, &val_pairs, &val_refs, &cfg.dpo, cfg.batch_size, pad);
                val_reward_accuracy = Some(stats.accuracy());
                stats.mean_loss()
            } else {
                validation_loss(&model, &val_set, cfg.batch_size, pad)
            };
            val_loss = Some(v);
            if state.best_val_loss.is_none_or(|b| v < b) {
                state.best_val_loss = Some(v);
                state.evals_without_improvement = 0;
            } else {
                state.evals_without_improvement += 1;
            }
        }
        write_metrics_line(&metrics_path, &MetricsLine {
            step: state.step,
            epoch: (state.step * cfg.grad_accum) as f64 / batches_per_epoch as f64,
            loss: loss_sum,
            lr,
            grad_norm,
            tokens: step_tokens,
            tokens_per_second: tps,
            forward_ms: fwd_s * 1e3,
            backward_ms: bwd_s * 1e3,
            optimizer_ms: opt_s * 1e3,
            val_loss,
            reward_accuracy: is_dpo.then(|| step_dpo.accuracy()),
            reward_margin: is_dpo.then(|| step_dpo.margin()),
            chosen_reward: is_dpo.then(|| step_dpo.chosen_reward / step_dpo.pairs.max(1) as f64),
            rejected_reward: is_dpo.then(|| step_dpo.rejected_reward / step_dpo.pairs.max(1) as f64),
            val_reward_accuracy,
        })?;
        if let Some(live) = &opts.live {
            let per_step = started.elapsed().as_secs_f64() / (state.step - first_step) as f64;
            live.update(crate::live::LiveSnapshot {
                step: state.step,
                total_steps,
                loss: loss_sum,
                learning_rate: lr,
                tokens_per_second: tps,
                grad_norm,
                eta_seconds: per_step * (total_steps - state.step) as f64,
                val_loss,
            });
        }
        bar.set_position(state.step as u64);
        let dpo_part = if is_dpo { format!(" acc {:.2} margin {:.4}", step_dpo.accuracy(), step_dpo.margin()) } else { String::new() };
        let line = format!("loss {loss_sum:.4}{dpo_part} lr {lr:.2e} {tps:.0} tok/s{}", val_loss.map_or(String::new(), |v| format!(" val {v:.4}")));
        if plain_log && (state.step % log_every == 0 || last_step) {
            // no terminal (a log file, CI): a plain line now and then instead of the bar
            eprintln!("step {}/{total_steps} {line}", state.step);
        }
        bar.set_message(line);

        let stop_early = cfg.early_stopping_patience.is_some_and(|p| state.evals_without_improvement >= p);
        let interrupted = INTERRUPTED.load(Ordering::SeqCst) || opts.stop_after == Some(state.step);
        if (cfg.save_every > 0 && state.step % cfg.save_every == 0) || interrupted || stop_early || last_step {
            checkpoint::save(run_dir, &mut model, &trainable, &opt, &state, cfg.keep_last)?;
        }
        if stop_early {
            outcome = Outcome::EarlyStopped;
            break;
        }
        if interrupted {
            outcome = Outcome::Interrupted;
            break;
        }
    }
    bar.finish_and_clear();
    let plotted = plot_metrics(&metrics_path, &run_dir.join("loss.png"))?;

    let output = if outcome == Outcome::Interrupted {
        checkpoint::checkpoints_dir(run_dir).join(format!("step-{}", state.step))
    } else {
        set_lora_dropout(&mut model, None);
        match &adapter {
            Some(a) => {
                let out = run_dir.join("adapter");
                model.save_adapter(a, &cfg.model.to_string_lossy(), &out)?;
                out
            }
            None => {
                let out = run_dir.join("model");
                model.save_pretrained(&out, 2 << 30)?;
                out
            }
        }
    };
    Ok(TrainSummary {
        outcome,
        steps: state.step,
        total_steps,
        final_train_loss: last_loss,
        best_val_loss: state.best_val_loss,
        train_samples: n_train,
        val_samples: n_val,
        truncated_samples: truncated,
        trainable_parameters: sizes.0,
        total_parameters: sizes.1,
        tokens_per_second: tokens_done as f64 / started.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib().map(|p| load_peak_rss.map_or(p, |l| p.max(l))),
        train_peak_rss_mib: load_peak_rss.and(peak_rss_mib()),
        loss_plot: plotted.then(|| run_dir.join("loss.png")),
        output,
    })
}
