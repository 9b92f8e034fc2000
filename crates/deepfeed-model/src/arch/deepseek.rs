//! `DeepseekV2ForCausalLM` and `DeepseekV3ForCausalLM` (transformers
//! `models/deepseek_v2/modeling_deepseek_v2.py`, `models/deepseek_v3/modeling_deepseek_v3.py`):
//! multi-head latent attention (MLA) and a mixture of experts (MoE). V3 is V2 with a sigmoid
//! router, a bias-corrected group top-k (`noaux_tc`) and an optional non-interleaved rope; the
//! switches come from [`DeepseekSettings`].
//!
//! Shapes: b = batch, s = new tokens, t = past + new tokens, h = hidden_size, nh = heads,
//! dn = qk_nope_head_dim, dr = qk_rope_head_dim, dq = dn + dr, dv = v_head_dim,
//! r = kv_lora_rank, rq = q_lora_rank, n = b·s tokens, E = routed experts, k = experts per token.
//!
//! The KV cache holds each head's key [b, nh, t, dq] and value [b, nh, t, dv] after the
//! up-projection (kv_b_proj), not the compressed latent transformers caches: simpler, and the
//! attention is the same.
use burn::module::{Module, Param};
use burn::tensor::activation::{sigmoid, silu, softmax};
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::config::{DeepseekSettings, ModelConfig, TopkMethod};
use crate::error::{ModelError, Result};
use crate::layers::{apply_rotary, apply_rotary_interleaved, attention_mask, Embedding, Linear, RmsNorm, Rotary};
use crate::weights::{WeightDType, WeightFiles};

use super::llama::{push_linear, KvCache, ParamMut};

fn settings(cfg: &ModelConfig) -> Result<&DeepseekSettings> {
    cfg.deepseek
        .as_ref()
        .ok_or_else(|| ModelError::Invalid(format!("{}: the config has no DeepSeek settings", cfg.architecture.hf_name())))
}

/// Multi-head latent attention (`DeepseekV2Attention` / `DeepseekV3Attention`).
#[derive(Module, Debug)]
pub struct DeepseekAttention {
    /// No query compression (`q_lora_rank` null): h -> nh·dq
    pub q_proj: Option<Linear>,
    /// Query compression: h -> rq, RMSNorm, rq -> nh·dq
    pub q_a_proj: Option<Linear>,
    pub q_a_layernorm: Option<RmsNorm>,
    pub q_b_proj: Option<Linear>,
    /// h -> r + dr: the compressed key/value latent and the rope key shared by all heads
    pub kv_a_proj_with_mqa: Linear,
    pub kv_a_layernorm: RmsNorm,
    /// r -> nh·(dn + dv)
    pub kv_b_proj: Linear,
    /// nh·dv -> h
    pub o_proj: Linear,
    pub num_heads: usize,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    pub rope_interleave: bool,
    pub softmax_scale: f64,
}

impl DeepseekAttention {
    fn load(w: &WeightFiles, p: &str, cfg: &ModelConfig, device: &Device, dt: WeightDType) -> Result<Self> {
        let ds = settings(cfg)?;
        let (h, nh, eps, bias) = (cfg.hidden_size, cfg.num_attention_heads, cfg.rms_norm_eps, cfg.qkv_bias);
        let dq = ds.qk_head_dim();
        let lin = |name: &str, i: usize, o: usize, bias: bool| Linear::load(w, &format!("{p}.{name}"), i, o, bias, device, dt);
        let (q_proj, q_a_proj, q_a_layernorm, q_b_proj) = match ds.q_lora_rank {
            None => (Some(lin("q_proj", h, nh * dq, false)?), None, None, None),
            Some(rq) => (
                None,
                Some(lin("q_a_proj", h, rq, bias)?),
                Some(RmsNorm::load(w, &format!("{p}.q_a_layernorm"), rq, eps, device)?),
                Some(lin("q_b_proj", rq, nh * dq, false)?),
            ),
        };
        Ok(DeepseekAttention {
            q_proj,
            q_a_proj,
            q_a_layernorm,
            q_b_proj,
            kv_a_proj_with_mqa: lin("kv_a_proj_with_mqa", h, ds.kv_lora_rank + ds.qk_rope_head_dim, bias)?,
            kv_a_layernorm: RmsNorm::load(w, &format!("{p}.kv_a_layernorm"), ds.kv_lora_rank, eps, device)?,
            kv_b_proj: lin("kv_b_proj", ds.kv_lora_rank, nh * (ds.qk_nope_head_dim + ds.v_head_dim), false)?,
            o_proj: lin("o_proj", nh * ds.v_head_dim, h, cfg.o_bias)?,
            num_heads: nh,
            kv_lora_rank: ds.kv_lora_rank,
            qk_nope_head_dim: ds.qk_nope_head_dim,
            qk_rope_head_dim: ds.qk_rope_head_dim,
            v_head_dim: ds.v_head_dim,
            rope_interleave: ds.rope_interleave,
            softmax_scale: ds.softmax_scale,
        })
    }

    /// Rope on the dr rotary dims: V2 (always) and V3 with `rope_interleave` turn interleaved
    /// pairs. V2 writes each pair back in place and V3 de-interleaves; q and k get the same
    /// layout either way, so their dot products (all that is used) are identical.
    fn rope(&self, x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        if self.rope_interleave {
            apply_rotary_interleaved(x, cos, sin)
        } else {
            apply_rotary(x, cos, sin)
        }
    }

    /// x: [b, s, h] -> [b, s, h]
    fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        mask: Option<&Tensor<4>>,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (nh, r, dn, dr, dv) = (self.num_heads, self.kv_lora_rank, self.qk_nope_head_dim, self.qk_rope_head_dim, self.v_head_dim);
        let dq = dn + dr;

        // queries: [b, s, nh·dq] -> [b, nh, s, dq], split into the no-rope and rope parts
        let q = match (&self.q_proj, &self.q_a_proj, &self.q_a_layernorm, &self.q_b_proj) {
            (Some(q_proj), ..) => q_proj.forward(x.clone()),
            (None, Some(a), Some(norm), Some(b_proj)) => b_proj.forward(norm.forward(a.forward(x.clone()))),
            _ => unreachable!("load sets q_proj or q_a_proj + q_a_layernorm + q_b_proj"),
        };
        let q = q.reshape([b, s, nh, dq]).swap_dims(1, 2);
        let q_nope = q.clone().slice([0..b, 0..nh, 0..s, 0..dn]); // [b, nh, s, dn]
        let q_pe = q.slice([0..b, 0..nh, 0..s, dn..dq]); // [b, nh, s, dr]

        // keys/values: [b, s, r + dr] -> latent [b, s, r] and one rope key [b, 1, s, dr]
        let compressed = self.kv_a_proj_with_mqa.forward(x);
        let latent = self.kv_a_layernorm.forward(compressed.clone().slice([0..b, 0..s, 0..r]));
        let k_pe = compressed.slice([0..b, 0..s, r..r + dr]).reshape([b, s, 1, dr]).swap_dims(1, 2);

        let q_pe = self.rope(q_pe, cos, sin);
        let k_pe = self.rope(k_pe, cos, sin);

        // expand the latent per head: [b, s, nh·(dn + dv)] -> [b, nh, s, dn + dv]
        let kv = self.kv_b_proj.forward(latent).reshape([b, s, nh, dn + dv]).swap_dims(1, 2);
        let k_nope = kv.clone().slice([0..b, 0..nh, 0..s, 0..dn]); // [b, nh, s, dn]
        let mut v = kv.slice([0..b, 0..nh, 0..s, dn..dn + dv]); // [b, nh, s, dv]
        // every head shares the rope key
        let mut k = Tensor::cat(vec![k_nope, k_pe.repeat_dim(1, nh)], 3); // [b, nh, s, dq]
        let q = Tensor::cat(vec![q_nope, q_pe], 3); // [b, nh, s, dq]

        if let Some(slot) = cache {
            if let Some((past_k, past_v)) = slot.take() {
                k = Tensor::cat(vec![past_k, k], 2); // [b, nh, t, dq]
                v = Tensor::cat(vec![past_v, v], 2); // [b, nh, t, dv]
            }
            *slot = Some((k.clone(), v.clone()));
        }

        let scores = q.matmul(k.swap_dims(2, 3)) * self.softmax_scale; // [b, nh, s, t]
        let scores = match mask {
            Some(m) => scores + m.clone(),
            None => scores,
        };
        let out = softmax(scores, 3).matmul(v); // [b, nh, s, dv]
        self.o_proj.forward(out.swap_dims(1, 2).reshape([b, s, nh * dv]))
    }
}

/// SwiGLU feed-forward: down(silu(gate(x)) * up(x)); the dense layers, each expert and the
/// shared experts (`DeepseekV2MLP`).
#[derive(Module, Debug)]
pub struct DeepseekMlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl DeepseekMlp {
    fn load(w: &WeightFiles, p: &str, h: usize, i: usize, bias: bool, device: &Device, dt: WeightDType) -> Result<Self> {
        Ok(DeepseekMlp {
            gate_proj: Linear::load(w, &format!("{p}.gate_proj"), h, i, bias, device, dt)?,
            up_proj: Linear::load(w, &format!("{p}.up_proj"), h, i, bias, device, dt)?,
            down_proj: Linear::load(w, &format!("{p}.down_proj"), i, h, bias, device, dt)?,
        })
    }

    /// x: [b, s, h] -> [b, s, h]
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj.forward(silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }

    fn linears(&mut self, p: &str) -> Vec<(String, &mut Linear)> {
        vec![
            (format!("{p}.gate_proj"), &mut self.gate_proj),
            (format!("{p}.up_proj"), &mut self.up_proj),
            (format!("{p}.down_proj"), &mut self.down_proj),
        ]
    }
}

/// Routed experts + shared experts (`DeepseekV2Moe` / `DeepseekV3MoE` with their
/// `TopkRouter`). Experts are stored one by one, as checkpoints name them
/// (`mlp.experts.E.gate_proj.weight`), and run over the tokens routed to them.
#[derive(Module, Debug)]
pub struct DeepseekMoe {
    /// Router weight [E, h], kept in f32 whatever the base dtype (as transformers does).
    pub gate: Param<Tensor<2>>,
    /// V3: added to the sigmoid scores when choosing experts (not when weighing them), [E].
    pub e_score_correction_bias: Option<Param<Tensor<1>>>,
    pub experts: Vec<DeepseekMlp>,
    pub shared_experts: Option<DeepseekMlp>,
    pub top_k: usize,
    /// 0 greedy, 1 group-limited greedy, 2 noaux_tc (a plain number: burn modules hold no enums
    /// of constants)
    pub topk_method: usize,
    pub n_group: usize,
    pub topk_group: usize,
    pub norm_topk_prob: bool,
    pub routed_scaling_factor: f64,
}

const GREEDY: usize = 0;
const GROUP_LIMITED_GREEDY: usize = 1;
const NOAUX_TC: usize = 2;

impl DeepseekMoe {
    fn load(w: &WeightFiles, p: &str, cfg: &ModelConfig, device: &Device, dt: WeightDType) -> Result<Self> {
        let ds = settings(cfg)?;
        let (h, e, i) = (cfg.hidden_size, ds.n_routed_experts, ds.moe_intermediate_size);
        let experts = (0..e)
            // routed experts never have biases (transformers stores them as bias-free 3-D tensors);
            // `mlp_bias` (V2) applies to the dense layers and the shared experts
            .map(|j| DeepseekMlp::load(w, &format!("{p}.experts.{j}"), h, i, false, device, dt))
            .collect::<Result<Vec<_>>>()?;
        let shared_experts = match ds.n_shared_experts {
            0 => None,
            n => Some(DeepseekMlp::load(w, &format!("{p}.shared_experts"), h, i * n, cfg.mlp_bias, device, dt)?),
        };
        let noaux = ds.topk_method == TopkMethod::NoauxTc;
        Ok(DeepseekMoe {
            gate: Param::from_tensor(w.tensor(&format!("{p}.gate.weight"), [e, h], device)?),
            e_score_correction_bias: if noaux {
                Some(Param::from_tensor(w.tensor(&format!("{p}.gate.e_score_correction_bias"), [e], device)?))
            } else {
                None
            },
            experts,
            shared_experts,
            top_k: ds.num_experts_per_tok,
            topk_method: match ds.topk_method {
                TopkMethod::Greedy => GREEDY,
                TopkMethod::GroupLimitedGreedy => GROUP_LIMITED_GREEDY,
                TopkMethod::NoauxTc => NOAUX_TC,
            },
            n_group: ds.n_group,
            topk_group: ds.topk_group,
            norm_topk_prob: ds.norm_topk_prob,
            routed_scaling_factor: ds.routed_scaling_factor,
        })
    }

    /// x: [b, s, h] -> [b, s, h]
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, h] = x.dims();
        let n = b * s;
        let device = x.device();
        let flat = x.clone().reshape([n, h]);

        // router: scores [n, E] (V2 softmax, V3 sigmoid)
        let logits = flat.clone().matmul(self.gate.val().transpose());
        let scores = if self.topk_method == NOAUX_TC { sigmoid(logits) } else { softmax(logits, 1) };

        // which experts: a discrete choice, made on the host; chosen [n·k] expert ids
        let host: Vec<f32> = scores.clone().detach().into_data().iter::<f32>().collect();
        let bias: Option<Vec<f32>> = self.e_score_correction_bias.as_ref().map(|p| p.val().into_data().iter::<f32>().collect());
        let num_experts = self.experts.len();
        let chosen: Vec<usize> = host.chunks_exact(num_experts).flat_map(|row| self.choose(row, bias.as_deref())).collect();

        // how much: the chosen (uncorrected) scores, in the graph so that the router trains
        let k = self.top_k;
        let ids: Vec<i64> = chosen.iter().map(|&e| e as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, k]), &device);
        let mut weights = scores.gather(1, ids); // [n, k]
        if self.norm_topk_prob {
            weights = weights.clone() / (weights.sum_dim(1) + 1e-20);
        }
        let weights = (weights * self.routed_scaling_factor).reshape([n * k]);

        // each expert runs on its tokens; their outputs, weighted, are added to those tokens' rows
        let mut out = Tensor::<2>::zeros([n, h], &device);
        for (e, expert) in self.experts.iter().enumerate() {
            let slots: Vec<usize> = (0..n * k).filter(|&slot| chosen[slot] == e).collect();
            if slots.is_empty() {
                continue;
            }
            let m = slots.len();
            let tokens: Vec<i64> = slots.iter().map(|&slot| (slot / k) as i64).collect();
            let tokens = Tensor::<1, Int>::from_data(TensorData::new(tokens, [m]), &device);
            let slots: Vec<i64> = slots.iter().map(|&slot| slot as i64).collect();
            let slots = Tensor::<1, Int>::from_data(TensorData::new(slots, [m]), &device);
            let routed = flat.clone().select(0, tokens.clone()).reshape([1, m, h]); // [1, m, h]
            let y = expert.forward(routed).reshape([m, h]) * weights.clone().select(0, slots).reshape([m, 1]);
            out = out.select_assign(0, tokens, y, IndexingUpdateOp::Add);
        }
        let out = out.reshape([b, s, h]);
        match &self.shared_experts {
            Some(shared) => out + shared.forward(x),
            None => out,
        }
    }

    /// The `top_k` experts for one token's scores [E] (the router's `topk_method`); the order
    /// does not matter.
    fn choose(&self, scores: &[f32], bias: Option<&[f32]>) -> Vec<usize> {
        let e = scores.len();
        let per_group = e / self.n_group;
        let top = |values: &[f32], k: usize| -> Vec<usize> {
            let mut idx: Vec<usize> = (0..values.len()).collect();
            // highest first; ties to the lower index, as torch.topk on CPU
            idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
            idx.truncate(k);
            idx
        };
        // groups kept: the topk_group best by their best score (V2) or their two best
        // corrected scores summed (V3); the other groups' experts cannot be chosen
        let keep_groups = |values: &[f32], group_score: &dyn Fn(&[f32]) -> f32| -> Vec<bool> {
            let groups: Vec<f32> = values.chunks_exact(per_group).map(group_score).collect();
            let mut keep = vec![false; e];
            for g in top(&groups, self.topk_group) {
                keep[g * per_group..(g + 1) * per_group].fill(true);
            }
            keep
        };
        match self.topk_method {
            GREEDY => top(scores, self.top_k),
            GROUP_LIMITED_GREEDY => {
                let keep = keep_groups(scores, &|g| g.iter().copied().fold(f32::NEG_INFINITY, f32::max));
                let masked: Vec<f32> = scores.iter().zip(&keep).map(|(&v, &k)| if k { v } else { 0.0 }).collect();
                top(&masked, self.top_k)
            }
            _ => {
                let corrected: Vec<f32> = match bias {
                    Some(bias) => scores.iter().zip(bias).map(|(s, b)| s + b).collect(),
                    None => scores.to_vec(),
                };
                let keep = keep_groups(&corrected, &|g| {
                    let best = top(g, 2);
                    best.iter().map(|&i| g[i]).sum()
                });
                let masked: Vec<f32> = corrected.iter().zip(&keep).map(|(&v, &k)| if k { v } else { f32::NEG_INFINITY }).collect();
                top(&masked, self.top_k)
            }
        }
    }
}

/// Dense SwiGLU (the first `first_k_dense_replace` layers) or mixture of experts.
#[derive(Module, Debug)]
pub enum DeepseekFeedForward {
    Dense(DeepseekMlp),
    Moe(DeepseekMoe),
}

impl DeepseekFeedForward {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            DeepseekFeedForward::Dense(m) => m.forward(x),
            DeepseekFeedForward::Moe(m) => m.forward(x),
        }
    }
}

/// Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)).
#[derive(Module, Debug)]
pub struct DeepseekDecoderLayer {
    pub self_attn: DeepseekAttention,
    pub mlp: DeepseekFeedForward,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

/// The whole causal language model (`model.*` + `lm_head`).
#[derive(Module, Debug)]
pub struct DeepseekForCausalLm {
    pub embed_tokens: Embedding,
    pub layers: Vec<DeepseekDecoderLayer>,
    pub norm: RmsNorm,
    /// None when the embeddings are tied (`tie_word_embeddings`).
    pub lm_head: Option<Linear>,
}

impl DeepseekForCausalLm {
    /// Loads the weights named as transformers saves them; matrices stored as `dt` (norms and
    /// the routers always f32). Multi-token-prediction layers of V3 checkpoints
    /// (`model.layers.{num_hidden_layers}.*`) are not read.
    pub fn load(w: &WeightFiles, cfg: &ModelConfig, device: &Device, dt: WeightDType) -> Result<Self> {
        let ds = settings(cfg)?;
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let embed_tokens = Embedding { weight: w.matrix("model.embed_tokens.weight", [cfg.vocab_size, h], device, dt)? };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                let mlp = if ds.is_moe_layer(i) {
                    DeepseekFeedForward::Moe(DeepseekMoe::load(w, &format!("{p}.mlp"), cfg, device, dt)?)
                } else {
                    DeepseekFeedForward::Dense(DeepseekMlp::load(w, &format!("{p}.mlp"), h, cfg.intermediate_size, cfg.mlp_bias, device, dt)?)
                };
                Ok(DeepseekDecoderLayer {
                    self_attn: DeepseekAttention::load(w, &format!("{p}.self_attn"), cfg, device, dt)?,
                    mlp,
                    input_layernorm: RmsNorm::load(w, &format!("{p}.input_layernorm"), h, eps, device)?,
                    post_attention_layernorm: RmsNorm::load(w, &format!("{p}.post_attention_layernorm"), h, eps, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if !cfg.tie_word_embeddings || w.contains("lm_head.weight") {
            Some(Linear::load(w, "lm_head", h, cfg.vocab_size, false, device, dt)?)
        } else {
            None
        };
        Ok(DeepseekForCausalLm { embed_tokens, layers, norm: RmsNorm::load(w, "model.norm", h, eps, device)?, lm_head })
    }

    /// Runs the decoder over `ids` ([b, s]) at `positions` (b·s values) and returns the final
    /// normalised hidden states [b, s, h]. `mask`, when given, is [b, 1, s, s] over the new
    /// tokens. With a cache, new keys/values are appended to it and the causal mask covers the
    /// cached positions.
    pub fn forward_hidden(
        &self,
        ids: Tensor<2, Int>,
        rotary: &Rotary,
        positions: &[usize],
        mask: Option<Tensor<4>>,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, s] = ids.dims();
        let device = ids.device();
        let past = cache.as_ref().map_or(0, |c| c.len);
        let (cos, sin) = rotary.cos_sin(positions, b, &device); // [b, 1, s, dr]
        let mask = attention_mask(mask, b, s, past, &device);

        let mut x = self.embed_tokens.forward(ids); // [b, s, h]
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let attn = layer.self_attn.forward(layer.input_layernorm.forward(x.clone()), &cos, &sin, mask.as_ref(), slot);
            x = x + attn;
            let ff = layer.mlp.forward(layer.post_attention_layernorm.forward(x.clone()));
            x = x + ff;
        }
        if let Some(c) = cache {
            c.len += s;
        }
        self.norm.forward(x)
    }

    /// hidden [b, s, h] -> logits [b, s, V]
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => self.embed_tokens.logits(hidden),
        }
    }

    /// Every linear projection of the decoder layers with its transformers name
    /// (`model.layers.3.self_attn.kv_b_proj`, `model.layers.3.mlp.experts.5.up_proj`,
    /// `model.layers.3.mlp.shared_experts.down_proj`); the output head and the routers are not
    /// included.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        self.layers
            .iter_mut()
            .enumerate()
            .flat_map(|(i, l)| split_layer(&format!("model.layers.{i}"), l).0)
            .collect()
    }

    /// Every parameter with its transformers name (LoRA weights as `….kv_b_proj.lora_A.weight`).
    pub fn params_mut(&mut self) -> Vec<(String, ParamMut<'_>)> {
        let DeepseekForCausalLm { embed_tokens, layers, norm, lm_head } = self;
        let mut out = Vec::new();
        if let Some(p) = embed_tokens.weight.param_mut() {
            out.push(("model.embed_tokens.weight".to_string(), ParamMut::Matrix(p)));
        }
        for (i, layer) in layers.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            let (linears, norms, router) = split_layer(&p, layer);
            for (name, n) in norms {
                out.push((format!("{name}.weight"), ParamMut::Vector(&mut n.weight)));
            }
            if let Some((gate, bias)) = router {
                out.push((format!("{p}.mlp.gate.weight"), ParamMut::Matrix(gate)));
                if let Some(bias) = bias {
                    out.push((format!("{p}.mlp.gate.e_score_correction_bias"), ParamMut::Vector(bias)));
                }
            }
            for (name, l) in linears {
                push_linear(&mut out, &name, l);
            }
        }
        out.push(("model.norm.weight".into(), ParamMut::Vector(&mut norm.weight)));
        if let Some(head) = lm_head {
            push_linear(&mut out, "lm_head", head);
        }
        out
    }
}

type Router<'a> = (&'a mut Param<Tensor<2>>, Option<&'a mut Param<Tensor<1>>>);

/// A layer's linears, norms and router (MoE layers) with their transformers names.
#[allow(clippy::type_complexity)]
fn split_layer<'a>(p: &str, layer: &'a mut DeepseekDecoderLayer) -> (Vec<(String, &'a mut Linear)>, Vec<(String, &'a mut RmsNorm)>, Option<Router<'a>>) {
    let DeepseekDecoderLayer { self_attn, mlp, input_layernorm, post_attention_layernorm } = layer;
    let DeepseekAttention { q_proj, q_a_proj, q_a_layernorm, q_b_proj, kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj, .. } = self_attn;
    let a = format!("{p}.self_attn");
    let mut linears: Vec<(String, &mut Linear)> = Vec::new();
    let mut norms: Vec<(String, &mut RmsNorm)> =
        vec![(format!("{p}.input_layernorm"), input_layernorm), (format!("{p}.post_attention_layernorm"), post_attention_layernorm)];
    if let Some(l) = q_proj {
        linears.push((format!("{a}.q_proj"), l));
    }
    if let Some(l) = q_a_proj {
        linears.push((format!("{a}.q_a_proj"), l));
    }
    if let Some(n) = q_a_layernorm {
        norms.push((format!("{a}.q_a_layernorm"), n));
    }
    if let Some(l) = q_b_proj {
        linears.push((format!("{a}.q_b_proj"), l));
    }
    linears.push((format!("{a}.kv_a_proj_with_mqa"), kv_a_proj_with_mqa));
    norms.push((format!("{a}.kv_a_layernorm"), kv_a_layernorm));
    linears.push((format!("{a}.kv_b_proj"), kv_b_proj));
    linears.push((format!("{a}.o_proj"), o_proj));
    let m = format!("{p}.mlp");
    let router = match mlp {
        DeepseekFeedForward::Dense(d) => {
            linears.extend(d.linears(&m));
            None
        }
        DeepseekFeedForward::Moe(moe) => {
            let DeepseekMoe { gate, e_score_correction_bias, experts, shared_experts, .. } = moe;
            for (j, e) in experts.iter_mut().enumerate() {
                linears.extend(e.linears(&format!("{m}.experts.{j}")));
            }
            if let Some(shared) = shared_experts {
                linears.extend(shared.linears(&format!("{m}.shared_experts")));
            }
            Some((gate, e_score_correction_bias.as_mut()))
        }
    };
    (linears, norms, router)
}
