//! LoRA and full fine-tuning against PyTorch + PEFT (fixtures from scripts/make_train_reference.py
//! on the tiny llama model of deepfeed-model's parity tests).
use std::path::PathBuf;

use burn::tensor::Tensor;
use deepfeed_model::arch::llama::ParamMut;
use deepfeed_model::backend::{inference_device, training_device};
use deepfeed_model::Model;
use deepfeed_train::data::Sample;
use deepfeed_train::optim::{AdamW, AdamWConfig};
use deepfeed_train::trainer::batch_loss;
use safetensors::SafeTensors;
use serde_json::Value;

fn base_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deepfeed-model/tests/fixtures/llama")
}
fn lora_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora_llama")
}

/// Tensor `name` of a safetensors file's bytes, as f32.
fn f32_tensor(bytes: &[u8], name: &str) -> Vec<f32> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(name).unwrap_or_else(|_| panic!("{name} not in the reference"));
    t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Tensor `name` of `dir/reference.safetensors`.
fn fixture_tensor(dir: &std::path::Path, name: &str) -> Vec<f32> {
    f32_tensor(&std::fs::read(dir.join("reference.safetensors")).unwrap(), name)
}

/// Mean loss of the reference batch, checked against `want` (relative 1e-5); returned for backward.
fn reference_batch_loss(model: &Model, r: &Reference, device: &burn::tensor::Device, want: f32, peer: &str) -> Tensor<1> {
    let batch = r.batch();
    let refs: Vec<&Sample> = batch.iter().collect();
    let (loss_sum, tokens) = batch_loss(&model.network, &model.rotary, &refs, 2, device);
    let loss = loss_sum / tokens as f64;
    let value = loss.clone().into_scalar::<f32>();
    assert!(((value - want) / want).abs() < 1e-5, "loss {value} vs {peer} {want}");
    loss
}

/// Freezes everything but the adapter's parameters; returns their names.
fn train_only_adapter(model: &mut Model) -> Vec<String> {
    let mut names = vec![];
    for (name, mut p) in model.network.params_mut() {
        let train = deepfeed_model::peft::is_adapter_param(&name);
        p.set_require_grad(train);
        if train {
            names.push(name);
        }
    }
    names
}

struct Reference {
    json: Value,
    bytes: Vec<u8>,
}

impl Reference {
    fn load() -> Self {
        let dir = lora_fixture();
        Reference {
            json: serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap(),
            bytes: std::fs::read(dir.join("reference.safetensors")).unwrap(),
        }
    }
    fn tensor(&self, name: &str) -> Vec<f32> {
        f32_tensor(&self.bytes, name)
    }
    fn batch(&self) -> Vec<Sample> {
        let ids: Vec<Vec<u32>> = serde_json::from_value(self.json["input_ids"].clone()).unwrap();
        let labels: Vec<Vec<i64>> = serde_json::from_value(self.json["labels"].clone()).unwrap();
        ids.into_iter().zip(labels).map(|(ids, l)| Sample::new(ids, l.iter().map(|&x| x != -100).collect())).collect()
    }
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

/// ‖a − b‖ / ‖b‖
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// `….q_proj.lora_A.weight` -> PEFT's parameter name `base_model.model.….q_proj.lora_A.default.weight`
fn peft_name(name: &str) -> String {
    format!("base_model.model.{}", name.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default."))
}

#[test]
fn peft_adapter_gives_peft_logits() {
    let r = Reference::load();
    let mut model = Model::load(&base_model(), &inference_device()).unwrap();
    let cfg = model.load_adapter(&lora_fixture()).unwrap();
    let cfg = cfg.lora().unwrap();
    assert_eq!((cfg.r, cfg.lora_alpha), (4, 8.0));
    let ids: Vec<u32> = serde_json::from_value(r.json["text_ids"].clone()).unwrap();
    let ours = to_vec(model.logits(&ids).unwrap());
    let want = r.tensor("lora.logits");
    let diff = ours.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-4, "max |logit diff| {diff:e}");
    // and the adapter really changes the model
    let base = to_vec(Model::load(&base_model(), &inference_device()).unwrap().logits(&ids).unwrap());
    assert!(base.iter().zip(&want).any(|(a, b)| (a - b).abs() > 1e-2));
}

#[test]
fn lora_gradients_and_adamw_step_match_peft() {
    let r = Reference::load();
    let device = training_device();
    let mut model = Model::load(&base_model(), &device).unwrap();
    model.load_adapter(&lora_fixture()).unwrap();
    let lora_names = train_only_adapter(&mut model);
    assert_eq!(lora_names.len(), 2 * 4 * 2, "4 target modules x 2 layers x (A, B)");
    let loss = reference_batch_loss(&model, &r, &device, r.tensor("lora.loss")[0], "PEFT");
    let grads = loss.backward();

    let plain = inference_device();
    let mut opt = AdamW::new(AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 });
    opt.begin_step();
    for (name, p) in model.network.params_mut() {
        if !lora_names.contains(&name) {
            continue;
        }
        let ParamMut::Matrix(p) = p else { unreachable!() };
        let g = p.val().grad(&grads).expect("LoRA weight has a gradient");
        let g = to_vec(g);
        let want = r.tensor(&format!("lora.grad.{}", peft_name(&name)));
        let e = rel_err(&g, &want);
        assert!(e < 1e-4, "{name}: gradient rel. error {e:e}");

        let flat = |v: Vec<f32>| Tensor::<1>::from_data(burn::tensor::TensorData::new(v.clone(), [v.len()]), &plain);
        let updated = to_vec(opt.update(&name, flat(to_vec(p.val().detach())), flat(g), 1e-2));
        let want = r.tensor(&format!("lora.after_step.{}", peft_name(&name)));
        let e = rel_err(&updated, &want);
        assert!(e < 1e-5, "{name}: after one AdamW step rel. error {e:e}");
    }
}

#[test]
fn full_finetuning_gradients_match_pytorch() {
    let r = Reference::load();
    let device = training_device();
    let model = Model::load(&base_model(), &device).unwrap();
    let loss = reference_batch_loss(&model, &r, &device, r.tensor("full.loss")[0], "torch");
    let grads = loss.backward();
    let mut model = model;
    let mut checked = 0;
    for (name, p) in model.network.params_mut() {
        let key = format!("full.grad.{name}");
        if !(name.starts_with("model.layers.1.") || name == "model.norm.weight" || name == "lm_head.weight" || name == "model.embed_tokens.weight") {
            continue;
        }
        let g = match p {
            ParamMut::Vector(p) => to_vec(p.val().grad(&grads).unwrap()),
            ParamMut::Matrix(p) => to_vec(p.val().grad(&grads).unwrap()),
        };
        let e = rel_err(&g, &r.tensor(&key));
        assert!(e < 1e-4, "{name}: gradient rel. error {e:e}");
        checked += 1;
    }
    assert_eq!(checked, 9 + 2 + 1);
}

fn dora_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dora_llama")
}

fn dora_reference(name: &str) -> Vec<f32> {
    fixture_tensor(&dora_fixture(), name)
}

#[test]
fn dora_logits_gradients_and_merge_match_peft() {
    let r = Reference::load();
    let ids: Vec<u32> = serde_json::from_value(r.json["text_ids"].clone()).unwrap();

    // inference: logits with the PEFT DoRA adapter, then the same after merging
    let mut model = Model::load(&base_model(), &inference_device()).unwrap();
    let cfg = model.load_adapter(&dora_fixture()).unwrap();
    assert!(cfg.lora().unwrap().use_dora);
    let want = dora_reference("logits");
    let max_diff = |v: &[f32]| v.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let ours = to_vec(model.logits(&ids).unwrap());
    assert!(max_diff(&ours) < 1e-4, "DoRA logits: {:e}", max_diff(&ours));
    model.merge_adapters();
    let merged = to_vec(model.logits(&ids).unwrap());
    assert!(max_diff(&merged) < 1e-4, "merged DoRA logits: {:e}", max_diff(&merged));

    // training: loss and gradients of A, B and the magnitude
    let device = training_device();
    let mut model = Model::load(&base_model(), &device).unwrap();
    model.load_adapter(&dora_fixture()).unwrap();
    let names = train_only_adapter(&mut model);
    assert_eq!(names.len(), 3 * 3 * 2);
    let loss = reference_batch_loss(&model, &r, &device, dora_reference("loss")[0], "PEFT");
    let grads = loss.backward();
    for (name, p) in model.network.params_mut() {
        if !names.contains(&name) {
            continue;
        }
        let g = match p {
            ParamMut::Vector(p) => to_vec(p.val().grad(&grads).unwrap()),
            ParamMut::Matrix(p) => to_vec(p.val().grad(&grads).unwrap()),
        };
        let key = format!("grad.{}", peft_name(&name).replace(".lora_magnitude_vector", ".lora_magnitude_vector.default.weight"));
        let e = rel_err(&g, &dora_reference(&key));
        assert!(e < 1e-4, "{name}: gradient rel. error {e:e}");
    }
}

fn prefix_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prefix_llama")
}

fn prefix_reference(name: &str) -> Vec<f32> {
    fixture_tensor(&prefix_fixture(), name)
}

#[test]
fn prefix_tuning_logits_and_gradients_match_peft() {
    let r = Reference::load();
    let ids: Vec<u32> = serde_json::from_value(r.json["text_ids"].clone()).unwrap();
    let mut model = Model::load(&base_model(), &inference_device()).unwrap();
    let cfg = model.load_adapter(&prefix_fixture()).unwrap();
    assert_eq!(cfg, deepfeed_model::peft::AdapterConfig::Prefix { num_virtual_tokens: 5 });
    let want = prefix_reference("logits");
    let ours = to_vec(model.logits(&ids).unwrap());
    let diff = ours.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-4, "prefix logits: {diff:e}");
    // generation path: the prefix enters the KV cache, positions continue after it
    let mut cache = model.new_cache();
    let v = model.config.vocab_size;
    model.next_logits(&ids[..3], &mut cache).unwrap();
    let last = model.next_logits(&ids[3..4], &mut cache).unwrap();
    let diff = last.iter().zip(&want[3 * v..4 * v]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-4, "cached prefix logits: {diff:e}");

    let device = training_device();
    let mut model = Model::load(&base_model(), &device).unwrap();
    model.load_adapter(&prefix_fixture()).unwrap();
    assert_eq!(train_only_adapter(&mut model), ["prompt_embeddings"]);
    let loss = reference_batch_loss(&model, &r, &device, prefix_reference("loss")[0], "PEFT");
    let grads = loss.backward();
    let g = to_vec(model.network.prefix().unwrap().prompt_embeddings.val().grad(&grads).unwrap());
    let e = rel_err(&g, &prefix_reference("grad.prompt_embeddings"));
    assert!(e < 1e-4, "prompt_embeddings gradient rel. error {e:e}");
}
