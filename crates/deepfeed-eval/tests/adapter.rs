//! An adapter trained for another base model is refused with both names; the baseline toggle
//! gives exactly the base model's numbers.
use deepfeed_eval::adapter::{attach, check_adapter_fits, detach};
use deepfeed_model::backend::inference_device;
use deepfeed_model::lora::LoraConfig;
use deepfeed_model::peft::AdapterConfig;
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::{Architecture, Model};

#[test]
fn adapter_for_another_base_is_refused_with_both_names() {
    let d = tempfile::tempdir().unwrap();
    let small = d.path().join("small-base");
    let wide = d.path().join("wide-base");
    let twin = d.path().join("other-name");
    write_tiny_model(&TinySpec::tiny(Architecture::Llama), &small).unwrap();
    write_tiny_model(&TinySpec { hidden_size: 32, intermediate_size: 64, ..TinySpec::tiny(Architecture::Llama) }, &wide).unwrap();
    write_tiny_model(&TinySpec { seed: 5, ..TinySpec::tiny(Architecture::Llama) }, &twin).unwrap();

    let mut m = Model::load(&small, &inference_device()).unwrap();
    let cfg = LoraConfig { r: 2, lora_alpha: 4.0, target_modules: vec!["all-linear".into()], ..Default::default() };
    m.add_lora(&cfg, 1).unwrap();
    // a non-zero B so the adapter changes the output
    for (_, l) in m.network.linears_mut() {
        if let Some(a) = &mut l.lora {
            a.lora_b = burn::module::Param::from_tensor(a.lora_b.val().ones_like() * 0.05);
        }
    }
    let adapter = d.path().join("adapter");
    m.save_adapter(&AdapterConfig::Lora(cfg), &small.to_string_lossy(), &adapter).unwrap();

    // same model: accepted; the toggle reproduces the base model exactly
    let mut same = Model::load(&small, &inference_device()).unwrap();
    check_adapter_fits(&mut same, &adapter, false).unwrap();
    let ids = same.tokenizer.encode("Hello world 你好", true).unwrap();
    let base_nll = same.token_nll(&ids).unwrap();
    same.load_adapter(&adapter).unwrap();
    let tuned_nll = same.token_nll(&ids).unwrap();
    assert_ne!(base_nll, tuned_nll);
    let off = detach(&mut same);
    assert_eq!(same.token_nll(&ids).unwrap(), base_nll);
    attach(&mut same, off);
    assert_eq!(same.token_nll(&ids).unwrap(), tuned_nll);

    // other shapes: refused, naming both models and the tensor
    let mut w = Model::load(&wide, &inference_device()).unwrap();
    let e = check_adapter_fits(&mut w, &adapter, true).unwrap_err().to_string();
    assert!(e.contains("small-base") && e.contains("wide-base") && e.contains("lora_"), "{e}");

    // same shapes, another name: refused unless allowed
    let mut t = Model::load(&twin, &inference_device()).unwrap();
    let e = check_adapter_fits(&mut t, &adapter, false).unwrap_err().to_string();
    assert!(e.contains("small-base") && e.contains("other-name") && e.contains("allow_base_mismatch"), "{e}");
    check_adapter_fits(&mut t, &adapter, true).unwrap();
}
