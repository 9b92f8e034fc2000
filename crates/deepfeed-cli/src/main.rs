//! The `deepfeed` command line: parses arguments and calls the crates.
mod bench;
mod data_cmd;
mod eval_cmd;
mod export_cmd;
mod review_cmd;
mod synth_cmd;
mod ingest_cmd;
mod serve_cmd;
mod kb_cmd;
mod train_cmd;

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use deepfeed_model::backend::inference_device;
use deepfeed_model::generate::{generate, GenerateOptions};
use deepfeed_model::perplexity::{perplexity, read_documents, PerplexityOptions};
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::weights::WeightDType;
use deepfeed_model::{Architecture, ChatMessage, Model};

#[derive(Parser)]
#[command(name = "deepfeed", version, about = "Feed your own data to a local DeepSeek-family model and make it yours")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a small random model in Hugging Face layout (for tests, demos and benchmarks)
    InitTiny(InitTinyArgs),
    /// Chat with a model using its chat template (interactive, or one-shot with --prompt)
    Chat(ChatArgs),
    /// Continue a raw text prompt (no chat template)
    Generate(GenerateArgs),
    /// Perplexity of a text or JSONL file under a model
    Perplexity(PerplexityArgs),
    /// Documents (txt/md/html/pdf/docx/csv/xlsx/json, images by OCR), chat-log exports and crawled pages to records with provenance
    Ingest(ingest_cmd::IngestArgs),
    /// Convert TSV/CSV/Alpaca/ShareGPT/OpenAI/preference/text data to the project JSONL
    Convert(data_cmd::ConvertArgs),
    /// Clean a project JSONL file with an ordered pipeline: normalise, convert, filter by language and quality, mask personal data, deduplicate
    Clean(data_cmd::CleanArgs),
    /// Review queue (SQLite): add samples, accept / edit / reject them from the terminal, export the accepted
    Review(review_cmd::ReviewArgs),
    /// Question/answer pairs from document chunks, written by a local model or an OpenAI-compatible endpoint
    Synth(synth_cmd::SynthArgs),
    /// What a dataset holds: shapes, lengths (+ PNG histogram), languages, sources, PII, duplicates
    Stats(data_cmd::StatsArgs),
    /// Check a project JSONL file; invalid lines are quarantined with their reasons
    Validate(data_cmd::ValidateArgs),
    /// Fine-tune a model on a JSONL dataset (LoRA, DoRA, full, freeze or prefix)
    Train(train_cmd::TrainArgs),
    /// Memory estimate of a training run (same as `train --dry-run`)
    Estimate(train_cmd::TrainArgs),
    /// Fold a LoRA adapter into its base model and save the result in Hugging Face layout
    Merge(train_cmd::MergeArgs),
    /// Evaluate a model (+ adapter) on your data: perplexity, accuracy, ROUGE/BLEU, latency, gates, report
    Eval(eval_cmd::EvalArgs),
    /// One table across evaluation reports or run directories (phases of a staged feeding)
    Compare(eval_cmd::CompareArgs),
    /// Export to llama.cpp / Ollama: GGUF model, GGUF LoRA adapter, Ollama Modelfile
    Export {
        #[command(subcommand)]
        what: export_cmd::ExportCommand,
    },
    /// OpenAI-compatible HTTP server with LoRA adapters, feedback capture and Prometheus metrics
    Serve(serve_cmd::ServeArgs),
    /// Collected feedback to the next phase's training data
    Feedback {
        #[command(subcommand)]
        what: serve_cmd::FeedbackCommand,
    },
    /// Knowledge base: add documents, search (BM25 + vectors), stats, delete
    Kb {
        #[command(subcommand)]
        what: kb_cmd::KbCommand,
    },
    /// Drop samples that mean the same as an earlier one (--semantic: sentence embeddings)
    Dedup(kb_cmd::DedupArgs),
    /// Benchmarks (speed, with a peer on the same machine when available)
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    /// 2 layers, hidden 64
    Tiny,
    /// ~100M parameters: 14 layers, hidden 768
    #[value(name = "100m")]
    M100,
}

#[derive(Args)]
struct InitTinyArgs {
    /// llama, qwen2, qwen3, gemma3, deepseek_v2 or deepseek_v3
    #[arg(long, default_value = "llama")]
    arch: String,
    /// Directory to create (must not exist, or be empty)
    #[arg(long)]
    out: PathBuf,
    /// A tokenizer.json to use (its tokenizer_config.json beside it is used too); default: a
    /// built-in 500-token English+Chinese tokenizer with DeepSeek special tokens
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "tiny")]
    preset: Preset,
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long)]
    hidden: Option<usize>,
    /// Tie the output head to the input embeddings
    #[arg(long)]
    tie_embeddings: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Standard deviation of the random weights (transformers' initializer_range); larger values
    /// give sharper output distributions that a LoRA adapter can reshape quickly (eval demos)
    #[arg(long, default_value_t = 0.02)]
    init_std: f32,
}

#[derive(Args, Clone)]
struct GenArgs {
    /// Most tokens to generate
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 = greedy
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// 0 = off
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when this text appears (repeatable)
    #[arg(long)]
    stop: Vec<String>,
    /// Hide DeepSeek-R1 <think>…</think> reasoning
    #[arg(long)]
    hide_think: bool,
}

impl GenArgs {
    fn options(&self) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: self.max_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            stop: self.stop.clone(),
            stop_on_eos: true,
            hide_think: self.hide_think,
        }
    }
}

#[derive(Args)]
struct ChatArgs {
    /// Model directory (config.json, *.safetensors, tokenizer.json)
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter to apply
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// How the base's weight matrices are kept in memory: f32, bf16, or quantized (a GGUF
    /// model's own blocks, Q8_0 for safetensors; dequantised tile by tile when used)
    #[arg(long, default_value = "f32", value_parser = parse_base_dtype)]
    base_dtype: WeightDType,
    /// One-shot: answer this and exit
    #[arg(long)]
    prompt: Option<String>,
    /// System message
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    gen: GenArgs,
    #[command(flatten)]
    kb: kb_cmd::ChatKbArgs,
}

#[derive(Args)]
struct GenerateArgs {
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter to apply
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// How the base's weight matrices are kept in memory: f32, bf16, or quantized (a GGUF
    /// model's own blocks, Q8_0 for safetensors; dequantised tile by tile when used)
    #[arg(long, default_value = "f32", value_parser = parse_base_dtype)]
    base_dtype: WeightDType,
    #[arg(long)]
    prompt: String,
    #[command(flatten)]
    gen: GenArgs,
}

#[derive(Args)]
struct PerplexityArgs {
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter to apply
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// How the base's weight matrices are kept in memory: f32, bf16, or quantized (a GGUF
    /// model's own blocks, Q8_0 for safetensors; dequantised tile by tile when used)
    #[arg(long, default_value = "f32", value_parser = parse_base_dtype)]
    base_dtype: WeightDType,
    /// Plain text (one document) or JSONL (one document per line: text, input_text+target_text, or messages)
    #[arg(long)]
    data: PathBuf,
    /// Tokens per window (default: model context, at most 1024)
    #[arg(long)]
    context: Option<usize>,
    /// New tokens scored per window (default: context - 1); smaller gives each token more left context
    #[arg(long)]
    stride: Option<usize>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// `--base-dtype`: f32, bf16 or quantized.
pub(crate) fn parse_base_dtype(s: &str) -> std::result::Result<WeightDType, String> {
    serde_json::from_value(serde_json::json!(s)).map_err(|_| format!("{s:?}: expected f32, bf16 or quantized"))
}

fn load(dir: &PathBuf, adapter: Option<&PathBuf>, dtype: WeightDType) -> Result<Model> {
    let mut model = Model::load_as(dir, &inference_device(), dtype)?;
    if let Some(a) = adapter {
        model.load_adapter(a)?;
    }
    Ok(model)
}

/// Outputs never replace anything: refuses a path that already exists.
pub(crate) fn refuse_existing(out: &std::path::Path) -> Result<()> {
    if out.exists() {
        bail!("{}: already exists; choose a new output path (inputs and earlier outputs are never overwritten)", out.display());
    }
    Ok(())
}

fn stream_print(s: &str) {
    print!("{s}");
    let _ = std::io::stdout().flush();
}

fn run_chat(args: ChatArgs) -> Result<()> {
    let model = load(&args.model, args.adapter.as_ref(), args.base_dtype)?;
    let opts = args.gen.options();
    opts.validate()?;
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(ChatMessage::new("system", s));
    }
    let kb = kb_cmd::ChatKb::open(&args.kb, &model)?;
    let turn = |messages: &mut Vec<ChatMessage>, user: &str| -> Result<()> {
        // with --kb the model sees the question with retrieved passages; the history keeps the
        // bare question so passages do not pile up over turns
        let rag = kb.as_ref().map(|k| k.prompt(&model, user)).transpose()?;
        let mut shown = messages.clone();
        shown.push(rag.as_ref().map_or_else(|| ChatMessage::new("user", user), |r| r.user_message.clone()));
        let prompt = model.tokenizer.apply_chat_template(&shown, true)?;
        let ids = model.tokenizer.encode(&prompt, false)?;
        let g = generate(&model, &ids, &opts, &mut stream_print)?;
        println!();
        if let Some(r) = &rag {
            println!("{}", kb_cmd::ChatKb::citations(r));
        }
        messages.push(ChatMessage::new("user", user));
        messages.push(ChatMessage::new("assistant", &g.text));
        Ok(())
    };
    if let Some(p) = &args.prompt {
        return turn(&mut messages, p);
    }
    eprintln!("deepfeed chat — {} ({}); /reset clears the history, /exit or Ctrl-D quits", args.model.display(), model.config.architecture.hf_name());
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages.retain(|m| m.role == "system");
                eprintln!("(history cleared)");
            }
            user => turn(&mut messages, user)?,
        }
    }
    Ok(())
}

fn run_generate(args: GenerateArgs) -> Result<()> {
    let model = load(&args.model, args.adapter.as_ref(), args.base_dtype)?;
    let ids = model.tokenizer.encode(&args.prompt, true)?;
    let g = generate(&model, &ids, &args.gen.options(), &mut stream_print)?;
    println!();
    eprintln!(
        "[{} prompt tokens, {} generated, {:.1} tok/s, finish: {:?}]",
        g.prompt_tokens,
        g.token_ids.len(),
        g.token_ids.len() as f64 / g.decode_secs.max(1e-9),
        g.finish_reason
    );
    Ok(())
}

fn run_perplexity(args: PerplexityArgs) -> Result<()> {
    let model = load(&args.model, args.adapter.as_ref(), args.base_dtype)?;
    let opts = PerplexityOptions { context: args.context, stride: args.stride };
    opts.resolve(&model.config)?;
    let docs = read_documents(&model, &args.data)?;
    let r = perplexity(&model, &docs, opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "documents {}  tokens {}  mean NLL {:.4}  perplexity {:.4}  (context {}, stride {})",
            r.documents, r.tokens, r.mean_nll, r.perplexity, r.context, r.stride
        );
    }
    Ok(())
}

fn run_init_tiny(args: InitTinyArgs) -> Result<()> {
    let Some(arch) = Architecture::parse_cli(&args.arch) else {
        bail!("--arch {:?}: expected llama, qwen2, qwen3, gemma3, deepseek_v2 or deepseek_v3", args.arch);
    };
    let mut spec = match args.preset {
        Preset::Tiny => TinySpec::tiny(arch),
        Preset::M100 => TinySpec::m100(arch),
    };
    if let Some(l) = args.layers {
        spec.num_hidden_layers = l;
    }
    if let Some(h) = args.hidden {
        if h % spec.num_attention_heads != 0 {
            bail!("--hidden {h}: must be a multiple of the {} attention heads", spec.num_attention_heads);
        }
        spec.hidden_size = h;
        spec.intermediate_size = 2 * h;
    }
    spec.tie_word_embeddings = args.tie_embeddings;
    spec.seed = args.seed;
    spec.init_std = args.init_std;
    spec.tokenizer = args.tokenizer;
    write_tiny_model(&spec, &args.out)?;
    let cfg = deepfeed_model::ModelConfig::from_dir(&args.out)?;
    println!(
        "wrote {} ({}, {} layers, hidden {}, vocab {}, {:.1}M parameters)",
        args.out.display(),
        arch.hf_name(),
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.vocab_size,
        cfg.num_parameters() as f64 / 1e6
    );
    Ok(())
}

fn main() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("internal error (a bug in deepfeed, please report it): {info}");
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::InitTiny(a) => run_init_tiny(a),
        Command::Chat(a) => run_chat(a),
        Command::Kb { what } => kb_cmd::run(what),
        Command::Dedup(a) => kb_cmd::run_dedup(a),
        Command::Generate(a) => run_generate(a),
        Command::Perplexity(a) => run_perplexity(a),
        Command::Ingest(a) => ingest_cmd::run_ingest(a),
        Command::Convert(a) => data_cmd::run_convert(a),
        Command::Validate(a) => data_cmd::run_validate(a),
        Command::Clean(a) => data_cmd::run_clean(a),
        Command::Stats(a) => data_cmd::run_stats(a),
        Command::Review(a) => review_cmd::run(a),
        Command::Synth(a) => synth_cmd::run(a),
        Command::Train(a) => train_cmd::run_train(a),
        Command::Estimate(a) => train_cmd::run_train(a.dry_run()),
        Command::Merge(a) => train_cmd::run_merge(a),
        Command::Export { what } => export_cmd::run(what),
        Command::Bench { what } => bench::run(what),
        Command::Compare(a) => eval_cmd::run_compare(a),
        Command::Eval(a) => match eval_cmd::run_eval(a) {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(e),
        },
        Command::Serve(a) => serve_cmd::run_serve(a),
        Command::Feedback { what } => serve_cmd::run_feedback(what),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
