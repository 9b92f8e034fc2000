//! End-to-end training runs on tiny models: memorisation, resume equivalence, bad inputs.
use std::path::{Path, PathBuf};

use deepfeed_model::backend::inference_device;
use deepfeed_model::generate::{generate, GenerateOptions};
use deepfeed_model::tiny::{write_tiny_model, TinySpec};
use deepfeed_model::{Architecture, ChatMessage, Model};
use deepfeed_train::config::{LoraSection, Scheduler};
use deepfeed_train::{train, Method, Outcome, RunOptions, TrainConfig};

fn qa_pairs() -> Vec<(String, String)> {
    let fruits = ["apple", "pear", "plum", "fig", "kiwi"];
    (0..20)
        .map(|i| (format!("What is the code of item {i}?"), format!("Item {i} is {} {}.", fruits[i % 5], 100 + i * 7)))
        .collect()
}

fn write_jsonl(path: &Path, rows: &[(String, String)]) {
    let text: String = rows
        .iter()
        .map(|(q, a)| serde_json::json!({"input_text": q, "target_text": a, "metadata": {"source": "test"}}).to_string() + "\n")
        .collect();
    std::fs::write(path, text).unwrap();
}

fn setup(dir: &Path) -> TrainConfig {
    let model = dir.join("base");
    write_tiny_model(&TinySpec { init_std: 0.2, ..TinySpec::tiny(Architecture::Qwen2) }, &model).unwrap();
    let data = dir.join("train.jsonl");
    write_jsonl(&data, &qa_pairs());
    TrainConfig {
        model,
        data,
        output_dir: dir.join("run"),
        method: Method::Lora,
        objective: Default::default(),
        dpo: Default::default(),
        adapter: None,
        lora: LoraSection { r: 16, alpha: 32.0, target_modules: vec!["all-linear".into()], ..Default::default() },
        freeze: Default::default(),
        prefix: Default::default(),
        val_data: None,
        val_split: 0.0,
        epochs: 1,
        max_steps: None,
        batch_size: 4,
        grad_accum: 1,
        learning_rate: 1e-2,
        weight_decay: 0.0,
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_epsilon: 1e-8,
        lr_scheduler: Scheduler::Constant,
        warmup_steps: 0,
        warmup_ratio: 0.0,
        max_grad_norm: 1.0,
        max_seq_len: 128,
        train_on_prompt: false,
        packing: false,
        seed: 7,
        save_every: 0,
        keep_last: 2,
        eval_every: 0,
        early_stopping_patience: None,
        gradient_checkpointing: false,
        base_dtype: Default::default(),
    }
}

fn quiet() -> RunOptions {
    RunOptions { quiet: true, ..Default::default() }
}

fn greedy_answer(model: &Model, q: &str) -> String {
    let prompt = model.tokenizer.apply_chat_template(&[ChatMessage::new("user", q)], true).unwrap();
    let ids = model.tokenizer.encode(&prompt, false).unwrap();
    generate(model, &ids, &GenerateOptions { max_new_tokens: 24, ..Default::default() }, &mut |_| {}).unwrap().text
}

#[test]
fn lora_memorises_twenty_answers() {
    let d = tempfile::tempdir().unwrap();
    let cfg = TrainConfig { epochs: 250, learning_rate: 5e-3, lr_scheduler: Scheduler::Cosine, warmup_steps: 20, ..setup(d.path()) };
    let summary = train(&cfg, &quiet()).unwrap();
    assert_eq!(summary.outcome, Outcome::Finished);
    assert_eq!(summary.steps, 5 * 250);
    assert!(summary.final_train_loss.unwrap() < 0.05, "{summary:?}");
    // a fresh load of base + the PEFT adapter answers every question exactly
    let mut model = Model::load(&cfg.model, &inference_device()).unwrap();
    model.load_adapter(&summary.output).unwrap();
    let mut wrong = vec![];
    for (q, a) in qa_pairs() {
        let got = greedy_answer(&model, &q);
        if got.trim() != a {
            wrong.push(format!("{q} -> {got:?} (want {a:?})"));
        }
    }
    assert!(wrong.is_empty(), "{} wrong (final loss {:?}):\n{}", wrong.len(), summary.final_train_loss, wrong.join("\n"));
    // metrics.jsonl has one line per step, loss going down
    let metrics = std::fs::read_to_string(cfg.output_dir.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = metrics.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap()).collect();
    assert_eq!(losses.len(), summary.steps);
    assert!(losses[0] > 5.0 * losses[losses.len() - 1]);
    // loss.png is drawn whenever a system font is there to label it
    if Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
        let png = std::fs::read(summary.loss_plot.expect("loss.png written")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}

#[test]
fn early_stopping_stops_when_validation_stops_improving() {
    let d = tempfile::tempdir().unwrap();
    // a learning rate this high makes the validation loss climb after the first steps
    let cfg = TrainConfig { epochs: 50, learning_rate: 0.5, val_split: 0.2, eval_every: 1, early_stopping_patience: Some(3), ..setup(d.path()) };
    let s = train(&cfg, &quiet()).unwrap();
    assert_eq!(s.outcome, Outcome::EarlyStopped, "{s:?}");
    assert!(s.steps < s.total_steps);
    let vals: Vec<f64> = std::fs::read_to_string(cfg.output_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["val_loss"].as_f64())
        .collect();
    let best = vals.iter().cloned().fold(f64::MAX, f64::min);
    assert!(vals[vals.len() - 3..].iter().all(|&v| v >= best), "{vals:?}");
    assert!(s.output.join("adapter_model.safetensors").is_file());
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn interrupted_and_resumed_run_equals_uninterrupted() {
    let d = tempfile::tempdir().unwrap();
    let base = TrainConfig {
        epochs: 2,
        grad_accum: 2,
        batch_size: 3,
        lr_scheduler: Scheduler::Cosine,
        warmup_steps: 1,
        weight_decay: 0.01,
        lora: LoraSection { r: 4, alpha: 8.0, dropout: 0.1, target_modules: vec!["q_proj".into(), "v_proj".into()], ..Default::default() },
        save_every: 2,
        ..setup(d.path())
    };
    let whole = train(&TrainConfig { output_dir: d.path().join("whole"), ..base.clone() }, &quiet()).unwrap();
    let cfg = TrainConfig { output_dir: d.path().join("split"), ..base.clone() };
    let first = train(&cfg, &RunOptions { stop_after: Some(3), ..quiet() }).unwrap();
    assert_eq!((first.outcome, first.steps), (Outcome::Interrupted, 3));
    // a fresh start into the same run directory is refused: it would lose the checkpoints
    let e = train(&cfg, &quiet()).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    let second = train(&cfg, &RunOptions { resume: true, ..quiet() }).unwrap();
    assert_eq!(second.steps, whole.steps);
    let (a, b) = (losses(&whole.output.parent().unwrap().to_path_buf()), losses(&cfg.output_dir));
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() < 1e-5, "step {}: {x} vs {y}", i + 1);
    }
    let wa = std::fs::read(whole.output.join("adapter_model.safetensors")).unwrap();
    let wb = std::fs::read(second.output.join("adapter_model.safetensors")).unwrap();
    assert_eq!(wa, wb, "final adapters differ");
    // keep_last = 2
    let ckpts: Vec<PathBuf> = std::fs::read_dir(cfg.output_dir.join("checkpoints")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(ckpts.len(), 2, "{ckpts:?}");
}

#[test]
fn full_and_freeze_finetuning_learn() {
    let d = tempfile::tempdir().unwrap();
    let base = setup(d.path());
    for (method, name) in [(Method::Full, "full"), (Method::Freeze, "freeze")] {
        let mut cfg = TrainConfig { method, epochs: 3, learning_rate: 3e-3, output_dir: d.path().join(name), ..base.clone() };
        cfg.freeze.trainable_layers = 1;
        cfg.freeze.trainable_modules = vec!["lm_head".into()];
        let s = train(&cfg, &quiet()).unwrap();
        let l = losses(&cfg.output_dir);
        assert!(l[l.len() - 1] < l[0], "{name}: {l:?}");
        assert!(s.trainable_parameters < s.total_parameters || method == Method::Full);
        // the saved model loads and differs from the base
        let tuned = Model::load(&s.output, &inference_device()).unwrap();
        let base = Model::load(&cfg.model, &inference_device()).unwrap();
        let ids = base.tokenizer.encode("What is the code of item 3?", true).unwrap();
        let a = tuned.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
        let b = base.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
        assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-3));
    }
}

#[test]
fn dora_trains_and_reloads() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = TrainConfig { epochs: 4, ..setup(d.path()) };
    cfg.lora.use_dora = true;
    let s = train(&cfg, &quiet()).unwrap();
    let l = losses(&cfg.output_dir);
    assert!(l[l.len() - 1] < l[0], "{l:?}");
    let adapter_cfg = std::fs::read_to_string(s.output.join("adapter_config.json")).unwrap();
    assert!(adapter_cfg.contains("\"use_dora\": true"), "{adapter_cfg}");
    // reload base + adapter: same logits as the merged model
    let mut m = Model::load(&cfg.model, &inference_device()).unwrap();
    m.load_adapter(&s.output).unwrap();
    let ids = m.tokenizer.encode("What is the code of item 3?", true).unwrap();
    let a = m.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
    m.merge_adapters();
    let b = m.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4));
}

/// bf16 base weights: half the memory, same training within bf16 rounding; gradient
/// checkpointing gives the same run.
#[test]
fn bf16_base_and_gradient_checkpointing() {
    use deepfeed_model::gguf::GgmlType;
    use deepfeed_model::layers::MatrixWeight;
    use deepfeed_train::config::WeightDType;
    let d = tempfile::tempdir().unwrap();
    let base = TrainConfig { max_steps: Some(6), ..setup(d.path()) };
    let f32_run = train(&TrainConfig { output_dir: d.path().join("f32"), ..base.clone() }, &quiet()).unwrap();
    let bf16_run = train(&TrainConfig { output_dir: d.path().join("bf16"), base_dtype: WeightDType::Bf16, ..base.clone() }, &quiet()).unwrap();
    let ckpt_run = train(&TrainConfig { output_dir: d.path().join("ckpt"), gradient_checkpointing: true, ..base.clone() }, &quiet()).unwrap();
    let (a, b, c) = (losses(&d.path().join("f32")), losses(&d.path().join("bf16")), losses(&d.path().join("ckpt")));
    for i in 0..a.len() {
        assert!((a[i] - b[i]).abs() < 0.02 * a[i], "step {i}: f32 {} vs bf16 {}", a[i], b[i]);
        assert!((a[i] - c[i]).abs() < 1e-5, "step {i}: plain {} vs checkpointing {}", a[i], c[i]);
    }
    assert_eq!(f32_run.steps, bf16_run.steps);
    assert_eq!(ckpt_run.steps, f32_run.steps);
    // the frozen matrices really are bf16 (blocks widened tile by tile, see quantized/)
    let mut m = Model::load_as(&base.model, &inference_device(), WeightDType::Bf16).unwrap();
    for (name, l) in m.network.linears_mut() {
        let MatrixWeight::Quantized(q) = &l.weight else { panic!("{name} is not kept as bf16") };
        assert_eq!(q.ggml_type(), GgmlType::BF16, "{name}");
    }
    let e = train(&TrainConfig { method: Method::Full, base_dtype: WeightDType::Bf16, ..base.clone() }, &quiet()).unwrap_err().to_string();
    assert!(e.contains("bf16"), "{e}");
}

/// A quantised base (safetensors: Q8_0 blocks at load) trains LoRA like the f32 base, within
/// Q8_0 rounding; the adapter it writes loads on the f32 base; full fine-tuning is refused.
#[test]
fn quantized_base_trains_lora_like_f32() {
    use deepfeed_train::config::WeightDType;
    let d = tempfile::tempdir().unwrap();
    let base = TrainConfig { max_steps: Some(6), ..setup(d.path()) };
    let f_run = train(&TrainConfig { output_dir: d.path().join("f32"), ..base.clone() }, &quiet()).unwrap();
    let q_run = train(&TrainConfig { output_dir: d.path().join("q"), base_dtype: WeightDType::Quantized, ..base.clone() }, &quiet()).unwrap();
    assert_eq!(q_run.steps, 6);
    // the quantised matrices still count in the model's size; the same parameters train
    assert_eq!((q_run.total_parameters, q_run.trainable_parameters), (f_run.total_parameters, f_run.trainable_parameters));
    let (a, b) = (losses(&d.path().join("f32")), losses(&d.path().join("q")));
    assert_eq!(a.len(), b.len());
    for i in 0..a.len() {
        assert!((a[i] - b[i]).abs() < 0.01 * a[i], "step {i}: f32 {} vs quantized {}", a[i], b[i]);
    }
    // the loss fell: gradients reached the adapters through the quantised matmuls
    assert!(b[b.len() - 1] < b[0], "{b:?}");
    // every projection of the loaded model is quantised, the adapter loads on the f32 base
    let mut m = Model::load_as(&base.model, &inference_device(), WeightDType::Quantized).unwrap();
    assert!(m.network.linears_mut().iter().all(|(_, l)| l.weight.is_quantized()));
    let mut f = Model::load(&base.model, &inference_device()).unwrap();
    f.load_adapter(&q_run.output).unwrap();
    let e = train(&TrainConfig { method: Method::Full, base_dtype: WeightDType::Quantized, ..base.clone() }, &quiet()).unwrap_err().to_string();
    assert!(e.contains("base_dtype: quantized") && e.contains("method: lora or prefix"), "{e}");
    // DoRA reads W itself (its row norms): a quantised W is dequantised for it, same run
    let mut dora = base.clone();
    dora.lora.use_dora = true;
    train(&TrainConfig { output_dir: d.path().join("dora-f32"), ..dora.clone() }, &quiet()).unwrap();
    train(&TrainConfig { output_dir: d.path().join("dora-q"), base_dtype: WeightDType::Quantized, ..dora }, &quiet()).unwrap();
    let (a, b) = (losses(&d.path().join("dora-f32")), losses(&d.path().join("dora-q")));
    for i in 0..a.len() {
        assert!((a[i] - b[i]).abs() < 0.01 * a[i], "DoRA step {i}: f32 {} vs quantized {}", a[i], b[i]);
    }
}

#[test]
fn prefix_tuning_trains_saves_and_reloads() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = TrainConfig { method: Method::Prefix, epochs: 12, learning_rate: 5e-2, ..setup(d.path()) };
    cfg.prefix.num_virtual_tokens = 4;
    let s = train(&cfg, &quiet()).unwrap();
    // mean loss of the last epoch (5 steps) well below the first
    let l = losses(&cfg.output_dir);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(mean(&l[l.len() - 5..]) < mean(&l[..5]) - 0.2, "{l:?}");
    assert_eq!(s.trainable_parameters, 4 * 2 * 2 * 2 * 16, "N x layers x (k, v) x kv heads x head_dim");
    let text = std::fs::read_to_string(s.output.join("adapter_config.json")).unwrap();
    assert!(text.contains("PREFIX_TUNING"), "{text}");
    let mut m = Model::load(&cfg.model, &inference_device()).unwrap();
    m.load_adapter(&s.output).unwrap();
    let answer = greedy_answer(&m, "What is the code of item 3?");
    assert!(!answer.is_empty());
    let e = m.save_pretrained(&d.path().join("merged"), 1 << 30).unwrap_err().to_string();
    assert!(e.contains("prefix"), "{e}");
}

#[test]
fn bad_inputs_give_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let cfg = setup(d.path());
    let err = |c: TrainConfig| train(&c, &quiet()).unwrap_err().to_string();

    let mut c = cfg.clone();
    c.lora.target_modules = vec!["qq_proj".into()];
    assert!(err(c).contains("unknown LoRA target module \"qq_proj\""));
    // a DeepSeek module name on a Qwen2 model adapts nothing: refused, naming what it has
    let mut c = cfg.clone();
    c.lora.target_modules = vec!["kv_b_proj".into()];
    let e = err(c);
    assert!(e.contains("none is a module of this Qwen2ForCausalLM model") && e.contains("q_proj, up_proj, v_proj"), "{e}");

    let mut c = cfg.clone();
    c.lora.r = 0;
    assert!(err(c).contains("rank"));

    let empty = d.path().join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    let e = err(TrainConfig { data: empty, ..cfg.clone() });
    assert!(e.contains("empty.jsonl") && e.contains("no usable sample"), "{e}");

    let bad = d.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"input_text\": \"q\", \"target_text\": \"a\"}\n{\"input_text\": \"only a question\"}\n").unwrap();
    let e = err(TrainConfig { data: bad, ..cfg.clone() });
    assert!(e.contains("bad.jsonl:2:") && e.contains("target_text"), "{e}");

    let e = err(TrainConfig { max_seq_len: 100_000, ..cfg.clone() });
    assert!(e.contains("longer than the model's context"), "{e}");

    let e = err(TrainConfig { batch_size: 0, ..cfg.clone() });
    assert!(e.contains("batch_size"), "{e}");

    // a corrupted checkpoint is reported on resume, and nothing is overwritten
    let c = TrainConfig { max_steps: Some(2), save_every: 1, ..cfg.clone() };
    train(&c, &quiet()).unwrap();
    let state = c.output_dir.join("checkpoints/step-2/trainable.safetensors");
    std::fs::write(&state, b"garbage").unwrap();
    let e = train(&c, &RunOptions { resume: true, ..quiet() }).unwrap_err().to_string();
    assert!(e.contains("checkpoint") && e.contains("step-2"), "{e}");
    assert!(c.output_dir.join("checkpoints/step-1/trainable.safetensors").is_file());
}

#[test]
fn example_configs_parse_and_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().is_some_and(|f| f == "clean.yaml") {
            // the example cleaning pipeline (deepfeed clean --config), not a training run
            let c = deepfeed_data::clean_config::CleanConfig::from_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            c.check().unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            continue;
        }
        if p.extension().is_some_and(|x| x == "yaml") {
            let cfg = TrainConfig::from_yaml_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            cfg.validate().unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(cfg.data.is_file(), "{}: data {} missing", p.display(), cfg.data.display());
            n += 1;
        }
    }
    assert!(n >= 4);
    // a typo in a field name is an error, not a silent default
    let bad = tempfile::tempdir().unwrap();
    let f = bad.path().join("x.yaml");
    std::fs::write(&f, "model: m\ndata: d\noutput_dir: o\nlearning_rte: 0.1\n").unwrap();
    let e = TrainConfig::from_yaml_file(&f).unwrap_err().to_string();
    assert!(e.contains("learning_rte") && e.contains("x.yaml"), "{e}");
}

/// A packed batch gives exactly the loss and gradients of the same samples unpacked.
#[test]
fn packed_batch_equals_separate_samples() {
    use deepfeed_model::backend::training_device;
    use deepfeed_train::data::{load_dataset, pack, Sample};
    use deepfeed_train::trainer::batch_loss;
    let d = tempfile::tempdir().unwrap();
    let cfg = setup(d.path());
    let model = Model::load(&cfg.model, &training_device()).unwrap();
    let data = load_dataset(&cfg.data, &model.tokenizer, 128, false).unwrap().samples;
    let samples = &data[..6];
    let packed = pack(samples, 128, 1);
    assert!(packed.len() < samples.len() && packed.iter().any(|p| p.segments.len() > 1));
    let device = training_device();
    let refs: Vec<&Sample> = samples.iter().collect();
    let (a, na) = batch_loss(&model.network, &model.rotary, &refs, 2, &device);
    let prefs: Vec<&Sample> = packed.iter().collect();
    let (b, nb) = batch_loss(&model.network, &model.rotary, &prefs, 2, &device);
    assert_eq!(na, nb);
    let (a, b) = (a.into_scalar::<f32>(), b.into_scalar::<f32>());
    assert!((a - b).abs() / a < 1e-5, "unpacked {a} vs packed {b}");
}

/// LoRA on Gemma 3 (sliding-window layers, (1 + w) sandwich norms, GeGLU, tied head): the loss
/// goes down and the PEFT adapter reloads onto the base with the logits of the merged model.
#[test]
fn lora_trains_gemma3() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("gemma3");
    let spec = TinySpec { init_std: 0.2, tie_word_embeddings: true, ..TinySpec::tiny(Architecture::Gemma3) };
    write_tiny_model(&spec, &base).unwrap();
    let cfg = TrainConfig { epochs: 4, model: base, ..setup(d.path()) };
    let s = train(&cfg, &quiet()).unwrap();
    let l = losses(&cfg.output_dir);
    assert!(l[l.len() - 1] < 0.8 * l[0], "{l:?}");
    let mut m = Model::load(&cfg.model, &inference_device()).unwrap();
    m.load_adapter(&s.output).unwrap();
    let ids = m.tokenizer.encode("What is the code of item 3?", true).unwrap();
    let a = m.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
    m.merge_adapters();
    let b = m.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4));
}

/// LoRA on tiny DeepSeek-V2 (compressed query, softmax router) and V3 (q_proj, sigmoid router):
/// `all-linear` adapts the latent-attention projections and every expert's SwiGLU under their
/// PEFT names, the loss goes down, and the saved adapter reloads: it changes the base logits and
/// gives the merged model's.
#[test]
fn lora_trains_deepseek() {
    for arch in [Architecture::DeepseekV2, Architecture::DeepseekV3] {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("deepseek");
        write_tiny_model(&TinySpec { init_std: 0.2, ..TinySpec::tiny(arch) }, &base).unwrap();
        let cfg = TrainConfig { epochs: 4, model: base, ..setup(d.path()) };
        let s = train(&cfg, &quiet()).unwrap();
        let l = losses(&cfg.output_dir);
        assert!(l[l.len() - 1] < 0.8 * l[0], "{arch:?}: {l:?}");

        let adapter_cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(s.output.join("adapter_config.json")).unwrap()).unwrap();
        let targets: Vec<&str> = adapter_cfg["target_modules"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let q = if arch == Architecture::DeepseekV2 { vec!["q_a_proj", "q_b_proj"] } else { vec!["q_proj"] };
        for t in q.iter().chain(&["kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]) {
            assert!(targets.contains(t), "{arch:?}: {t} missing from {targets:?}");
        }
        assert!(!targets.contains(&"k_proj"), "{targets:?}");
        let bytes = std::fs::read(s.output.join("adapter_model.safetensors")).unwrap();
        let names: Vec<String> = safetensors::SafeTensors::deserialize(&bytes).unwrap().names().into_iter().map(String::from).collect();
        for n in [
            "base_model.model.model.layers.1.mlp.experts.7.gate_proj.lora_A.weight",
            "base_model.model.model.layers.1.mlp.shared_experts.down_proj.lora_B.weight",
            "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight",
            "base_model.model.model.layers.1.self_attn.kv_b_proj.lora_B.weight",
        ] {
            assert!(names.iter().any(|x| x == n), "{arch:?}: {n} not saved");
        }

        let mut m = Model::load(&cfg.model, &inference_device()).unwrap();
        let ids = m.tokenizer.encode("What is the code of item 3?", true).unwrap();
        let base_logits = m.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
        m.load_adapter(&s.output).unwrap();
        let a = m.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
        assert!(a.iter().zip(&base_logits).any(|(x, y)| (x - y).abs() > 1e-2), "{arch:?}: the adapter changes nothing");
        m.merge_adapters();
        let b = m.logits(&ids).unwrap().into_data().try_into_vec::<f32>().unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4), "{arch:?}: reloaded adapter != merged");
    }
}

/// Full fine-tuning of a tiny DeepSeek-V3: the loss goes down, the saved model loads, the router
/// weights were trained (the routing weights are in the graph) and the router's
/// `e_score_correction_bias`, a buffer in transformers, is saved unchanged.
#[test]
fn full_finetuning_trains_deepseek_router() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("deepseek");
    write_tiny_model(&TinySpec { init_std: 0.2, ..TinySpec::tiny(Architecture::DeepseekV3) }, &base).unwrap();
    let cfg = TrainConfig { method: Method::Full, epochs: 3, learning_rate: 3e-3, model: base, ..setup(d.path()) };
    let s = train(&cfg, &quiet()).unwrap();
    let l = losses(&cfg.output_dir);
    assert!(l[l.len() - 1] < l[0], "{l:?}");
    let read = |dir: &Path, name: &str| -> Vec<f32> {
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32);
        t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    };
    let gate = "model.layers.1.mlp.gate.weight";
    let bias = "model.layers.1.mlp.gate.e_score_correction_bias";
    assert_ne!(read(&s.output, gate), read(&cfg.model, gate), "the router was not trained");
    assert_eq!(read(&s.output, bias), read(&cfg.model, bias));
    Model::load(&s.output, &inference_device()).unwrap();
}
