//! Pass/fail gates that let `deepfeed eval` guard a deployment. Defaults are the targets users
//! quote: in-domain perplexity at least 10% below the base model's, accuracy ≥ 85% on every
//! task, p95 end-to-end latency under 500 ms. A gate whose numbers are missing (no baseline, no
//! accuracy task, no generation) is reported as skipped, never as passed.
use serde::Serialize;

use crate::config::GateConfig;

/// The numbers the gates look at.
#[derive(Debug, Clone, Default)]
pub struct GateInputs {
    /// In-domain perplexity of the evaluated model and of the base model (baseline).
    pub ppl: Option<f64>,
    pub base_ppl: Option<f64>,
    /// (task, accuracy) of the evaluated model.
    pub task_accuracy: Vec<(String, f64)>,
    pub p95_e2e_ms: Option<f64>,
    /// General-text perplexity of the evaluated model and of the base model.
    pub general_ppl: Option<f64>,
    pub general_base_ppl: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateStatus {
    Pass,
    Fail,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct GateResult {
    pub gate: String,
    pub status: GateStatus,
    /// The measured value and the threshold, in the gate's unit.
    pub value: Option<f64>,
    pub threshold: f64,
    /// One line a person can read: what was measured against what.
    pub detail: String,
}

fn result(gate: String, value: Option<f64>, threshold: f64, pass: impl Fn(f64) -> bool, detail: String, skipped_why: &str) -> GateResult {
    match value {
        Some(v) => GateResult { gate, status: if pass(v) { GateStatus::Pass } else { GateStatus::Fail }, value: Some(v), threshold, detail },
        None => GateResult { gate, status: GateStatus::Skipped, value: None, threshold, detail: skipped_why.to_string() },
    }
}

/// Checks every configured gate.
pub fn check(cfg: &GateConfig, x: &GateInputs) -> Vec<GateResult> {
    let mut out = Vec::new();
    if let Some(min) = cfg.min_ppl_improvement {
        let improvement = x.ppl.zip(x.base_ppl).map(|(t, b)| 1.0 - t / b);
        let detail = match (x.ppl, x.base_ppl, improvement) {
            (Some(t), Some(b), Some(i)) => format!("in-domain perplexity {t:.3} vs base {b:.3}: {:.1}% lower (need ≥ {:.1}%)", i * 100.0, min * 100.0),
            _ => String::new(),
        };
        out.push(result("ppl_improvement".into(), improvement, min, |v| v >= min, detail, "needs a baseline (--baseline with --adapter) and scored targets"));
    }
    let mut any_task = false;
    for (task, acc) in &x.task_accuracy {
        let Some(min) = cfg.thresholds.get(task).copied().or(cfg.min_accuracy) else { continue };
        any_task = true;
        let detail = format!("task {task}: accuracy {:.1}% (need ≥ {:.1}%)", acc * 100.0, min * 100.0);
        out.push(result(format!("accuracy[{task}]"), Some(*acc), min, |v| v >= min, detail, ""));
    }
    if !any_task {
        if let Some(min) = cfg.min_accuracy {
            out.push(result("accuracy".into(), None, min, |_| true, String::new(), "no record has an accuracy task (all kinds are `none` or text)"));
        }
    }
    if let Some(max) = cfg.max_p95_latency_ms {
        let detail = x.p95_e2e_ms.map(|p| format!("p95 end-to-end latency {p:.1} ms (need < {max} ms)")).unwrap_or_default();
        out.push(result("p95_latency".into(), x.p95_e2e_ms, max, |v| v < max, detail, "no answer was generated"));
    }
    if let Some(max) = cfg.max_general_ppl_increase {
        let inc = x.general_ppl.zip(x.general_base_ppl).map(|(t, b)| t / b - 1.0);
        let detail = match (x.general_ppl, x.general_base_ppl, inc) {
            (Some(t), Some(b), Some(i)) => format!("general-text perplexity {t:.3} vs base {b:.3}: {:+.1}% (allowed ≤ +{:.1}%)", i * 100.0, max * 100.0),
            _ => String::new(),
        };
        out.push(result("forgetting".into(), inc, max, |v| v <= max, detail, "needs a baseline and the general text"));
    }
    out
}

pub fn failed(results: &[GateResult]) -> Vec<&GateResult> {
    results.iter().filter(|g| g.status == GateStatus::Fail).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> GateInputs {
        GateInputs {
            ppl: Some(8.0),
            base_ppl: Some(10.0),
            task_accuracy: vec![("faq".into(), 0.9), ("mc".into(), 0.5)],
            p95_e2e_ms: Some(120.0),
            general_ppl: Some(12.0),
            general_base_ppl: Some(10.0),
        }
    }

    fn status(r: &[GateResult], gate: &str) -> GateStatus {
        r.iter().find(|g| g.gate == gate).unwrap_or_else(|| panic!("no gate {gate}")).status
    }

    #[test]
    fn defaults_pass_and_fail() {
        let r = check(&GateConfig::default(), &inputs());
        assert_eq!(status(&r, "ppl_improvement"), GateStatus::Pass, "20% lower");
        assert_eq!(status(&r, "accuracy[faq]"), GateStatus::Pass);
        assert_eq!(status(&r, "accuracy[mc]"), GateStatus::Fail);
        assert_eq!(status(&r, "p95_latency"), GateStatus::Pass);
        assert!(r.iter().all(|g| g.gate != "forgetting"), "off by default");
        assert_eq!(failed(&r).len(), 1);
        assert!(failed(&r)[0].detail.contains("50.0%"));
    }

    #[test]
    fn configured_thresholds() {
        let mut cfg = GateConfig { max_general_ppl_increase: Some(0.1), max_p95_latency_ms: Some(100.0), min_ppl_improvement: Some(0.25), ..Default::default() };
        cfg.thresholds.insert("mc".into(), 0.5);
        let r = check(&cfg, &inputs());
        assert_eq!(status(&r, "accuracy[mc]"), GateStatus::Pass, "per-task threshold replaces 85%");
        assert_eq!(status(&r, "ppl_improvement"), GateStatus::Fail, "20% < 25%");
        assert_eq!(status(&r, "p95_latency"), GateStatus::Fail);
        assert_eq!(status(&r, "forgetting"), GateStatus::Fail, "+20% > +10%");
        // switched off, and skipped without a baseline
        let cfg = GateConfig { min_ppl_improvement: None, min_accuracy: None, max_p95_latency_ms: None, ..Default::default() };
        assert!(check(&cfg, &inputs()).is_empty());
        let r = check(&GateConfig::default(), &GateInputs { base_ppl: None, ..inputs() });
        assert_eq!(status(&r, "ppl_improvement"), GateStatus::Skipped);
    }
}
