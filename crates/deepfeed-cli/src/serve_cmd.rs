//! `deepfeed serve`, `deepfeed feedback export`, `deepfeed bench serve` and the training
//! metrics endpoint (`deepfeed train --metrics-addr`).
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use deepfeed_model::backend::inference_device;
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::{Architecture, Model};
use deepfeed_serve::feedback::{export, FeedbackStore};
use deepfeed_serve::loadgen::{run_load, table, LoadOptions};
use deepfeed_serve::ServeConfig;

#[derive(Args)]
pub struct ServeArgs {
    /// Base model directory (config.json, *.safetensors, tokenizer.json)
    #[arg(long)]
    model: PathBuf,
    /// How the base's weight matrices are kept in memory: f32, bf16, or quantized (a GGUF
    /// model's own blocks, Q8_0 for safetensors; dequantised tile by tile when used)
    #[arg(long, default_value = "f32", value_parser = crate::parse_base_dtype)]
    base_dtype: deepfeed_model::weights::WeightDType,
    /// An adapter to serve, as NAME=DIR (repeatable); requests pick it with model "BASE:NAME" or
    /// "NAME". NAME=DIR,kb=KBDIR gives it its own knowledge base (kb=none: no retrieval for it)
    #[arg(long = "adapter", value_name = "NAME=DIR[,kb=KBDIR]")]
    adapters: Vec<String>,
    /// Retrieval (RAG): --kb DIR is the default knowledge base, used by the base model and the
    /// adapters without their own; --kb-k, --kb-tokens, --kb-template, --kb-mode as for chat
    #[command(flatten)]
    kb: crate::kb_cmd::ChatKbArgs,
    /// Directory under which POST /admin/adapters may attach knowledge bases ("kb": "NAME")
    #[arg(long)]
    kb_dir: Option<PathBuf>,
    /// Address to bind (default loopback only; use 0.0.0.0 deliberately, with --api-key)
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Name clients use in `model` (default: the model directory's name)
    #[arg(long)]
    model_name: Option<String>,
    /// A file with accepted API keys, one per line (also: env DEEPFEED_API_KEYS, comma-separated)
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// A file holding the admin token for /admin (also: env DEEPFEED_ADMIN_TOKEN); without it /admin is off
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Directory under which POST /admin/adapters may load adapters
    #[arg(long)]
    adapter_dir: Option<PathBuf>,
    /// SQLite file for responses and feedback (enables POST /v1/feedback)
    #[arg(long)]
    feedback_db: Option<PathBuf>,
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    #[arg(long, default_value_t = 4096)]
    max_prompt_tokens: usize,
    /// Largest max_tokens a request may ask for
    #[arg(long, default_value_t = 1024)]
    max_tokens: usize,
    /// max_tokens when a request does not say
    #[arg(long, default_value_t = 256)]
    default_max_tokens: usize,
    /// Requests waiting for the engine before new ones get 429
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Sequences generated at once (interleaved token by token)
    #[arg(long, default_value_t = 8)]
    max_active: usize,
    /// Per-request time limit in seconds
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

fn read_secret_lines(path: &PathBuf) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

/// `NAME=DIR`, or `NAME=DIR,kb=KBDIR` / `NAME=DIR,kb=none`: (name, dir, knowledge base: `None`
/// when not given, `Some(None)` for none).
type AdapterSpec = (String, PathBuf, Option<Option<PathBuf>>);

fn parse_adapter(spec: &str) -> Result<AdapterSpec> {
    let (main, kb) = match spec.rsplit_once(",kb=") {
        Some((m, kb)) if !kb.is_empty() => (m, Some(if kb == "none" { None } else { Some(PathBuf::from(kb)) })),
        Some(_) => bail!("--adapter {spec:?}: kb= needs a knowledge-base directory (or none)"),
        None => (spec, None),
    };
    match main.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => Ok((name.to_string(), PathBuf::from(dir), kb)),
        _ => bail!("--adapter {spec:?}: expected NAME=DIR or NAME=DIR,kb=KBDIR"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

pub fn run_serve(args: ServeArgs) -> Result<()> {
    let specs = args.adapters.iter().map(|s| parse_adapter(s)).collect::<Result<Vec<_>>>()?;
    let adapters: Vec<(String, PathBuf)> = specs.iter().map(|(n, d, _)| (n.clone(), d.clone())).collect();
    let adapter_kbs: Vec<(String, Option<PathBuf>)> = specs.iter().filter_map(|(n, _, kb)| kb.clone().map(|kb| (n.clone(), kb))).collect();
    let rag = deepfeed_serve::rag::RagSettings {
        k: args.kb.kb_k,
        max_tokens: args.kb.kb_tokens,
        template: args.kb.kb_template.clone().unwrap_or_else(|| deepfeed_kb::rag::DEFAULT_TEMPLATE.into()),
        mode: args.kb.kb_mode.parse()?,
    };
    if !(1..=deepfeed_serve::rag::MAX_K).contains(&rag.k) {
        bail!("--kb-k {}: expected 1 to {}", rag.k, deepfeed_serve::rag::MAX_K);
    }
    if !rag.template.contains("{question}") || !rag.template.contains("{passages}") {
        bail!("--kb-template must contain {{passages}} and {{question}}");
    }
    let mut api_keys = match &args.api_key_file {
        Some(p) => read_secret_lines(p)?,
        None => vec![],
    };
    if let Ok(v) = std::env::var("DEEPFEED_API_KEYS") {
        api_keys.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from));
    }
    let admin_token = match &args.admin_token_file {
        Some(p) => read_secret_lines(p)?.into_iter().next(),
        None => std::env::var("DEEPFEED_ADMIN_TOKEN").ok().filter(|t| !t.trim().is_empty()),
    };
    if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
        bail!("the admin token is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 24`)");
    }
    if !args.host.is_loopback() && api_keys.is_empty() {
        eprintln!("warning: binding {} without API keys: anyone who reaches this address can use the model", args.host);
    }
    let cfg = ServeConfig {
        addr: SocketAddr::new(args.host, args.port),
        model_name: args.model_name.clone(),
        api_keys,
        admin_token,
        adapter_dir: args.adapter_dir.clone(),
        max_body_bytes: args.max_body_bytes,
        max_prompt_tokens: args.max_prompt_tokens,
        max_tokens: args.max_tokens,
        default_max_tokens: args.default_max_tokens.min(args.max_tokens),
        queue_capacity: args.queue,
        max_active: args.max_active,
        request_timeout: Duration::from_secs(args.timeout_secs),
        feedback_db: args.feedback_db.clone(),
        kb: args.kb.kb.clone(),
        kb_embedder: args.kb.embedder.clone(),
        rag,
        adapter_kbs,
        kb_dir: args.kb_dir.clone(),
    };
    let model = Model::load_as(&args.model, &inference_device(), args.base_dtype)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let server = deepfeed_serve::start(model, &adapters, cfg).await?;
        let reg = &server.state.registry;
        eprintln!(
            "deepfeed serve: model {:?}{}{} on http://{} (OpenAI API under /v1, metrics at /metrics); Ctrl-C stops",
            reg.base_name,
            if reg.is_empty() { String::new() } else { format!(" with adapters {}", reg.list().iter().map(|a| if a.kb == "default" { a.name.clone() } else { format!("{} (kb {})", a.name, a.kb) }).collect::<Vec<_>>().join(", ")) },
            reg.default_kb.as_ref().map_or(String::new(), |kb| format!(", knowledge base {}", kb.dir.display())),
            server.addr
        );
        server.wait_for_ctrl_c().await;
        Ok::<(), anyhow::Error>(())
    })
}

#[derive(Subcommand)]
pub enum FeedbackCommand {
    /// Preference pairs (prompt/chosen/rejected) and SFT samples from collected feedback, PII masked
    Export {
        /// The server's --feedback-db file
        #[arg(long)]
        db: PathBuf,
        /// New directory for preferences.jsonl, sft.jsonl and summary.json
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run_feedback(cmd: FeedbackCommand) -> Result<()> {
    match cmd {
        FeedbackCommand::Export { db, out } => {
            if !db.is_file() {
                bail!("{}: no such feedback database (the file given to `deepfeed serve --feedback-db`)", db.display());
            }
            crate::refuse_existing(&out)?;
            let store = FeedbackStore::open(&db)?;
            let s = export(&store, &out)?;
            let masked: usize = s.pii_masked.values().sum();
            println!(
                "{} feedback rows -> {} preference pairs ({}), {} SFT samples ({}); {masked} pieces of personal data masked{}",
                s.feedback_rows,
                s.preference_pairs,
                out.join("preferences.jsonl").display(),
                s.sft_samples,
                out.join("sft.jsonl").display(),
                if masked > 0 { format!(" ({:?})", s.pii_masked) } else { String::new() }
            );
            Ok(())
        }
    }
}

#[derive(Args)]
pub struct BenchServeArgs {
    /// A running server to measure (default: start one here on a tiny model)
    #[arg(long)]
    url: Option<String>,
    /// Model name to request (default: the server's base model)
    #[arg(long)]
    model_name: Option<String>,
    /// Model directory to serve when no --url is given (default: a tiny random llama)
    #[arg(long)]
    model: Option<PathBuf>,
    /// Concurrency levels
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// Requests per concurrency level
    #[arg(long, default_value_t = 48)]
    requests: usize,
    #[arg(long, default_value_t = 16)]
    max_tokens: usize,
    /// Env var holding an API key to send
    #[arg(long, default_value = "DEEPFEED_API_KEY")]
    api_key_env: String,
    /// Print the reports as JSON
    #[arg(long)]
    json: bool,
}

pub fn run_bench_serve(args: BenchServeArgs) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async move {
        let tmp = std::env::temp_dir().join(format!("deepfeed-bench-serve-{}", std::process::id()));
        let mut local = None;
        let (url, model_name) = match &args.url {
            Some(u) => (u.clone(), args.model_name.clone().context("--model-name is needed with --url")?),
            None => {
                let dir = match &args.model {
                    Some(d) => d.clone(),
                    None => {
                        let d = tmp.join("tiny-llama");
                        let _ = std::fs::remove_dir_all(&tmp);
                        write_tiny_model(&TinySpec::tiny(Architecture::Llama), &d)?;
                        d
                    }
                };
                let model = Model::load(&dir, &inference_device())?;
                let cfg = ServeConfig {
                    addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                    model_name: Some(args.model_name.clone().unwrap_or_else(|| "bench".into())),
                    queue_capacity: 256,
                    max_active: 16,
                    ..Default::default()
                };
                let s = deepfeed_serve::start(model, &[], cfg).await?;
                let url = format!("http://{}", s.addr);
                let name = s.state.registry.base_name.clone();
                eprintln!("started a server on {url} serving {}", dir.display());
                local = Some(s);
                (url, name)
            }
        };
        let api_key = std::env::var(&args.api_key_env).ok();
        let mut reports = Vec::new();
        for &clients in &args.clients {
            let o = LoadOptions { url: url.clone(), model: model_name.clone(), api_key: api_key.clone(), clients, requests: args.requests.max(clients), max_tokens: args.max_tokens, ..Default::default() };
            // one warm-up request per level so that the first one does not pay for page faults
            let _ = run_load(&LoadOptions { requests: 1, clients: 1, ..o.clone() }).await;
            let r = run_load(&o).await;
            eprintln!("{clients} clients: {} ok, {} unexpected{}", r.ok, r.unexpected, r.examples.first().map_or(String::new(), |e| format!(" (e.g. {e})")));
            reports.push(r);
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        } else {
            println!("streaming chat completions, max_tokens {}, greedy; TTFT = first content chunk\n", args.max_tokens);
            print!("{}", table(&reports));
        }
        if let Some(s) = local {
            s.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&tmp);
        Ok::<(), anyhow::Error>(())
    })
}

/// Serves the trainer's live numbers at `addr`/metrics; returns the bound address.
pub fn start_train_metrics(addr: SocketAddr) -> Result<(Arc<deepfeed_train::live::LiveMetrics>, SocketAddr)> {
    let live = Arc::new(deepfeed_train::live::LiveMetrics::default());
    let reader = live.clone();
    let render = Arc::new(move || {
        let s = reader.snapshot().unwrap_or_default();
        let mut g = vec![
            ("deepfeed_train_step", "Optimizer steps done", s.step as f64),
            ("deepfeed_train_total_steps", "Optimizer steps planned", s.total_steps as f64),
            ("deepfeed_train_loss", "Training loss of the latest step", s.loss),
            ("deepfeed_train_learning_rate", "Learning rate of the latest step", s.learning_rate),
            ("deepfeed_train_tokens_per_second", "Trained tokens per second in the latest step", s.tokens_per_second),
            ("deepfeed_train_grad_norm", "Global gradient norm before clipping, latest step", s.grad_norm),
            ("deepfeed_train_eta_seconds", "Estimated seconds until the last step", s.eta_seconds),
        ];
        if let Some(v) = s.val_loss {
            g.push(("deepfeed_train_val_loss", "Latest validation loss", v));
        }
        deepfeed_serve::metrics::render_gauges(&g)
    });
    let bound = deepfeed_serve::metrics_endpoint::spawn_metrics_endpoint(addr, render)?;
    Ok((live, bound))
}
