//! Memory estimate of a training run, before any weight is loaded: parameters, gradients,
//! optimizer moments and activations for the chosen method, batch and sequence length, compared
//! with the memory available.
use deepfeed_model::lora::LINEAR_MODULES;
use deepfeed_model::ModelConfig;
use serde::Serialize;

use crate::config::{Method, TrainConfig};
use crate::error::{Result, TrainError};

#[derive(Debug, Clone, Serialize)]
pub struct MemoryEstimate {
    pub parameters: usize,
    pub trainable_parameters: usize,
    pub weights_bytes: usize,
    /// Gradients + their accumulation buffers.
    pub gradients_bytes: usize,
    /// AdamW first and second moments.
    pub optimizer_bytes: usize,
    /// Activations kept for the backward pass of one micro-batch (worst case: every sequence at
    /// max_seq_len).
    pub activations_bytes: usize,
    pub total_bytes: usize,
    /// MemAvailable of /proc/meminfo, when known.
    pub available_bytes: Option<usize>,
}

impl MemoryEstimate {
    pub fn fits(&self) -> bool {
        self.available_bytes.is_none_or(|a| self.total_bytes <= a * 9 / 10)
    }

    pub fn render(&self) -> String {
        let gib = |b: usize| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64);
        let mut s = format!(
            "parameters {:.1}M, trainable {:.2}M ({:.2}%)\n  weights      {}\n  gradients    {}\n  optimizer    {}\n  activations  {}\n  total        {}",
            self.parameters as f64 / 1e6,
            self.trainable_parameters as f64 / 1e6,
            100.0 * self.trainable_parameters as f64 / self.parameters.max(1) as f64,
            gib(self.weights_bytes),
            gib(self.gradients_bytes),
            gib(self.optimizer_bytes),
            gib(self.activations_bytes),
            gib(self.total_bytes)
        );
        if let Some(a) = self.available_bytes {
            s.push_str(&format!("\n  available    {}", gib(a)));
        }
        s
    }
}

fn available_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Trainable parameters of `cfg.method` on a model of `m`'s shape.
fn trainable(m: &ModelConfig, cfg: &TrainConfig) -> Result<usize> {
    let (h, i, d) = (m.hidden_size, m.intermediate_size, m.head_dim);
    let (q, kv) = (m.num_attention_heads * d, m.num_key_value_heads * d);
    let all = m.num_parameters();
    Ok(match cfg.method {
        Method::Full => all,
        Method::Lora if m.deepseek.is_some() => deepseek_lora_parameters(m, cfg)?,
        Method::Lora => {
            let shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]; // (in, out) per LINEAR_MODULES
            let targets = cfg.lora.to_lora_config().resolved_targets()?;
            let per_layer: usize = LINEAR_MODULES
                .iter()
                .zip(shapes)
                .filter(|(name, _)| targets.iter().any(|t| t == *name))
                .map(|(_, (i, o))| cfg.lora.r * (i + o))
                .sum();
            per_layer * m.num_hidden_layers
        }
        Method::Prefix => cfg.prefix.num_virtual_tokens * m.num_hidden_layers * 2 * m.num_key_value_heads * d,
        Method::Freeze => {
            let embed = m.vocab_size * h;
            let per_layer = (all - embed * if m.tie_word_embeddings { 1 } else { 2 } - h) / m.num_hidden_layers;
            let mut n = per_layer * cfg.freeze.trainable_layers.min(m.num_hidden_layers);
            if cfg.freeze.trainable_modules.iter().any(|x| x.contains("lm_head")) {
                n += embed;
            }
            n
        }
    })
}

/// LoRA parameters on DeepSeek-V2/V3: r·(in + out) for every adapted projection of every layer
/// (latent attention, dense MLP or routed + shared experts).
fn deepseek_lora_parameters(m: &ModelConfig, cfg: &TrainConfig) -> Result<usize> {
    let ds = m.deepseek.as_ref().expect("checked by the caller");
    let targets = cfg.lora.to_lora_config().resolved_targets()?;
    let (h, nh) = (m.hidden_size, m.num_attention_heads);
    let dq = ds.qk_head_dim();
    let mut attention: Vec<(&str, usize, usize)> = match ds.q_lora_rank {
        None => vec![("q_proj", h, nh * dq)],
        Some(rq) => vec![("q_a_proj", h, rq), ("q_b_proj", rq, nh * dq)],
    };
    attention.extend([
        ("kv_a_proj_with_mqa", h, ds.kv_lora_rank + ds.qk_rope_head_dim),
        ("kv_b_proj", ds.kv_lora_rank, nh * (ds.qk_nope_head_dim + ds.v_head_dim)),
        ("o_proj", nh * ds.v_head_dim, h),
    ]);
    let adapted = |name: &str| targets.iter().any(|t| t == name);
    let swiglu = |width: usize| -> usize {
        [("gate_proj", h, width), ("up_proj", h, width), ("down_proj", width, h)]
            .iter()
            .filter(|(name, ..)| adapted(name))
            .map(|(_, i, o)| cfg.lora.r * (i + o))
            .sum()
    };
    let attention: usize = attention.iter().filter(|(name, ..)| adapted(name)).map(|(_, i, o)| cfg.lora.r * (i + o)).sum();
    Ok((0..m.num_hidden_layers)
        .map(|l| {
            let mlp = if ds.is_moe_layer(l) {
                ds.n_routed_experts * swiglu(ds.moe_intermediate_size)
                    + if ds.n_shared_experts > 0 { swiglu(ds.moe_intermediate_size * ds.n_shared_experts) } else { 0 }
            } else {
                swiglu(m.intermediate_size)
            };
            attention + mlp
        })
        .sum())
}

pub fn estimate(m: &ModelConfig, cfg: &TrainConfig) -> Result<MemoryEstimate> {
    let f = 4; // f32 bytes
    let parameters = m.num_parameters();
    let trainable_parameters = trainable(m, cfg)?;
    // DPO: each pair is two sequences (chosen and rejected) in one forward
    let per_item = if cfg.objective == crate::config::Objective::Dpo { 2 } else { 1 };
    let (b, s) = (cfg.batch_size * per_item, cfg.max_seq_len);
    let (h, i, l) = (m.hidden_size, m.intermediate_size, m.num_hidden_layers);
    let heads = m.num_attention_heads;
    // saved for backward per token and layer: norms, q/k/v, rotary, attention output, MLP
    // (gate, up, activation, product), residuals -- about 16 h + 4 i floats
    let per_token_layer = 16 * h + 4 * i;
    // attention scores and probabilities per layer: [b, heads, s, s] twice
    let attention = 2 * b * heads * s * s;
    // logits, log-softmax and its gradient: [n, vocab] three times, n the trained tokens of a
    // batch (at most b * s; only those go through the output head)
    let logits = 3 * b * s * m.vocab_size;
    let ckpt = if cfg.gradient_checkpointing { 2 } else { 1 };
    let activations_bytes = f * (b * s * l * per_token_layer / ckpt + l * attention / ckpt + logits);
    let weights_bytes = match cfg.base_dtype {
        crate::config::WeightDType::F32 => f * parameters,
        // matrices in bf16, trainable LoRA weights in f32
        crate::config::WeightDType::Bf16 => 2 * parameters + f * trainable_parameters,
        // at most Q8_0's 34 bytes per 32 values (a Q4_K_M GGUF takes about 0.6 bytes per value)
        crate::config::WeightDType::Quantized => parameters * 34 / 32 + f * trainable_parameters,
    };
    let gradients_bytes = f * trainable_parameters * 2;
    let optimizer_bytes = f * trainable_parameters * 2;
    let total_bytes = weights_bytes + gradients_bytes + optimizer_bytes + activations_bytes;
    Ok(MemoryEstimate {
        parameters,
        trainable_parameters,
        weights_bytes,
        gradients_bytes,
        optimizer_bytes,
        activations_bytes,
        total_bytes,
        available_bytes: available_memory(),
    })
}

/// Refuses a run that will not fit, with what to change.
pub fn check_fits(e: &MemoryEstimate, cfg: &TrainConfig) -> Result<()> {
    if e.fits() {
        return Ok(());
    }
    let mut tips = vec![];
    if cfg.batch_size > 1 {
        tips.push(format!("a smaller batch_size (with grad_accum {} to keep the effective batch)", cfg.grad_accum * cfg.batch_size));
    }
    if !cfg.gradient_checkpointing {
        tips.push("gradient_checkpointing: true".into());
    }
    if cfg.method != Method::Lora {
        tips.push("method: lora".into());
    } else if cfg.base_dtype != crate::config::WeightDType::Quantized {
        tips.push("base_dtype: quantized (the frozen base kept as quantised blocks)".into());
    }
    tips.push("a shorter max_seq_len".into());
    Err(TrainError::Resources(format!(
        "this run needs about {:.1} GiB but {:.1} GiB are available:\n{}\ntry {}",
        e.total_bytes as f64 / (1u64 << 30) as f64,
        e.available_bytes.unwrap_or(0) as f64 / (1u64 << 30) as f64,
        e.render(),
        tips.join(", or ")
    )))
}
