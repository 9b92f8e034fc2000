//! deepfeed-eval against independent references: `scripts/make_eval_reference.py` computed the
//! target-token NLL and option log-likelihoods with transformers on the llama fixture model of
//! deepfeed-model, and ROUGE/BLEU with rouge-score, sacrebleu and nltk on python-jieba tokens.
use std::path::PathBuf;

use deepfeed_eval::accuracy::score_choices;
use deepfeed_eval::config::TaskDefaults;
use deepfeed_eval::perplexity::{encode_sample, score, text_perplexity};
use deepfeed_eval::text_overlap::{rouge_l, rouge_n, tokens, BleuStats};
use deepfeed_eval::{dataset, EvalConfig};
use deepfeed_model::backend::inference_device;
use deepfeed_model::Model;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deepfeed-model/tests/fixtures/llama")
}

fn reference() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("reference.json")).unwrap()).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn target_token_perplexity_matches_transformers() {
    let r = reference();
    let model = Model::load(&model_dir(), &inference_device()).unwrap();
    let samples = dataset::load(&fixtures().join("eval_ppl.jsonl"), &TaskDefaults::default()).unwrap();
    let (mut sum, mut count) = (0.0, 0);
    for (s, expect) in samples.iter().zip(r["perplexity"]["records"].as_array().unwrap()) {
        let ids = encode_sample(&model, s).unwrap().unwrap();
        let ref_ids: Vec<u32> = serde_json::from_value(expect["ids"].clone()).unwrap();
        assert_eq!(ids.ids, ref_ids, "line {}: token ids differ from the Python protocol", s.line);
        let (nll, n) = score(&model, &ids, 512, 511).unwrap();
        assert_eq!(n as u64, expect["tokens"].as_u64().unwrap(), "line {}", s.line);
        let e = expect["nll"].as_f64().unwrap();
        assert!(rel(nll, e) < 1e-5, "line {}: NLL {nll} vs transformers {e}", s.line);
        sum += nll;
        count += n;
    }
    let ppl = (sum / count as f64).exp();
    let e = r["perplexity"]["perplexity"].as_f64().unwrap();
    assert!(rel(ppl, e) < 1e-5, "perplexity {ppl} vs transformers {e} (rel {:e})", rel(ppl, e));

    // the sliding window (context 64, stride 24) on a longer text
    let w = &r["window"];
    let p = text_perplexity(&model, w["text"].as_str().unwrap(), w["context"].as_u64().unwrap() as usize, w["stride"].as_u64().unwrap() as usize).unwrap();
    assert_eq!(p.tokens as u64, w["tokens"].as_u64().unwrap());
    let e = w["perplexity"].as_f64().unwrap();
    assert!(rel(p.perplexity, e) < 1e-5, "windowed perplexity {} vs {e}", p.perplexity);
}

#[test]
fn multiple_choice_matches_hand_computed_loglikelihoods() {
    let r = reference();
    let model = Model::load(&model_dir(), &inference_device()).unwrap();
    let samples = dataset::load(&fixtures().join("eval_mc.jsonl"), &TaskDefaults::default()).unwrap();
    let (mut acc, mut acc_norm) = (0, 0);
    for (s, expect) in samples.iter().zip(r["multiple_choice"]["records"].as_array().unwrap()) {
        let c = score_choices(&model, &s.context, &s.task.choices, (512, 511)).unwrap();
        let lls: Vec<f64> = serde_json::from_value(expect["loglik"].clone()).unwrap();
        for (a, b) in c.loglik.iter().zip(&lls) {
            assert!(rel(*a, *b) < 1e-5, "line {}: option log-likelihood {a} vs {b}", s.line);
        }
        assert_eq!(c.bytes, serde_json::from_value::<Vec<usize>>(expect["bytes"].clone()).unwrap());
        assert_eq!(c.pick as u64, expect["pick"].as_u64().unwrap(), "line {}", s.line);
        assert_eq!(c.pick_norm as u64, expect["pick_norm"].as_u64().unwrap(), "line {}", s.line);
        acc += (Some(c.pick) == s.task.answer) as usize;
        acc_norm += (Some(c.pick_norm) == s.task.answer) as usize;
    }
    let n = samples.len() as f64;
    assert_eq!(acc as f64 / n, r["multiple_choice"]["acc"].as_f64().unwrap());
    assert_eq!(acc_norm as f64 / n, r["multiple_choice"]["acc_norm"].as_f64().unwrap());
}

#[test]
fn rouge_and_bleu_match_python_packages() {
    let r = reference();
    let o = &r["overlap"];
    let pairs = o["pairs"].as_array().unwrap();
    let mut total = BleuStats::default();
    let (mut r1, mut r2, mut rl) = (0.0, 0.0, 0.0);
    for p in pairs {
        let t: Vec<String> = serde_json::from_value(p["target_tokens"].clone()).unwrap();
        let h: Vec<String> = serde_json::from_value(p["prediction_tokens"].clone()).unwrap();
        // jieba-rs segments exactly as python jieba on this fixture
        assert_eq!(tokens(p["target"].as_str().unwrap()), t);
        assert_eq!(tokens(p["prediction"].as_str().unwrap()), h);
        let close = |a: f64, b: &Value, what: &str| assert!((a - b.as_f64().unwrap()).abs() < 1e-3, "{what}: {a} vs {b} for {p}");
        close(rouge_n(&t, &h, 1), &p["rouge1"], "rouge1");
        close(rouge_n(&t, &h, 2), &p["rouge2"], "rouge2");
        close(rouge_l(&t, &h), &p["rougeL"], "rougeL");
        let s = BleuStats::of(&t, &h);
        close(s.bleu(true), &p["sentence_bleu"], "sentence_bleu");
        total.add(&s);
        r1 += rouge_n(&t, &h, 1);
        r2 += rouge_n(&t, &h, 2);
        rl += rouge_l(&t, &h);
    }
    let n = pairs.len() as f64;
    let targets: Vec<(&str, &str)> = pairs.iter().map(|p| (p["target"].as_str().unwrap(), p["prediction"].as_str().unwrap())).collect();
    let c = deepfeed_eval::text_overlap::corpus(&targets).unwrap();
    for (a, b, what) in [(c.rouge1, r1 / n, "rouge1"), (c.rouge2, r2 / n, "rouge2"), (c.rouge_l, rl / n, "rougeL")] {
        assert!((a - b).abs() < 1e-12, "{what}");
        assert!((a - o[what].as_f64().unwrap()).abs() < 1e-3, "{what}: {a} vs {}", o[what]);
    }
    assert!((c.bleu - o["corpus_bleu"].as_f64().unwrap()).abs() < 1e-3, "corpus BLEU {} vs sacrebleu {}", c.bleu, o["corpus_bleu"]);
    assert!((c.bleu - o["nltk_corpus_bleu"].as_f64().unwrap()).abs() < 1e-3, "corpus BLEU {} vs nltk {}", c.bleu, o["nltk_corpus_bleu"]);
}

#[test]
fn bad_inputs_name_file_line_and_field() {
    let d = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        ("empty.jsonl", "\n\n", "the file is empty"),
        ("notarget.jsonl", "{\"input_text\": \"q\", \"target_text\": \"a\"}\n{\"input_text\": \"q2\"}\n", "notarget.jsonl:2: field `target_text`"),
        ("nochoices.jsonl", "{\"input_text\": \"q\", \"metadata\": {\"eval\": {\"kind\": \"choice\", \"answer\": 0}}}\n", "nochoices.jsonl:1: multiple choice without `metadata.eval.choices`"),
        ("badjson.jsonl", "{\"input_text\": \n", "badjson.jsonl:1: not valid JSON"),
    ];
    for (name, text, expect) in cases {
        let e = dataset::load(&write(name, text), &TaskDefaults::default()).unwrap_err().to_string();
        assert!(e.contains(expect), "{name}: {e}");
    }
    // the config refuses unknown fields and names missing ones
    let e = EvalConfig::from_value(serde_json::json!({"model": "m", "data": "d", "gatez": {}})).unwrap_err().to_string();
    assert!(e.contains("gatez"), "{e}");
    let e = EvalConfig::from_value(serde_json::json!({"model": "m"})).unwrap_err().to_string();
    assert!(e.contains("`data` is required"), "{e}");
    let e = EvalConfig::from_value(serde_json::json!({"model": "m", "data": "d", "gates": {"min_accuracy": 85}})).unwrap_err().to_string();
    assert!(e.contains("gates.min_accuracy"), "{e}");
}
