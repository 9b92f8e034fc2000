//! One evaluation run: the model (with its adapter) and, with `baseline`, the same loaded model
//! with the adapter taken off, over the same records, general text and gates.
use std::collections::BTreeMap;
use std::time::Instant;

use deepfeed_model::backend::inference_device;
use deepfeed_model::generate::{generate, GenerateOptions};
use deepfeed_model::perplexity::PerplexityOptions;
use deepfeed_model::Model;
use serde::Serialize;

use crate::accuracy::{judge, map_label, score_choices, ChoiceScores};
use crate::adapter::{attach, check_adapter_fits, detach, run_dir_of};
use crate::config::{EvalConfig, GeneralText, TaskKind};
use crate::dataset::{self, EvalSample};
use crate::error::{EvalError, Result};
use crate::gates::{self, GateInputs, GateResult};
use crate::hash::{hash_dir, sha256_file, FileHash};
use crate::latency::{self, LatencySummary, Timing};
use crate::perplexity::{encode_sample, prompt_ids, score, text_perplexity, PerplexityResult};
use crate::text_overlap::{self, CorpusOverlap, OverlapScores};

/// The built-in general-ability sample (mixed English/Chinese prose written for this project).
pub const GENERAL_TEXT: &str = include_str!("../assets/general.txt");

/// How one model did on one record.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SampleScore {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Summed NLL of the scored tokens, and how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nll: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap: Option<OverlapScores>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choice: Option<ChoiceScores>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
}

impl SampleScore {
    /// Mean NLL per scored token.
    pub fn mean_nll(&self) -> Option<f64> {
        self.nll.zip(self.tokens).filter(|(_, n)| *n > 0).map(|(s, n)| s / n as f64)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SampleResult {
    pub line: usize,
    pub task: String,
    pub kind: TaskKind,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Multiple choice: the options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    pub tuned: SampleScore,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<SampleScore>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    pub task: String,
    pub kind: TaskKind,
    pub samples: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Multiple choice only: lm-evaluation-harness `acc_norm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc_norm: Option<f64>,
    /// Label tasks: answers that matched no label (or several).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<usize>,
}

/// Every metric of one model.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ModelResults {
    /// In-domain perplexity over the scored tokens of all records.
    pub perplexity: Option<PerplexityResult>,
    /// Perplexity of the general text (forgetting check).
    pub general_perplexity: Option<PerplexityResult>,
    pub tasks: Vec<TaskResult>,
    /// Correct / judged over all tasks.
    pub accuracy: Option<f64>,
    pub overlap: Option<CorpusOverlap>,
    pub latency: Option<LatencySummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub dir: String,
    pub architecture: String,
    pub parameters: usize,
    pub files: Vec<FileHash>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdapterInfo {
    pub dir: String,
    pub base_model_name_or_path: Option<String>,
    /// The training run directory (metrics.jsonl beside the adapter).
    pub run_dir: Option<String>,
    pub files: Vec<FileHash>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataInfo {
    pub path: String,
    pub sha256: String,
    pub records: usize,
    /// Records per task.
    pub tasks: BTreeMap<String, usize>,
    /// "builtin", a file path, or "off".
    pub general_text: String,
    pub general_text_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Protocol {
    pub context: usize,
    pub stride: usize,
    pub max_new_tokens: usize,
    pub decoding: String,
    pub warmup: usize,
    pub device: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub deepfeed_version: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub config: EvalConfig,
    pub model: ModelInfo,
    pub adapter: Option<AdapterInfo>,
    pub data: DataInfo,
    pub protocol: Protocol,
    /// The model as evaluated (with the adapter when one is given).
    pub tuned: ModelResults,
    /// The base model (adapter taken off), with `baseline`.
    pub base: Option<ModelResults>,
    pub gates: Vec<GateResult>,
    pub passed: bool,
    pub samples: Vec<SampleResult>,
    pub seconds: f64,
}

impl Report {
    pub fn failed_gates(&self) -> Vec<&GateResult> {
        gates::failed(&self.gates)
    }
}

/// Evaluates one model over the samples; one score per sample.
fn run_pass(
    model: &Model,
    samples: &[EvalSample],
    general: Option<&str>,
    cfg: &EvalConfig,
    window: (usize, usize),
    progress: &mut dyn FnMut(&str),
) -> Result<(ModelResults, Vec<SampleScore>)> {
    let opts = GenerateOptions { max_new_tokens: cfg.max_new_tokens, ..Default::default() };
    let mut scores = vec![SampleScore::default(); samples.len()];

    // perplexity over the scored tokens
    let (mut sum, mut count) = (0.0, 0);
    for (s, out) in samples.iter().zip(&mut scores) {
        if let Some(ids) = encode_sample(model, s)? {
            let (nll, n) = score(model, &ids, window.0, window.1).map_err(|e| data_err(cfg, s, e))?;
            sum += nll;
            count += n;
            out.nll = Some(nll);
            out.tokens = Some(n);
        }
    }
    let perplexity = (count > 0).then(|| PerplexityResult::from_sums(sum, count)).transpose()?;
    progress(&format!("perplexity over {count} target tokens done"));

    // multiple choice
    for (s, out) in samples.iter().zip(&mut scores) {
        if s.task.kind == TaskKind::Choice {
            let c = score_choices(model, &s.context, &s.task.choices, window).map_err(|e| data_err(cfg, s, e))?;
            out.correct = Some(Some(c.pick) == s.task.answer);
            out.choice = Some(c);
        }
    }

    // generated answers, timed after the warm-up
    let gen: Vec<usize> = (0..samples.len()).filter(|&i| samples[i].generates()).collect();
    let prompts: Vec<Vec<u32>> = gen
        .iter()
        .map(|&i| Ok(prompt_ids(model, &samples[i].context)?))
        .collect::<Result<_>>()?;
    for k in 0..cfg.warmup.min(prompts.len()) {
        generate(model, &prompts[k], &opts, &mut |_| {})?;
    }
    let mut timings = Vec::new();
    for (n, &i) in gen.iter().enumerate() {
        let s = &samples[i];
        let t0 = Instant::now();
        let ids = prompt_ids(model, &s.context)?;
        let encode_secs = t0.elapsed().as_secs_f64();
        let g = generate(model, &ids, &opts, &mut |_| {}).map_err(|e| data_err(cfg, s, e.into()))?;
        let e2e = t0.elapsed().as_secs_f64();
        let timing = Timing::new((encode_secs + g.prefill_secs) * 1e3, e2e * 1e3, g.token_ids.len());
        timings.push(timing);
        let answer = g.text.trim().to_string();
        let out = &mut scores[i];
        out.correct = judge(&s.task, &answer, s.target.as_deref());
        if let Some(t) = &s.target {
            out.overlap = Some(text_overlap::score_pair(t, &answer).0);
        }
        out.timing = Some(timing);
        out.answer = Some(answer);
        if (n + 1) % 10 == 0 || n + 1 == gen.len() {
            progress(&format!("generated {}/{} answers", n + 1, gen.len()));
        }
    }

    // per task accuracy
    let mut by_task: BTreeMap<String, (TaskKind, usize, usize, usize, usize)> = BTreeMap::new();
    for (s, out) in samples.iter().zip(&scores) {
        let Some(correct) = out.correct else { continue };
        let e = by_task.entry(s.task.name.clone()).or_insert((s.task.kind, 0, 0, 0, 0));
        e.1 += 1;
        e.2 += correct as usize;
        if let Some(c) = &out.choice {
            e.3 += (Some(c.pick_norm) == s.task.answer) as usize;
        }
        if s.task.kind == TaskKind::Label && out.answer.as_deref().is_some_and(|a| map_label(a, &s.task.labels).is_none()) {
            e.4 += 1;
        }
    }
    let tasks: Vec<TaskResult> = by_task
        .into_iter()
        .map(|(task, (kind, n, c, cn, inv))| TaskResult {
            task,
            kind,
            samples: n,
            correct: c,
            accuracy: c as f64 / n as f64,
            acc_norm: (kind == TaskKind::Choice).then(|| cn as f64 / n as f64),
            invalid: (kind == TaskKind::Label).then_some(inv),
        })
        .collect();
    let judged: usize = tasks.iter().map(|t| t.samples).sum();
    let accuracy = (judged > 0).then(|| tasks.iter().map(|t| t.correct).sum::<usize>() as f64 / judged as f64);

    let pairs: Vec<(&str, &str)> = samples
        .iter()
        .zip(&scores)
        .filter_map(|(s, o)| Some((s.target.as_deref()?, o.answer.as_deref()?)))
        .collect();
    let general_perplexity = general.map(|t| text_perplexity(model, t, window.0, window.1)).transpose()?;
    Ok((
        ModelResults {
            perplexity,
            general_perplexity,
            tasks,
            accuracy,
            overlap: text_overlap::corpus(&pairs),
            latency: latency::summarise(&timings, cfg.warmup.min(prompts.len()), cfg.max_new_tokens),
        },
        scores,
    ))
}

fn data_err(cfg: &EvalConfig, s: &EvalSample, e: EvalError) -> EvalError {
    EvalError::Data { path: cfg.data.clone(), line: s.line, message: e.to_string() }
}

/// Runs the whole evaluation as configured (writes nothing; see [`crate::report::write`]).
pub fn evaluate(cfg: &EvalConfig, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    cfg.validate()?;
    let started = Instant::now();
    let samples = dataset::load(&cfg.data, &cfg.task)?;
    let (general, general_label) = match &cfg.general_text {
        GeneralText::Builtin(true) => (Some(GENERAL_TEXT.to_string()), "builtin".to_string()),
        GeneralText::Builtin(false) => (None, "off".to_string()),
        GeneralText::File(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| EvalError::io(p, e))?;
            if t.trim().is_empty() {
                return Err(EvalError::Invalid(format!("{}: the general text file is empty", p.display())));
            }
            (Some(t), p.display().to_string())
        }
    };
    if cfg.baseline && cfg.adapter.is_none() {
        return Err(EvalError::Config("--baseline compares the model with and without its adapter: give --adapter too".into()));
    }

    let mut model = Model::load_as(&cfg.model, &inference_device(), cfg.base_dtype)?;
    if let Some(a) = &cfg.adapter {
        check_adapter_fits(&mut model, a, cfg.allow_base_mismatch)?;
        model.load_adapter(a)?;
    }
    let window = PerplexityOptions { context: cfg.context, stride: cfg.stride }.resolve(&model.config)?;
    progress(&format!("{} records; evaluating {}", samples.len(), if cfg.adapter.is_some() { "model + adapter" } else { "model" }));

    let (tuned, tuned_scores) = run_pass(&model, &samples, general.as_deref(), cfg, window, progress)?;
    let base = if cfg.baseline {
        progress("evaluating the base model (adapter off)");
        let d = detach(&mut model);
        let r = run_pass(&model, &samples, general.as_deref(), cfg, window, progress);
        attach(&mut model, d);
        Some(r?)
    } else {
        None
    };

    // gates look at the evaluated model, against the base where one was measured
    let inputs = GateInputs {
        ppl: tuned.perplexity.as_ref().map(|p| p.perplexity),
        base_ppl: base.as_ref().and_then(|b| b.0.perplexity.as_ref()).map(|p| p.perplexity),
        task_accuracy: tuned.tasks.iter().map(|t| (t.task.clone(), t.accuracy)).collect(),
        p95_e2e_ms: tuned.latency.as_ref().map(|l| l.e2e_ms.p95),
        general_ppl: tuned.general_perplexity.as_ref().map(|p| p.perplexity),
        general_base_ppl: base.as_ref().and_then(|b| b.0.general_perplexity.as_ref()).map(|p| p.perplexity),
    };
    let gate_results = gates::check(&cfg.gates, &inputs);
    let passed = gates::failed(&gate_results).is_empty();

    let mut base_scores = base.as_ref().map(|b| b.1.clone().into_iter());
    let sample_results = samples
        .iter()
        .zip(tuned_scores)
        .map(|(s, t)| SampleResult {
            line: s.line,
            task: s.task.name.clone(),
            kind: s.task.kind,
            prompt: s.prompt_preview(),
            expected: match s.task.kind {
                TaskKind::Choice => s.task.answer.map(|a| s.task.choices[a].clone()),
                _ => s.target.clone(),
            },
            choices: s.task.choices.clone(),
            tuned: t,
            base: base_scores.as_mut().and_then(|it| it.next()),
        })
        .collect();

    let mut tasks = BTreeMap::new();
    for s in &samples {
        *tasks.entry(s.task.name.clone()).or_insert(0) += 1;
    }
    let model_info = ModelInfo {
        dir: cfg.model.display().to_string(),
        architecture: model.config.architecture.hf_name().to_string(),
        parameters: model.config.num_parameters(),
        files: match cfg.hash_model {
            // a .gguf model is one file
            true if cfg.model.is_file() => vec![sha256_file(&cfg.model)?],
            true => hash_dir(&cfg.model)?,
            false => vec![],
        },
    };
    let adapter = match &cfg.adapter {
        Some(a) => Some(AdapterInfo {
            dir: a.display().to_string(),
            base_model_name_or_path: crate::adapter::adapter_base_name(a)?,
            run_dir: run_dir_of(a).map(|d| d.display().to_string()),
            files: hash_dir(a)?,
        }),
        None => None,
    };
    let general_sha = general.as_ref().map(|t| {
        use sha2::Digest;
        sha2::Sha256::digest(t.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()
    });
    Ok(Report {
        deepfeed_version: env!("CARGO_PKG_VERSION").to_string(),
        created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        config: cfg.clone(),
        model: model_info,
        adapter,
        data: DataInfo {
            path: cfg.data.display().to_string(),
            sha256: sha256_file(&cfg.data)?.sha256,
            records: samples.len(),
            tasks,
            general_text: general_label,
            general_text_sha256: general_sha,
        },
        protocol: Protocol {
            context: window.0,
            stride: window.1,
            max_new_tokens: cfg.max_new_tokens,
            decoding: "greedy, stop at EOS".into(),
            warmup: cfg.warmup,
            device: "cpu (burn flex)".into(),
        },
        tuned,
        base: base.map(|b| b.0),
        gates: gate_results,
        passed,
        samples: sample_results,
        seconds: started.elapsed().as_secs_f64(),
    })
}
