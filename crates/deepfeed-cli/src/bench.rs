//! `deepfeed bench …`: speed measurements printed next to a peer (PyTorch + transformers) run on
//! the same machine in the same run, as medians and ratios.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use deepfeed_model::backend::inference_device;
use deepfeed_model::generate::{generate, GenerateOptions};
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::{Architecture, Model};

const PEER_SCRIPT: &str = include_str!("../../../scripts/bench_forward.py");

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Prompt processing and generation tokens/s (default: a tiny and a ~100M-parameter model)
    Forward {
        /// Model directories to measure (default: create tiny and 100M llama models in a temp dir)
        #[arg(long)]
        model: Vec<PathBuf>,
        #[arg(long, default_value_t = 128)]
        prompt_len: usize,
        #[arg(long, default_value_t = 32)]
        gen_tokens: usize,
        /// Timed runs per measurement (the median is reported; one extra warm-up run)
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Python with torch + transformers for the peer measurement
        #[arg(long, default_value = "python3")]
        python: String,
        /// Skip the PyTorch peer
        #[arg(long)]
        no_peer: bool,
    },
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Forward { model, prompt_len, gen_tokens, runs, python, no_peer } => {
            forward(model, prompt_len, gen_tokens.max(2), runs.max(1), (!no_peer).then_some(python))
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

struct Speed {
    prefill: f64,
    decode: f64,
}

fn measure(model: &Model, ids: &[u32], gen: usize, runs: usize) -> Result<Speed> {
    let opts = GenerateOptions { max_new_tokens: gen, stop_on_eos: false, ..Default::default() };
    let (mut prefill, mut decode) = (vec![], vec![]);
    for r in 0..=runs {
        let mut cache = model.new_cache();
        let t = Instant::now();
        model.next_logits(ids, &mut cache)?;
        let pp = ids.len() as f64 / t.elapsed().as_secs_f64();
        let g = generate(model, ids, &opts, &mut |_| {})?;
        // the first generated token comes from the prefill logits
        let tg = (g.token_ids.len() - 1) as f64 / g.decode_secs;
        if r > 0 {
            prefill.push(pp);
            decode.push(tg);
        }
    }
    Ok(Speed { prefill: median(prefill), decode: median(decode) })
}

fn peer(python: &str, dir: &Path, ids: &[u32], gen: usize, runs: usize, scratch: &Path) -> Result<Speed, String> {
    let script = scratch.join("bench_forward.py");
    let ids_path = scratch.join("ids.json");
    std::fs::write(&script, PEER_SCRIPT).map_err(|e| e.to_string())?;
    std::fs::write(&ids_path, serde_json::to_string(ids).unwrap()).map_err(|e| e.to_string())?;
    let out = Command::new(python)
        .arg(&script)
        .arg(dir)
        .arg(&ids_path)
        .arg(gen.to_string())
        .arg(runs.to_string())
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("failed").to_string());
    }
    let v: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).map_err(|e| format!("bad peer output: {e}"))?;
    Ok(Speed { prefill: v["prefill_tok_s"].as_f64().unwrap_or(f64::NAN), decode: v["decode_tok_s"].as_f64().unwrap_or(f64::NAN) })
}

fn forward(models: Vec<PathBuf>, prompt_len: usize, gen: usize, runs: usize, python: Option<String>) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("deepfeed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let models = if models.is_empty() {
        let mut v = vec![];
        for (name, spec) in [("tiny", TinySpec::tiny(Architecture::Llama)), ("100m", TinySpec::m100(Architecture::Llama))] {
            let dir = scratch.join(name);
            write_tiny_model(&spec, &dir)?;
            v.push(dir);
        }
        v
    } else {
        models
    };
    println!("deepfeed bench forward: prompt {prompt_len} tokens, {gen} generated, median of {runs} runs, {} threads", std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("{:<28} {:>8} | {:>11} {:>11} {:>6} | {:>11} {:>11} {:>6}", "model", "params", "pp tok/s", "torch pp", "ratio", "tg tok/s", "torch tg", "ratio");
    for dir in &models {
        let model = Model::load(dir, &inference_device()).with_context(|| format!("cannot load {}", dir.display()))?;
        // a fixed pseudo-random prompt inside the vocabulary, identical for both engines
        let vocab = model.config.vocab_size as u64;
        let ids: Vec<u32> = (0..prompt_len as u64).map(|i| ((i * 2654435761 + 12345) % vocab) as u32).collect();
        let ours = measure(&model, &ids, gen, runs)?;
        let theirs = match &python {
            Some(py) => peer(py, dir, &ids, gen, runs, &scratch),
            None => Err("skipped (--no-peer)".into()),
        };
        let name = dir.file_name().map_or("?".into(), |n| n.to_string_lossy().into_owned());
        let params = format!("{:.1}M", model.config.num_parameters() as f64 / 1e6);
        match theirs {
            Ok(t) => println!(
                "{name:<28} {params:>8} | {:>11.1} {:>11.1} {:>5.2}x | {:>11.1} {:>11.1} {:>5.2}x",
                ours.prefill, t.prefill, ours.prefill / t.prefill, ours.decode, t.decode, ours.decode / t.decode
            ),
            Err(why) => {
                println!("{name:<28} {params:>8} | {:>11.1} {:>11} {:>6} | {:>11.1} {:>11} {:>6}", ours.prefill, "-", "-", ours.decode, "-", "-");
                println!("  (no PyTorch peer: {why})");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
