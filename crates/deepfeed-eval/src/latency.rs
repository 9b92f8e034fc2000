//! Generation latency over the evaluation prompts: time to first token (TTFT: tokenizing the
//! prompt + prefill, i.e. until the first token's logits exist), time per output token after the
//! first (TPOT), end-to-end time of the whole answer, their p50/p95/p99, and output tokens per
//! second. Warm-up generations run first and are not counted. Greedy decoding, one prompt at a
//! time, up to `max_new_tokens`, stopping at EOS as a deployment would.
use serde::Serialize;

/// The timings of one generated answer.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Timing {
    pub ttft_ms: f64,
    /// (end-to-end − TTFT) / (output tokens − 1); 0 for answers of one token.
    pub tpot_ms: f64,
    pub e2e_ms: f64,
    pub output_tokens: usize,
}

impl Timing {
    pub fn new(ttft_ms: f64, e2e_ms: f64, output_tokens: usize) -> Self {
        let tpot_ms = if output_tokens > 1 { (e2e_ms - ttft_ms).max(0.0) / (output_tokens - 1) as f64 } else { 0.0 };
        Timing { ttft_ms, tpot_ms, e2e_ms, output_tokens }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Percentile `q` (0–100) with linear interpolation between closest ranks (numpy's default).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl Percentiles {
    pub fn of(values: impl Iterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.collect();
        v.sort_by(f64::total_cmp);
        let mean = if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
        Percentiles { mean, p50: percentile(&v, 50.0), p95: percentile(&v, 95.0), p99: percentile(&v, 99.0), max: v.last().copied().unwrap_or(f64::NAN) }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Timed generations (warm-up excluded).
    pub prompts: usize,
    pub warmup: usize,
    pub max_new_tokens: usize,
    pub ttft_ms: Percentiles,
    pub tpot_ms: Percentiles,
    pub e2e_ms: Percentiles,
    /// Output tokens of all timed answers / their total end-to-end time.
    pub tokens_per_second: f64,
    pub output_tokens: usize,
}

pub fn summarise(timings: &[Timing], warmup: usize, max_new_tokens: usize) -> Option<LatencySummary> {
    if timings.is_empty() {
        return None;
    }
    let tokens: usize = timings.iter().map(|t| t.output_tokens).sum();
    let secs: f64 = timings.iter().map(|t| t.e2e_ms).sum::<f64>() / 1e3;
    Some(LatencySummary {
        prompts: timings.len(),
        warmup,
        max_new_tokens,
        ttft_ms: Percentiles::of(timings.iter().map(|t| t.ttft_ms)),
        tpot_ms: Percentiles::of(timings.iter().filter(|t| t.output_tokens > 1).map(|t| t.tpot_ms)),
        e2e_ms: Percentiles::of(timings.iter().map(|t| t.e2e_ms)),
        tokens_per_second: if secs > 0.0 { tokens as f64 / secs } else { 0.0 },
        output_tokens: tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // numpy.percentile([1..=10], [50, 95, 99]) = 5.5, 9.55, 9.91
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!((percentile(&v, 50.0) - 5.5).abs() < 1e-12);
        assert!((percentile(&v, 95.0) - 9.55).abs() < 1e-12);
        assert!((percentile(&v, 99.0) - 9.91).abs() < 1e-12);
        assert_eq!(percentile(&[3.0], 95.0), 3.0);
        let t = Timing::new(10.0, 40.0, 4);
        assert_eq!(t.tpot_ms, 10.0);
        let s = summarise(&[t, Timing::new(5.0, 5.0, 1)], 1, 8).unwrap();
        assert_eq!(s.output_tokens, 5);
        assert!((s.tokens_per_second - 5.0 / 0.045).abs() < 1e-9);
        assert_eq!(s.tpot_ms.p50, 10.0, "one-token answers have no TPOT");
    }
}
