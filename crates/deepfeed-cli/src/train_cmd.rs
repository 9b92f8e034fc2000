//! `deepfeed train`, `deepfeed estimate` and `deepfeed merge`.
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;
use deepfeed_model::backend::inference_device;
use deepfeed_model::{Model, ModelConfig};
use deepfeed_train::estimate::{check_fits, estimate};
use deepfeed_train::{train, Outcome, RunOptions, TrainConfig};
use serde_json::{json, Value};

/// Every field of the YAML config as a flag; flags override the file.
#[derive(Args)]
pub struct TrainArgs {
    /// YAML config (fields in docs/training.md); flags below override it
    config: Option<PathBuf>,
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// lora, full, freeze or prefix
    #[arg(long)]
    method: Option<String>,
    /// method prefix: learned key/value positions per layer
    #[arg(long)]
    num_virtual_tokens: Option<usize>,
    /// sft (default) or dpo (preference pairs with rejected_text)
    #[arg(long)]
    objective: Option<String>,
    /// objective dpo: strength of the pull towards the reference model (0.1)
    #[arg(long)]
    dpo_beta: Option<f64>,
    /// objective dpo: sigmoid (default) or ipo
    #[arg(long)]
    dpo_loss: Option<String>,
    /// objective dpo, loss sigmoid: probability that a preference label is wrong (0)
    #[arg(long)]
    dpo_label_smoothing: Option<f64>,
    /// Continue training this PEFT adapter
    #[arg(long)]
    adapter: Option<PathBuf>,
    #[arg(long)]
    lora_r: Option<usize>,
    #[arg(long)]
    lora_alpha: Option<f64>,
    #[arg(long)]
    lora_dropout: Option<f64>,
    /// Comma-separated: q_proj,v_proj … or all-linear
    #[arg(long)]
    target_modules: Option<String>,
    #[arg(long)]
    use_rslora: bool,
    /// DoRA: LoRA plus a learned magnitude per output row
    #[arg(long)]
    use_dora: bool,
    /// method freeze: train the last N layers
    #[arg(long)]
    trainable_layers: Option<usize>,
    /// method freeze: also train parameters whose name contains these (comma-separated)
    #[arg(long)]
    trainable_modules: Option<String>,
    #[arg(long)]
    val_data: Option<PathBuf>,
    #[arg(long)]
    val_split: Option<f64>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    grad_accum: Option<usize>,
    #[arg(long, alias = "lr")]
    learning_rate: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    /// constant, linear or cosine
    #[arg(long)]
    lr_scheduler: Option<String>,
    #[arg(long)]
    warmup_steps: Option<usize>,
    #[arg(long)]
    warmup_ratio: Option<f64>,
    #[arg(long)]
    max_grad_norm: Option<f64>,
    #[arg(long)]
    max_seq_len: Option<usize>,
    #[arg(long)]
    train_on_prompt: bool,
    /// Pack several samples per sequence
    #[arg(long)]
    packing: bool,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    save_every: Option<usize>,
    #[arg(long)]
    keep_last: Option<usize>,
    #[arg(long)]
    eval_every: Option<usize>,
    #[arg(long)]
    early_stopping_patience: Option<usize>,
    #[arg(long)]
    gradient_checkpointing: bool,
    /// f32, bf16 (frozen base stored in bf16) or quantized (frozen base kept as quantised blocks:
    /// a GGUF file's own, Q8_0 for safetensors); bf16 and quantized need method lora or prefix
    #[arg(long)]
    base_dtype: Option<String>,
    /// Continue from the newest checkpoint in output_dir
    #[arg(long)]
    resume: bool,
    /// Print the resolved config and the memory estimate, train nothing
    #[arg(long)]
    dry_run: bool,
    /// Train even if the memory estimate says it will not fit
    #[arg(long)]
    ignore_memory_check: bool,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
    /// Serve step, loss, lr, tokens/s, grad norm and ETA for Prometheus at http://ADDR/metrics
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
}

fn set(v: &mut Value, path: &str, x: Value) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur.as_object_mut().unwrap().entry(p.to_string()).or_insert_with(|| json!({}));
    }
    cur.as_object_mut().unwrap().insert(parts[parts.len() - 1].to_string(), x);
}

fn list(s: &str) -> Value {
    json!(s.split(',').map(str::trim).filter(|x| !x.is_empty()).collect::<Vec<_>>())
}

impl TrainArgs {
    pub fn dry_run(self) -> Self {
        TrainArgs { dry_run: true, ..self }
    }

    /// The YAML (if any) with the flags applied on top.
    pub fn resolve(&self) -> Result<TrainConfig> {
        let mut v = match &self.config {
            Some(p) => serde_json::to_value(TrainConfig::from_yaml_file(p)?)?,
            None => json!({}),
        };
        let mut put = |k: &str, x: Option<Value>| {
            if let Some(x) = x {
                set(&mut v, k, x);
            }
        };
        put("model", self.model.as_ref().map(|x| json!(x)));
        put("data", self.data.as_ref().map(|x| json!(x)));
        put("output_dir", self.output_dir.as_ref().map(|x| json!(x)));
        put("method", self.method.as_ref().map(|x| json!(x)));
        put("adapter", self.adapter.as_ref().map(|x| json!(x)));
        put("prefix.num_virtual_tokens", self.num_virtual_tokens.map(|x| json!(x)));
        put("objective", self.objective.as_ref().map(|x| json!(x)));
        put("dpo.beta", self.dpo_beta.map(|x| json!(x)));
        put("dpo.loss", self.dpo_loss.as_ref().map(|x| json!(x)));
        put("dpo.label_smoothing", self.dpo_label_smoothing.map(|x| json!(x)));
        put("lora.r", self.lora_r.map(|x| json!(x)));
        put("lora.alpha", self.lora_alpha.map(|x| json!(x)));
        put("lora.dropout", self.lora_dropout.map(|x| json!(x)));
        put("lora.target_modules", self.target_modules.as_deref().map(list));
        put("lora.use_rslora", self.use_rslora.then_some(json!(true)));
        put("lora.use_dora", self.use_dora.then_some(json!(true)));
        put("freeze.trainable_layers", self.trainable_layers.map(|x| json!(x)));
        put("freeze.trainable_modules", self.trainable_modules.as_deref().map(list));
        put("val_data", self.val_data.as_ref().map(|x| json!(x)));
        put("val_split", self.val_split.map(|x| json!(x)));
        put("epochs", self.epochs.map(|x| json!(x)));
        put("max_steps", self.max_steps.map(|x| json!(x)));
        put("batch_size", self.batch_size.map(|x| json!(x)));
        put("grad_accum", self.grad_accum.map(|x| json!(x)));
        put("learning_rate", self.learning_rate.map(|x| json!(x)));
        put("weight_decay", self.weight_decay.map(|x| json!(x)));
        put("lr_scheduler", self.lr_scheduler.as_ref().map(|x| json!(x)));
        put("warmup_steps", self.warmup_steps.map(|x| json!(x)));
        put("warmup_ratio", self.warmup_ratio.map(|x| json!(x)));
        put("max_grad_norm", self.max_grad_norm.map(|x| json!(x)));
        put("max_seq_len", self.max_seq_len.map(|x| json!(x)));
        put("train_on_prompt", self.train_on_prompt.then_some(json!(true)));
        put("packing", self.packing.then_some(json!(true)));
        put("seed", self.seed.map(|x| json!(x)));
        put("save_every", self.save_every.map(|x| json!(x)));
        put("keep_last", self.keep_last.map(|x| json!(x)));
        put("eval_every", self.eval_every.map(|x| json!(x)));
        put("early_stopping_patience", self.early_stopping_patience.map(|x| json!(x)));
        put("gradient_checkpointing", self.gradient_checkpointing.then_some(json!(true)));
        put("base_dtype", self.base_dtype.as_ref().map(|x| json!(x)));
        serde_json::from_value(v).map_err(|e| {
            let msg = e.to_string();
            match msg.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
                Some(field) => anyhow!("train: `{field}` is required: give --{} or `{field}:` in the YAML config", field.replace('_', "-")),
                None => anyhow!("train: {msg}"),
            }
        })
    }
}

pub fn run_train(args: TrainArgs) -> Result<()> {
    let cfg = args.resolve()?;
    cfg.validate()?;
    let model_cfg = ModelConfig::from_model_path(&cfg.model)?;
    let est = estimate(&model_cfg, &cfg)?;
    if args.dry_run {
        println!("{}", cfg.to_yaml());
        println!("memory estimate (method {:?}, batch {}, max_seq_len {}):\n{}", cfg.method, cfg.batch_size, cfg.max_seq_len, est.render());
        if !args.ignore_memory_check {
            check_fits(&est, &cfg)?;
        }
        println!("fits: yes");
        return Ok(());
    }
    ctrlc::set_handler(|| {
        if deepfeed_train::INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: saving a checkpoint after the current step (Ctrl-C again to quit now)");
    })?;
    let live = match args.metrics_addr {
        Some(addr) => {
            let (live, bound) = crate::serve_cmd::start_train_metrics(addr)?;
            eprintln!("training metrics at http://{bound}/metrics");
            Some(live)
        }
        None => None,
    };
    let opts = RunOptions { resume: args.resume, stop_after: None, quiet: false, ignore_memory_check: args.ignore_memory_check, live };
    let s = train(&cfg, &opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let what = match s.outcome {
        Outcome::Finished => "finished",
        Outcome::EarlyStopped => "stopped early (validation loss stopped improving)",
        Outcome::Interrupted => "interrupted; continue with --resume",
    };
    println!(
        "{what}: {}/{} steps, train loss {}, best val loss {}, {:.0} tok/s, {} trainable of {} parameters{} -> {}",
        s.steps,
        s.total_steps,
        s.final_train_loss.map_or("-".into(), |l| format!("{l:.4}")),
        s.best_val_loss.map_or("-".into(), |l| format!("{l:.4}")),
        s.tokens_per_second,
        s.trainable_parameters,
        s.total_parameters,
        if s.truncated_samples > 0 { format!(", {} samples truncated to max_seq_len", s.truncated_samples) } else { String::new() },
        s.output.display()
    );
    if let (Some(peak), Some(steps)) = (s.peak_rss_mib, s.train_peak_rss_mib) {
        println!("peak memory (RSS): {peak:.0} MiB, {steps:.0} MiB during the training steps");
    }
    match &s.loss_plot {
        Some(p) => println!("loss curve: {}", p.display()),
        None => println!("(loss.png not drawn: no system font found; metrics.jsonl has the numbers)"),
    }
    Ok(())
}

#[derive(Args)]
pub struct MergeArgs {
    /// Base model directory
    #[arg(long)]
    model: PathBuf,
    /// PEFT LoRA adapter directory
    #[arg(long)]
    adapter: PathBuf,
    /// Output directory (Hugging Face layout; must not exist yet)
    #[arg(long)]
    out: PathBuf,
    /// Largest safetensors shard, in MB
    #[arg(long, default_value_t = 2000)]
    max_shard_mb: usize,
}

pub fn run_merge(args: MergeArgs) -> Result<()> {
    crate::refuse_existing(&args.out)?;
    let mut model = Model::load(&args.model, &inference_device())?;
    model.load_adapter(&args.adapter)?;
    model.save_pretrained(&args.out, args.max_shard_mb * 1_000_000)?;
    println!("merged {} into {} -> {}", args.adapter.display(), args.model.display(), args.out.display());
    Ok(())
}
