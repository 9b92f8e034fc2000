//! Retrieval inside the server: a default knowledge base for the base model, one of its own for
//! adapter `a`, per-request on/off and options, citations in plain and streamed answers, the
//! admin API attaching and detaching knowledge bases, and startup errors. Knowledge bases are
//! built here with a tiny random BERT encoder (deepfeed-kb `tiny_bert`) over a few documents.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use deepfeed_kb::add::{add_sources, AddOptions};
use deepfeed_kb::rag::{build_prompt, DEFAULT_TEMPLATE};
use deepfeed_kb::store::EmbedderInfo;
use deepfeed_kb::tiny_bert::{write_tiny_bert, TinyBertSpec};
use deepfeed_kb::{Embedder, KbStore, Mode, Retriever};
use deepfeed_model::backend::inference_device;
use deepfeed_model::ChatMessage;
use deepfeed_serve::ServeConfig;
use serde_json::{json, Value};

const QUESTION: &str = "How many years does the warranty cover the battery?";

/// Builds a knowledge base in `kb` from `docs` (name, text), embedded by the encoder in `enc`.
fn build_kb(root: &Path, enc: &Path, kb: &Path, docs: &[(&str, &str)]) {
    let src = root.join(format!("{}-docs", kb.file_name().unwrap().to_string_lossy()));
    std::fs::create_dir_all(&src).unwrap();
    for (name, text) in docs {
        std::fs::write(src.join(name), text).unwrap();
    }
    let embedder = Embedder::encoder(enc, &inference_device()).unwrap();
    let info = EmbedderInfo { id: embedder.id(), path: enc.canonicalize().unwrap().display().to_string(), dim: embedder.dim() };
    let mut store = KbStore::open_or_create(kb, &info).unwrap();
    let r = add_sources(&mut store, &embedder, &[src], &AddOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(r.added, docs.len());
}

struct RagFixture {
    f: Fixture,
    /// Under `kbs/`: `main` (warranty, returns, shipping) and `legal` (for adapter `a`).
    kbs: PathBuf,
}

impl RagFixture {
    fn new() -> Self {
        let f = Fixture::new();
        let enc = f.dir.path().join("encoder");
        write_tiny_bert(&enc, &TinyBertSpec::default()).unwrap();
        let kbs = f.dir.path().join("kbs");
        std::fs::create_dir_all(&kbs).unwrap();
        build_kb(
            f.dir.path(),
            &enc,
            &kbs.join("main"),
            &[
                ("warranty.md", "# Warranty\n\nThe warranty covers the battery and the screen for three years from the date of purchase."),
                ("returns.md", "# Returns\n\nYou can return an unused product within 30 days. Keep the receipt and the box."),
                ("shipping.md", "# Shipping\n\nOrders ship within two working days. Delivery to the islands takes a week."),
            ],
        );
        build_kb(f.dir.path(), &enc, &kbs.join("legal"), &[("contract.md", "# Contract\n\nThe contract ends when either side gives notice in writing, ninety days ahead.")]);
        RagFixture { f, kbs }
    }

    fn config(&self) -> ServeConfig {
        let mut c = self.f.config();
        c.kb = Some(self.kbs.join("main"));
        c.adapter_kbs = vec![("a".into(), Some(self.kbs.join("legal")))];
        c.kb_dir = Some(self.kbs.clone());
        c.max_prompt_tokens = 2000;
        c
    }

    /// The prompt length the server should build: the library's own retrieval and template,
    /// then the chat template, counted in chat-model tokens.
    fn expected_prompt_tokens(&self, kb: &str, question: &str, k: usize, mode: Mode, budget: usize) -> (usize, Vec<String>) {
        let model = self.f.model();
        let store = KbStore::open(&self.kbs.join(kb)).unwrap();
        let enc = Embedder::encoder(&self.f.dir.path().join("encoder"), &inference_device()).unwrap();
        let hits = Retriever::new(&store, Some(&enc)).search(question, k, mode).unwrap();
        let count = |s: &str| model.tokenizer.encode(s, false).unwrap().len();
        let p = build_prompt(question, &hits, DEFAULT_TEMPLATE, budget, &count);
        let text = model.tokenizer.apply_chat_template(&[ChatMessage::new("system", "Be brief."), p.user_message], true).unwrap();
        (model.tokenizer.encode(&text, false).unwrap().len(), p.citations.iter().map(|c| c.source.clone()).collect())
    }
}

fn ask(model: &str, kb: Option<Value>) -> Value {
    let mut b = json!({"model": model, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}], "max_tokens": 4, "temperature": 0});
    if let Some(kb) = kb {
        b["kb"] = kb;
    }
    b
}

fn sources(v: &Value) -> Vec<String> {
    v["citations"].as_array().unwrap_or_else(|| panic!("no citations in {v}")).iter().map(|c| c["source"].as_str().unwrap().to_string()).collect()
}

fn file_names(s: &[String]) -> Vec<String> {
    s.iter().map(|p| Path::new(p).file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citations_per_request_per_adapter_and_streamed() {
    let r = RagFixture::new();
    let s = r.f.start(r.config()).await;

    // kb on (BM25, one passage): the warranty document, and exactly the prompt the library builds
    let (status, v) = post(&s, "/v1/chat/completions", &ask("tiny", Some(json!({"mode": "bm25", "k": 1})))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(file_names(&sources(&v)), ["warranty.md"]);
    let c = &v["citations"][0];
    assert_eq!((c["n"].clone(), c["chunk"].is_u64(), c["page"].clone()), (json!(1), true, Value::Null), "{c}");
    assert!(c["score"].as_f64().unwrap() > 0.0);
    let (expected_tokens, expected_sources) = r.expected_prompt_tokens("main", QUESTION, 1, Mode::Bm25, 1024);
    assert_eq!(v["usage"]["prompt_tokens"], expected_tokens);
    assert_eq!(sources(&v), expected_sources);

    // kb off: no citations field, and the bare prompt
    let (status, off) = post(&s, "/v1/chat/completions", &ask("tiny", Some(json!(false)))).await;
    assert_eq!(status, 200, "{off}");
    assert!(off.get("citations").is_none(), "{off}");
    assert!(off["usage"]["prompt_tokens"].as_u64().unwrap() < expected_tokens as u64 - 10);

    // no kb field: the server's defaults (hybrid, k 4); passages only from the default knowledge base
    let (_, d) = post(&s, "/v1/chat/completions", &ask("tiny", None)).await;
    let names = file_names(&sources(&d));
    assert!(!names.is_empty() && names.iter().all(|n| ["warranty.md", "returns.md", "shipping.md"].contains(&n.as_str())), "{names:?}");
    let (expected_tokens, expected_sources) = r.expected_prompt_tokens("main", QUESTION, 4, Mode::Hybrid, 1024);
    assert_eq!((d["usage"]["prompt_tokens"].as_u64().unwrap() as usize, sources(&d)), (expected_tokens, expected_sources));

    // adapter a has its own knowledge base; b uses the default one
    let (_, a) = post(&s, "/v1/chat/completions", &ask("tiny:a", None)).await;
    assert_eq!(file_names(&sources(&a)), ["contract.md"], "{a}");
    let (_, b) = post(&s, "/v1/chat/completions", &ask("b", Some(json!({"mode": "bm25", "k": 1})))).await;
    assert_eq!(file_names(&sources(&b)), ["warranty.md"], "{b}");

    // streamed: the citations ride on the first chunk only, the same as the plain answer's
    let mut body = ask("tiny", Some(json!({"mode": "bm25", "k": 1})));
    body["stream"] = json!(true);
    let resp = client().post(url(&s, "/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let data = sse_data(&resp.text().await.unwrap());
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["citations"], v["citations"]);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks[1..].iter().all(|c| c.get("citations").is_none()));
    let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, v["choices"][0]["message"]["content"].as_str().unwrap());

    // request errors name the field; completions do not retrieve
    let (status, e) = post(&s, "/v1/chat/completions", &ask("tiny", Some(json!({"k": 0})))).await;
    assert_eq!((status, e["error"]["param"].clone()), (400, json!("kb.k")), "{e}");
    let (status, e) = post(&s, "/v1/completions", &json!({"model": "tiny", "prompt": "x", "kb": true})).await;
    assert_eq!((status, e["error"]["param"].clone()), (400, json!("kb")), "{e}");

    // admin: b loses retrieval (kb none), then gets the legal knowledge base, kept over a reload
    let admin = |body: Value| {
        let s = &s;
        async move { post_raw(s, "/admin/adapters", body.to_string(), Some(ADMIN)).await }
    };
    let (status, info) = admin(json!({"name": "b", "path": "b", "kb": "none"})).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["adapter"]["kb"], "none");
    let (_, v) = post(&s, "/v1/chat/completions", &ask("b", None)).await;
    assert!(v.get("citations").is_none(), "{v}");
    let (status, e) = post(&s, "/v1/chat/completions", &ask("b", Some(json!(true)))).await;
    assert_eq!((status, e["error"]["param"].clone()), (400, json!("kb")), "{e}");
    let (status, info) = admin(json!({"name": "b", "path": "b", "kb": "legal"})).await;
    assert_eq!(status, 200, "{info}");
    let (status, info) = admin(json!({"name": "b", "path": "b"})).await;
    assert_eq!(status, 200, "{info}");
    assert!(info["adapter"]["kb"].as_str().unwrap().ends_with("legal"), "{info}");
    let (_, v) = post(&s, "/v1/chat/completions", &ask("b", None)).await;
    assert_eq!(file_names(&sources(&v)), ["contract.md"], "{v}");
    let (status, e) = admin(json!({"name": "b", "path": "b", "kb": "../.."})).await;
    assert_eq!(status, 403, "{e}");

    // metrics: retrieval latency and passages, by adapter
    let m = client().get(url(&s, "/metrics")).send().await.unwrap().text().await.unwrap();
    let line = |name: &str| m.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} missing in\n{m}")).to_string();
    assert_eq!(line("deepfeed_retrieval_seconds_count{adapter=\"base\"}"), "deepfeed_retrieval_seconds_count{adapter=\"base\"} 3");
    assert!(line("deepfeed_retrieval_passages_sum{adapter=\"base\"}").ends_with(&format!(" {}.0", 1 + names.len() + 1)), "{m}");
    assert!(m.contains("deepfeed_retrieval_seconds_count{adapter=\"a\"} 1"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowledge_base_problems_stop_the_start() {
    let r = RagFixture::new();
    let err = |cfg: ServeConfig| {
        let f = &r.f;
        async move {
            match deepfeed_serve::start(f.model(), &[("a".to_string(), f.adapter_root.join("a"))], cfg).await {
                Ok(_) => panic!("the server started"),
                Err(e) => e.to_string(),
            }
        }
    };
    let mut cfg = r.config();
    cfg.kb = Some(r.kbs.join("missing"));
    let e = err(cfg).await;
    assert!(e.contains("missing") && e.contains("not a knowledge base"), "{e}");

    // a corrupt database
    let bad = r.kbs.join("corrupt");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("kb.sqlite"), b"this is not sqlite").unwrap();
    let mut cfg = r.config();
    cfg.kb = Some(bad);
    let e = err(cfg).await;
    assert!(e.contains("corrupt"), "{e}");

    // questions embedded by another encoder than the passages
    let other = r.f.dir.path().join("other-encoder");
    write_tiny_bert(&other, &TinyBertSpec { hidden_size: 16, seed: 3, ..Default::default() }).unwrap();
    let mut cfg = r.config();
    cfg.kb_embedder = Some(other);
    let e = err(cfg).await;
    assert!(e.contains("same encoder") && e.contains("32 dims") && e.contains("16 dims"), "{e}");

    // an adapter's knowledge base for an adapter that is not loaded
    let mut cfg = r.config();
    cfg.adapter_kbs.push(("zzz".into(), Some(r.kbs.join("legal"))));
    let e = err(cfg).await;
    assert!(e.contains("zzz"), "{e}");
}
