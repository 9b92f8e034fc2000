//! `deepfeed kb …`, `deepfeed dedup --semantic`, `deepfeed bench kb` and the knowledge-base part
//! of `deepfeed chat --kb`: argument parsing and printing around deepfeed-kb.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use deepfeed_data::ingest::IngestOptions;
use deepfeed_kb::add::{add_sources, doc_id_for, AddOptions};
use deepfeed_kb::bench::{latency_benchmark, retrieval_benchmark};
use deepfeed_kb::rag::{build_prompt, format_citations, RagPrompt, DEFAULT_TEMPLATE};
use deepfeed_kb::retrieve::rerank_by_likelihood;
use deepfeed_kb::semantic_dedup::semantic_dedup;
use deepfeed_kb::store::EmbedderInfo;
use deepfeed_kb::backend::{self, is_remote, KbBackend};
use deepfeed_kb::{Embedder, Mode, Retriever};
use deepfeed_model::backend::inference_device;
use deepfeed_model::Model;

#[derive(Subcommand)]
pub enum KbCommand {
    /// Add documents (files or folders: .txt, .md, .csv, .tsv, …) to a knowledge base; changed
    /// files replace their old chunks, unchanged ones are skipped
    Add(AddArgs),
    /// Search a knowledge base: scores and sources of the best chunks
    Search(SearchArgs),
    /// Documents, chunks, embedder and size of a knowledge base
    Stats {
        #[arg(long)]
        kb: PathBuf,
        /// List the documents too
        #[arg(long)]
        docs: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove a document (by its path or id, as `kb stats --docs` lists it)
    Delete {
        #[arg(long)]
        kb: PathBuf,
        #[arg(long)]
        doc: String,
    },
}

#[derive(Args, Clone)]
pub struct EmbedderArgs {
    /// Sentence-encoder directory (sentence-transformers / Hugging Face BERT layout, e.g.
    /// all-MiniLM-L6-v2, bge-small-zh-v1.5, multilingual-e5-small)
    #[arg(long)]
    pub embedder: Option<PathBuf>,
    /// Without --embedder: embed with this chat model's mean-pooled hidden states
    #[arg(long)]
    pub model: Option<PathBuf>,
}

#[derive(Args)]
pub struct AddArgs {
    /// Files or folders
    #[arg(required = true)]
    sources: Vec<PathBuf>,
    /// Knowledge-base directory, or a Qdrant collection URL (http://host:6333/NAME)
    #[arg(long)]
    kb: PathBuf,
    #[command(flatten)]
    embedder: EmbedderArgs,
    /// Target chunk length in tokens (estimated: ~1.4 Chinese characters or ~4 English
    /// characters per token), short enough for a 256-token sentence encoder
    #[arg(long, default_value_t = 200)]
    chunk_tokens: usize,
    /// Tokens of whole paragraphs of the previous chunk repeated at the start of the next
    #[arg(long, default_value_t = 25)]
    overlap_tokens: usize,
    /// Keep personal data as is (default: masked like `deepfeed clean`)
    #[arg(long)]
    keep_pii: bool,
}

#[derive(Args)]
pub struct SearchArgs {
    query: String,
    #[arg(long)]
    kb: PathBuf,
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// bm25, vector or hybrid
    #[arg(long, default_value = "hybrid")]
    mode: String,
    /// Encoder to embed the query with (default: the one the knowledge base was built with)
    #[arg(long)]
    embedder: Option<PathBuf>,
    /// Rerank the results by this chat model's log-likelihood of the query given each passage
    #[arg(long)]
    rerank_model: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Loads the embedder an existing knowledge base was built with (or the one given).
pub fn load_embedder_for<'m>(info: &EmbedderInfo, given: Option<&Path>, chat_model: Option<&'m Model>) -> Result<Embedder<'m>> {
    if let Some(dir) = given {
        return Ok(Embedder::encoder(dir, &inference_device())?);
    }
    if info.id.starts_with("chat-model:") {
        match chat_model {
            Some(m) => return Ok(Embedder::chat_model(m)),
            None => bail!("the knowledge base was embedded with the chat model {} ; pass --model {}", info.path, info.path),
        }
    }
    let dir = PathBuf::from(&info.path);
    if !dir.is_dir() {
        bail!("the knowledge base was built with the encoder {} which is no longer there; pass --embedder DIR", info.path);
    }
    Ok(Embedder::encoder(&dir, &inference_device())?)
}

fn embedder_info(e: &Embedder, path: &Path) -> EmbedderInfo {
    EmbedderInfo { id: e.id(), path: path.canonicalize().unwrap_or_else(|_| path.into()).display().to_string(), dim: e.dim() }
}

pub fn run(cmd: KbCommand) -> Result<()> {
    match cmd {
        KbCommand::Add(a) => run_add(a),
        KbCommand::Search(a) => run_search(a),
        KbCommand::Stats { kb, docs, json } => {
            let store = backend::open(&kb)?;
            let stats = store.stats()?;
            if json {
                let mut v = serde_json::to_value(&stats)?;
                if docs {
                    v["docs"] = serde_json::to_value(store.documents()?)?;
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("knowledge base {}", stats.dir.display());
            println!("  documents {}  chunks {}  vectors in index {}", stats.documents, stats.chunks, stats.vectors_in_index);
            println!("  embedder  {} ({} dims) from {}", stats.embedder.id, stats.embedder.dim, stats.embedder.path);
            if !is_remote(&kb) {
                println!("  on disk   {:.1} MB  (generation {})", stats.bytes_on_disk as f64 / 1e6, stats.generation);
            }
            if docs {
                for d in store.documents()? {
                    println!("  {}  {} chunks  sha256 {}", d.doc_id, d.chunks, &d.sha256[..d.sha256.len().min(12)]);
                }
            }
            Ok(())
        }
        KbCommand::Delete { kb, doc } => {
            let mut store = backend::open(&kb)?;
            let id = if store.document_sha(&doc)?.is_some() { doc.clone() } else { doc_id_for(&doc) };
            let n = store.delete_document(&id)?;
            store.flush()?;
            println!("deleted {id} ({n} chunks)");
            Ok(())
        }
    }
}

fn run_add(a: AddArgs) -> Result<()> {
    let device = inference_device();
    let chat_model;
    let (embedder, path) = match (&a.embedder.embedder, &a.embedder.model) {
        (Some(dir), _) => (Embedder::encoder(dir, &device)?, dir.clone()),
        (None, Some(m)) => {
            chat_model = Model::load(m, &device)?;
            eprintln!("no --embedder: embedding with the chat model's mean-pooled hidden states (a sentence encoder retrieves better)");
            (Embedder::chat_model(&chat_model), m.clone())
        }
        (None, None) => bail!("give --embedder DIR (a sentence encoder, e.g. all-MiniLM-L6-v2 from scripts/fetch_models.sh) or --model DIR (the chat model as a fallback embedder)"),
    };
    let mut store = backend::open_or_create(&a.kb, &embedder_info(&embedder, &path))?;
    let opts = AddOptions { ingest: IngestOptions { chunk_tokens: a.chunk_tokens, overlap_tokens: a.overlap_tokens, ..Default::default() }, mask_pii: !a.keep_pii, embed_batch: 32 };
    let t = std::time::Instant::now();
    let r = add_sources(&mut *store, &embedder, &a.sources, &opts, &mut |line| eprintln!("{line}"))?;
    for e in &r.errors {
        eprintln!("skipped {e}");
    }
    let pii: usize = r.pii.values().sum();
    println!(
        "{} added, {} updated, {} unchanged; {} chunks embedded in {:.1} s; {} personal data masked; {} files skipped",
        r.added,
        r.updated,
        r.unchanged,
        r.chunks,
        t.elapsed().as_secs_f64(),
        pii,
        r.errors.len()
    );
    Ok(())
}

fn run_search(a: SearchArgs) -> Result<()> {
    let mode: Mode = a.mode.parse()?;
    let store = backend::open(&a.kb)?;
    let embedder = if mode == Mode::Bm25 { None } else { Some(load_embedder_for(store.embedder(), a.embedder.as_deref(), None)?) };
    let retriever = Retriever::new(&*store, embedder.as_ref());
    let mut hits = retriever.search(&a.query, a.k, mode)?;
    if let Some(m) = &a.rerank_model {
        let model = Model::load(m, &inference_device())?;
        hits = rerank_by_likelihood(&model, &a.query, hits)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("no results");
    }
    for (i, h) in hits.iter().enumerate() {
        let mut loc = h.source.clone();
        if let Some(p) = h.page {
            loc.push_str(&format!(", page {p}"));
        }
        if let Some(c) = h.chunk {
            loc.push_str(&format!(", chunk {c}"));
        }
        let snippet: String = h.text.chars().take(160).collect::<String>().replace('\n', " ");
        println!("{}. {:.4}  {}\n   {}", i + 1, h.score, loc, snippet);
    }
    Ok(())
}

/// Retrieval options of `deepfeed chat --kb`.
#[derive(Args, Clone)]
pub struct ChatKbArgs {
    /// Answer from this knowledge base (retrieved passages go into the prompt; sources are
    /// printed after the answer)
    #[arg(long)]
    pub kb: Option<PathBuf>,
    /// Encoder for the questions (default: the one the knowledge base was built with)
    #[arg(long)]
    pub embedder: Option<PathBuf>,
    /// Passages retrieved per question
    #[arg(long, default_value_t = 4)]
    pub kb_k: usize,
    /// Token budget for the passages in the prompt
    #[arg(long, default_value_t = 1024)]
    pub kb_tokens: usize,
    /// Prompt template with {passages} and {question}
    #[arg(long)]
    pub kb_template: Option<String>,
    /// Retrieval: bm25, vector or hybrid (BM25 and vectors fused)
    #[arg(long, default_value = "hybrid")]
    pub kb_mode: String,
}

/// A knowledge base opened for chat.
pub struct ChatKb<'m> {
    store: Box<dyn KbBackend>,
    embedder: Embedder<'m>,
    args: ChatKbArgs,
}

impl<'m> ChatKb<'m> {
    pub fn open(args: &ChatKbArgs, model: &'m Model) -> Result<Option<Self>> {
        let Some(dir) = &args.kb else { return Ok(None) };
        let store = backend::open(dir).with_context(|| format!("opening --kb {}", dir.display()))?;
        let embedder = load_embedder_for(store.embedder(), args.embedder.as_deref(), Some(model))?;
        Ok(Some(ChatKb { store, embedder, args: args.clone() }))
    }

    /// The user turn with retrieved passages, and its citations.
    pub fn prompt(&self, model: &Model, question: &str) -> Result<RagPrompt> {
        let mode: Mode = self.args.kb_mode.parse()?;
        let hits = Retriever::new(&*self.store, Some(&self.embedder)).search(question, self.args.kb_k, mode)?;
        let count = |s: &str| model.tokenizer.encode(s, false).map(|v| v.len()).unwrap_or(s.len());
        Ok(build_prompt(question, &hits, self.args.kb_template.as_deref().unwrap_or(DEFAULT_TEMPLATE), self.args.kb_tokens, &count))
    }

    pub fn citations(p: &RagPrompt) -> String {
        format_citations(&p.citations)
    }
}

#[derive(Args)]
pub struct DedupArgs {
    /// Project JSONL file
    input: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Compare by meaning (sentence embeddings); the only mode here — MinHash near-duplicates
    /// are part of `deepfeed clean`
    #[arg(long)]
    semantic: bool,
    /// Cosine similarity at which a sample counts as a duplicate of an earlier one
    #[arg(long, default_value_t = 0.95)]
    threshold: f32,
    #[command(flatten)]
    embedder: EmbedderArgs,
    /// Write the dropped pairs (dropped line, kept line, cosine) as JSON here
    #[arg(long)]
    report: Option<PathBuf>,
}

pub fn run_dedup(a: DedupArgs) -> Result<()> {
    if !a.semantic {
        bail!("dedup compares by meaning: add --semantic (exact and MinHash near-duplicates are removed by `deepfeed clean`)");
    }
    crate::refuse_existing(&a.out)?;
    let device = inference_device();
    let chat_model;
    let embedder = match (&a.embedder.embedder, &a.embedder.model) {
        (Some(dir), _) => Embedder::encoder(dir, &device)?,
        (None, Some(m)) => {
            chat_model = Model::load(m, &device)?;
            Embedder::chat_model(&chat_model)
        }
        (None, None) => bail!("give --embedder DIR (a sentence encoder) or --model DIR (the chat model as a fallback embedder)"),
    };
    let r = semantic_dedup(&a.input, &a.out, &embedder, a.threshold, 64)?;
    if let Some(p) = &a.report {
        deepfeed_model::fsutil::write_file_atomically(p, serde_json::to_string_pretty(&r)?.as_bytes())?;
    }
    println!("read {}  kept {}  dropped {} (cosine >= {}) -> {}", r.read, r.written, r.dropped, a.threshold, a.out.display());
    Ok(())
}

#[derive(Args)]
pub struct BenchKbArgs {
    /// Labelled set: docs.jsonl + questions.jsonl
    #[arg(long, default_value = "benchmarks/kb")]
    set: PathBuf,
    /// Sentence encoder (default: ~/.cache/deepfeed/all-minilm-l6-v2 when fetched; else BM25 only)
    #[arg(long)]
    embedder: Option<PathBuf>,
    /// Vectors in the latency benchmark (0: skip it)
    #[arg(long, default_value_t = 100_000)]
    vectors: usize,
    #[arg(long, default_value_t = 384)]
    dim: usize,
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// HNSW candidates explored per query
    #[arg(long, default_value_t = 64)]
    ef: usize,
    #[arg(long)]
    json: bool,
}

pub fn run_bench(a: BenchKbArgs) -> Result<()> {
    let default_dir = std::env::var_os("DEEPFEED_CACHE").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/deepfeed"))).map(|c| c.join("all-minilm-l6-v2"));
    let dir = a.embedder.clone().or(default_dir.filter(|d| d.is_dir()));
    let embedder = dir.as_ref().map(|d| Embedder::encoder(d, &inference_device())).transpose()?;
    let mut out = serde_json::json!({});
    if a.set.join("questions.jsonl").is_file() {
        let work = std::env::temp_dir().join(format!("deepfeed-bench-kb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let t = std::time::Instant::now();
        let scores = retrieval_benchmark(&a.set, embedder.as_ref(), &work);
        let _ = std::fs::remove_dir_all(&work);
        let scores = scores?;
        if !a.json {
            println!("retrieval on {} ({}; {:.1} s)", a.set.display(), dir.as_ref().map_or("no encoder: BM25 only".into(), |d| format!("encoder {}", d.display())), t.elapsed().as_secs_f64());
            println!("  {:<7} {:<4} {:>9} {:>9} {:>7}", "mode", "lang", "questions", "recall@5", "MRR@10");
            for s in &scores {
                println!("  {:<7} {:<4} {:>9} {:>9.3} {:>7.3}", format!("{:?}", s.mode).to_lowercase(), s.lang, s.questions, s.recall_at_5, s.mrr_at_10);
            }
        }
        out["retrieval"] = serde_json::to_value(&scores)?;
    } else {
        eprintln!("{}: no questions.jsonl; retrieval benchmark skipped", a.set.display());
    }
    if a.vectors > 0 {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let r = latency_benchmark(a.vectors, a.dim, a.queries, a.ef, threads)?;
        if !a.json {
            println!("latency: {} vectors × {} dims (clustered, unit length), {} queries, ef {}; index built in {:.1} s on {threads} threads", r.vectors, r.dim, r.queries, r.ef_search, r.build_secs);
            println!("  HNSW (usearch)  p50 {:.3} ms  p95 {:.3} ms  recall@10 {:.4}", r.hnsw_p50_ms, r.hnsw_p95_ms, r.recall_at_10);
            println!("  brute force     p50 {:.3} ms  p95 {:.3} ms", r.brute_p50_ms, r.brute_p95_ms);
            println!("  HNSW is {:.1}× faster than brute force at p50", r.speedup_p50);
        }
        out["latency"] = serde_json::to_value(&r)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}
