//! Feedback: stored with its prompt and response, kept across a restart, exported as preference
//! pairs and SFT samples with personal data masked.
mod common;

use common::*;
use deepfeed_data::record::Record;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_survives_a_restart_and_exports_masked() {
    let f = Fixture::new();
    let db = f.dir.path().join("feedback.db");
    let mut cfg = f.config();
    cfg.feedback_db = Some(db.clone());
    let s = f.start(cfg.clone()).await;
    let user = "My phone is 13812345678, what now?";
    let ask = |model: &str| json!({"model": model, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": user}], "max_tokens": 6, "temperature": 0});
    let mut ids = Vec::new();
    let mut answers = Vec::new();
    for model in ["tiny", "tiny:a", "tiny:b"] {
        let (status, v) = post(&s, "/v1/chat/completions", &ask(model)).await;
        assert_eq!(status, 200, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
        answers.push(v["choices"][0]["message"]["content"].as_str().unwrap().to_string());
    }
    let (status, c) = post(&s, "/v1/completions", &json!({"model": "tiny", "prompt": "Write to me at li.lei@example.com", "max_tokens": 4, "temperature": 0})).await;
    assert_eq!(status, 200);
    let completion_id = c["id"].as_str().unwrap().to_string();

    // before the restart: a rating up and one down on the same prompt, and a rewrite
    let (status, v) = post(&s, "/v1/feedback", &json!({"response_id": ids[0], "rating": "up", "comment": "good"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "stored");
    assert_eq!(post(&s, "/v1/feedback", &json!({"response_id": ids[1], "rating": "down"})).await.0, 200);
    let (status, v) = post(&s, "/v1/feedback", &json!({"id": completion_id, "rewrite": "Sure, li.lei@example.com will hear from us."})).await;
    assert_eq!(status, 200, "{v}");
    // bad feedback
    assert_eq!(post(&s, "/v1/feedback", &json!({"response_id": "chatcmpl-nope", "rating": "up"})).await.0, 404);
    assert_eq!(post(&s, "/v1/feedback", &json!({"response_id": ids[0], "rating": "meh"})).await.0, 400);
    assert_eq!(post(&s, "/v1/feedback", &json!({"response_id": ids[0]})).await.0, 400);
    assert_eq!(post(&s, "/v1/feedback", &json!({"response_id": ids[0], "rating": "up", "extra": 1})).await.0, 400);
    s.shutdown().await;

    // after a restart: the responses recorded before it still take feedback
    let s = f.start(cfg).await;
    let (status, v) = post(&s, "/v1/feedback", &json!({"response_id": ids[2], "rewrite": "Call 13812345678 back, please."})).await;
    assert_eq!(status, 200, "{v}");
    s.shutdown().await;

    let out = f.dir.path().join("export");
    let store = deepfeed_serve::feedback::FeedbackStore::open(&db).unwrap();
    let summary = deepfeed_serve::feedback::export(&store, &out).unwrap();
    assert_eq!(summary.feedback_rows, 4);
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(out.join(name)).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let prefs = read("preferences.jsonl");
    let sft = read("sft.jsonl");
    let all = format!("{prefs:?}{sft:?}");
    assert!(!all.contains("13812345678") && !all.contains("li.lei@example.com"), "personal data left in the export: {all}");
    assert!(all.contains("<PHONE>") && all.contains("<EMAIL>"), "{all}");
    assert!(summary.pii_masked["PHONE"] >= 1 && summary.pii_masked["EMAIL"] >= 1);

    // pairs: the completion rewrite, the chat rewrite, and up (tiny) over down (tiny:a)
    let mut expected_pairs = 2;
    if answers[0] != answers[1] {
        expected_pairs += 1;
        let rated = prefs.iter().find(|p| p["metadata"]["chosen_id"] == ids[0].as_str()).expect("up-over-down pair");
        assert_eq!(rated["chosen"], answers[0].as_str());
        assert_eq!(rated["rejected"], answers[1].as_str());
        assert_eq!(rated["prompt"], "My phone is <PHONE>, what now?");
    }
    assert_eq!(prefs.len(), expected_pairs, "{prefs:?}");
    let rewrite = prefs.iter().find(|p| p["prompt"] == "Write to me at <EMAIL>").unwrap();
    assert_eq!(rewrite["chosen"], "Sure, <EMAIL> will hear from us.");
    assert_eq!(rewrite["rejected"], c["choices"][0]["text"]);
    for p in &prefs {
        // the project's `convert --format preference` reads exactly these fields
        assert!(p["prompt"].is_string() && p["chosen"].is_string() && p["rejected"].is_string());
    }
    // SFT: the up-rated chat and both rewrites, each a valid project record
    assert_eq!(sft.len(), 3, "{sft:?}");
    for r in &sft {
        let rec = Record::parse(r).unwrap();
        assert!(rec.is_trainable(), "{r}");
    }
    let chat_rewrite = sft.iter().find(|r| r["metadata"]["response_id"] == ids[2].as_str()).unwrap();
    assert_eq!(chat_rewrite["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(chat_rewrite["messages"][2], json!({"role": "assistant", "content": "Call <PHONE> back, please."}));
    assert!(out.join("summary.json").is_file());
}
