//! `deepfeed synth`: question/answer pairs from document chunks, written by a local model or an
//! OpenAI-compatible endpoint (`/v1/chat/completions`).
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use deepfeed_data::synth::{check_template, synth_file, SynthOptions, TextGenerator, DEFAULT_TEMPLATE};
use deepfeed_data::DataError;
use deepfeed_model::generate::{generate, GenerateOptions};
use deepfeed_model::{ChatMessage, Model};

#[derive(Args)]
pub struct SynthArgs {
    /// Chunks in the project format (the output of `deepfeed ingest`)
    chunks: PathBuf,
    /// Output JSONL of input_text/target_text pairs with the chunks' provenance
    #[arg(long)]
    out: PathBuf,
    /// A local model directory (its chat template is used)
    #[arg(long, conflicts_with = "endpoint")]
    model: Option<PathBuf>,
    /// An OpenAI-compatible server, e.g. http://localhost:8000/v1 (…/chat/completions is added)
    #[arg(long)]
    endpoint: Option<String>,
    /// API key for the endpoint (default: $DEEPFEED_API_KEY or $OPENAI_API_KEY)
    #[arg(long)]
    api_key: Option<String>,
    /// Model name sent to the endpoint
    #[arg(long, default_value = "default")]
    remote_model: String,
    /// Prompt template file with {chunk}, {n} and {source} slots (default: built in; see --show-template)
    #[arg(long)]
    template: Option<PathBuf>,
    /// Print the built-in template and exit
    #[arg(long)]
    show_template: bool,
    /// Pairs asked for per chunk
    #[arg(long, default_value_t = 3)]
    per_chunk: usize,
    /// Most tokens the model writes per chunk
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seconds to wait for the endpoint per chunk
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

struct LocalModel {
    model: Model,
    dir: PathBuf,
    opts: GenerateOptions,
}

impl TextGenerator for LocalModel {
    fn complete(&mut self, prompt: &str) -> deepfeed_data::Result<String> {
        let err = |e: &dyn std::fmt::Display| DataError::Invalid(format!("{}: {e}", self.dir.display()));
        let text = self.model.tokenizer.apply_chat_template(&[ChatMessage::new("user", prompt)], true).map_err(|e| err(&e))?;
        let ids = self.model.tokenizer.encode(&text, false).map_err(|e| err(&e))?;
        let g = generate(&self.model, &ids, &self.opts, &mut |_| {}).map_err(|e| err(&e))?;
        // the next chunk gets other random draws
        self.opts.seed = self.opts.seed.wrapping_add(1);
        Ok(g.text)
    }

    fn name(&self) -> String {
        format!("local:{}", self.dir.display())
    }
}

struct Endpoint {
    url: String,
    key: Option<String>,
    model: String,
    max_tokens: usize,
    temperature: f32,
    agent: ureq::Agent,
}

impl TextGenerator for Endpoint {
    fn complete(&mut self, prompt: &str) -> deepfeed_data::Result<String> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        });
        let mut req = self.agent.post(&self.url).header("Content-Type", "application/json");
        if let Some(k) = &self.key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let fail = |what: String| DataError::Invalid(format!("{}: {what}", self.url));
        let mut resp = req.send(body.to_string().as_bytes()).map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().map_err(|e| fail(format!("reading the answer: {e}")))?;
        if !status.is_success() {
            let short: String = text.chars().take(300).collect();
            return Err(fail(format!("HTTP {status}: {short}")));
        }
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(format!("the answer is not JSON: {e}")))?;
        v["choices"][0]["message"]["content"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| fail("expected an OpenAI chat completion (choices[0].message.content), found none".into()))
    }

    fn name(&self) -> String {
        format!("{} ({})", self.url, self.model)
    }
}

pub fn run(a: SynthArgs) -> Result<()> {
    if a.show_template {
        print!("{DEFAULT_TEMPLATE}");
        return Ok(());
    }
    crate::refuse_existing(&a.out)?;
    let template = match &a.template {
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            check_template(&t, &p.display().to_string())?;
            t
        }
        None => DEFAULT_TEMPLATE.to_string(),
    };
    let mut generator: Box<dyn TextGenerator> = match (&a.model, &a.endpoint) {
        (Some(dir), None) => {
            let model = Model::load(dir, &deepfeed_model::backend::inference_device())?;
            let opts = GenerateOptions { max_new_tokens: a.max_tokens, temperature: a.temperature, seed: a.seed, ..Default::default() };
            opts.validate()?;
            Box::new(LocalModel { model, dir: dir.clone(), opts })
        }
        (None, Some(url)) => {
            let base = url.trim_end_matches('/');
            let url = if base.ends_with("/chat/completions") { base.to_string() } else { format!("{base}/chat/completions") };
            let key = a.api_key.clone().or_else(|| std::env::var("DEEPFEED_API_KEY").ok()).or_else(|| std::env::var("OPENAI_API_KEY").ok());
            let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(a.timeout))).http_status_as_error(false).build().into();
            Box::new(Endpoint { url, key, model: a.remote_model.clone(), max_tokens: a.max_tokens, temperature: a.temperature, agent })
        }
        _ => bail!("give the model to write the pairs: --model DIR or --endpoint URL"),
    };
    let opts = SynthOptions { template, per_chunk: a.per_chunk, progress: true, ..Default::default() };
    let r = synth_file(&a.chunks, &a.out, generator.as_mut(), &opts)?;
    for e in r.invalid.iter().chain(&r.errors) {
        eprintln!("skipped {e}");
    }
    println!(
        "synth {}: {} chunks, {} pairs written to {}; {} chunks gave no readable pair, {} failed, {} invalid lines",
        a.chunks.display(),
        r.chunks,
        r.pairs,
        a.out.display(),
        r.chunks_without_pairs,
        r.errors.len(),
        r.invalid.len()
    );
    if r.pairs == 0 && !r.errors.is_empty() {
        bail!("no pair written: the generator failed on every chunk ({})", r.errors[0]);
    }
    Ok(())
}
