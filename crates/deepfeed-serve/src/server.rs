//! The HTTP server (axum on tokio): OpenAI-compatible routes, admin routes for adapters,
//! feedback, health and metrics. Handlers check and parse; the engine thread computes.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use deepfeed_model::generate::FinishReason;
use deepfeed_model::{GenerateOptions, Model};
use futures_util::stream::Stream;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::api::{parse_body, AdapterRequest, ChatRequest, CompletionRequest, FeedbackRequest, PromptField, RequestLimits, Sampling};
use crate::engine::{Engine, EngineConfig, Event, Job, SubmitError};
use crate::error::{ApiError, Result, ServeError};
use crate::feedback::{FeedbackStore, Prompt, Rating, ResponseRecord};
use crate::metrics::{ServeMetrics, CONTENT_TYPE};
use crate::rag::{retrieval_for_request, KnowledgeBase, RagSettings};
use crate::registry::{unix_now, AdapterKb, Registry};
use deepfeed_kb::rag::Citation;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// The name clients use in `model` (default: the model directory's name).
    pub model_name: Option<String>,
    /// Accepted `Authorization: Bearer` keys for /v1; empty: no key needed.
    pub api_keys: Vec<String>,
    /// Token for /admin; `None`: admin routes answer 403.
    pub admin_token: Option<String>,
    /// Adapters loaded over HTTP must lie under this directory.
    pub adapter_dir: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub max_prompt_tokens: usize,
    pub max_tokens: usize,
    pub default_max_tokens: usize,
    pub queue_capacity: usize,
    pub max_active: usize,
    pub request_timeout: Duration,
    /// SQLite file for responses and feedback; `None`: /v1/feedback answers 404.
    pub feedback_db: Option<PathBuf>,
    /// The default knowledge base (`deepfeed kb` directory): the base model and adapters without
    /// their own use it. `None`: no retrieval unless an adapter has a knowledge base.
    pub kb: Option<PathBuf>,
    /// Encoder for the questions (default: the one each knowledge base was built with).
    pub kb_embedder: Option<PathBuf>,
    /// Retrieval defaults (k, token budget, template, mode).
    pub rag: RagSettings,
    /// Knowledge bases of startup adapters (`--adapter NAME=DIR,kb=KBDIR`): adapter name →
    /// directory, or `None` for no knowledge base (`kb=none`). Others use `kb`.
    pub adapter_kbs: Vec<(String, Option<PathBuf>)>,
    /// Admin loads may attach knowledge bases under this directory; `None`: they may not.
    pub kb_dir: Option<PathBuf>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            model_name: None,
            api_keys: vec![],
            admin_token: None,
            adapter_dir: None,
            max_body_bytes: 1 << 20,
            max_prompt_tokens: 4096,
            max_tokens: 1024,
            default_max_tokens: 256,
            queue_capacity: 64,
            max_active: 8,
            request_timeout: crate::engine::DEFAULT_TIMEOUT,
            feedback_db: None,
            kb: None,
            kb_embedder: None,
            rag: RagSettings::default(),
            adapter_kbs: vec![],
            kb_dir: None,
        }
    }
}

pub struct AppState {
    pub cfg: ServeConfig,
    pub registry: Registry,
    pub engine: Engine,
    pub metrics: Arc<ServeMetrics>,
    pub feedback: Option<Arc<FeedbackStore>>,
    ready: AtomicBool,
}

/// A running server; dropping it (or [`RunningServer::shutdown`]) stops it.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, lets open requests finish, and waits.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Serves until Ctrl-C.
    pub async fn wait_for_ctrl_c(self) {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("shutting down: finishing open requests");
        self.shutdown().await;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Loads the startup adapters, opens the feedback store, starts the engine and binds the port.
/// Must run inside a tokio runtime.
pub async fn start(model: Model, adapters: &[(String, PathBuf)], cfg: ServeConfig) -> Result<RunningServer> {
    let base_name = cfg.model_name.clone().unwrap_or_else(|| {
        model.dir.canonicalize().unwrap_or(model.dir.clone()).file_name().map_or("model".into(), |n| n.to_string_lossy().into_owned())
    });
    if base_name.is_empty() || base_name.contains(':') {
        return Err(ServeError::Invalid(format!("model name {base_name:?}: expected a non-empty name without ':'")));
    }
    let adapter_root = match &cfg.adapter_dir {
        Some(d) => Some(d.canonicalize().map_err(|e| ServeError::Io { path: d.clone(), source: e })?),
        None => None,
    };
    let base = Arc::new(model);
    let mut registry = Registry::new(base_name, base.clone(), adapter_root);
    registry.kb_root = match &cfg.kb_dir {
        Some(d) => Some(d.canonicalize().map_err(|e| ServeError::Io { path: d.clone(), source: e })?),
        None => None,
    };
    // knowledge bases are opened once (one per directory), and every problem stops the start
    let mut opened: Vec<(PathBuf, Arc<KnowledgeBase>)> = Vec::new();
    let mut open_kb = |dir: &PathBuf| -> Result<Arc<KnowledgeBase>> {
        let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if let Some((_, kb)) = opened.iter().find(|(k, _)| *k == key) {
            return Ok(kb.clone());
        }
        let kb = Arc::new(KnowledgeBase::open(dir, cfg.kb_embedder.as_deref(), &base)?);
        opened.push((key, kb.clone()));
        Ok(kb)
    };
    if let Some(dir) = &cfg.kb {
        registry.default_kb = Some(open_kb(dir)?);
    }
    for (name, _) in &cfg.adapter_kbs {
        if !adapters.iter().any(|(n, _)| n == name) {
            return Err(ServeError::Invalid(format!("a knowledge base is configured for the adapter {name:?}, which is not among the adapters to load")));
        }
    }
    for (name, dir) in adapters {
        let kb = match cfg.adapter_kbs.iter().find(|(n, _)| n == name) {
            None => AdapterKb::Default,
            Some((_, None)) => AdapterKb::Off,
            Some((_, Some(kb_dir))) => AdapterKb::Own(open_kb(kb_dir)?),
        };
        registry.load_with_kb(name, dir, kb).map_err(|e| ServeError::Invalid(format!("--adapter {name}={}: {}", dir.display(), e.message)))?;
    }
    let feedback = match &cfg.feedback_db {
        Some(p) => Some(Arc::new(FeedbackStore::open(p)?)),
        None => None,
    };
    let metrics = Arc::new(ServeMetrics::new());
    metrics.adapters_loaded.set(registry.len() as i64);
    let engine = Engine::start(EngineConfig { queue_capacity: cfg.queue_capacity, max_active: cfg.max_active }, metrics.clone());
    let listener = tokio::net::TcpListener::bind(cfg.addr).await.map_err(|e| ServeError::Io { path: PathBuf::from(cfg.addr.to_string()), source: e })?;
    let addr = listener.local_addr().map_err(|e| ServeError::Io { path: PathBuf::from(cfg.addr.to_string()), source: e })?;
    let state = Arc::new(AppState { cfg, registry, engine, metrics, feedback, ready: AtomicBool::new(true) });
    let app = router(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(RunningServer { addr, state, stop: Some(stop), task: Some(task) })
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(|| async { Json(json!({"status": "alive"})) }))
        .route("/health/ready", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/feedback", post(feedback))
        .route("/admin/adapters", post(admin_load).get(admin_list))
        .route("/admin/adapters/{name}", delete(admin_unload))
        .fallback(|| async { ApiError::not_found("no such route; see docs/serving.md for the API", "unknown_url") })
        .method_not_allowed_fallback(|| async {
            let mut e = ApiError::bad_request("method not allowed on this route");
            e.status = StatusCode::METHOD_NOT_ALLOWED;
            e
        })
        .with_state(state)
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let ready = st.ready.load(Ordering::Relaxed);
    let body = json!({
        "status": if ready { "ok" } else { "unavailable" },
        "ready": ready,
        "model": st.registry.base_name,
        "adapters": st.registry.len(),
        "kb": st.registry.default_kb.as_ref().map(|kb| kb.dir.display().to_string()),
    });
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], st.metrics.render()).into_response()
}

/// `Authorization: Bearer KEY` against the configured keys (constant-time comparison).
fn check_key(headers: &HeaderMap, keys: &[String], what: &str) -> std::result::Result<(), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(format!("missing {what}: send the header `Authorization: Bearer KEY`")));
    };
    let given = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).unwrap_or("");
    let ok = keys.iter().fold(false, |acc, k| acc | constant_time_eq(k.as_bytes(), given.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(ApiError::unauthorized(format!("incorrect {what} provided")))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_api_key(st: &AppState, headers: &HeaderMap) -> std::result::Result<(), ApiError> {
    if st.cfg.api_keys.is_empty() {
        return Ok(());
    }
    check_key(headers, &st.cfg.api_keys, "API key")
}

fn check_admin(st: &AppState, headers: &HeaderMap) -> std::result::Result<(), ApiError> {
    match &st.cfg.admin_token {
        None => Err(ApiError::forbidden("the admin API is off: start the server with --admin-token (or DEEPFEED_ADMIN_TOKEN)")),
        Some(t) => check_key(headers, std::slice::from_ref(t), "admin token"),
    }
}

/// The body, at most `max_body_bytes` (413 beyond).
async fn read_body(st: &AppState, headers: &HeaderMap, body: Body) -> std::result::Result<Bytes, ApiError> {
    let limit = st.cfg.max_body_bytes;
    let too_large = || ApiError::too_large(format!("the request body is larger than this server's limit of {limit} bytes"));
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            if s.to_string().contains("length limit") {
                return too_large();
            }
            source = s.source();
        }
        ApiError::bad_request(format!("reading the request body: {e}"))
    })
}

fn counted(st: &AppState, endpoint: &str, adapter: &str, r: std::result::Result<Response, ApiError>) -> Response {
    let resp = r.unwrap_or_else(IntoResponse::into_response);
    st.metrics.request(endpoint, resp.status().as_u16(), adapter);
    resp
}

async fn models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = check_api_key(&st, &headers).map(|()| {
        let reg = &st.registry;
        let mut data = vec![json!({"id": reg.base_name, "object": "model", "created": reg.created, "owned_by": "deepfeed"})];
        for a in reg.list() {
            data.push(json!({"id": format!("{}:{}", reg.base_name, a.name), "object": "model", "created": a.loaded_at, "owned_by": "deepfeed", "parent": reg.base_name, "adapter": a.name, "version": a.version}));
        }
        Json(json!({"object": "list", "data": data})).into_response()
    });
    counted(&st, "models", "none", r)
}

/// What a generation request resolved to, before it is queued.
struct Prepared {
    id: String,
    model_id: String,
    adapter: String,
    model: Arc<Model>,
    prompt_ids: Vec<u32>,
    opts: GenerateOptions,
    stream: bool,
    include_usage: bool,
    /// Passages put into the prompt; `None`: no retrieval was done (no `citations` field).
    citations: Option<Vec<Citation>>,
    prompt: Prompt,
    chat: bool,
    arrived: Instant,
}

fn response_id(prefix: &str) -> String {
    format!("{prefix}-{:032x}", rand::random::<u128>())
}

fn limits(st: &AppState) -> RequestLimits {
    RequestLimits { default_max_tokens: st.cfg.default_max_tokens, max_tokens: st.cfg.max_tokens }
}

fn check_prompt(st: &AppState, model: &Model, ids: &[u32]) -> std::result::Result<(), ApiError> {
    if ids.is_empty() {
        return Err(ApiError::bad_param("prompt", "the prompt is empty"));
    }
    let context = model.config.max_position_embeddings;
    let limit = st.cfg.max_prompt_tokens.min(context.saturating_sub(1));
    if ids.len() > limit {
        let mut e = ApiError::bad_param(
            "messages",
            format!("the prompt has {} tokens; this server accepts at most {limit} (model context {context})", ids.len()),
        );
        e.code = Some("context_length_exceeded");
        return Err(e);
    }
    Ok(())
}

async fn chat_completions(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let arrived = Instant::now();
    let mut adapter = "none".to_string();
    let r: std::result::Result<Response, ApiError> = async {
        check_api_key(&st, &headers)?;
        let bytes = read_body(&st, &headers, body).await?;
        let req: ChatRequest = parse_body(&bytes)?;
        let sampling: Sampling = parse_body(&bytes)?;
        let resolved = st.registry.resolve_with_kb(&req.model)?;
        let (label, model) = (resolved.label, resolved.model);
        adapter = label.clone();
        let messages = req.chat_messages()?;
        let opts = sampling.options(limits(&st))?;
        let retrieval = retrieval_for_request(req.kb.as_ref(), resolved.kb.is_some(), &req.model, &st.cfg.rag, st.cfg.max_prompt_tokens)?;
        let (prompt_messages, citations) = match (retrieval, resolved.kb) {
            (Some(o), Some(kb)) => {
                let (m, c) = augment(&st, &label, kb, model.clone(), messages.clone(), o).await?;
                (m, Some(c))
            }
            _ => (messages.clone(), None),
        };
        let text = model.tokenizer.apply_chat_template(&prompt_messages, true).map_err(|e| ApiError::bad_param("messages", e.to_string()))?;
        let ids = model.tokenizer.encode(&text, false).map_err(|e| ApiError::bad_param("messages", e.to_string()))?;
        check_prompt(&st, &model, &ids)?;
        let p = Prepared {
            id: response_id("chatcmpl"),
            model_id: req.model.clone(),
            adapter: label,
            model,
            prompt_ids: ids,
            opts,
            stream: req.stream,
            include_usage: req.stream_options.is_some_and(|o| o.include_usage),
            citations,
            prompt: Prompt::Chat(messages),
            chat: true,
            arrived,
        };
        run_generation(st.clone(), p).await
    }
    .await;
    counted(&st, "chat_completions", &adapter, r)
}

async fn completions(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let arrived = Instant::now();
    let mut adapter = "none".to_string();
    let r: std::result::Result<Response, ApiError> = async {
        check_api_key(&st, &headers)?;
        let bytes = read_body(&st, &headers, body).await?;
        let req: CompletionRequest = parse_body(&bytes)?;
        let sampling: Sampling = parse_body(&bytes)?;
        let (label, model) = st.registry.resolve(&req.model)?;
        adapter = label.clone();
        req.check_unsupported()?;
        let opts = sampling.options(limits(&st))?;
        let encode = |t: &str| model.tokenizer.encode(t, true).map_err(|e| ApiError::bad_param("prompt", e.to_string()));
        let (text, ids) = match &req.prompt {
            PromptField::Text(t) => (t.clone(), encode(t)?),
            PromptField::Texts(v) if v.len() == 1 => (v[0].clone(), encode(&v[0])?),
            PromptField::Texts(v) => return Err(ApiError::bad_param("prompt", format!("only one prompt per request is supported, found {}", v.len()))),
            PromptField::Ids(v) => {
                let vocab = model.config.vocab_size as u64;
                if let Some(bad) = v.iter().find(|&&i| i >= vocab) {
                    return Err(ApiError::bad_param("prompt", format!("token id {bad} is outside the vocabulary of {vocab}")));
                }
                let ids: Vec<u32> = v.iter().map(|&i| i as u32).collect();
                (model.tokenizer.decode(&ids, false).unwrap_or_default(), ids)
            }
        };
        check_prompt(&st, &model, &ids)?;
        let p = Prepared {
            id: response_id("cmpl"),
            model_id: req.model.clone(),
            adapter: label,
            model,
            prompt_ids: ids,
            opts,
            stream: req.stream,
            include_usage: req.stream_options.is_some_and(|o| o.include_usage),
            citations: None,
            prompt: Prompt::Text(text),
            chat: false,
            arrived,
        };
        run_generation(st.clone(), p).await
    }
    .await;
    counted(&st, "completions", &adapter, r)
}

/// Retrieval for the last user turn, on tokio's blocking pool (it embeds the question and reads
/// SQLite and the index): the turn is replaced by the template with the passages, and the
/// citations returned. A chat without a user turn (or an empty one) is left as it is, with no
/// citations.
async fn augment(
    st: &Arc<AppState>,
    label: &str,
    kb: Arc<KnowledgeBase>,
    model: Arc<Model>,
    mut messages: Vec<deepfeed_model::ChatMessage>,
    opts: crate::rag::RetrievalOptions,
) -> std::result::Result<(Vec<deepfeed_model::ChatMessage>, Vec<Citation>), ApiError> {
    let Some(i) = messages.iter().rposition(|m| m.role == "user") else { return Ok((messages, vec![])) };
    let question = messages[i].content.clone();
    if question.trim().is_empty() {
        return Ok((messages, vec![]));
    }
    let t = Instant::now();
    let (turn, citations) = tokio::task::spawn_blocking(move || kb.augment(&model, &question, &opts).map_err(|e| (kb.dir.clone(), e)))
        .await
        .map_err(|e| ApiError::internal(format!("retrieval: {e}")))?
        .map_err(|(dir, e)| ApiError::internal(format!("retrieval from the knowledge base {}: {e}", dir.display())))?;
    st.metrics.retrieval(label, t.elapsed(), citations.len());
    messages[i] = turn;
    Ok((messages, citations))
}

/// Decrements the in-flight gauge when the request ends, however it ends.
struct InFlight(Arc<ServeMetrics>);

impl InFlight {
    fn new(m: &Arc<ServeMetrics>) -> Self {
        m.requests_in_flight.inc();
        InFlight(m.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests_in_flight.dec();
    }
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens})
}

async fn run_generation(st: Arc<AppState>, p: Prepared) -> std::result::Result<Response, ApiError> {
    let in_flight = InFlight::new(&st.metrics);
    let (tx, rx) = mpsc::unbounded_channel();
    let job = Job { model: p.model.clone(), prompt_ids: p.prompt_ids.clone(), opts: p.opts.clone(), deadline: p.arrived + st.cfg.request_timeout, events: tx };
    match st.engine.submit(job) {
        Ok(()) => {}
        Err(SubmitError::QueueFull) => {
            return Err(ApiError::overloaded(format!("the server is busy: {} requests are queued; retry shortly", st.cfg.queue_capacity), 1))
        }
        Err(SubmitError::Stopped) => {
            st.ready.store(false, Ordering::Relaxed);
            return Err(ApiError::unavailable("the generation engine has stopped"));
        }
    }
    if p.stream {
        Ok(stream_response(st, p, rx, in_flight).into_response())
    } else {
        whole_response(st, p, rx).await
    }
}

/// Collects the whole answer (non-streaming).
async fn whole_response(st: Arc<AppState>, p: Prepared, mut rx: mpsc::UnboundedReceiver<Event>) -> std::result::Result<Response, ApiError> {
    let mut text = String::new();
    let mut first: Option<Duration> = None;
    loop {
        match rx.recv().await {
            Some(Event::Token { text: t }) => {
                first.get_or_insert_with(|| p.arrived.elapsed());
                text.push_str(&t);
            }
            Some(Event::Done { finish, prompt_tokens, completion_tokens }) => {
                st.metrics.generation(&p.adapter, prompt_tokens, completion_tokens, first, p.arrived.elapsed());
                record(&st, &p, &text, finish).await?;
                let created = unix_now();
                let body = if p.chat {
                    let mut b = json!({
                        "id": p.id, "object": "chat.completion", "created": created, "model": p.model_id,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_str(finish), "logprobs": null}],
                        "usage": usage(prompt_tokens, completion_tokens),
                    });
                    // an extra top-level field: OpenAI clients keep it in `model_extra`
                    if let Some(c) = &p.citations {
                        b["citations"] = json!(c);
                    }
                    b
                } else {
                    json!({
                        "id": p.id, "object": "text_completion", "created": created, "model": p.model_id,
                        "choices": [{"index": 0, "text": text, "finish_reason": finish_str(finish), "logprobs": null}],
                        "usage": usage(prompt_tokens, completion_tokens),
                    })
                };
                return Ok(Json(body).into_response());
            }
            Some(Event::Timeout { completion_tokens }) => {
                return Err(ApiError::timeout(format!(
                    "the request took longer than this server's limit of {:.0} s ({completion_tokens} tokens generated)",
                    st.cfg.request_timeout.as_secs_f64()
                )))
            }
            Some(Event::Failed { message }) => return Err(ApiError::internal(format!("generation failed: {message}"))),
            None => return Err(ApiError::internal("the generation engine dropped the request")),
        }
    }
}

/// Stores the response for later feedback (when a feedback database is configured).
async fn record(st: &Arc<AppState>, p: &Prepared, text: &str, finish: FinishReason) -> std::result::Result<(), ApiError> {
    let Some(store) = st.feedback.clone() else { return Ok(()) };
    let rec = ResponseRecord {
        id: p.id.clone(),
        created: unix_now(),
        model: st.registry.base_name.clone(),
        adapter: p.adapter.clone(),
        prompt: p.prompt.clone(),
        response: text.to_string(),
        finish_reason: finish_str(finish).into(),
    };
    tokio::task::spawn_blocking(move || store.record_response(&rec))
        .await
        .map_err(|e| ApiError::internal(format!("recording the response: {e}")))?
        .map_err(|e| ApiError::internal(format!("recording the response: {e}")))
}

struct StreamState {
    st: Arc<AppState>,
    p: Prepared,
    rx: mpsc::UnboundedReceiver<Event>,
    text: String,
    first: Option<Duration>,
    sent_role: bool,
    /// Events still to send before reading the engine again.
    queued: std::collections::VecDeque<SseEvent>,
    done: bool,
    _in_flight: InFlight,
}

impl StreamState {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> SseEvent {
        SseEvent::default().data(self.chunk_value(delta, finish).to_string())
    }

    fn chunk_value(&self, delta: Value, finish: Option<&str>) -> Value {
        let created = unix_now();
        if self.p.chat {
            json!({"id": self.p.id, "object": "chat.completion.chunk", "created": created, "model": self.p.model_id,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]})
        } else {
            json!({"id": self.p.id, "object": "text_completion", "created": created, "model": self.p.model_id,
                   "choices": [{"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")), "finish_reason": finish, "logprobs": null}]})
        }
    }

    fn usage_chunk(&self, prompt_tokens: usize, completion_tokens: usize) -> SseEvent {
        let object = if self.p.chat { "chat.completion.chunk" } else { "text_completion" };
        let body = json!({"id": self.p.id, "object": object, "created": unix_now(), "model": self.p.model_id, "choices": [], "usage": usage(prompt_tokens, completion_tokens)});
        SseEvent::default().data(body.to_string())
    }
}

/// Server-sent events: one chunk per piece of text, a last chunk with `finish_reason`, a usage
/// chunk when `stream_options.include_usage`, then `data: [DONE]`. Dropping the stream (client
/// gone) drops the receiver, and the engine stops that sequence at its next step.
fn stream_response(st: Arc<AppState>, p: Prepared, rx: mpsc::UnboundedReceiver<Event>, in_flight: InFlight) -> Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>> {
    let state = StreamState { st, p, rx, text: String::new(), first: None, sent_role: false, queued: Default::default(), done: false, _in_flight: in_flight };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.queued.pop_front() {
                return Some((ok(ev), s));
            }
            if s.done {
                return None;
            }
            if s.p.chat && !s.sent_role {
                s.sent_role = true;
                let mut ev = s.chunk_value(json!({"role": "assistant", "content": ""}), None);
                // the citations ride on the first chunk, known before any token
                if let Some(c) = &s.p.citations {
                    ev["citations"] = json!(c);
                }
                return Some((ok(SseEvent::default().data(ev.to_string())), s));
            }
            match s.rx.recv().await {
                Some(Event::Token { text }) => {
                    s.first.get_or_insert_with(|| s.p.arrived.elapsed());
                    if !text.is_empty() {
                        s.text.push_str(&text);
                        let ev = s.chunk(json!({"content": text}), None);
                        return Some((ok(ev), s));
                    }
                }
                Some(Event::Done { finish, prompt_tokens, completion_tokens }) => {
                    s.st.metrics.generation(&s.p.adapter, prompt_tokens, completion_tokens, s.first, s.p.arrived.elapsed());
                    if let Err(e) = record(&s.st, &s.p, &s.text, finish).await {
                        s.queued.push_back(SseEvent::default().data(e.body().to_string()));
                    }
                    let last = s.chunk(json!({}), Some(finish_str(finish)));
                    s.queued.push_back(last);
                    if s.p.include_usage {
                        let u = s.usage_chunk(prompt_tokens, completion_tokens);
                        s.queued.push_back(u);
                    }
                    s.queued.push_back(SseEvent::default().data("[DONE]"));
                    s.done = true;
                }
                Some(Event::Timeout { completion_tokens }) => {
                    let e = ApiError::timeout(format!("the request took longer than the server's limit ({completion_tokens} tokens generated)"));
                    s.queued.push_back(SseEvent::default().data(e.body().to_string()));
                    s.done = true;
                }
                Some(Event::Failed { message }) => {
                    s.queued.push_back(SseEvent::default().data(ApiError::internal(format!("generation failed: {message}")).body().to_string()));
                    s.done = true;
                }
                None => {
                    s.done = true;
                }
            }
        }
    });
    Sse::new(stream)
}

async fn feedback(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let r: std::result::Result<Response, ApiError> = async {
        check_api_key(&st, &headers)?;
        let Some(store) = st.feedback.clone() else {
            return Err(ApiError::not_found("feedback is off: start the server with --feedback-db FILE", "feedback_disabled"));
        };
        let bytes = read_body(&st, &headers, body).await?;
        let req: FeedbackRequest = parse_body(&bytes)?;
        let rating = match req.rating.as_deref() {
            None => None,
            Some(r) => Some(Rating::parse(r).ok_or_else(|| ApiError::bad_param("rating", format!("rating must be \"up\" or \"down\", found {r:?}")))?),
        };
        if rating.is_none() && req.rewrite.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(ApiError::bad_request("feedback needs a `rating` (\"up\" or \"down\", optionally with a `comment`) or a `rewrite` (the preferred answer)"));
        }
        let kind = match (&rating, &req.rewrite) {
            (_, Some(_)) => "rewrite",
            (Some(Rating::Up), None) => "up",
            _ => "down",
        };
        let id = tokio::task::spawn_blocking(move || -> std::result::Result<i64, ApiError> {
            let internal = |e: ServeError| ApiError::internal(e.to_string());
            if !store.has_response(&req.response_id).map_err(internal)? {
                return Err(ApiError::not_found(format!("no response with id {:?} was recorded by this server", req.response_id), "response_not_found"));
            }
            store.add_feedback(&req.response_id, rating, req.comment.as_deref(), req.rewrite.as_deref(), unix_now()).map_err(internal)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
        st.metrics.feedback.get_or_create(&crate::metrics::ReasonLabel { reason: kind.into() }).inc();
        Ok(Json(json!({"id": id, "object": "feedback", "status": "stored"})).into_response())
    }
    .await;
    counted(&st, "feedback", "none", r)
}

async fn admin_list(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = check_admin(&st, &headers).map(|()| Json(json!({"base": st.registry.base_name, "adapters": st.registry.list()})).into_response());
    counted(&st, "admin", "none", r)
}

async fn admin_load(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let r: std::result::Result<Response, ApiError> = async {
        check_admin(&st, &headers)?;
        let bytes = read_body(&st, &headers, body).await?;
        let req: AdapterRequest = parse_body(&bytes)?;
        crate::registry::check_adapter_name(&req.name)?;
        let path = st.registry.admin_path(&req.path)?;
        let kb_path = match req.kb.as_deref() {
            None | Some("default") | Some("none") => None,
            Some(p) => Some(st.registry.admin_kb_path(p)?),
        };
        let st2 = st.clone();
        let (info, replaced) = tokio::task::spawn_blocking(move || {
            let kb = match (req.kb.as_deref(), kb_path) {
                (_, Some(dir)) => {
                    // opened afresh, so a reload also picks up what `kb add` changed since
                    let kb = KnowledgeBase::open(&dir, st2.cfg.kb_embedder.as_deref(), &st2.registry.base).map_err(|e| ApiError::bad_param("kb", e.to_string()))?;
                    AdapterKb::Own(Arc::new(kb))
                }
                (Some("none"), None) => AdapterKb::Off,
                (Some(_), None) => AdapterKb::Default,
                // a reload without `kb` keeps the adapter's knowledge base
                (None, None) => st2.registry.adapter_kb(&req.name).unwrap_or_default(),
            };
            st2.registry.load_with_kb(&req.name, &path, kb)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
        st.metrics.adapters_loaded.set(st.registry.len() as i64);
        let code = if replaced { StatusCode::OK } else { StatusCode::CREATED };
        Ok((code, Json(json!({"adapter": info, "replaced": replaced, "model": format!("{}:{}", st.registry.base_name, info.name)}))).into_response())
    }
    .await;
    counted(&st, "admin", "none", r)
}

async fn admin_unload(State(st): State<Arc<AppState>>, headers: HeaderMap, UrlPath(name): UrlPath<String>) -> Response {
    let r = check_admin(&st, &headers).and_then(|()| st.registry.unload(&name)).map(|()| {
        st.metrics.adapters_loaded.set(st.registry.len() as i64);
        Json(json!({"deleted": name})).into_response()
    });
    counted(&st, "admin", "none", r)
}

fn ok(ev: SseEvent) -> std::result::Result<SseEvent, Infallible> {
    Ok(ev)
}
