//! The server on a loopback port with a tiny model and two LoRA adapters: answers checked
//! against the library's own generation, errors, hot swap under load, a malformed-traffic
//! stress run, feedback across a restart, and a Prometheus scrape.
mod common;

use std::time::Duration;

use common::*;
use deepfeed_serve::loadgen::{run_load, LoadOptions};
use serde_json::{json, Value};

fn chat(model: &str, user: &str, max_tokens: usize) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": user}], "max_tokens": max_tokens, "temperature": 0})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_the_library_with_and_without_adapters_streamed_or_not() {
    let f = Fixture::new();
    let s = f.start(f.config()).await;
    let user = "Hello, 你好";
    let mut texts = Vec::new();
    for (model, adapter) in [("tiny", None), ("tiny:a", Some("a")), ("b", Some("b"))] {
        let (expected, prompt_tokens, completion_tokens) = f.reference_chat(adapter, user, 12);
        let (status, v) = post(&s, "/v1/chat/completions", &chat(model, user, 12)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["object"], "chat.completion");
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(v["model"], model);
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(v["choices"][0]["message"]["content"], expected.as_str(), "{model}");
        assert_eq!(v["usage"]["prompt_tokens"], prompt_tokens);
        assert_eq!(v["usage"]["completion_tokens"], completion_tokens);
        assert_eq!(v["usage"]["total_tokens"], prompt_tokens + completion_tokens);
        let finish = v["choices"][0]["finish_reason"].as_str().unwrap();
        assert_eq!(finish, if completion_tokens == 12 { "length" } else { "stop" });

        // the same request streamed: the deltas add up to the same text
        let mut body = chat(model, user, 12);
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let resp = client().post(url(&s, "/v1/chat/completions")).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let data = sse_data(&resp.text().await.unwrap());
        assert_eq!(data.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(streamed, expected);
        let finals: Vec<&Value> = chunks.iter().filter(|c| c["choices"][0]["finish_reason"].is_string()).collect();
        assert_eq!(finals.len(), 1);
        assert_eq!(finals[0]["choices"][0]["finish_reason"], finish);
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], completion_tokens);
        texts.push(expected);
    }
    assert!(texts[0] != texts[1] || texts[0] != texts[2], "the adapters changed nothing: {texts:?}");

    let models: Value = client().get(url(&s, "/v1/models")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["tiny", "tiny:a", "tiny:b"]);
    let health = client().get(url(&s, "/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_with_text_token_ids_and_stop() {
    let f = Fixture::new();
    let s = f.start(f.config()).await;
    let m = f.model();
    let ids = m.tokenizer.encode("The data", true).unwrap();
    let (status, by_text) = post(&s, "/v1/completions", &json!({"model": "tiny", "prompt": "The data", "max_tokens": 10, "temperature": 0})).await;
    assert_eq!(status, 200, "{by_text}");
    assert_eq!(by_text["object"], "text_completion");
    let (status, by_ids) = post(&s, "/v1/completions", &json!({"model": "tiny", "prompt": ids, "max_tokens": 10, "temperature": 0})).await;
    assert_eq!(status, 200, "{by_ids}");
    assert_eq!(by_text["choices"][0]["text"], by_ids["choices"][0]["text"]);
    assert_eq!(by_ids["usage"]["prompt_tokens"], ids.len());
    let text = by_text["choices"][0]["text"].as_str().unwrap().to_string();
    // stop at a piece of the greedy answer: the answer ends right before it
    if let Some(stop) = text.chars().nth(2).filter(|c| !c.is_whitespace()).map(String::from) {
        let (status, v) = post(&s, "/v1/completions", &json!({"model": "tiny", "prompt": "The data", "max_tokens": 10, "temperature": 0, "stop": [stop.clone()]})).await;
        assert_eq!(status, 200);
        let cut = &text[..text.find(&stop).unwrap()];
        assert_eq!(v["choices"][0]["text"], cut);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }
    // seeded sampling is reproducible
    let sampled = json!({"model": "tiny", "prompt": "The data", "max_tokens": 10, "temperature": 1.0, "top_p": 0.9, "seed": 42});
    let (_, x) = post(&s, "/v1/completions", &sampled).await;
    let (_, y) = post(&s, "/v1/completions", &sampled).await;
    assert_eq!(x["choices"][0]["text"], y["choices"][0]["text"]);
    // a token id outside the vocabulary
    let (status, v) = post(&s, "/v1/completions", &json!({"model": "tiny", "prompt": [1, 2, 99999]})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "prompt");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_4xx_in_openai_shape() {
    let f = Fixture::new();
    let mut cfg = f.config();
    cfg.api_keys = vec!["key-1".into()];
    let s = f.start(cfg).await;
    let ok = chat("tiny", "hi", 2).to_string();
    let cases: Vec<(&str, String, Option<&str>, u16, Option<&str>)> = vec![
        ("no key", ok.clone(), None, 401, None),
        ("wrong key", ok.clone(), Some("key-2"), 401, None),
        ("malformed JSON", r#"{"model": "tiny", "messages": [{"#.into(), Some("key-1"), 400, None),
        ("not an object", "[1, 2]".into(), Some("key-1"), 400, None),
        ("empty body", String::new(), Some("key-1"), 400, None),
        ("temperature as a string", r#"{"model": "tiny", "messages": [], "temperature": "hot"}"#.into(), Some("key-1"), 400, Some("temperature")),
        ("messages as a string", r#"{"model": "tiny", "messages": "hi"}"#.into(), Some("key-1"), 400, Some("messages")),
        ("missing model", r#"{"messages": [{"role": "user", "content": "hi"}]}"#.into(), Some("key-1"), 400, None),
        ("unknown adapter", chat("tiny:nope", "hi", 2).to_string(), Some("key-1"), 404, None),
        ("unknown model", chat("gpt-4", "hi", 2).to_string(), Some("key-1"), 404, None),
        ("n=2", r#"{"model": "tiny", "n": 2, "messages": [{"role": "user", "content": "hi"}]}"#.into(), Some("key-1"), 400, Some("n")),
        ("max_tokens over the limit", chat("tiny", "hi", 65).to_string(), Some("key-1"), 400, Some("max_tokens")),
        ("bad role", r#"{"model": "tiny", "messages": [{"role": "root", "content": "hi"}]}"#.into(), Some("key-1"), 400, Some("messages[0].role")),
        ("oversized body", format!(r#"{{"model": "tiny", "messages": [{{"role": "user", "content": "{}"}}]}}"#, "x".repeat(70_000)), Some("key-1"), 413, None),
        ("prompt too long", chat("tiny", &"数据 ".repeat(300), 2).to_string(), Some("key-1"), 400, Some("messages")),
    ];
    for (what, body, key, status, param) in cases {
        let (got, v) = post_raw(&s, "/v1/chat/completions", body, key).await;
        assert_eq!(got, status, "{what}: {v}");
        assert_error_shape(&v);
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], p, "{what}: {v}");
        }
    }
    let (status, v) = post_raw(&s, "/v1/chat/completions", ok.clone(), Some("key-1")).await;
    assert_eq!(status, 200, "{v}");
    // unknown route, wrong method
    let r = client().get(url(&s, "/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_error_shape(&r.json().await.unwrap());
    assert_eq!(client().get(url(&s, "/v1/chat/completions")).send().await.unwrap().status(), 405);
    // admin: token needed, paths confined to the adapter directory
    let load = |name: &str, path: &str| json!({"name": name, "path": path}).to_string();
    assert_eq!(post_raw(&s, "/admin/adapters", load("c", "a"), None).await.0, 401);
    assert_eq!(post_raw(&s, "/admin/adapters", load("c", "a"), Some("key-1")).await.0, 401);
    let (status, v) = post_raw(&s, "/admin/adapters", load("c", "../tiny"), Some(ADMIN)).await;
    assert_eq!(status, 403, "{v}");
    let abs = f.base.display().to_string();
    assert_eq!(post_raw(&s, "/admin/adapters", load("c", &abs), Some(ADMIN)).await.0, 403);
    assert_eq!(post_raw(&s, "/admin/adapters", load("c", "missing"), Some(ADMIN)).await.0, 400);
    assert_eq!(post_raw(&s, "/admin/adapters", load("../c", "a"), Some(ADMIN)).await.0, 400);
    let del = client().delete(url(&s, "/admin/adapters/zzz")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(del.status(), 404);
    s.shutdown().await;

    // without an admin token the admin API is off
    let mut cfg = f.config();
    cfg.admin_token = None;
    let s = f.start(cfg).await;
    assert_eq!(post_raw(&s, "/admin/adapters", load("c", "a"), Some(ADMIN)).await.0, 403);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_fails_no_request() {
    let f = Fixture::new();
    let s = f.start(f.config()).await;
    let (before, _, _) = f.reference_chat(Some("a"), "swap", 6);
    let (after, _, _) = f.reference_chat(Some("b"), "swap", 6);
    assert_ne!(before, after, "adapters a and b answer alike; the swap would be invisible");
    let load = LoadOptions { url: format!("http://{}", s.addr), model: "tiny:a".into(), clients: 4, requests: 48, max_tokens: 6, ..Default::default() };
    let running = tokio::spawn(async move { run_load(&load).await });
    // reload "a" from b's directory, then from its own, a few times while the load runs
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let path = if i % 2 == 0 { "b" } else { "a" };
        let (status, v) = post_raw(&s, "/admin/adapters", json!({"name": "a", "path": path}).to_string(), Some(ADMIN)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["replaced"], true);
        assert_eq!(v["adapter"]["version"], i + 2);
    }
    let report = running.await.unwrap();
    assert_eq!(report.unexpected, 0, "{:?}", report.examples);
    assert_eq!(report.ok, 48);
    // now "a" is b's weights: answers as b does
    let (status, v) = post_raw(&s, "/admin/adapters", json!({"name": "a", "path": "b"}).to_string(), Some(ADMIN)).await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = post(&s, "/v1/chat/completions", &chat("tiny:a", "swap", 6)).await;
    assert_eq!(v["choices"][0]["message"]["content"], after.as_str());
    // a new adapter, then unloaded
    let (status, _) = post_raw(&s, "/admin/adapters", json!({"name": "c", "path": "a"}).to_string(), Some(ADMIN)).await;
    assert_eq!(status, 201);
    let (_, v) = post(&s, "/v1/chat/completions", &chat("c", "swap", 6)).await;
    assert_eq!(v["choices"][0]["message"]["content"], before.as_str());
    let del = client().delete(url(&s, "/admin/adapters/c")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(post(&s, "/v1/chat/completions", &chat("c", "swap", 6)).await.0, 404);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_requests_from_sixteen_clients_with_ten_percent_malformed() {
    let f = Fixture::new();
    let s = f.start(f.config()).await;
    let load = LoadOptions { url: format!("http://{}", s.addr), model: "tiny:b".into(), clients: 16, requests: 500, max_tokens: 2, malformed_every: 10, ..Default::default() };
    let r = run_load(&load).await;
    assert_eq!(r.requests, 500);
    assert_eq!(r.server_errors, 0, "{:?}", r.status_counts);
    assert_eq!(r.unexpected, 0, "{:?}", r.examples);
    assert_eq!(r.rejected_as_expected, 50);
    assert_eq!(r.ok, 450);
    assert_eq!(client().get(url(&s, "/health")).send().await.unwrap().status(), 200);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_429_with_retry_after_and_timeouts_504() {
    let f = Fixture::new();
    let mut cfg = f.config();
    cfg.queue_capacity = 1;
    cfg.max_active = 1;
    let s = f.start(cfg).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let u = url(&s, "/v1/completions");
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "tiny", "prompt": format!("queue {i}"), "max_tokens": 64, "temperature": 0});
            let r = client().post(u).json(&body).send().await.unwrap();
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), retry)
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(statuses.iter().any(|(s, _)| *s == 200), "{statuses:?}");
    let busy: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!busy.is_empty(), "{statuses:?}");
    assert!(busy.iter().all(|(_, r)| r.as_deref() == Some("1")));
    assert!(statuses.iter().all(|(s, _)| *s == 200 || *s == 429), "{statuses:?}");
    s.shutdown().await;

    let mut cfg = f.config();
    cfg.request_timeout = Duration::ZERO;
    let s = f.start(cfg).await;
    let (status, v) = post(&s, "/v1/chat/completions", &chat("tiny", "hi", 4)).await;
    assert_eq!(status, 504, "{v}");
    assert_error_shape(&v);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_cancels_its_generation() {
    let f = Fixture::new();
    let mut cfg = f.config();
    cfg.max_tokens = 2000;
    let s = f.start(cfg).await;
    let body = json!({"model": "tiny", "prompt": "go on", "max_tokens": 2000, "temperature": 1.0, "seed": 1, "stream": true});
    let mut resp = client().post(url(&s, "/v1/completions")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.chunk().await.unwrap().unwrap();
    drop(resp);
    let metrics = s.state.metrics.clone();
    let mut cancelled = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if metrics.render().contains("deepfeed_requests_cancelled_total{reason=\"client_disconnected\"} 1") {
            cancelled = true;
            break;
        }
    }
    assert!(cancelled, "{}", metrics.render());
    assert!(metrics.render().contains("deepfeed_active_sequences 0"));
    s.shutdown().await;
}

/// One sample line of the text format: `name{k="v",...} value`.
fn sample<'a>(text: &'a str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (head, _) = l.rsplit_once(' ').unwrap();
            let (n, rest) = head.split_once('{').unwrap_or((head, ""));
            n == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
        .unwrap_or_else(|| panic!("{name} {labels:?} missing in\n{text}"))
}

async fn traffic_for_metrics(s: &deepfeed_serve::RunningServer) {
    for model in ["tiny", "tiny:a"] {
        assert_eq!(post(s, "/v1/chat/completions", &chat(model, "metrics", 4)).await.0, 200);
    }
    assert_eq!(post(s, "/v1/chat/completions", &chat("nope", "metrics", 4)).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrape_has_every_series() {
    let f = Fixture::new();
    let s = f.start(f.config()).await;
    traffic_for_metrics(&s).await;
    let resp = client().get(url(&s, "/metrics")).send().await.unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    assert_eq!(sample(&text, "deepfeed_requests_total", &[("endpoint", "chat_completions"), ("status", "200"), ("adapter", "a")]), 1.0);
    assert_eq!(sample(&text, "deepfeed_requests_total", &[("endpoint", "chat_completions"), ("status", "200"), ("adapter", "base")]), 1.0);
    assert_eq!(sample(&text, "deepfeed_requests_total", &[("status", "404")]), 1.0);
    for h in ["deepfeed_time_to_first_token_seconds", "deepfeed_request_duration_seconds", "deepfeed_time_per_output_token_seconds"] {
        assert_eq!(sample(&text, &format!("{h}_count"), &[("adapter", "a")]), 1.0, "{h}");
        assert_eq!(sample(&text, &format!("{h}_bucket"), &[("adapter", "a"), ("le", "+Inf")]), 1.0, "{h}");
    }
    assert!(sample(&text, "deepfeed_generation_tokens_total", &[("adapter", "a")]) >= 1.0);
    assert!(sample(&text, "deepfeed_prompt_tokens_total", &[("adapter", "base")]) >= 1.0);
    assert!(sample(&text, "process_resident_memory_bytes", &[]) > 1e6);
    assert_eq!(sample(&text, "deepfeed_adapters_loaded", &[]), 2.0);
    // the engine thread updates its gauges after the step that sent the last token, so a scrape
    // right after the answer can still see that step's KV cache: wait for it (at most 2 s)
    let mut text = text;
    for _ in 0..40 {
        if sample(&text, "deepfeed_kv_cache_bytes", &[]) == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = client().get(url(&s, "/metrics")).send().await.unwrap().text().await.unwrap();
    }
    for g in ["deepfeed_queue_depth", "deepfeed_requests_in_flight", "deepfeed_kv_cache_bytes"] {
        assert_eq!(sample(&text, g, &[]), 0.0, "{g}");
    }
    s.shutdown().await;
}

/// The scrape read by Prometheus' own Python parser (`prometheus_client.parser`):
/// `cargo test --release -p deepfeed-serve -- --ignored prometheus_python` (needs
/// /root/venv-ref/bin/python or $DEEPFEED_PYTHON with prometheus-client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn metrics_scrape_parses_with_prometheus_python() {
    let f = Fixture::new();
    let s = f.start(f.config()).await;
    traffic_for_metrics(&s).await;
    let text = client().get(url(&s, "/metrics")).send().await.unwrap().text().await.unwrap();
    let path = f.dir.path().join("scrape.txt");
    std::fs::write(&path, &text).unwrap();
    let python = std::env::var("DEEPFEED_PYTHON").unwrap_or_else(|_| "/root/venv-ref/bin/python".into());
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
out = {}
for s in fams["deepfeed_requests"].samples:
    out[s.labels["adapter"] + "/" + s.labels["status"]] = s.value
h = fams["deepfeed_time_to_first_token_seconds"]
assert h.type == "histogram", h.type
print(json.dumps({"requests": out, "families": sorted(fams)}))
"#;
    let o = std::process::Command::new(python).arg("-c").arg(script).arg(&path).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["requests"]["a/200"], 1.0);
    assert_eq!(v["requests"]["base/200"], 1.0);
    assert_eq!(v["requests"]["none/404"], 1.0);
    for fam in ["deepfeed_queue_depth", "deepfeed_kv_cache_bytes", "process_resident_memory_bytes", "deepfeed_time_per_output_token_seconds"] {
        assert!(v["families"].as_array().unwrap().iter().any(|x| x == fam), "{fam}: {v}");
    }
    s.shutdown().await;
}
