//! Live training progress for a metrics endpoint: the trainer writes the latest step's numbers
//! here, a reader (`deepfeed train --metrics-addr`) renders them for Prometheus.
use std::sync::Mutex;

/// The numbers of the latest finished step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveSnapshot {
    pub step: usize,
    pub total_steps: usize,
    pub loss: f64,
    pub learning_rate: f64,
    pub tokens_per_second: f64,
    pub grad_norm: f64,
    /// Seconds left at the pace of this run so far.
    pub eta_seconds: f64,
    pub val_loss: Option<f64>,
}

#[derive(Debug, Default)]
pub struct LiveMetrics {
    latest: Mutex<Option<LiveSnapshot>>,
}

impl LiveMetrics {
    pub fn update(&self, s: LiveSnapshot) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }

    /// `None` until the first step has finished.
    pub fn snapshot(&self) -> Option<LiveSnapshot> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
