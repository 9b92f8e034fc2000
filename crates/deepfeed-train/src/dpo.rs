//! Direct preference optimisation (Rafailov et al. 2023), as TRL's `DPOTrainer` computes it.
//!
//! For a pair with chosen answer c and rejected answer r, π = summed log-probability of the
//! answer tokens under the model being trained, ref = the same under the initial model:
//! `h = (π_c − π_r) − (ref_c − ref_r)`,
//! - `sigmoid`: `loss = −logsigmoid(β·h)·(1 − ε) − logsigmoid(−β·h)·ε` (ε = label smoothing);
//! - `ipo`: `loss = (h − 1/(2β))²` with log-probs averaged over the answer tokens (as TRL).
//!
//! The reference log-probs are computed once, before the first step, with the model as it is then
//! (fresh adapters: the base model itself) — TRL's `precompute_ref_log_probs` — so no second model
//! is held in memory; they travel in the checkpoint state so a resume does not recompute them.
use burn::module::Module;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use deepfeed_model::arch::Network;
use deepfeed_model::backend::inference_device;
use deepfeed_model::layers::Rotary;
use deepfeed_model::Model;

use crate::config::{DpoLoss, DpoSection};
use crate::data::{PairSample, Sample};
use crate::trainer::sequence_logps;

/// Sums over the pairs of a batch (divide by `pairs` for means).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DpoStats {
    pub pairs: usize,
    pub loss: f64,
    /// Pairs whose chosen reward is above the rejected one.
    pub correct: usize,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
}

impl DpoStats {
    pub fn add(&mut self, o: &DpoStats) {
        self.pairs += o.pairs;
        self.loss += o.loss;
        self.correct += o.correct;
        self.chosen_reward += o.chosen_reward;
        self.rejected_reward += o.rejected_reward;
    }
    pub fn mean_loss(&self) -> f64 {
        self.loss / self.pairs.max(1) as f64
    }
    /// Fraction of pairs with chosen reward > rejected reward.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.pairs.max(1) as f64
    }
    /// Mean of chosen reward − rejected reward, reward = β·(π − ref).
    pub fn margin(&self) -> f64 {
        (self.chosen_reward - self.rejected_reward) / self.pairs.max(1) as f64
    }
}

/// Per-sequence log-probs as the loss uses them: summed (sigmoid) or averaged per answer token (ipo).
fn scaled(logps: &[f64], samples: &[&Sample], loss: DpoLoss) -> Vec<f64> {
    match loss {
        DpoLoss::Sigmoid => logps.to_vec(),
        DpoLoss::Ipo => logps.iter().zip(samples).map(|(l, s)| l / s.trained_tokens().max(1) as f64).collect(),
    }
}

/// One forward over the chosen then the rejected sequences of `pairs`; returns the summed DPO
/// loss of the pairs (a scalar tensor with gradients on `device`) and the batch's numbers.
/// `refs[i]` = [ref_c, ref_r] of `pairs[i]` (summed log-probs).
pub fn batch_loss(network: &Network, rotary: &Rotary, pairs: &[&PairSample], refs: &[[f64; 2]], dpo: &DpoSection, pad: u32, device: &Device) -> (Tensor<1>, DpoStats) {
    let b = pairs.len();
    let seqs: Vec<&Sample> = pairs.iter().map(|p| &p.chosen).chain(pairs.iter().map(|p| &p.rejected)).collect();
    let logps = sequence_logps(network, rotary, &seqs, pad, device); // [2b]
    let counts: Vec<f32> = seqs.iter().map(|s| s.trained_tokens().max(1) as f32).collect();
    let logps = match dpo.loss {
        DpoLoss::Sigmoid => logps,
        DpoLoss::Ipo => logps / Tensor::<1>::from_data(TensorData::new(counts, [2 * b]), device),
    };
    let pi_c = logps.clone().slice([0..b]);
    let pi_r = logps.slice([b..2 * b]);
    let ref_c: Vec<f64> = scaled(&refs.iter().map(|r| r[0]).collect::<Vec<_>>(), &seqs[..b], dpo.loss);
    let ref_r: Vec<f64> = scaled(&refs.iter().map(|r| r[1]).collect::<Vec<_>>(), &seqs[b..], dpo.loss);
    let ref_diff: Vec<f32> = ref_c.iter().zip(&ref_r).map(|(c, r)| (c - r) as f32).collect();
    let h = pi_c.clone() - pi_r.clone() - Tensor::<1>::from_data(TensorData::new(ref_diff, [b]), device); // [b]
    let beta = dpo.beta;
    let losses = match dpo.loss {
        DpoLoss::Sigmoid => {
            let ls = dpo.label_smoothing;
            let logits = h * beta;
            log_sigmoid(logits.clone()).neg() * (1.0 - ls) - log_sigmoid(logits.neg()) * ls
        }
        DpoLoss::Ipo => (h - 1.0 / (2.0 * beta)).powi_scalar(2),
    };
    let loss = losses.clone().sum();
    // the logged numbers (no gradients needed)
    let values = |t: Tensor<1>| -> Vec<f64> { t.into_data().convert::<f64>().try_into_vec::<f64>().expect("float log-probs") };
    let (pc, pr) = (values(pi_c.detach()), values(pi_r.detach()));
    let mut stats = DpoStats { pairs: b, loss: values(losses.detach()).iter().sum(), ..Default::default() };
    for i in 0..b {
        let (rc, rr) = (beta * (pc[i] - ref_c[i]), beta * (pr[i] - ref_r[i]));
        stats.chosen_reward += rc;
        stats.rejected_reward += rr;
        stats.correct += usize::from(rc > rr);
    }
    (loss, stats)
}

/// The summed answer log-probs [chosen, rejected] of every pair under `model` as it is now,
/// without gradients.
pub fn reference_logps(model: &Model, pairs: &[PairSample], batch_size: usize, pad: u32) -> Vec<[f64; 2]> {
    let plain = inference_device();
    let network = model.network.valid();
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let b = chunk.len();
        let seqs: Vec<&Sample> = chunk.iter().map(|p| &p.chosen).chain(chunk.iter().map(|p| &p.rejected)).collect();
        let v = sequence_logps(&network, &model.rotary, &seqs, pad, &plain).into_data().convert::<f64>().try_into_vec::<f64>().expect("float log-probs");
        out.extend((0..b).map(|i| [v[i], v[b + i]]));
    }
    out
}

/// The DPO numbers over `pairs` (validation), without gradients.
pub fn evaluate(model: &Model, pairs: &[PairSample], refs: &[[f64; 2]], dpo: &DpoSection, batch_size: usize, pad: u32) -> DpoStats {
    let plain = inference_device();
    let network = model.network.valid();
    let mut stats = DpoStats::default();
    for (k, chunk) in pairs.chunks(batch_size.max(1)).enumerate() {
        let refs = &refs[k * batch_size.max(1)..][..chunk.len()];
        let chunk: Vec<&PairSample> = chunk.iter().collect();
        stats.add(&batch_loss(&network, &model.rotary, &chunk, refs, dpo, pad, &plain).1);
    }
    stats
}
