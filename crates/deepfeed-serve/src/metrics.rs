//! Prometheus metrics (text format 0.0.4, `prometheus-client`): one registry per server, so
//! several servers in one process (tests) do not mix their numbers.
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub status: String,
    pub adapter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdapterLabel {
    pub adapter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

type Hist = Family<AdapterLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn token_histogram() -> Histogram {
    // 0.1 ms … ~3.3 s per token
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

fn retrieval_histogram() -> Histogram {
    // 0.1 ms … ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

fn passages_histogram() -> Histogram {
    Histogram::new([0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 50.0].into_iter())
}

pub struct ServeMetrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub time_to_first_token: Hist,
    pub time_per_output_token: Hist,
    pub request_duration: Hist,
    pub prompt_tokens: Family<AdapterLabel, Counter>,
    pub generation_tokens: Family<AdapterLabel, Counter>,
    pub cancelled: Family<ReasonLabel, Counter>,
    pub queue_depth: Gauge,
    pub requests_in_flight: Gauge,
    pub active_sequences: Gauge,
    pub kv_cache_bytes: Gauge,
    pub adapters_loaded: Gauge,
    pub feedback: Family<ReasonLabel, Counter>,
    pub retrieval_seconds: Hist,
    pub retrieval_passages: Hist,
    resident_memory: Gauge<f64, AtomicU64>,
    engine_steps: Counter<u64>,
}

impl Default for ServeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServeMetrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        r.register("deepfeed_requests", "HTTP requests answered, by endpoint, status code and adapter", requests.clone());
        let ttft: Hist = Family::new_with_constructor(latency_histogram);
        r.register("deepfeed_time_to_first_token_seconds", "Time from request arrival to the first generated token", ttft.clone());
        let tpot: Hist = Family::new_with_constructor(token_histogram);
        r.register("deepfeed_time_per_output_token_seconds", "Mean time per generated token after the first, per request", tpot.clone());
        let e2e: Hist = Family::new_with_constructor(latency_histogram);
        r.register("deepfeed_request_duration_seconds", "End-to-end latency of generation requests", e2e.clone());
        let prompt_tokens = Family::<AdapterLabel, Counter>::default();
        r.register("deepfeed_prompt_tokens", "Prompt tokens processed", prompt_tokens.clone());
        let generation_tokens = Family::<AdapterLabel, Counter>::default();
        r.register("deepfeed_generation_tokens", "Tokens generated", generation_tokens.clone());
        let cancelled = Family::<ReasonLabel, Counter>::default();
        r.register("deepfeed_requests_cancelled", "Generations stopped early: client_disconnected or timeout", cancelled.clone());
        let queue_depth = Gauge::default();
        r.register("deepfeed_queue_depth", "Requests waiting for the engine", queue_depth.clone());
        let requests_in_flight = Gauge::default();
        r.register("deepfeed_requests_in_flight", "Generation requests being answered (queued or generating)", requests_in_flight.clone());
        let active_sequences = Gauge::default();
        r.register("deepfeed_active_sequences", "Sequences the engine is interleaving now", active_sequences.clone());
        let kv_cache_bytes = Gauge::default();
        r.register("deepfeed_kv_cache_bytes", "Memory held by the KV caches of active sequences", kv_cache_bytes.clone());
        let adapters_loaded = Gauge::default();
        r.register("deepfeed_adapters_loaded", "LoRA adapters loaded over the base model", adapters_loaded.clone());
        let feedback = Family::<ReasonLabel, Counter>::default();
        r.register("deepfeed_feedback", "Feedback received, by kind (up, down, rewrite)", feedback.clone());
        let retrieval_seconds: Hist = Family::new_with_constructor(retrieval_histogram);
        r.register("deepfeed_retrieval_seconds", "Knowledge-base retrieval per request (embedding the question, search, prompt building)", retrieval_seconds.clone());
        let retrieval_passages: Hist = Family::new_with_constructor(passages_histogram);
        r.register("deepfeed_retrieval_passages", "Passages put into the prompt per retrieval", retrieval_passages.clone());
        let resident_memory = Gauge::<f64, AtomicU64>::default();
        r.register("process_resident_memory_bytes", "Resident memory of the server process", resident_memory.clone());
        let engine_steps = Counter::default();
        r.register("deepfeed_engine_steps", "Forward passes run by the engine", engine_steps.clone());
        ServeMetrics {
            registry: r,
            requests,
            time_to_first_token: ttft,
            time_per_output_token: tpot,
            request_duration: e2e,
            prompt_tokens,
            generation_tokens,
            cancelled,
            queue_depth,
            requests_in_flight,
            active_sequences,
            kv_cache_bytes,
            adapters_loaded,
            feedback,
            retrieval_seconds,
            retrieval_passages,
            resident_memory,
            engine_steps,
        }
    }

    pub fn request(&self, endpoint: &str, status: u16, adapter: &str) {
        self.requests.get_or_create(&RequestLabels { endpoint: endpoint.into(), status: status.to_string(), adapter: adapter.into() }).inc();
    }

    pub fn cancel(&self, reason: &str) {
        self.cancelled.get_or_create(&ReasonLabel { reason: reason.into() }).inc();
    }

    pub fn engine_step(&self) {
        self.engine_steps.inc();
    }

    /// Records a finished generation.
    pub fn generation(&self, adapter: &str, prompt_tokens: usize, completion_tokens: usize, ttft: Option<Duration>, total: Duration) {
        let l = AdapterLabel { adapter: adapter.into() };
        self.prompt_tokens.get_or_create(&l).inc_by(prompt_tokens as u64);
        self.generation_tokens.get_or_create(&l).inc_by(completion_tokens as u64);
        self.request_duration.get_or_create(&l).observe(total.as_secs_f64());
        if let Some(t) = ttft {
            self.time_to_first_token.get_or_create(&l).observe(t.as_secs_f64());
            if completion_tokens > 1 {
                let per = total.saturating_sub(t).as_secs_f64() / (completion_tokens - 1) as f64;
                self.time_per_output_token.get_or_create(&l).observe(per);
            }
        }
    }

    /// Records one retrieval.
    pub fn retrieval(&self, adapter: &str, took: Duration, passages: usize) {
        let l = AdapterLabel { adapter: adapter.into() };
        self.retrieval_seconds.get_or_create(&l).observe(took.as_secs_f64());
        self.retrieval_passages.get_or_create(&l).observe(passages as f64);
    }

    /// The text exposition (process RSS read now).
    pub fn render(&self) -> String {
        self.resident_memory.set(resident_memory_bytes() as f64);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// Resident set size from /proc/self/status (Linux); 0 elsewhere.
pub fn resident_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0, |kb| kb * 1024)
}

/// Renders a list of plain gauges `(name, help, value)` in the Prometheus text format (used for
/// training progress, whose numbers come from outside this crate).
pub fn render_gauges(gauges: &[(&str, &str, f64)]) -> String {
    let mut r = Registry::default();
    for (name, help, value) in gauges {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(*value);
        r.register(*name, *help, g);
    }
    let rss = Gauge::<f64, AtomicU64>::default();
    rss.set(resident_memory_bytes() as f64);
    r.register("process_resident_memory_bytes", "Resident memory of the process", rss);
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &r).expect("writing to a String");
    out
}
