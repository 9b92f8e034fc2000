//! Shared set-up: a tiny random llama with two LoRA adapters, and a server on a loopback port.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::time::Duration;

use deepfeed_model::backend::inference_device;
use deepfeed_model::generate::{generate, GenerateOptions};
use deepfeed_model::lora::LoraConfig;
use deepfeed_model::peft::{set_param_values, AdapterConfig};
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::{Architecture, ChatMessage, Model};
use deepfeed_serve::{RunningServer, ServeConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

pub const ADMIN: &str = "admin-token-0123456789";

/// A scratch directory removed on drop (no tempfile dev-dependency: see Cargo.toml).
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("deepfeed-serve-test-{}-{n}-{:x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&p).unwrap();
        ScratchDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Fixture {
    pub dir: ScratchDir,
    pub base: PathBuf,
    /// Under `adapters/`: `a` and `b`.
    pub adapter_root: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = ScratchDir::new();
        let base = dir.path().join("tiny");
        write_tiny_model(&TinySpec::tiny(Architecture::Llama), &base).unwrap();
        let adapter_root = dir.path().join("adapters");
        std::fs::create_dir_all(&adapter_root).unwrap();
        make_adapter(&base, &adapter_root.join("a"), 1);
        make_adapter(&base, &adapter_root.join("b"), 2);
        Fixture { dir, base, adapter_root }
    }

    pub fn model(&self) -> Model {
        Model::load(&self.base, &inference_device()).unwrap()
    }

    pub fn config(&self) -> ServeConfig {
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            model_name: Some("tiny".into()),
            admin_token: Some(ADMIN.into()),
            adapter_dir: Some(self.adapter_root.clone()),
            max_tokens: 64,
            default_max_tokens: 8,
            max_prompt_tokens: 256,
            max_body_bytes: 64 * 1024,
            ..Default::default()
        }
    }

    /// A server with adapters `a` and `b` loaded at start.
    pub async fn start(&self, cfg: ServeConfig) -> RunningServer {
        let adapters = vec![("a".to_string(), self.adapter_root.join("a")), ("b".to_string(), self.adapter_root.join("b"))];
        deepfeed_serve::start(self.model(), &adapters, cfg).await.unwrap()
    }

    /// What the library itself generates for a one-message chat (greedy), with an adapter or not.
    pub fn reference_chat(&self, adapter: Option<&str>, user: &str, max_tokens: usize) -> (String, usize, usize) {
        let mut m = self.model();
        if let Some(a) = adapter {
            m.load_adapter(&self.adapter_root.join(a)).unwrap();
        }
        let prompt = m.tokenizer.apply_chat_template(&[ChatMessage::new("user", user)], true).unwrap();
        let ids = m.tokenizer.encode(&prompt, false).unwrap();
        let g = generate(&m, &ids, &GenerateOptions { max_new_tokens: max_tokens, ..Default::default() }, &mut |_| {}).unwrap();
        (g.text, ids.len(), g.token_ids.len())
    }
}

/// A LoRA adapter on every linear layer with random, clearly non-zero B matrices.
pub fn make_adapter(base: &Path, out: &Path, seed: u64) {
    let mut m = Model::load(base, &inference_device()).unwrap();
    let cfg = LoraConfig { r: 4, lora_alpha: 8.0, target_modules: vec!["all-linear".into()], ..Default::default() };
    m.add_lora(&cfg, seed).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, mut p) in m.network.params_mut() {
        if name.contains("lora_B") {
            let n = p.num_elements();
            set_param_values(&mut p, (0..n).map(|_| rng.random_range(-0.5f32..0.5)).collect(), false);
        }
    }
    m.save_adapter(&AdapterConfig::Lora(cfg), "tiny", out).unwrap();
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

pub fn url(s: &RunningServer, path: &str) -> String {
    format!("http://{}{path}", s.addr)
}

/// POSTs a raw body; returns the status and the parsed JSON (Null when not JSON).
pub async fn post_raw(s: &RunningServer, path: &str, body: impl Into<reqwest::Body>, auth: Option<&str>) -> (u16, Value) {
    let mut r = client().post(url(s, path)).header("content-type", "application/json").body(body);
    if let Some(a) = auth {
        r = r.header("authorization", format!("Bearer {a}"));
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn post(s: &RunningServer, path: &str, body: &Value) -> (u16, Value) {
    post_raw(s, path, body.to_string(), None).await
}

/// Every `data:` payload of an SSE response body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n").flat_map(|ev| ev.lines().filter_map(|l| l.strip_prefix("data:").map(|d| d.trim().to_string()))).collect()
}

/// OpenAI's error shape: {"error": {"message": "...", "type": "...", "param": ..., "code": ...}}.
pub fn assert_error_shape(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "no error message in {v}");
    assert!(e["type"].is_string(), "no error type in {v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "param/code missing in {v}");
}
