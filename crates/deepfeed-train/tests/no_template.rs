//! A model without a chat template (e.g. a base GGUF such as Gemma 3 270M) trains on
//! "role: content" lines that start with BOS when its tokenizer adds BOS to plain text.
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::tokenizer::TextTokenizer;
use deepfeed_model::Architecture;
use deepfeed_train::data::load_dataset;
use serde_json::Value;

#[test]
fn no_template_samples_start_with_bos() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("m");
    write_tiny_model(&TinySpec::tiny(Architecture::Llama), &dir).unwrap();
    let tc_path = dir.join("tokenizer_config.json");
    let mut tc: Value = serde_json::from_slice(&std::fs::read(&tc_path).unwrap()).unwrap();
    tc.as_object_mut().unwrap().remove("chat_template");
    std::fs::write(&tc_path, serde_json::to_vec(&tc).unwrap()).unwrap();
    let tok = TextTokenizer::from_dir(&dir, None).unwrap();
    assert!(!tok.has_chat_template());
    let bos = tok.leading_bos().unwrap().expect("the tiny tokenizer adds BOS");

    let data = d.path().join("qa.jsonl");
    std::fs::write(&data, "{\"input_text\": \"Who?\", \"target_text\": \"Me.\"}\n").unwrap();
    let s = &load_dataset(&data, &tok, 64, false).unwrap().samples[0];
    let mut want = vec![bos];
    let mut train = vec![false];
    for (text, trained) in [("user: ", false), ("Who?\n", false), ("assistant: ", false), ("Me.\n", true)] {
        let ids = tok.encode(text, false).unwrap();
        train.extend(std::iter::repeat_n(trained, ids.len()));
        want.extend(ids);
    }
    want.push(tok.eos_ids[0]);
    train.push(true);
    assert_eq!(s.ids, want);
    assert_eq!(s.train, train);
}
