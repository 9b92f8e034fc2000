//! `deepfeed export gguf | gguf-adapter | ollama`: arguments only; the work is in
//! `deepfeed_model::gguf::{export, ollama}`.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use deepfeed_model::backend::inference_device;
use deepfeed_model::fsutil::{write_dir_atomically, write_file_atomically};
use deepfeed_model::gguf::export::{export_lora_adapter, export_model, hf_chat_template, BaseInfo, ExportReport};
use deepfeed_model::gguf::ollama::{modelfile, ModelfileSpec};
use deepfeed_model::gguf::quantize::FileType;
use deepfeed_model::gguf::GgufFile;
use deepfeed_model::Model;

#[derive(Subcommand)]
pub enum ExportCommand {
    /// A model (with an adapter merged) as a GGUF file for llama.cpp / Ollama
    Gguf(GgufArgs),
    /// A PEFT LoRA adapter as a llama.cpp GGUF LoRA adapter
    GgufAdapter(GgufAdapterArgs),
    /// A directory with GGUF file(s) and an Ollama Modelfile (`ollama create NAME -f DIR/Modelfile`)
    Ollama(OllamaArgs),
}

#[derive(Args)]
pub struct GgufArgs {
    /// Model directory (Hugging Face layout)
    #[arg(long)]
    model: PathBuf,
    /// PEFT LoRA/DoRA adapter directory to merge in first
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// f16, q8_0 or q4_k_m (llama.cpp's recipe: Q4_K, Q6_K for output, half of attn_v/ffn_down)
    #[arg(long = "type", default_value = "q4_k_m")]
    ty: String,
    /// Output .gguf file (must not exist yet)
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct GgufAdapterArgs {
    /// PEFT LoRA adapter directory
    #[arg(long)]
    adapter: PathBuf,
    /// The base model: a Hugging Face directory or a .gguf file
    #[arg(long)]
    model: PathBuf,
    /// Output .gguf file (must not exist yet)
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct OllamaArgs {
    /// Base model: a Hugging Face directory (exported to DIR/model.gguf) or a .gguf file (used in place)
    #[arg(long)]
    model: PathBuf,
    /// PEFT LoRA adapter directory: written as DIR/adapter.gguf and referenced by ADAPTER
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// GGUF type when --model is a directory: f16, q8_0 or q4_k_m
    #[arg(long = "type", default_value = "q4_k_m")]
    ty: String,
    /// An Ollama Go template file to use instead of converting the model's chat template
    #[arg(long)]
    template: Option<PathBuf>,
    /// Output directory (must not exist yet)
    #[arg(long)]
    out: PathBuf,
}

pub fn run(cmd: ExportCommand) -> Result<()> {
    match cmd {
        ExportCommand::Gguf(a) => run_gguf(a),
        ExportCommand::GgufAdapter(a) => run_gguf_adapter(a),
        ExportCommand::Ollama(a) => run_ollama(a),
    }
}

fn print_report(what: &str, r: &ExportReport) {
    let types: Vec<String> = r.types.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!("{what} -> {} ({} tensors: {}; {:.1} MB)", r.path.display(), r.n_tensors, types.join(", "), r.bytes as f64 / 1e6);
}

fn load_model(dir: &Path, adapter: Option<&PathBuf>) -> Result<Model> {
    let mut model = Model::load(dir, &inference_device())?;
    if let Some(a) = adapter {
        model.load_adapter(a)?;
    }
    Ok(model)
}

fn run_gguf(a: GgufArgs) -> Result<()> {
    crate::refuse_existing(&a.out)?;
    let ft = FileType::parse(&a.ty)?;
    let mut model = load_model(&a.model, a.adapter.as_ref())?;
    let r = export_model(&mut model, ft, &a.out)?;
    print_report(&format!("{} {}", a.model.display(), ft.name()), &r);
    Ok(())
}

fn run_gguf_adapter(a: GgufAdapterArgs) -> Result<()> {
    crate::refuse_existing(&a.out)?;
    let base = BaseInfo::from_path(&a.model)?;
    let r = export_lora_adapter(&a.adapter, &base, &a.out)?;
    print_report(&format!("{} (LoRA for {})", a.adapter.display(), base.arch), &r);
    Ok(())
}

fn run_ollama(a: OllamaArgs) -> Result<()> {
    crate::refuse_existing(&a.out)?;
    let go_template = match &a.template {
        Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("reading the template {}", p.display()))?),
        None => None,
    };
    let model_is_gguf = a.model.is_file();
    if !model_is_gguf && !a.model.is_dir() {
        bail!("{}: not found; expected a model directory or a .gguf file", a.model.display());
    }
    // chat template and EOS from the source, checked before anything is written
    let (jinja, eos, arch) = if model_is_gguf {
        let f = GgufFile::open(&a.model)?;
        let eos = f.get_u32("tokenizer.ggml.eos_token_id").and_then(|id| f.get_str_array("tokenizer.ggml.tokens")?.get(id as usize).cloned());
        (f.get_str("tokenizer.chat_template").map(String::from), eos, f.architecture().map(String::from))
    } else {
        (hf_chat_template(&a.model)?, None, None)
    };
    let from = if model_is_gguf {
        std::fs::canonicalize(&a.model).with_context(|| a.model.display().to_string())?.display().to_string()
    } else {
        "./model.gguf".to_string()
    };
    let mut spec = ModelfileSpec {
        from,
        adapter: a.adapter.as_ref().map(|_| "./adapter.gguf".to_string()),
        jinja_template: jinja,
        go_template,
        extra_stops: eos.into_iter().collect(),
        architecture: arch,
    };
    // the Modelfile first: an unknown template fails before minutes of export
    let (_, family) = modelfile(&spec)?;
    let ft = FileType::parse(&a.ty)?;
    let mut model = if model_is_gguf { None } else { Some(Model::load(&a.model, &inference_device())?) };
    if let Some(m) = &model {
        if let Some(eos) = &m.tokenizer.eos_token {
            spec.extra_stops.push(eos.clone());
        }
    }
    let (text, _) = modelfile(&spec)?;
    let mut reports = Vec::new();
    write_dir_atomically(&a.out, |tmp| {
        if let Some(m) = model.as_mut() {
            reports.push(("model".to_string(), export_model(m, ft, &tmp.join("model.gguf"))?));
        }
        if let Some(ad) = &a.adapter {
            let base = BaseInfo::from_path(&a.model)?;
            reports.push(("adapter".to_string(), export_lora_adapter(ad, &base, &tmp.join("adapter.gguf"))?));
        }
        write_file_atomically(&tmp.join("Modelfile"), text.as_bytes())
    })?;
    for (what, r) in &reports {
        let mut r = r.clone();
        r.path = a.out.join(r.path.file_name().unwrap_or_default());
        print_report(what, &r);
    }
    println!(
        "Modelfile -> {} (template: {})\nnext: ollama create NAME -f {}",
        a.out.join("Modelfile").display(),
        family.map(|f| f.name()).unwrap_or("given with --template"),
        a.out.join("Modelfile").display()
    );
    Ok(())
}
