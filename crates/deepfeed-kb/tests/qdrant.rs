//! The Qdrant backend against a real server — ignored, and run only with one:
//!
//!     docker run -p 6333:6333 qdrant/qdrant
//!     DEEPFEED_QDRANT_URL=http://localhost:6333 cargo test --release -p deepfeed-kb --test qdrant -- --ignored
//!
//! Nothing is mocked: without a server there is no test of this backend. Each run uses (and
//! finally deletes) its own collection.
mod common;

use common::TempDir;
use deepfeed_kb::add::{add_sources, AddOptions};
use deepfeed_kb::backend;
use deepfeed_kb::store::EmbedderInfo;
use deepfeed_kb::tiny_bert::{write_tiny_bert, TinyBertSpec};
use deepfeed_kb::{Embedder, Mode, Retriever};
use deepfeed_model::backend::inference_device;

#[test]
#[ignore = "needs a Qdrant server: set DEEPFEED_QDRANT_URL (see docs/kb.md)"]
fn add_search_update_delete_against_a_qdrant_server() {
    let server = std::env::var("DEEPFEED_QDRANT_URL").expect("set DEEPFEED_QDRANT_URL=http://host:6333 to run this test against a Qdrant server");
    let server = server.trim_end_matches('/');
    let collection = format!("deepfeed_test_{:08x}", rand::random::<u32>());
    let url = format!("{server}/{collection}");
    let d = TempDir::new();
    let p = d.path();
    write_tiny_bert(&p.join("bert"), &TinyBertSpec::default()).unwrap();
    let docs = p.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("warranty.md"), "# Warranty\n\nThe warranty covers the battery and the screen for three years.").unwrap();
    std::fs::write(docs.join("returns.md"), "# Returns\n\nReturn an unused product within 30 days with the receipt.").unwrap();
    std::fs::write(docs.join("invoices.txt"), "发票在每个月初通过电子邮件发送。").unwrap();
    let embedder = Embedder::encoder(&p.join("bert"), &inference_device()).unwrap();
    let info = EmbedderInfo { id: embedder.id(), path: p.join("bert").display().to_string(), dim: embedder.dim() };

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut kb = backend::open_or_create(url.as_ref(), &info).unwrap();
        let r = add_sources(&mut *kb, &embedder, std::slice::from_ref(&docs), &AddOptions::default(), &mut |_| {}).unwrap();
        assert_eq!((r.added, r.unchanged), (3, 0));
        let r = add_sources(&mut *kb, &embedder, std::slice::from_ref(&docs), &AddOptions::default(), &mut |_| {}).unwrap();
        assert_eq!((r.added, r.unchanged), (0, 3));

        // reopened from the URL alone: the embedder comes back from the stored points
        let kb = backend::open(url.as_ref()).unwrap();
        assert_eq!(kb.embedder(), &info);
        let s = kb.stats().unwrap();
        assert_eq!((s.documents, s.chunks), (3, 3));
        let retriever = Retriever::new(&*kb, Some(&embedder));
        let hit = |q: &str, mode: Mode| retriever.search(q, 1, mode).unwrap()[0].source.clone();
        assert!(hit("how long is the battery warranty", Mode::Bm25).ends_with("warranty.md"));
        assert!(hit("发票", Mode::Bm25).ends_with("invoices.txt"));
        assert!(hit("return within 30 days receipt", Mode::Hybrid).ends_with("returns.md"));
        // the exact same text as a stored chunk is its own nearest vector
        let h = retriever.search("# Warranty\n\nThe warranty covers the battery and the screen for three years.", 1, Mode::Vector).unwrap();
        assert!(h[0].source.ends_with("warranty.md") && h[0].score > 0.99, "{h:?}");
        drop(retriever);

        // a changed file replaces its chunks; delete removes a document
        let mut kb = kb;
        std::fs::write(docs.join("warranty.md"), "# Warranty\n\nThe warranty now covers five years.").unwrap();
        let r = add_sources(&mut *kb, &embedder, std::slice::from_ref(&docs), &AddOptions::default(), &mut |_| {}).unwrap();
        assert_eq!((r.updated, r.unchanged), (1, 2));
        let doc = kb.documents().unwrap().into_iter().find(|d| d.source.ends_with("returns.md")).unwrap();
        assert_eq!(kb.delete_document(&doc.doc_id).unwrap(), 1);
        let s = kb.stats().unwrap();
        assert_eq!((s.documents, s.chunks), (2, 2));
        let h = Retriever::new(&*kb, Some(&embedder)).search("five years", 1, Mode::Bm25).unwrap();
        assert!(h[0].text.contains("five years"), "{h:?}");

        // another encoder is refused
        let other = EmbedderInfo { id: "encoder:other".into(), path: String::new(), dim: info.dim };
        assert!(backend::open_or_create(url.as_ref(), &other).is_err());
    }));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let _ = agent.delete(format!("{server}/collections/{collection}")).call();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
