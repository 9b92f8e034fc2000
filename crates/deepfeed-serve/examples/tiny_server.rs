//! A server on a tiny random llama with two LoRA adapters (`a`, `b`) and a knowledge base (a
//! tiny random BERT encoder over two documents; retrieval is on for `tiny` and `b`, off for `a`),
//! for trying the API and for client checks without a real model:
//!
//!     cargo run --release -p deepfeed-serve --example tiny_server -- 8000
//!     /root/venv-ref/bin/python scripts/openai_client_check.py http://127.0.0.1:8000/v1 tiny tiny:a --kb
//!
//! With `bench` instead of a port it runs the load benchmark (1, 4, 16 clients) and exits.
use std::path::Path;

use deepfeed_kb::add::{add_sources, AddOptions};
use deepfeed_kb::store::EmbedderInfo;
use deepfeed_kb::tiny_bert::{write_tiny_bert, TinyBertSpec};
use deepfeed_kb::{Embedder, KbStore};
use deepfeed_model::backend::inference_device;
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::{Architecture, Model};
use deepfeed_serve::loadgen::{run_load, table, LoadOptions};
use deepfeed_serve::ServeConfig;

// the tests' set-up: the same random LoRA adapters
#[path = "../tests/common/mod.rs"]
mod common;
use common::make_adapter;

fn make_kb(dir: &Path) {
    let enc = dir.join("encoder");
    write_tiny_bert(&enc, &TinyBertSpec::default()).unwrap();
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("warranty.md"), "# Warranty\n\nThe warranty covers the battery and the screen for three years.").unwrap();
    std::fs::write(docs.join("returns.md"), "# Returns\n\n退货需在七天内办理，请保留发票。").unwrap();
    let embedder = Embedder::encoder(&enc, &inference_device()).unwrap();
    let info = EmbedderInfo { id: embedder.id(), path: enc.display().to_string(), dim: embedder.dim() };
    let mut store = KbStore::open_or_create(&dir.join("kb"), &info).unwrap();
    add_sources(&mut store, &embedder, &[docs], &AddOptions::default(), &mut |_| {}).unwrap();
}

#[tokio::main]
async fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "8000".into());
    let dir = std::env::temp_dir().join(format!("deepfeed-tiny-server-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = dir.join("tiny");
    write_tiny_model(&TinySpec::tiny(Architecture::Llama), &base).unwrap();
    make_adapter(&base, &dir.join("adapters/a"), 1);
    make_adapter(&base, &dir.join("adapters/b"), 2);
    let with_kb = arg != "bench";
    if with_kb {
        make_kb(&dir);
    }
    let model = Model::load(&base, &inference_device()).unwrap();
    let port: u16 = if arg == "bench" { 0 } else { arg.parse().expect("a port number or `bench`") };
    let cfg = ServeConfig {
        addr: ([127, 0, 0, 1], port).into(),
        model_name: Some("tiny".into()),
        feedback_db: Some(dir.join("feedback.db")),
        adapter_dir: Some(dir.join("adapters")),
        queue_capacity: 256,
        max_active: 16,
        kb: with_kb.then(|| dir.join("kb")),
        adapter_kbs: if with_kb { vec![("a".into(), None)] } else { vec![] },
        ..Default::default()
    };
    let adapters = vec![("a".to_string(), dir.join("adapters/a")), ("b".to_string(), dir.join("adapters/b"))];
    let server = deepfeed_serve::start(model, &adapters, cfg).await.unwrap();
    if arg != "bench" {
        eprintln!("serving tiny, tiny:a, tiny:b on http://{} (knowledge base for tiny and b; Ctrl-C stops)", server.addr);
        server.wait_for_ctrl_c().await;
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let mut reports = Vec::new();
    for clients in [1, 4, 16] {
        let o = LoadOptions { url: format!("http://{}", server.addr), model: "tiny".into(), clients, requests: 48, max_tokens: 16, ..Default::default() };
        let _ = run_load(&LoadOptions { requests: 1, clients: 1, ..o.clone() }).await;
        reports.push(run_load(&o).await);
    }
    print!("{}", table(&reports));
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
