//! AdamW with decoupled weight decay (exactly `torch.optim.AdamW`), learning-rate schedules as in
//! transformers' `get_scheduler`, and global-norm gradient clipping (`clip_grad_norm_`).
//! Parameters and gradients are handled flattened to rank 1.
use std::collections::HashMap;

use burn::tensor::Tensor;

use crate::config::Scheduler;

#[derive(Debug, Clone)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

pub struct AdamW {
    pub cfg: AdamWConfig,
    /// Optimizer steps taken (bias correction uses it).
    pub t: u64,
    /// First and second moments per parameter name.
    pub state: HashMap<String, (Tensor<1>, Tensor<1>)>,
}

/// Norms and biases are not decayed (transformers' Trainer convention).
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("norm."))
}

impl AdamW {
    pub fn new(cfg: AdamWConfig) -> Self {
        AdamW { cfg, t: 0, state: HashMap::new() }
    }

    /// Call once per optimizer step, before the `update`s of that step.
    pub fn begin_step(&mut self) {
        self.t += 1;
    }

    /// Returns the updated parameter.
    pub fn update(&mut self, name: &str, param: Tensor<1>, grad: Tensor<1>, lr: f64) -> Tensor<1> {
        let c = &self.cfg;
        let (m, v) = self
            .state
            .remove(name)
            .unwrap_or_else(|| (grad.zeros_like(), grad.zeros_like()));
        let m = m * c.beta1 + grad.clone() * (1.0 - c.beta1);
        let v = v * c.beta2 + grad.square() * (1.0 - c.beta2);
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        let param = if c.weight_decay > 0.0 && decays(name) { param * (1.0 - lr * c.weight_decay) } else { param };
        let denom = v.clone().sqrt() / bc2.sqrt() + c.eps;
        let out = param - m.clone() / denom * (lr / bc1);
        self.state.insert(name.to_string(), (m, v));
        out
    }
}

/// Learning rate at optimizer step `step` (0-based), transformers' schedules: linear warm-up from
/// 0, then constant / linear decay to 0 / cosine decay to 0 at `total`.
pub fn learning_rate(kind: Scheduler, base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    match kind {
        Scheduler::Constant => base,
        Scheduler::Linear => base * (1.0 - progress).max(0.0),
        Scheduler::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

/// Scales `grads` so that their global L2 norm is at most `max_norm` (0 = no clipping);
/// returns the norm before clipping.
pub fn clip_global_norm(grads: &mut [(String, Tensor<1>)], max_norm: f64) -> f64 {
    let sq: f64 = grads.iter().map(|(_, g)| g.clone().square().sum().into_scalar::<f32>() as f64).sum();
    let norm = sq.sqrt();
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for (_, g) in grads.iter_mut() {
                *g = g.clone() * coef;
            }
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_match_transformers() {
        // get_linear_schedule_with_warmup(num_warmup_steps=2, num_training_steps=10)
        let lr: Vec<f64> = (0..10).map(|s| learning_rate(Scheduler::Linear, 1.0, s, 2, 10)).collect();
        assert_eq!(&lr[..3], &[0.0, 0.5, 1.0]);
        assert!((lr[6] - 0.5).abs() < 1e-12);
        // cosine: half way through the decay the rate is half
        assert!((learning_rate(Scheduler::Cosine, 2.0, 6, 2, 10) - 1.0).abs() < 1e-12);
        assert_eq!(learning_rate(Scheduler::Constant, 3.0, 9, 0, 10), 3.0);
    }

    #[test]
    fn decay_skips_norms_and_biases() {
        assert!(decays("model.layers.0.self_attn.q_proj.lora_A.weight"));
        assert!(!decays("model.layers.0.input_layernorm.weight"));
        assert!(!decays("model.norm.weight"));
        assert!(!decays("model.layers.0.self_attn.q_proj.bias"));
    }
}
