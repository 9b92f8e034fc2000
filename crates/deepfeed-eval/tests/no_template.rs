//! Without a chat template, eval prompts are the "role: content" lines `deepfeed train` learns
//! from, BOS first when the tokenizer adds it to plain text.
use deepfeed_eval::perplexity::{encode_answer, prompt_ids};
use deepfeed_model::backend::inference_device;
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::{Architecture, ChatMessage, Model};

#[test]
fn no_template_prompts_start_with_bos() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("m");
    write_tiny_model(&TinySpec::tiny(Architecture::Llama), &dir).unwrap();
    let tc_path = dir.join("tokenizer_config.json");
    let mut tc: serde_json::Value = serde_json::from_slice(&std::fs::read(&tc_path).unwrap()).unwrap();
    tc.as_object_mut().unwrap().remove("chat_template");
    std::fs::write(&tc_path, serde_json::to_vec(&tc).unwrap()).unwrap();
    let model = Model::load(&dir, &inference_device()).unwrap();
    let tok = &model.tokenizer;
    let bos = tok.leading_bos().unwrap().expect("the tiny tokenizer adds BOS");
    let context = [ChatMessage::new("user", "Who?")];
    let mut want = vec![bos];
    want.extend(tok.encode("user: Who?\nassistant: ", false).unwrap());
    assert_eq!(prompt_ids(&model, &context).unwrap(), want);
    let scored = encode_answer(&model, &context, "Me.").unwrap();
    assert_eq!(scored.ids[..want.len()], want[..]);
}
