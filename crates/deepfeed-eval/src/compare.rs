//! `deepfeed compare`: one table across evaluation reports — phases of a staged feeding
//! (phase 1, 2, 3 …) or competing runs. Each argument is a report directory (with report.json)
//! or a training run directory holding `report/report.json`.
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{EvalError, Result};

pub struct RunReport {
    pub name: String,
    pub path: PathBuf,
    pub report: Value,
}

/// Finds and reads the report.json of `dir`.
pub fn load(dir: &Path) -> Result<RunReport> {
    let candidates = [dir.join("report.json"), dir.join("report").join("report.json"), dir.to_path_buf()];
    let Some(path) = candidates.iter().find(|p| p.is_file() && p.extension().is_some_and(|e| e == "json")) else {
        return Err(EvalError::Invalid(format!(
            "{}: no report.json (expected a `deepfeed eval` report directory, or a run directory with report/report.json; run `deepfeed eval --adapter {}/adapter` first)",
            dir.display(),
            dir.display()
        )));
    };
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let report: Value = serde_json::from_str(&text).map_err(|e| EvalError::Invalid(format!("{}: not valid JSON: {e}", path.display())))?;
    if report.get("tuned").is_none() {
        return Err(EvalError::Invalid(format!("{}: not a deepfeed eval report (no `tuned` results)", path.display())));
    }
    // a run directory is named after the run; a report directory after its parent when it is `report`
    let named = if dir.file_name().is_some_and(|n| n == "report") { dir.parent().unwrap_or(dir) } else { dir };
    let name = named.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
    Ok(RunReport { name, path: path.clone(), report })
}

struct Column {
    title: &'static str,
    get: fn(&Value) -> Option<f64>,
    digits: usize,
    lower_better: bool,
}

const COLUMNS: [Column; 7] = [
    Column { title: "in-domain PPL", get: |m| m["perplexity"]["perplexity"].as_f64(), digits: 3, lower_better: true },
    Column { title: "accuracy", get: |m| m["accuracy"].as_f64(), digits: 3, lower_better: false },
    Column { title: "ROUGE-L", get: |m| m["overlap"]["rouge_l"].as_f64(), digits: 3, lower_better: false },
    Column { title: "BLEU-4", get: |m| m["overlap"]["bleu"].as_f64(), digits: 2, lower_better: false },
    Column { title: "general PPL", get: |m| m["general_perplexity"]["perplexity"].as_f64(), digits: 3, lower_better: true },
    Column { title: "p95 e2e ms", get: |m| m["latency"]["e2e_ms"]["p95"].as_f64(), digits: 1, lower_better: true },
    Column { title: "tokens/s", get: |m| m["latency"]["tokens_per_second"].as_f64(), digits: 1, lower_better: false },
];

/// Rows of the comparison: (row name, results object, gates text). The first report's base
/// model comes first when it was measured.
fn table_rows(runs: &[RunReport]) -> Vec<(String, &Value, String)> {
    let mut rows = Vec::new();
    if let Some(base) = runs.first().and_then(|r| r.report.get("base")).filter(|b| !b.is_null()) {
        rows.push(("base model".to_string(), base, "".to_string()));
    }
    for r in runs {
        let gates = r.report["gates"].as_array().map(|g| {
            let failed: Vec<&str> = g.iter().filter(|x| x["status"] == "fail").filter_map(|x| x["gate"].as_str()).collect();
            if failed.is_empty() { "pass".to_string() } else { format!("FAIL: {}", failed.join(", ")) }
        });
        rows.push((r.name.clone(), &r.report["tuned"], gates.unwrap_or_default()));
    }
    rows
}

fn cell(c: &Column, m: &Value, prev: Option<&Value>) -> String {
    let Some(v) = (c.get)(m) else { return "–".into() };
    let arrow = match prev.and_then(|p| (c.get)(p)) {
        Some(p) if (v - p).abs() > 1e-9 => {
            let better = if c.lower_better { v < p } else { v > p };
            if better { " ▲" } else { " ▼" }
        }
        _ => "",
    };
    format!("{v:.prec$}{arrow}", prec = c.digits)
}

/// The comparison as a Markdown table (▲ = better than the row above, ▼ = worse).
pub fn markdown(runs: &[RunReport]) -> String {
    let rows = table_rows(runs);
    let mut s = String::from("| run |");
    for c in &COLUMNS {
        s.push_str(&format!(" {} |", c.title));
    }
    s.push_str(" gates |\n|---|");
    s.push_str(&"---:|".repeat(COLUMNS.len()));
    s.push_str("---|\n");
    for (i, (name, m, gates)) in rows.iter().enumerate() {
        s.push_str(&format!("| {name} |"));
        for c in &COLUMNS {
            s.push_str(&format!(" {} |", cell(c, m, (i > 0).then(|| rows[i - 1].1))));
        }
        s.push_str(&format!(" {gates} |\n"));
    }
    s.push_str("\n▲ better than the row above, ▼ worse. Reports: ");
    s.push_str(&runs.iter().map(|r| format!("`{}`", r.path.display())).collect::<Vec<_>>().join(", "));
    s.push('\n');
    s
}

/// The comparison as a self-contained HTML page.
pub fn html(runs: &[RunReport]) -> String {
    let rows = table_rows(runs);
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut s = String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>deepfeed compare</title><style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:6px 10px}td{text-align:right}td:first-child,td:last-child{text-align:left}th{background:#f4f6f8}</style></head><body><h1>deepfeed compare</h1><table><tr><th>run</th>");
    for c in &COLUMNS {
        s.push_str(&format!("<th>{}</th>", c.title));
    }
    s.push_str("<th>gates</th></tr>");
    for (i, (name, m, gates)) in rows.iter().enumerate() {
        s.push_str(&format!("<tr><td>{}</td>", esc(name)));
        for c in &COLUMNS {
            s.push_str(&format!("<td>{}</td>", cell(c, m, (i > 0).then(|| rows[i - 1].1))));
        }
        s.push_str(&format!("<td>{}</td></tr>", esc(gates)));
    }
    s.push_str("</table><p>▲ better than the row above, ▼ worse.</p></body></html>\n");
    s
}
