//! One file per architecture, each readable next to its transformers reference. [`Network`] is
//! the one the model directory asked for; callers (generation, perplexity, training, adapters)
//! go through it.
pub mod deepseek;
pub mod gemma3;
pub mod llama;
pub mod qwen2;
pub mod qwen3;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::config::{Architecture, ModelConfig};
use crate::error::Result;
use crate::layers::{Linear, Rotary};
use crate::prefix::PrefixTuning;
use crate::weights::{WeightDType, WeightFiles};
pub use deepseek::DeepseekForCausalLm;
pub use gemma3::Gemma3ForCausalLm;
pub use llama::{KvCache, LlamaForCausalLm, ParamMut};

/// A loaded decoder: Llama (also Qwen2 and Qwen3, which are flags of it), Gemma 3 or
/// DeepSeek-V2/V3 (one decoder, V3 a flag set of V2).
#[derive(Module, Debug)]
pub enum Network {
    Llama(LlamaForCausalLm),
    Gemma3(Gemma3ForCausalLm),
    Deepseek(DeepseekForCausalLm),
}

impl Network {
    pub fn load(w: &WeightFiles, cfg: &ModelConfig, device: &Device, dt: WeightDType) -> Result<Self> {
        Ok(match cfg.architecture {
            Architecture::Gemma3 => Network::Gemma3(Gemma3ForCausalLm::load(w, cfg, device, dt)?),
            Architecture::Llama | Architecture::Qwen2 | Architecture::Qwen3 => Network::Llama(LlamaForCausalLm::load(w, cfg, device, dt)?),
            Architecture::DeepseekV2 | Architecture::DeepseekV3 => Network::Deepseek(DeepseekForCausalLm::load(w, cfg, device, dt)?),
        })
    }

    /// Final normalised hidden states [b, s, h] of `ids` [b, s]; see
    /// [`LlamaForCausalLm::forward_hidden`] for `positions`, `mask` and `cache`.
    pub fn forward_hidden(
        &self,
        ids: Tensor<2, Int>,
        rotary: &Rotary,
        positions: &[usize],
        mask: Option<Tensor<4>>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        match self {
            Network::Llama(n) => n.forward_hidden(ids, rotary, positions, mask, cache),
            Network::Gemma3(n) => n.forward_hidden(ids, rotary, positions, mask, cache),
            Network::Deepseek(n) => n.forward_hidden(ids, rotary, positions, mask, cache),
        }
    }

    /// hidden [b, s, h] -> logits [b, s, V]
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match self {
            Network::Llama(n) => n.logits(hidden),
            Network::Gemma3(n) => n.logits(hidden),
            Network::Deepseek(n) => n.logits(hidden),
        }
    }

    /// Every linear projection of the decoder layers with its transformers name.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        match self {
            Network::Llama(n) => n.linears_mut(),
            Network::Gemma3(n) => n.linears_mut(),
            Network::Deepseek(n) => n.linears_mut(),
        }
    }

    /// Every parameter with its transformers name.
    pub fn params_mut(&mut self) -> Vec<(String, ParamMut<'_>)> {
        match self {
            Network::Llama(n) => n.params_mut(),
            Network::Gemma3(n) => n.params_mut(),
            Network::Deepseek(n) => n.params_mut(),
        }
    }

    /// Number of values held in matrices kept quantised (`base_dtype: quantized`): frozen base
    /// weights that [`Network::params_mut`] does not list.
    pub fn quantized_values(&mut self) -> usize {
        let (embedding, head) = match self {
            Network::Llama(n) => (&n.embed_tokens.weight, n.lm_head.as_ref().map(|h| &h.weight)),
            Network::Gemma3(n) => (&n.embed_tokens.weight, n.lm_head.as_ref().map(|h| &h.weight)),
            Network::Deepseek(n) => (&n.embed_tokens.weight, n.lm_head.as_ref().map(|h| &h.weight)),
        };
        let count = |w: &crate::layers::MatrixWeight| if w.is_quantized() { w.dims().iter().product() } else { 0 };
        let outer = count(embedding) + head.map_or(0, count);
        outer + self.linears_mut().iter().map(|(_, l)| count(&l.weight)).sum::<usize>()
    }

    /// The output head, None when it is the tied embedding.
    pub fn lm_head(&self) -> Option<&Linear> {
        match self {
            Network::Llama(n) => n.lm_head.as_ref(),
            Network::Gemma3(n) => n.lm_head.as_ref(),
            Network::Deepseek(n) => n.lm_head.as_ref(),
        }
    }

    /// The prefix-tuning adapter, when one is attached (Llama family only; DeepSeek's latent
    /// attention has no per-head key/value projections to prefix).
    pub fn prefix(&self) -> Option<&PrefixTuning> {
        match self {
            Network::Llama(n) => n.prefix.as_ref(),
            Network::Gemma3(_) | Network::Deepseek(_) => None,
        }
    }

    /// Where a prefix-tuning adapter goes; None for architectures without prefix tuning.
    pub fn prefix_slot(&mut self) -> Option<&mut Option<PrefixTuning>> {
        match self {
            Network::Llama(n) => Some(&mut n.prefix),
            Network::Gemma3(_) | Network::Deepseek(_) => None,
        }
    }
}
