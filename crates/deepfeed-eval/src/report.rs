//! Writes a report directory: `report.json` (every number, the config, sha256 of model, adapter
//! and data, per-sample scores), `report.md`, a self-contained `report.html` (PNG charts
//! embedded as base64) and the PNGs themselves. Written to a temporary sibling and renamed.
use std::path::{Path, PathBuf};

use base64::Engine;
use deepfeed_model::fsutil::write_dir_atomically;

use crate::error::{EvalError, Result};
use crate::evaluate::{ModelResults, Report, SampleResult, SampleScore};
use crate::gates::GateStatus;
use crate::plot::{self, MetricBar};

/// One row of the summary table.
struct Row {
    metric: String,
    base: Option<f64>,
    tuned: f64,
    lower_better: bool,
    /// Digits shown.
    digits: usize,
}

impl Row {
    fn change(&self) -> String {
        match self.base {
            Some(b) if b.abs() > 1e-12 => {
                let pct = (self.tuned / b - 1.0) * 100.0;
                let better = if self.lower_better { pct < 0.0 } else { pct > 0.0 };
                format!("{pct:+.1}%{}", if pct.abs() < 0.05 { "" } else if better { " ✓" } else { " ✗" })
            }
            // from zero (accuracy 0 → 1): the absolute change
            Some(b) => {
                let d = self.tuned - b;
                let better = if self.lower_better { d < 0.0 } else { d > 0.0 };
                format!("{d:+.3}{}", if d.abs() < 1e-12 { "" } else if better { " ✓" } else { " ✗" })
            }
            None => "–".into(),
        }
    }
}

fn rows(r: &Report) -> Vec<Row> {
    let t = &r.tuned;
    let b = r.base.as_ref();
    let mut rows = Vec::new();
    let mut push = |metric: &str, f: &dyn Fn(&ModelResults) -> Option<f64>, lower_better: bool, digits: usize| {
        if let Some(v) = f(t) {
            rows.push(Row { metric: metric.into(), base: b.and_then(|b| f(b)), tuned: v, lower_better, digits });
        }
    };
    push("in-domain perplexity", &|m| m.perplexity.as_ref().map(|p| p.perplexity), true, 3);
    push("accuracy", &|m| m.accuracy, false, 3);
    push("ROUGE-1 F1", &|m| m.overlap.as_ref().map(|o| o.rouge1), false, 3);
    push("ROUGE-2 F1", &|m| m.overlap.as_ref().map(|o| o.rouge2), false, 3);
    push("ROUGE-L F1", &|m| m.overlap.as_ref().map(|o| o.rouge_l), false, 3);
    push("BLEU-4 (0-100)", &|m| m.overlap.as_ref().map(|o| o.bleu), false, 2);
    push("general-text perplexity", &|m| m.general_perplexity.as_ref().map(|p| p.perplexity), true, 3);
    push("TTFT p50 (ms)", &|m| m.latency.as_ref().map(|l| l.ttft_ms.p50), true, 1);
    push("time per output token p50 (ms)", &|m| m.latency.as_ref().map(|l| l.tpot_ms.p50).filter(|v| v.is_finite()), true, 2);
    push("end-to-end p50 (ms)", &|m| m.latency.as_ref().map(|l| l.e2e_ms.p50), true, 1);
    push("end-to-end p95 (ms)", &|m| m.latency.as_ref().map(|l| l.e2e_ms.p95), true, 1);
    push("end-to-end p99 (ms)", &|m| m.latency.as_ref().map(|l| l.e2e_ms.p99), true, 1);
    push("output tokens/s", &|m| m.latency.as_ref().map(|l| l.tokens_per_second), false, 1);
    rows
}

fn bars(r: &Report) -> Vec<MetricBar> {
    let keep = ["in-domain perplexity", "accuracy", "ROUGE-L F1", "BLEU-4 (0-100)", "general-text perplexity", "end-to-end p95 (ms)"];
    rows(r)
        .into_iter()
        .filter(|row| keep.contains(&row.metric.as_str()))
        .map(|row| {
            let short = row.metric.replace(" (0-100)", "").replace("general-text perplexity", "general PPL").replace("in-domain perplexity", "in-domain PPL").replace("end-to-end p95 (ms)", "p95 latency (ms)");
            (short, row.base, row.tuned, row.lower_better)
        })
        .collect()
}

/// The samples that did worst for the evaluated model: wrong answers first, then the highest
/// NLL per target token, then the lowest ROUGE-L.
pub fn worst(samples: &[SampleResult], n: usize) -> Vec<&SampleResult> {
    let key = |s: &SampleResult| {
        let wrong = s.tuned.correct == Some(false);
        let nll = s.tuned.mean_nll().unwrap_or(0.0);
        let rl = s.tuned.overlap.as_ref().map_or(1.0, |o| o.rouge_l);
        (wrong, nll - rl)
    };
    let mut v: Vec<&SampleResult> = samples.iter().filter(|s| s.expected.is_some()).collect();
    v.sort_by(|a, b| {
        let (ka, kb) = (key(*a), key(*b));
        kb.0.cmp(&ka.0).then(kb.1.total_cmp(&ka.1))
    });
    v.truncate(n);
    v
}

fn answer_of(s: &SampleResult, score: &SampleScore) -> String {
    let mark = match score.correct {
        Some(true) => " ✓",
        Some(false) => " ✗",
        None => "",
    };
    let text = match (&score.answer, &score.choice) {
        (Some(a), _) => a.clone(),
        (None, Some(c)) => match s.choices.get(c.pick) {
            Some(text) => format!("(picks) {text}"),
            None => format!("(picks option {})", c.pick),
        },
        _ => String::new(),
    };
    let nll = score.mean_nll().map(|n| format!(" [NLL/token {n:.2}]")).unwrap_or_default();
    format!("{text}{mark}{nll}")
}

fn md_cell(s: &str) -> String {
    let s: String = s.chars().take(160).map(|c| if c.is_control() { ' ' } else { c }).collect();
    s.replace('|', "\\|").replace('\n', " ")
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn short_hash(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// The report as Markdown; `images` are the PNG files written next to it.
pub fn markdown(r: &Report, images: &[(String, String)]) -> String {
    let mut s = String::new();
    let verdict = if r.passed { "**PASSED** — every gate holds".to_string() } else { format!("**FAILED** — {} gate(s) failed", r.failed_gates().len()) };
    s.push_str("# deepfeed evaluation report\n\n");
    s.push_str(&format!("- model: `{}` ({}, {:.2}M parameters)\n", r.model.dir, r.model.architecture, r.model.parameters as f64 / 1e6));
    if let Some(a) = &r.adapter {
        s.push_str(&format!("- adapter: `{}` (trained for `{}`)\n", a.dir, a.base_model_name_or_path.as_deref().unwrap_or("?")));
    }
    s.push_str(&format!("- data: `{}` — {} records, sha256 {}…\n", r.data.path, r.data.records, short_hash(&r.data.sha256)));
    s.push_str(&format!("- result: {verdict}\n\n"));
    s.push_str("## Summary\n\n| metric | base | tuned | change |\n|---|---:|---:|---:|\n");
    for row in rows(r) {
        s.push_str(&format!("| {} | {} | {} | {} |\n", row.metric, fmt(row.base, row.digits), fmt(Some(row.tuned), row.digits), row.change()));
    }
    s.push_str("\n## Gates\n\n| gate | status | detail |\n|---|---|---|\n");
    for g in &r.gates {
        let st = match g.status {
            GateStatus::Pass => "✅ pass",
            GateStatus::Fail => "❌ FAIL",
            GateStatus::Skipped => "➖ skipped",
        };
        s.push_str(&format!("| {} | {st} | {} |\n", g.gate, md_cell(&g.detail)));
    }
    if !r.tuned.tasks.is_empty() {
        s.push_str("\n## Tasks\n\n| task | kind | samples | base accuracy | tuned accuracy | tuned acc_norm |\n|---|---|---:|---:|---:|---:|\n");
        for t in &r.tuned.tasks {
            let b = r.base.as_ref().and_then(|b| b.tasks.iter().find(|x| x.task == t.task)).map(|x| x.accuracy);
            s.push_str(&format!("| {} | {} | {} | {} | {:.3} | {} |\n", md_cell(&t.task), t.kind.name(), t.samples, fmt(b, 3), t.accuracy, fmt(t.acc_norm, 3)));
        }
    }
    if !images.is_empty() {
        s.push_str("\n## Charts\n\n");
        for (file, title) in images {
            s.push_str(&format!("![{title}]({file})\n\n"));
        }
    }
    let worst = worst(&r.samples, r.config.worst_samples);
    if !worst.is_empty() {
        s.push_str("\n## Worst-scoring samples\n\n| line | task | prompt | expected | base answer | tuned answer |\n|---:|---|---|---|---|---|\n");
        for w in worst {
            let base = w.base.as_ref().map(|b| answer_of(w, b)).unwrap_or_else(|| "–".into());
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                w.line,
                md_cell(&w.task),
                md_cell(&w.prompt),
                md_cell(w.expected.as_deref().unwrap_or("")),
                md_cell(&base),
                md_cell(&answer_of(w, &w.tuned))
            ));
        }
    }
    let p = &r.protocol;
    s.push_str(&format!(
        "\n## Protocol\n\nPerplexity over target tokens (whole text for `text` records), window {} tokens, stride {}; answers: {}, at most {} new tokens; latency over {} prompts after {} warm-up generation(s), on {}. General text: {}. Took {:.1} s. Details and per-sample scores: `report.json`.\n",
        p.context,
        p.stride,
        p.decoding,
        p.max_new_tokens,
        r.tuned.latency.as_ref().map_or(0, |l| l.prompts),
        r.tuned.latency.as_ref().map_or(0, |l| l.warmup),
        p.device,
        r.data.general_text,
        r.seconds
    ));
    s
}

fn esc(s: &str) -> String {
    let s: String = s.chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect();
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The report as one self-contained HTML page; `images` are (PNG bytes, title).
pub fn html(r: &Report, images: &[(Vec<u8>, String)]) -> String {
    let mut s = String::new();
    s.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>deepfeed evaluation report</title><style>");
    s.push_str("body{font-family:system-ui,-apple-system,'Segoe UI','Noto Sans CJK SC','PingFang SC',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}");
    s.push_str("table{border-collapse:collapse;margin:1em 0;width:100%}td,th{border:1px solid #ddd;padding:6px 9px;vertical-align:top;text-align:left}th{background:#f4f6f8}");
    s.push_str("td.num{text-align:right;font-variant-numeric:tabular-nums}.pass{color:#137333;font-weight:600}.fail{color:#c5221f;font-weight:700}.skip{color:#777}");
    s.push_str(".verdict{font-size:1.3em;padding:.6em 1em;border-radius:6px;display:inline-block}.ok{background:#e6f4ea}.bad{background:#fce8e6}");
    s.push_str("img{max-width:100%;border:1px solid #eee;margin:.5em 0}code{background:#f4f6f8;padding:1px 4px}small{color:#666}</style></head><body>");
    s.push_str("<h1>deepfeed evaluation report</h1>");
    let verdict = if r.passed {
        "<div class=\"verdict ok\">✅ PASSED — every gate holds</div>".to_string()
    } else {
        format!("<div class=\"verdict bad\">❌ FAILED — {} gate(s) failed</div>", r.failed_gates().len())
    };
    s.push_str(&verdict);
    s.push_str("<ul>");
    s.push_str(&format!("<li>model: <code>{}</code> ({}, {:.2}M parameters)</li>", esc(&r.model.dir), esc(&r.model.architecture), r.model.parameters as f64 / 1e6));
    if let Some(a) = &r.adapter {
        s.push_str(&format!("<li>adapter: <code>{}</code> (trained for <code>{}</code>)</li>", esc(&a.dir), esc(a.base_model_name_or_path.as_deref().unwrap_or("?"))));
    }
    s.push_str(&format!("<li>data: <code>{}</code> — {} records, sha256 <code>{}…</code></li></ul>", esc(&r.data.path), r.data.records, short_hash(&r.data.sha256)));

    s.push_str("<h2>Summary</h2><table><tr><th>metric</th><th>base</th><th>tuned</th><th>change</th></tr>");
    for row in rows(r) {
        s.push_str(&format!(
            "<tr><td>{}</td><td class=num>{}</td><td class=num><b>{}</b></td><td class=num>{}</td></tr>",
            esc(&row.metric),
            fmt(row.base, row.digits),
            fmt(Some(row.tuned), row.digits),
            esc(&row.change())
        ));
    }
    s.push_str("</table><h2>Gates</h2><table><tr><th>gate</th><th>status</th><th>detail</th></tr>");
    for g in &r.gates {
        let (class, st) = match g.status {
            GateStatus::Pass => ("pass", "pass"),
            GateStatus::Fail => ("fail", "FAIL"),
            GateStatus::Skipped => ("skip", "skipped"),
        };
        s.push_str(&format!("<tr><td>{}</td><td class={class}>{st}</td><td>{}</td></tr>", esc(&g.gate), esc(&g.detail)));
    }
    s.push_str("</table>");
    if !r.tuned.tasks.is_empty() {
        s.push_str("<h2>Tasks</h2><table><tr><th>task</th><th>kind</th><th>samples</th><th>base accuracy</th><th>tuned accuracy</th><th>tuned acc_norm</th></tr>");
        for t in &r.tuned.tasks {
            let b = r.base.as_ref().and_then(|b| b.tasks.iter().find(|x| x.task == t.task)).map(|x| x.accuracy);
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num><b>{:.3}</b></td><td class=num>{}</td></tr>",
                esc(&t.task),
                t.kind.name(),
                t.samples,
                fmt(b, 3),
                t.accuracy,
                fmt(t.acc_norm, 3)
            ));
        }
        s.push_str("</table>");
    }
    if images.is_empty() {
        s.push_str("<p><small>(charts not drawn: no system font found)</small></p>");
    } else {
        s.push_str("<h2>Charts</h2>");
        for (png, title) in images {
            let b64 = base64::engine::general_purpose::STANDARD.encode(png);
            s.push_str(&format!("<h3>{}</h3><img alt=\"{}\" src=\"data:image/png;base64,{b64}\">", esc(title), esc(title)));
        }
    }
    let worst = worst(&r.samples, r.config.worst_samples);
    if !worst.is_empty() {
        s.push_str("<h2>Worst-scoring samples</h2><table><tr><th>line</th><th>prompt</th><th>expected</th><th>base answer</th><th>tuned answer</th></tr>");
        for w in worst {
            let base = w.base.as_ref().map(|b| answer_of(w, b)).unwrap_or_else(|| "–".into());
            s.push_str(&format!(
                "<tr><td class=num>{}<br><small>{}</small></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                w.line,
                esc(&w.task),
                esc(&w.prompt),
                esc(w.expected.as_deref().unwrap_or("")),
                esc(&base),
                esc(&answer_of(w, &w.tuned))
            ));
        }
        s.push_str("</table>");
    }
    let p = &r.protocol;
    s.push_str(&format!(
        "<h2>Protocol</h2><p><small>Perplexity over target tokens (whole text for <code>text</code> records), window {} tokens, stride {}. Answers: {}, at most {} new tokens. Latency over {} prompts after {} warm-up generation(s), on {}. General text: {}. Took {:.1} s. Per-sample scores and hashes of every input: <code>report.json</code>.</small></p></body></html>\n",
        p.context,
        p.stride,
        esc(&p.decoding),
        p.max_new_tokens,
        r.tuned.latency.as_ref().map_or(0, |l| l.prompts),
        r.tuned.latency.as_ref().map_or(0, |l| l.warmup),
        esc(&p.device),
        esc(&r.data.general_text),
        r.seconds
    ));
    s
}

/// Reads (step, loss) and (step, val_loss) from a training run's metrics.jsonl.
pub fn read_loss_curve(metrics: &Path) -> (Vec<(usize, f64)>, Vec<(usize, f64)>) {
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
    (train, val)
}

/// Writes the report directory `out` atomically; returns the files written.
pub fn write(r: &Report, out: &Path) -> Result<Vec<PathBuf>> {
    let json = serde_json::to_string_pretty(r).map_err(|e| EvalError::Invalid(format!("serialising the report: {e}")))?;
    let mut written = vec![];
    write_dir_atomically(out, |tmp| {
        let io = |e: EvalError| deepfeed_model::ModelError::Invalid(e.to_string());
        let mut images: Vec<(String, String)> = vec![];
        if let Some(run) = r.adapter.as_ref().and_then(|a| a.run_dir.as_ref()) {
            let (train, val) = read_loss_curve(&Path::new(run).join("metrics.jsonl"));
            if deepfeed_data::plot::write_loss_png(&tmp.join("loss.png"), &train, &val).map_err(|e| deepfeed_model::ModelError::Invalid(e.to_string()))? {
                images.push(("loss.png".into(), "training loss".into()));
            }
        }
        if plot::write_metric_bars(&tmp.join("metrics.png"), &bars(r)).map_err(io)? {
            images.push(("metrics.png".into(), "base vs tuned".into()));
        }
        let lat = |m: Option<&ModelResults>| -> Vec<f64> {
            r.samples.iter().filter_map(|s| if m.is_some() { s.base.as_ref() } else { Some(&s.tuned) }).filter_map(|x| x.timing.map(|t| t.e2e_ms)).collect()
        };
        if plot::write_latency_histogram(&tmp.join("latency.png"), &lat(None), &lat(r.base.as_ref())).map_err(io)? {
            images.push(("latency.png".into(), "end-to-end latency".into()));
        }
        let mut pngs = vec![];
        for (f, title) in &images {
            pngs.push((std::fs::read(tmp.join(f)).map_err(|e| deepfeed_model::ModelError::io(tmp.join(f), e))?, title.clone()));
        }
        let w = |name: &str, bytes: &[u8]| std::fs::write(tmp.join(name), bytes).map_err(|e| deepfeed_model::ModelError::io(tmp.join(name), e));
        w("report.json", json.as_bytes())?;
        w("report.md", markdown(r, &images).as_bytes())?;
        w("report.html", html(r, &pngs).as_bytes())?;
        written = ["report.json", "report.md", "report.html"].iter().map(|f| out.join(f)).chain(images.iter().map(|(f, _)| out.join(f))).collect();
        Ok(())
    })?;
    Ok(written)
}
