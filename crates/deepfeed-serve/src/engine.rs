//! The engine: one thread that owns the compute. Requests arrive through a bounded queue (full:
//! the HTTP layer answers 429); up to `max_active` sequences are interleaved token by token
//! (continuous scheduling: a new request joins between two steps, a finished one leaves at once),
//! each with its own KV cache and sampler.
//!
//! Steps are not fused into one batched matmul: sequences differ in length and in adapter, and the
//! decoder's attention takes one cache per call, so batching would need padded caches and
//! per-row masks. Interleaving keeps time to first token low for a newcomer (it waits for at
//! most one step of each active sequence) and the CPU backend already spreads one matmul over
//! all cores.
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deepfeed_model::generate::FinishReason;
use deepfeed_model::{GenerateOptions, Model, Sequence};
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::ServeMetrics;

/// What the engine tells the request handler.
#[derive(Debug)]
pub enum Event {
    /// One step done: a token was sampled; `text` is what became visible (may be empty).
    Token { text: String },
    /// Generation ended normally.
    Done { finish: FinishReason, prompt_tokens: usize, completion_tokens: usize },
    /// The request's deadline passed (queued or generating).
    Timeout { completion_tokens: usize },
    /// The model refused the input or failed.
    Failed { message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    QueueFull,
    /// The engine thread is gone.
    Stopped,
}

pub struct Job {
    pub model: Arc<Model>,
    pub prompt_ids: Vec<u32>,
    pub opts: GenerateOptions,
    pub deadline: Instant,
    pub events: UnboundedSender<Event>,
}

#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Requests waiting beyond the active ones.
    pub queue_capacity: usize,
    /// Sequences interleaved at once.
    pub max_active: usize,
}

#[derive(Clone)]
pub struct Engine {
    tx: SyncSender<Job>,
    metrics: Arc<ServeMetrics>,
}

struct Active {
    job: Job,
    seq: Sequence,
}

impl Engine {
    /// Starts the engine thread; it ends when every [`Engine`] handle is dropped and its work is done.
    pub fn start(cfg: EngineConfig, metrics: Arc<ServeMetrics>) -> Engine {
        let (tx, rx) = sync_channel::<Job>(cfg.queue_capacity.max(1));
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("deepfeed-engine".into())
            .spawn(move || run(rx, cfg.max_active.max(1), &m))
            .expect("spawning the engine thread");
        Engine { tx, metrics }
    }

    /// Queues a job, or says why not.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        self.metrics.queue_depth.inc();
        let r = self.tx.try_send(job);
        if r.is_err() {
            self.metrics.queue_depth.dec();
        }
        match r {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(SubmitError::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }
}

fn run(rx: Receiver<Job>, max_active: usize, metrics: &ServeMetrics) {
    let mut active: Vec<Active> = Vec::new();
    loop {
        // admit new work between steps
        while active.len() < max_active {
            let job = if active.is_empty() {
                match rx.recv() {
                    Ok(j) => j,
                    Err(_) => return, // every handle dropped, nothing left to do
                }
            } else {
                match rx.try_recv() {
                    Ok(j) => j,
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
                }
            };
            metrics.queue_depth.dec();
            if job.events.is_closed() {
                metrics.cancel("client_disconnected");
                continue;
            }
            if Instant::now() >= job.deadline {
                metrics.cancel("timeout");
                let _ = job.events.send(Event::Timeout { completion_tokens: 0 });
                continue;
            }
            match Sequence::new(&job.model, &job.prompt_ids, &job.opts) {
                Ok(seq) => active.push(Active { job, seq }),
                Err(e) => {
                    let _ = job.events.send(Event::Failed { message: e.to_string() });
                }
            }
        }
        // one step of every active sequence
        let now = Instant::now();
        active.retain_mut(|a| {
            if a.job.events.is_closed() {
                metrics.cancel("client_disconnected");
                return false;
            }
            if now >= a.job.deadline {
                metrics.cancel("timeout");
                let _ = a.job.events.send(Event::Timeout { completion_tokens: a.seq.completion_tokens() });
                return false;
            }
            metrics.engine_step();
            // a panic inside the model fails this request only, not the engine
            let model = a.job.model.clone();
            let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.seq.step(&model)))
                .unwrap_or_else(|p| Err(deepfeed_model::ModelError::Invalid(format!("the model panicked: {}", panic_text(&p)))));
            match stepped {
                Ok(text) => {
                    let _ = a.job.events.send(Event::Token { text });
                    match a.seq.finish_reason() {
                        Some(finish) => {
                            let _ = a.job.events.send(Event::Done {
                                finish,
                                prompt_tokens: a.seq.prompt_tokens(),
                                completion_tokens: a.seq.completion_tokens(),
                            });
                            false
                        }
                        None => true,
                    }
                }
                Err(e) => {
                    let _ = a.job.events.send(Event::Failed { message: e.to_string() });
                    false
                }
            }
        });
        metrics.active_sequences.set(active.len() as i64);
        metrics.kv_cache_bytes.set(active.iter().map(|a| a.seq.kv_cache_bytes()).sum::<usize>() as i64);
    }
}

/// Default per-request time limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "unknown panic".into())
}
