//! What `deepfeed export` writes runs in llama.cpp itself and gives the same greedy tokens as
//! deepfeed: a LoRA adapter trained on a tiny model, exported with `export gguf-adapter` and
//! applied with `llama-completion --lora` on the F16 base from `export gguf`, and the same adapter
//! merged into F16 and Q8_0 files.
//!
//! Needs a llama.cpp build (`scripts/build_llama_cpp.sh`): the directory in
//! `DEEPFEED_LLAMA_CPP_BIN`, or `llama-completion` (or an older `llama-cli`) on PATH. Without one
//! the test prints why and passes without checking anything:
//!
//!     scripts/build_llama_cpp.sh
//!     DEEPFEED_LLAMA_CPP_BIN=~/.cache/deepfeed/llama.cpp/bin cargo test --release -p deepfeed --test llama_cpp -- --nocapture
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use deepfeed_model::backend::inference_device;
use deepfeed_model::generate::{generate, GenerateOptions};
use deepfeed_model::Model;

fn deepfeed(args: &[&str], cwd: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_deepfeed")).args(args).current_dir(cwd).output().unwrap();
    assert!(out.status.success(), "deepfeed {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `llama-completion` (or `llama-cli` of builds before the split) from `DEEPFEED_LLAMA_CPP_BIN`
/// or PATH.
pub fn llama_completion() -> Option<PathBuf> {
    let names = ["llama-completion", "llama-cli"];
    let dirs: Vec<PathBuf> = match std::env::var_os("DEEPFEED_LLAMA_CPP_BIN") {
        Some(d) => vec![PathBuf::from(d)],
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect(),
    };
    names.iter().flat_map(|n| dirs.iter().map(move |d| d.join(n))).find(|p| p.is_file())
}

/// Greedy completion of `prompt` by llama.cpp: the generated text (stops at an end-of-generation
/// token or after `n` tokens).
fn llama_greedy(bin: &Path, model: &Path, lora: Option<&Path>, prompt: &str, n: usize) -> String {
    let mut cmd = Command::new(bin);
    cmd.args(["-m"]).arg(model);
    if let Some(l) = lora {
        cmd.arg("--lora").arg(l);
    }
    let n = n.to_string();
    cmd.args(["-p", prompt, "-n", &n, "--temp", "0", "--top-k", "1", "-s", "0", "-t", "1", "-c", "256"]);
    // --no-repack: weights stay in their GGUF layout (the AMX repacked path crashes in VMs that report
    // AMX without enabling it; see scripts/build_llama_cpp.sh)
    // (no --simple-io: with it, output after the prompt's last byte went missing in this build)
    cmd.args(["--no-warmup", "-no-cnv", "--no-display-prompt", "--no-repack"]);
    // stdout: the generated text, " [end of text]\n" when it stopped at EOS, then "\n\n". This
    // build now and then exits with status 0 before printing all of it (empty or cut output
    // without the final "\n\n"; stderr then lacks the timing summary too), or prints a token
    // twice: half the runs with `-t 2`, about 1 in 30 with `-t 1` (measured here), hence one
    // thread. Greedy decoding itself is
    // deterministic, so the text that most of three complete runs print is llama.cpp's answer.
    // stdout and stderr go to files: with pipes the losses were far more frequent.
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut complete: Vec<String> = vec![];
    for _ in 0..20 {
        let (o, e) = (std::fs::File::create(&out_path).unwrap(), std::fs::File::create(&err_path).unwrap());
        let status = cmd.stdin(Stdio::null()).stdout(o).stderr(e).status().unwrap();
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        assert!(status.success(), "{} failed on {}: {stderr}", bin.display(), model.display());
        let text = String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()).into_owned();
        if let Some(text) = text.strip_suffix("\n\n") {
            complete.push(text.strip_suffix(" [end of text]\n").unwrap_or(text).to_string());
            if complete.len() == 3 {
                break;
            }
        }
    }
    assert!(!complete.is_empty(), "{}: no complete output in 20 runs on {}", bin.display(), model.display());
    let count = |t: &String| complete.iter().filter(|c| *c == t).count();
    complete.iter().max_by_key(|t| count(t)).unwrap().clone()
}

fn deepfeed_greedy(model: &Model, prompt: &str, n: usize) -> String {
    let ids = model.tokenizer.encode(prompt, true).unwrap();
    let opts = GenerateOptions { max_new_tokens: n, ..Default::default() };
    generate(model, &ids, &opts, &mut |_| {}).unwrap().text
}

/// Trains a LoRA adapter on a tiny model of `arch` that changes its greedy continuations, exports
/// base, adapter and merged files, and checks llama.cpp against deepfeed on each.
fn check_arch(bin: &Path, arch: &str) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    // a larger init_std gives peaked output distributions: top-1 survives F16/Q8_0 rounding
    deepfeed(&["init-tiny", "--arch", arch, "--out", "base", "--init-std", "0.1", "--seed", "3"], p);
    let lines: String = (0..8).map(|i| format!("{{\"text\": \"The code of item {i} is K{i}{i}.\"}}\n")).collect();
    std::fs::write(p.join("codes.jsonl"), lines).unwrap();
    std::fs::write(
        p.join("t.yaml"),
        "model: base\ndata: codes.jsonl\noutput_dir: run\nlora:\n  r: 8\n  alpha: 16\n  target_modules: [all-linear]\n\
         epochs: 25\nbatch_size: 4\nlearning_rate: 0.01\nwarmup_steps: 5\nseed: 1\n",
    )
    .unwrap();
    deepfeed(&["train", "t.yaml"], p);
    deepfeed(&["export", "gguf", "--model", "base", "--type", "f16", "--out", "base-f16.gguf"], p);
    deepfeed(&["export", "gguf-adapter", "--adapter", "run/adapter", "--model", "base", "--out", "lora.gguf"], p);
    for ty in ["f16", "q8_0"] {
        deepfeed(&["export", "gguf", "--model", "base", "--adapter", "run/adapter", "--type", ty, "--out", &format!("merged-{ty}.gguf")], p);
    }

    let mut model = Model::load(&p.join("base"), &inference_device()).unwrap();
    let prompts = ["The code of item 3 is", "The code of item 6 is"];
    let n = 12;
    let base: Vec<String> = prompts.iter().map(|q| deepfeed_greedy(&model, q, n)).collect();
    model.load_adapter(&p.join("run/adapter")).unwrap();
    let tuned: Vec<String> = prompts.iter().map(|q| deepfeed_greedy(&model, q, n)).collect();
    eprintln!("{arch}: deepfeed base {base:?}, with the adapter {tuned:?}");
    assert_ne!(base, tuned, "the adapter should change the greedy continuation");

    let runs: [(&str, Option<&str>, &Vec<String>); 4] = [
        ("base-f16.gguf", None, &base),
        ("base-f16.gguf", Some("lora.gguf"), &tuned),
        ("merged-f16.gguf", None, &tuned),
        ("merged-q8_0.gguf", None, &tuned),
    ];
    let mut wrong = vec![];
    for (file, lora, want) in runs {
        for (q, w) in prompts.iter().zip(want.iter()) {
            let got = llama_greedy(bin, &p.join(file), lora.map(|l| p.join(l)).as_deref(), q, n);
            let what = format!("{arch} {file}{}: {q:?} -> llama.cpp {got:?}, deepfeed {w:?}", lora.map(|l| format!(" --lora {l}")).unwrap_or_default());
            eprintln!("{what}");
            // llama.cpp prints the bytes of a last token that ends inside a UTF-8 character (as �);
            // deepfeed's streamed text holds such bytes back
            let clean = |s: &str| s.trim_end().trim_end_matches('\u{FFFD}').to_string();
            if clean(&got) != clean(w) {
                wrong.push(what);
            }
        }
    }
    assert!(wrong.is_empty(), "llama.cpp and deepfeed differ:\n{}", wrong.join("\n"));
}

#[test]
fn exported_gguf_runs_in_llama_cpp_with_deepfeeds_greedy_tokens() {
    let Some(bin) = llama_completion() else {
        eprintln!(
            "skipped: no llama-completion / llama-cli in DEEPFEED_LLAMA_CPP_BIN or PATH (build one with scripts/build_llama_cpp.sh)"
        );
        return;
    };
    eprintln!("llama.cpp: {}", bin.display());
    for arch in ["llama", "qwen2"] {
        check_arch(&bin, arch);
    }
}
