//! A load generator for any OpenAI-compatible server: `clients` concurrent clients send
//! streaming chat requests (optionally a share of malformed ones) and measure time to first
//! token and end-to-end latency. Used by `deepfeed bench serve` and by the stress tests.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Server root, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub clients: usize,
    pub requests: usize,
    pub max_tokens: usize,
    pub prompt: String,
    /// Every `1/malformed_every`-th request is malformed (0: none); these must get a 4xx.
    pub malformed_every: usize,
    pub timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            url: "http://127.0.0.1:8000".into(),
            model: String::new(),
            api_key: None,
            clients: 4,
            requests: 64,
            max_tokens: 16,
            prompt: "Tell me about your data.".into(),
            malformed_every: 0,
            timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub mean: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `v` (seconds).
    pub fn of(v: &mut [f64]) -> Self {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Percentiles { p50: at(0.50), p95: at(0.95), p99: at(0.99), mean: v.iter().sum::<f64>() / v.len() as f64 }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub clients: usize,
    pub requests: usize,
    /// Well-formed requests answered with a complete stream.
    pub ok: usize,
    /// Malformed requests answered with a 4xx, as they should be.
    pub rejected_as_expected: usize,
    /// Any other outcome: wrong status, 5xx, broken stream, connection error.
    pub unexpected: usize,
    pub status_counts: BTreeMap<u16, usize>,
    pub server_errors: usize,
    pub wall_secs: f64,
    pub requests_per_sec: f64,
    pub output_tokens: usize,
    pub output_tokens_per_sec: f64,
    pub ttft: Percentiles,
    pub e2e: Percentiles,
    /// The first few unexpected outcomes, for diagnosis.
    pub examples: Vec<String>,
}

fn malformed_body(i: usize, model: &str) -> (String, &'static str) {
    let m = serde_json::to_string(model).expect("string");
    match i % 8 {
        0 => (format!(r#"{{"model": {m}, "messages": [{{"role": "user""#), "truncated JSON"),
        1 => (format!(r#"{{"model": {m}, "messages": "hello"}}"#), "messages of the wrong type"),
        2 => (r#"{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}"#.into(), "unknown model"),
        3 => (format!(r#"{{"model": {m}, "max_tokens": 100000000, "messages": [{{"role": "user", "content": "hi"}}]}}"#), "max_tokens over the limit"),
        4 => (format!(r#"{{"model": {m}, "n": 3, "messages": [{{"role": "user", "content": "hi"}}]}}"#), "n > 1"),
        5 => ("this is not json".into(), "not JSON"),
        6 => (format!(r#"{{"model": {m}, "temperature": "hot", "messages": [{{"role": "user", "content": "hi"}}]}}"#), "temperature of the wrong type"),
        _ => (format!(r#"{{"model": {m}, "messages": [{{"role": "wizard", "content": "hi"}}]}}"#), "unknown role"),
    }
}

struct Outcome {
    status: u16,
    expected: bool,
    ok: bool,
    ttft: Option<f64>,
    e2e: f64,
    tokens: usize,
    note: Option<String>,
}

async fn one_request(client: &reqwest::Client, o: &LoadOptions, i: usize) -> Outcome {
    let malformed = o.malformed_every > 0 && i % o.malformed_every == o.malformed_every - 1;
    let (body, what) = if malformed {
        malformed_body(i / o.malformed_every, &o.model)
    } else {
        let b = json!({
            "model": o.model,
            "messages": [{"role": "user", "content": format!("{} ({i})", o.prompt)}],
            "max_tokens": o.max_tokens,
            "temperature": 0,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        (b.to_string(), "chat stream")
    };
    let mut req = client.post(format!("{}/v1/chat/completions", o.url.trim_end_matches('/'))).header("content-type", "application/json").body(body);
    if let Some(k) = &o.api_key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let t0 = Instant::now();
    let fail = |status: u16, note: String| Outcome { status, expected: false, ok: false, ttft: None, e2e: t0.elapsed().as_secs_f64(), tokens: 0, note: Some(note) };
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return fail(0, format!("request {i} ({what}): {e}")),
    };
    let status = resp.status().as_u16();
    if malformed {
        let _ = resp.bytes().await;
        let expected = (400..500).contains(&status);
        return Outcome { status, expected, ok: false, ttft: None, e2e: t0.elapsed().as_secs_f64(), tokens: 0, note: (!expected).then(|| format!("request {i} ({what}): status {status}, expected 4xx")) };
    }
    if status != 200 {
        let text = resp.text().await.unwrap_or_default();
        return fail(status, format!("request {i} ({what}): status {status}: {text}"));
    }
    let mut buf = String::new();
    let mut ttft = None;
    let mut tokens = 0;
    let mut done = false;
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                buf.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(end) = buf.find("\n\n") {
                    let event: String = buf.drain(..end + 2).collect();
                    for line in event.lines() {
                        let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
                        if data == "[DONE]" {
                            done = true;
                            continue;
                        }
                        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                        if v.get("error").is_some() {
                            return fail(status, format!("request {i}: error in stream: {data}"));
                        }
                        let has_content = v["choices"][0]["delta"]["content"].as_str().is_some_and(|c| !c.is_empty());
                        let finished = v["choices"][0]["finish_reason"].is_string();
                        if ttft.is_none() && (has_content || finished) {
                            ttft = Some(t0.elapsed().as_secs_f64());
                        }
                        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                            tokens = n as usize;
                        }
                    }
                }
            }
            Ok(None) => break,
            Err(e) => return fail(status, format!("request {i}: reading the stream: {e}")),
        }
    }
    if !done {
        return fail(status, format!("request {i}: the stream ended without [DONE]"));
    }
    Outcome { status, expected: true, ok: true, ttft, e2e: t0.elapsed().as_secs_f64(), tokens, note: None }
}

/// Runs the load and reports; never panics on server misbehaviour (it is counted instead).
pub async fn run_load(o: &LoadOptions) -> LoadReport {
    let client = reqwest::Client::builder().timeout(o.timeout).build().expect("HTTP client");
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(o.requests)));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..o.clients.max(1) {
        let (client, o, next, outcomes) = (client.clone(), o.clone(), next.clone(), outcomes.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= o.requests {
                    break;
                }
                let out = one_request(&client, &o, i).await;
                outcomes.lock().expect("outcomes").push(out);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let wall = t0.elapsed().as_secs_f64();
    let outcomes = std::mem::take(&mut *outcomes.lock().expect("outcomes"));
    let mut r = LoadReport { clients: o.clients, requests: outcomes.len(), wall_secs: wall, ..Default::default() };
    let (mut ttft, mut e2e) = (Vec::new(), Vec::new());
    for out in &outcomes {
        *r.status_counts.entry(out.status).or_default() += 1;
        if out.status >= 500 {
            r.server_errors += 1;
        }
        if out.ok {
            r.ok += 1;
            r.output_tokens += out.tokens;
            e2e.push(out.e2e);
            ttft.extend(out.ttft);
        } else if out.expected {
            r.rejected_as_expected += 1;
        } else {
            r.unexpected += 1;
            if r.examples.len() < 5 {
                r.examples.extend(out.note.clone());
            }
        }
    }
    r.requests_per_sec = r.ok as f64 / wall.max(1e-9);
    r.output_tokens_per_sec = r.output_tokens as f64 / wall.max(1e-9);
    r.ttft = Percentiles::of(&mut ttft);
    r.e2e = Percentiles::of(&mut e2e);
    r
}

/// A Markdown table of reports, one row per concurrency level.
pub fn table(reports: &[LoadReport]) -> String {
    let ms = |s: f64| format!("{:.1}", s * 1e3);
    let mut t = String::from(
        "| clients | requests | ok | req/s | out tok/s | TTFT p50 ms | TTFT p95 ms | TTFT p99 ms | E2E p50 ms | E2E p95 ms | E2E p99 ms | unexpected |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        t.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.clients,
            r.requests,
            r.ok,
            r.requests_per_sec,
            r.output_tokens_per_sec,
            ms(r.ttft.p50),
            ms(r.ttft.p95),
            ms(r.ttft.p99),
            ms(r.e2e.p50),
            ms(r.e2e.p95),
            ms(r.e2e.p99),
            r.unexpected
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p95, p.p99), (50.0, 95.0, 99.0));
        let mut one = vec![3.0];
        assert_eq!(Percentiles::of(&mut one).p99, 3.0);
    }
}
