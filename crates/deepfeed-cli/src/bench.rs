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
const TRAIN_PEER_SCRIPT: &str = include_str!("../../../scripts/bench_train.py");
const CLEAN_PEER_SCRIPT: &str = include_str!("../../../scripts/bench_clean.py");

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
    /// LoRA training tokens/s and peak memory, deepfeed vs PyTorch + PEFT on the same model
    Train(TrainBench),
    /// Load test of an OpenAI-compatible server: throughput, TTFT and latency percentiles at 1, 4, 16 clients
    Serve(crate::serve_cmd::BenchServeArgs),
    /// Knowledge base: recall@5 / MRR of BM25, vector and hybrid retrieval on a labelled set, and
    /// HNSW query latency at 100k chunks against brute force
    Kb(crate::kb_cmd::BenchKbArgs),
    /// clean + de-identify + dedup throughput (MB/s per core) vs the same work in Python
    Clean {
        /// Megabytes of mixed Chinese/English text to clean
        #[arg(long, default_value_t = 100)]
        mb: usize,
        /// Megabytes given to the (much slower) Python peer; its MB/s is compared
        #[arg(long, default_value_t = 5)]
        peer_mb: usize,
        /// Rounds (each engine once per round, taking turns); medians are printed
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Python with numpy for the peer measurement
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long)]
        no_peer: bool,
        /// Also look for addresses and names in context (the Python peer does not: off by default
        /// so that both do the same work)
        #[arg(long)]
        address_name: bool,
    },
}

#[derive(clap::Args)]
pub struct TrainBench {
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 512)]
    hidden: usize,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Timed steps (median reported), after the warm-up steps
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 16)]
    lora_r: usize,
    #[arg(long, default_value = "q_proj,v_proj")]
    target_modules: String,
    /// tokenizer.json for the benchmark model (default: the built-in 500-token one)
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Python with torch + transformers + peft for the peer measurement
    #[arg(long, default_value = "python3")]
    python: String,
    #[arg(long)]
    no_peer: bool,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Forward { model, prompt_len, gen_tokens, runs, python, no_peer } => {
            forward(model, prompt_len, gen_tokens.max(2), runs.max(1), (!no_peer).then_some(python))
        }
        BenchCommand::Train(b) => train_bench(b),
        BenchCommand::Serve(a) => crate::serve_cmd::run_bench_serve(a),
        BenchCommand::Kb(a) => crate::kb_cmd::run_bench(a),
        BenchCommand::Clean { mb, peer_mb, python, no_peer, address_name, runs } => clean_bench(mb, peer_mb, (!no_peer).then_some(python), address_name, runs),
    }
}

/// Synthetic text: random Chinese sentences (3,000 common-range characters) and English-like
/// words, phones, e-mails, ID numbers, order numbers, full-width characters, and 10 % repeated
/// records.
fn synthetic_records(bytes: usize) -> String {
    let syllables = ["ka", "lo", "ren", "ti", "mu", "sha", "ne", "po", "lin", "der", "ex", "vo", "tra", "quen", "ship"];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = String::with_capacity(bytes + 4096);
    let mut i: u64 = 0;
    while out.len() < bytes {
        i += 1;
        let mut text = String::new();
        for k in 0..12u64 {
            if rand() % 3 == 0 {
                for _ in 0..8 + rand() % 8 {
                    let w: String = (0..1 + rand() % 3).map(|_| syllables[(rand() % syllables.len() as u64) as usize]).collect();
                    text.push_str(&w);
                    text.push(' ');
                }
                text.push_str(if rand() % 5 == 0 { "ＦＵＬＬ　ｗｉｄｔｈ. " } else { ". " });
            } else {
                for _ in 0..10 + rand() % 15 {
                    text.push(char::from_u32(0x4E00 + (rand() % 3000) as u32).unwrap_or('中'));
                }
                text.push_str(if rand() % 2 == 0 { "，" } else { "。" });
            }
            let r = |x: u64| x.wrapping_add(k);
            let v = rand();
            match v % 9 {
                0 => text.push_str(&format!(" 电话1{}{:09} ", 3 + r(v) % 7, r(v >> 8) % 1_000_000_000)),
                1 => text.push_str(&format!(" mail user{}@example.com ", r(v >> 4) % 1000)),
                2 => text.push_str(&format!(" 订单号{:018} ", r(v >> 2) % 1_000_000_000_000_000_000)),
                3 => text.push_str(" 证件11010519491231002X "),
                _ => {}
            }
        }
        text.push_str(&format!(" #{i}"));
        let line = serde_json::json!({ "text": text }).to_string();
        out.push_str(&line);
        out.push('\n');
        if i % 10 == 0 {
            out.push_str(&line); // an exact duplicate
            out.push('\n');
        }
    }
    out
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn clean_bench(mb: usize, peer_mb: usize, python: Option<String>, address_name: bool, runs: usize) -> Result<()> {
    use deepfeed_data::clean::{clean_file, CleanOptions, Step};
    let scratch = std::env::temp_dir().join(format!("deepfeed-bench-clean-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let data = synthetic_records(mb << 20);
    let input = scratch.join("in.jsonl");
    std::fs::write(&input, &data)?;
    // the default pipeline; without --address-name, the PII types the Python peer has
    let mut opts = CleanOptions::default();
    for s in opts.steps.iter_mut() {
        if let (Step::Pii(p), false) = (s, address_name) {
            p.disable = vec!["ADDRESS".into(), "NAME".into()];
        }
    }
    // the peer gets the first peer_mb of the same records (whole lines)
    let bytes = data.as_bytes();
    let cut = bytes[..(peer_mb << 20).min(bytes.len())].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let peer_in = scratch.join("peer.jsonl");
    std::fs::write(&peer_in, &data[..cut])?;
    let script = scratch.join("bench_clean.py");
    std::fs::write(&script, CLEAN_PEER_SCRIPT)?;
    println!(
        "deepfeed bench clean: {:.0} MB of mixed Chinese/English records; NFKC, control/whitespace, PII masking ({}), exact + near-duplicate (MinHash 128, LSH 16x8, 0.8) removal; 1 core; median of {runs} rounds, the two engines taking turns",
        data.len() as f64 / 1e6,
        if address_name { "structured types + ADDRESS + NAME" } else { "ID_CARD, BANK_CARD, PHONE, IP, EMAIL, as the peer" }
    );
    // per core = per second of the working thread's CPU time (ours: this thread; Python:
    // process_time), so that other load on a shared machine counts against neither side; wall
    // time is printed too
    let (mut ours, mut ours_wall, mut theirs, mut theirs_wall, mut ratios) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut written, mut peer_out, mut peer_error) = (0, serde_json::Value::Null, None);
    for _ in 0..runs.max(1) {
        let (t, cpu) = (Instant::now(), thread_cpu_seconds());
        let r = clean_file(&input, &scratch.join("out.jsonl"), opts.clone())?;
        let (secs, cpu_secs) = (t.elapsed().as_secs_f64(), thread_cpu_seconds() - cpu);
        std::fs::remove_file(scratch.join("out.jsonl"))?;
        written = r.written;
        ours.push(data.len() as f64 / cpu_secs / 1e6);
        ours_wall.push(data.len() as f64 / secs / 1e6);
        let Some(py) = &python else { continue };
        match Command::new(py).arg(&script).arg(&peer_in).output() {
            Ok(o) if o.status.success() => {
                let v: serde_json::Value = serde_json::from_slice(o.stdout.trim_ascii())?;
                theirs.push(v["mb_per_s"].as_f64().unwrap_or(f64::NAN));
                theirs_wall.push(v["mb_per_s_wall"].as_f64().unwrap_or(f64::NAN));
                ratios.push(ours.last().unwrap() / theirs.last().unwrap());
                peer_out = v["records_out"].clone();
            }
            Ok(o) => peer_error = Some(String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("failed").to_string()),
            Err(e) => peer_error = Some(format!("cannot run {py}: {e}")),
        }
        if peer_error.is_some() {
            break;
        }
    }
    println!("{:<22} {:>10} {:>12} {:>12} {:>12}", "engine", "MB", "MB/s/core", "MB/s wall", "records out");
    println!("{:<22} {:>10.0} {:>12.1} {:>12.1} {:>12}", "deepfeed", data.len() as f64 / 1e6, median(ours.clone()), median(ours_wall), written);
    if let Some(e) = peer_error {
        println!("(no Python peer: {e})");
    } else if !theirs.is_empty() {
        println!("{:<22} {:>10.0} {:>12.2} {:>12.2} {:>12}", "Python (re + numpy)", cut as f64 / 1e6, median(theirs), median(theirs_wall), peer_out);
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.1}x")).collect();
        println!("ratio (deepfeed / Python): {:.1}x (median; rounds: {})", median(ratios), each.join(", "));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn train_bench(b: TrainBench) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("deepfeed-bench-train-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let heads = (b.hidden / 64).max(1);
    let spec = TinySpec {
        hidden_size: b.hidden,
        intermediate_size: b.hidden * 11 / 4,
        num_hidden_layers: b.layers,
        num_attention_heads: heads,
        num_key_value_heads: heads,
        tokenizer: b.tokenizer.clone(),
        ..TinySpec::tiny(Architecture::Llama)
    };
    let model_dir = scratch.join("model");
    write_tiny_model(&spec, &model_dir)?;
    // text long enough to fill seq_len tokens once tokenized; truncation makes every sample seq_len
    let words = ["deepfeed", "trains", "models", "on", "your", "own", "data", "深度", "求索", "学习", "数据", "2026", "LoRA", "adapter"];
    let total = (b.warmup + b.steps) * b.batch_size;
    let mut data = String::new();
    for i in 0..total {
        let text: Vec<&str> = (0..b.seq_len * 2).map(|j| words[(i * 7 + j * 13 + j / 5) % words.len()]).collect();
        data.push_str(&serde_json::json!({ "text": text.join(" ") }).to_string());
        data.push('\n');
    }
    std::fs::write(scratch.join("data.jsonl"), data)?;
    let run_dir = scratch.join("run");
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .arg("train")
        .args(["--model".as_ref(), model_dir.as_os_str(), "--data".as_ref(), scratch.join("data.jsonl").as_os_str(), "--output-dir".as_ref(), run_dir.as_os_str()])
        .args(["--max-steps", &(b.warmup + b.steps).to_string(), "--batch-size", &b.batch_size.to_string(), "--max-seq-len", &b.seq_len.to_string()])
        .args(["--lora-r", &b.lora_r.to_string(), "--lora-alpha", &(2 * b.lora_r).to_string(), "--target-modules", &b.target_modules])
        .args(["--lr", "1e-4", "--lr-scheduler", "constant", "--max-grad-norm", "0", "--json"])
        .output()?;
    if !out.status.success() {
        anyhow::bail!("deepfeed train failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl"))?;
    let tps: Vec<f64> = metrics
        .lines()
        .skip(b.warmup)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["tokens_per_second"].as_f64())
        .collect();
    let ours = (median(tps), summary["peak_rss_mib"].as_f64().unwrap_or(f64::NAN));
    let cfg = deepfeed_model::ModelConfig::from_dir(&model_dir)?;
    println!(
        "deepfeed bench train: LoRA r={} on {}, {} layers, hidden {}, vocab {} ({:.1}M params), batch {} x seq {}, median of {} steps after {} warm-up, {} threads",
        b.lora_r, b.target_modules, b.layers, b.hidden, cfg.vocab_size, cfg.num_parameters() as f64 / 1e6, b.batch_size, b.seq_len, b.steps, b.warmup,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("{:<22} {:>12} {:>14}", "engine", "tokens/s", "peak RSS MiB");
    println!("{:<22} {:>12.1} {:>14.0}", "deepfeed (burn flex)", ours.0, ours.1);
    if b.no_peer {
        println!("(no PyTorch peer: skipped)");
    } else {
        let script = scratch.join("bench_train.py");
        std::fs::write(&script, TRAIN_PEER_SCRIPT)?;
        let out = Command::new(&b.python)
            .arg(&script)
            .arg(&model_dir)
            .args([b.batch_size, b.seq_len, b.steps, b.warmup, b.lora_r].map(|x| x.to_string()))
            .args([(2 * b.lora_r).to_string(), b.target_modules.clone()])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let v: serde_json::Value = serde_json::from_slice(o.stdout.trim_ascii())?;
                let (t, m) = (v["tokens_per_second"].as_f64().unwrap_or(f64::NAN), v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN));
                println!("{:<22} {:>12.1} {:>14.0}", "PyTorch + PEFT", t, m);
                println!("ratio (deepfeed / PyTorch): speed {:.2}x, memory {:.2}x", ours.0 / t, ours.1 / m);
            }
            Ok(o) => println!("(no PyTorch peer: {})", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("failed")),
            Err(e) => println!("(no PyTorch peer: cannot run {}: {e})", b.python),
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
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
