//! DPO loss and LoRA gradients against PyTorch + PEFT (fixture from scripts/make_dpo_reference.py:
//! the tiny llama model with the non-zero LoRA adapter of tests/fixtures/lora_llama as the policy,
//! the base model as the reference).
use std::path::PathBuf;

use burn::tensor::Tensor;
use deepfeed_model::arch::llama::ParamMut;
use deepfeed_model::backend::{inference_device, training_device};
use deepfeed_model::Model;
use deepfeed_train::config::{DpoLoss, DpoSection};
use deepfeed_train::data::{PairSample, Sample};
use deepfeed_train::dpo;
use safetensors::SafeTensors;
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn tensor(bytes: &[u8], name: &str) -> Vec<f32> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(name).unwrap_or_else(|_| panic!("{name} not in the reference"));
    t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn sample(v: &Value, ids: &str, labels: &str) -> Sample {
    let ids: Vec<u32> = serde_json::from_value(v[ids].clone()).unwrap();
    let labels: Vec<i64> = serde_json::from_value(v[labels].clone()).unwrap();
    Sample::new(ids, labels.iter().map(|&l| l != -100).collect())
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

#[test]
fn dpo_loss_and_lora_gradients_match_peft() {
    let dir = fixture("tests/fixtures/dpo_llama");
    let json: Value = serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let pairs: Vec<PairSample> = json["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PairSample { chosen: sample(p, "chosen_ids", "chosen_labels"), rejected: sample(p, "rejected_ids", "rejected_labels") })
        .collect();
    let base_dir = fixture("../deepfeed-model/tests/fixtures/llama");
    let pad = 2;

    // reference = the base model (what the trainer's precompute sees with fresh adapters)
    let base = Model::load(&base_dir, &inference_device()).unwrap();
    let refs = dpo::reference_logps(&base, &pairs, 1, pad);
    let want_refs = tensor(&bytes, "ref_logps");
    for (i, r) in refs.iter().enumerate() {
        for k in 0..2 {
            assert!((r[k] - want_refs[2 * i + k] as f64).abs() < 1e-3, "ref log-prob {i},{k}: {} vs {}", r[k], want_refs[2 * i + k]);
        }
    }

    // policy = base + the non-zero PEFT adapter
    let device = training_device();
    let mut model = Model::load(&base_dir, &device).unwrap();
    model.load_adapter(&fixture("tests/fixtures/lora_llama")).unwrap();
    let mut lora = vec![];
    for (name, mut p) in model.network.params_mut() {
        let train = deepfeed_model::peft::is_adapter_param(&name);
        p.set_require_grad(train);
        if train {
            lora.push(name);
        }
    }
    let (beta, ls) = (json["beta"].as_f64().unwrap(), json["label_smoothing"].as_f64().unwrap());
    let cfg = DpoSection { beta, loss: DpoLoss::Sigmoid, label_smoothing: ls };
    let batch: Vec<&PairSample> = pairs.iter().collect();
    let (loss, stats) = dpo::batch_loss(&model.network, &model.rotary, &batch, &refs, &cfg, pad, &device);
    let loss: Tensor<1> = loss / pairs.len() as f64;
    let (ours, want) = (loss.clone().into_scalar::<f32>(), tensor(&bytes, "sigmoid.loss")[0]);
    eprintln!("DPO sigmoid loss {ours} vs PEFT {want}: |Δ| {:e}", (ours - want).abs());
    assert!((ours - want).abs() < 1e-5, "DPO loss {ours} vs PEFT {want}");
    assert_eq!(stats.pairs, 2);

    let grads = loss.backward();
    let mut worst = 0f64;
    for (name, p) in model.network.params_mut() {
        if !lora.contains(&name) {
            continue;
        }
        let ParamMut::Matrix(p) = p else { unreachable!() };
        let g = p.val().grad(&grads).expect("LoRA weight has a gradient").into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        let key = format!("grad.base_model.model.{}", name.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default."));
        let e = rel_err(&g, &tensor(&bytes, &key));
        worst = worst.max(e);
        assert!(e < 1e-4, "{name}: DPO gradient rel. error {e:e}");
    }
    eprintln!("DPO LoRA gradients: worst rel. error {worst:e} over {} tensors", lora.len());
    assert_eq!(lora.len(), 16);

    // IPO on the same pairs (value only)
    let ipo = DpoSection { beta, loss: DpoLoss::Ipo, label_smoothing: 0.0 };
    let valid = Model::load(&base_dir, &inference_device()).map(|mut m| {
        m.load_adapter(&fixture("tests/fixtures/lora_llama")).unwrap();
        m
    });
    let stats = dpo::evaluate(&valid.unwrap(), &pairs, &refs, &ipo, 2, pad);
    let want = tensor(&bytes, "ipo.loss")[0] as f64;
    assert!((stats.mean_loss() - want).abs() < 1e-4, "IPO loss {} vs {want}", stats.mean_loss());
}
