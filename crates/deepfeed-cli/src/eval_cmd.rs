//! `deepfeed eval` and `deepfeed compare`.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use deepfeed_eval::adapter::run_dir_of;
use deepfeed_eval::config::EvalConfig;
use deepfeed_eval::gates::GateStatus;
use serde_json::{json, Value};

/// Every field of eval.yaml as a flag; flags override the file (fields in docs/eval.md).
#[derive(Args)]
pub struct EvalArgs {
    /// YAML config; flags below override it
    #[arg(long)]
    config: Option<PathBuf>,
    /// Base model directory
    #[arg(long)]
    model: Option<PathBuf>,
    /// PEFT adapter to evaluate (LoRA, DoRA or prefix)
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// How the base's weight matrices are kept in memory: f32, bf16, or quantized (a GGUF
    /// model's own blocks, Q8_0 for safetensors; dequantised tile by tile when used)
    #[arg(long, value_parser = crate::parse_base_dtype)]
    base_dtype: Option<deepfeed_model::weights::WeightDType>,
    /// Evaluation data (project JSONL; `metadata.eval` says how each record is judged)
    #[arg(long)]
    data: Option<PathBuf>,
    /// Also evaluate the base model (adapter taken off) in the same run
    #[arg(long)]
    baseline: bool,
    /// Report directory (default: <run dir>/report for an adapter in a run directory, else eval-report)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Most tokens generated per answer
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Perplexity window in tokens
    #[arg(long)]
    context: Option<usize>,
    /// Perplexity window step
    #[arg(long)]
    stride: Option<usize>,
    /// Untimed generations before latency is measured
    #[arg(long)]
    warmup: Option<usize>,
    /// Plain-text file for the forgetting check (default: the built-in English/Chinese sample)
    #[arg(long)]
    general_text: Option<PathBuf>,
    /// Skip the forgetting check
    #[arg(long)]
    no_general_text: bool,
    /// Task kind of records without metadata.eval: exact, contains, regex, label or none
    #[arg(long)]
    task_kind: Option<String>,
    /// Gate: in-domain perplexity at least this fraction below the base (0.10 = 10%)
    #[arg(long)]
    min_ppl_improvement: Option<f64>,
    /// Gate: accuracy of every task
    #[arg(long)]
    min_accuracy: Option<f64>,
    /// Gate: p95 end-to-end latency in ms
    #[arg(long)]
    max_p95_latency_ms: Option<f64>,
    /// Evaluate even if adapter_config.json names another base model
    #[arg(long)]
    allow_base_mismatch: bool,
    /// Print report.json to stdout
    #[arg(long)]
    json: bool,
}

impl EvalArgs {
    pub fn resolve(&self) -> Result<EvalConfig> {
        let mut v = match &self.config {
            Some(p) => EvalConfig::yaml_value(p)?,
            None => json!({}),
        };
        let obj = v.as_object_mut().unwrap();
        let mut put = |k: &str, x: Option<Value>| {
            if let Some(x) = x {
                obj.insert(k.into(), x);
            }
        };
        put("model", self.model.as_ref().map(|x| json!(x)));
        put("adapter", self.adapter.as_ref().map(|x| json!(x)));
        put("base_dtype", self.base_dtype.map(|x| json!(x)));
        put("data", self.data.as_ref().map(|x| json!(x)));
        put("baseline", self.baseline.then_some(json!(true)));
        put("out", self.out.as_ref().map(|x| json!(x)));
        put("max_new_tokens", self.max_new_tokens.map(|x| json!(x)));
        put("context", self.context.map(|x| json!(x)));
        put("stride", self.stride.map(|x| json!(x)));
        put("warmup", self.warmup.map(|x| json!(x)));
        put("general_text", self.general_text.as_ref().map(|x| json!(x)));
        put("general_text", self.no_general_text.then_some(json!(false)));
        put("allow_base_mismatch", self.allow_base_mismatch.then_some(json!(true)));
        let task = obj.entry("task").or_insert_with(|| json!({}));
        if let (Some(k), Some(t)) = (&self.task_kind, task.as_object_mut()) {
            t.insert("kind".into(), json!(k));
        }
        let gates = obj.entry("gates").or_insert_with(|| json!({}));
        if let Some(g) = gates.as_object_mut() {
            for (k, x) in [("min_ppl_improvement", self.min_ppl_improvement), ("min_accuracy", self.min_accuracy), ("max_p95_latency_ms", self.max_p95_latency_ms)] {
                if let Some(x) = x {
                    g.insert(k.into(), json!(x));
                }
            }
        }
        Ok(EvalConfig::from_value(v)?)
    }
}

/// Exit code when the evaluation ran but a gate failed (errors exit with 1).
pub const GATE_FAILED: i32 = 2;

pub fn run_eval(args: EvalArgs) -> Result<i32> {
    let cfg = args.resolve()?;
    let out = match &cfg.out {
        Some(o) => o.clone(),
        None => cfg.adapter.as_deref().and_then(run_dir_of).map(|d| d.join("report")).unwrap_or_else(|| PathBuf::from("eval-report")),
    };
    crate::refuse_existing(&out)?;
    let report = deepfeed_eval::evaluate(&cfg, &mut |m| eprintln!("eval: {m}"))?;
    let files = deepfeed_eval::report::write(&report, &out)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report));
        println!("report: {}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let failed = report.failed_gates();
    if failed.is_empty() {
        eprintln!("all gates passed");
        Ok(0)
    } else {
        for g in &failed {
            eprintln!("gate failed: {}: {}", g.gate, g.detail);
        }
        Ok(GATE_FAILED)
    }
}

/// A few lines for the terminal; the full picture is in the report files.
fn summary(r: &deepfeed_eval::Report) -> String {
    let mut s = String::new();
    let line = |name: &str, base: Option<f64>, tuned: Option<f64>| -> String {
        match (base, tuned) {
            (Some(b), Some(t)) => format!("{name:<26} base {b:>10.4}   tuned {t:>10.4}\n"),
            (None, Some(t)) => format!("{name:<26} {t:>10.4}\n"),
            _ => String::new(),
        }
    };
    let b = r.base.as_ref();
    s += &line("in-domain perplexity", b.and_then(|b| b.perplexity.as_ref().map(|p| p.perplexity)), r.tuned.perplexity.as_ref().map(|p| p.perplexity));
    s += &line("accuracy", b.and_then(|b| b.accuracy), r.tuned.accuracy);
    s += &line("ROUGE-L F1", b.and_then(|b| b.overlap.as_ref().map(|o| o.rouge_l)), r.tuned.overlap.as_ref().map(|o| o.rouge_l));
    s += &line("BLEU-4", b.and_then(|b| b.overlap.as_ref().map(|o| o.bleu)), r.tuned.overlap.as_ref().map(|o| o.bleu));
    s += &line("general-text perplexity", b.and_then(|b| b.general_perplexity.as_ref().map(|p| p.perplexity)), r.tuned.general_perplexity.as_ref().map(|p| p.perplexity));
    s += &line("end-to-end p95 ms", b.and_then(|b| b.latency.as_ref().map(|l| l.e2e_ms.p95)), r.tuned.latency.as_ref().map(|l| l.e2e_ms.p95));
    for g in &r.gates {
        let st = match g.status {
            GateStatus::Pass => "pass",
            GateStatus::Fail => "FAIL",
            GateStatus::Skipped => "skipped",
        };
        s += &format!("gate {:<22} {st:<8} {}\n", g.gate, g.detail);
    }
    s
}

#[derive(Args)]
pub struct CompareArgs {
    /// Report directories or training run directories (with report/), in phase order
    #[arg(required = true, num_args = 1..)]
    runs: Vec<PathBuf>,
    /// Also write the table to this file (.md or .html; must not exist)
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run_compare(args: CompareArgs) -> Result<()> {
    let runs = args.runs.iter().map(|r| deepfeed_eval::compare::load(r)).collect::<std::result::Result<Vec<_>, _>>()?;
    let md = deepfeed_eval::compare::markdown(&runs);
    print!("{md}");
    if let Some(out) = &args.out {
        crate::refuse_existing(out)?;
        let text = match out.extension().and_then(|e| e.to_str()) {
            Some("html") | Some("htm") => deepfeed_eval::compare::html(&runs),
            Some("md") => md,
            _ => anyhow::bail!("--out {}: expected a .md or .html file name", out.display()),
        };
        deepfeed_model::fsutil::write_file_atomically(out, text.as_bytes())?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
