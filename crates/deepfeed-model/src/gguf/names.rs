//! Hugging Face ↔ GGUF tensor names for the architectures deepfeed reads and writes as GGUF
//! (`llama`, `qwen2`, `qwen3`, `gemma3`), following llama.cpp's `gguf-py/gguf/tensor_mapping.py` and
//! `convert_hf_to_gguf.py`.
//!
//! Two value transforms come with the names (both done by `convert_hf_to_gguf.py`):
//! - `llama` only: the rows of `q_proj` / `k_proj` (and of a LoRA `lora_B` on them) are permuted
//!   from HF's rotate-half RoPE layout to ggml's interleaved-pair layout ([`permute_qk_rows`]);
//!   qwen2/qwen3/gemma3 use NEOX-style RoPE in llama.cpp and are stored unpermuted.
//! - `gemma3` only: every `*norm.weight` is stored as HF weight + 1 ([`norm_weight_offset`]),
//!   because Gemma's RMSNorm multiplies by `1 + weight`.
//!
//! HF names are the `Gemma3ForCausalLM` / `LlamaForCausalLM` ones (`model.layers.N.…`); the
//! multimodal `model.language_model.` prefix is accepted on input.

/// GGUF `general.architecture` values with a name map.
pub const SUPPORTED_ARCHS: [&str; 4] = ["llama", "qwen2", "qwen3", "gemma3"];

/// Per-layer module names: (HF suffix after `model.layers.N.`, GGUF suffix after `blk.N.`).
/// The norm names differ between the llama family and gemma3.
const LAYER_COMMON: &[(&str, &str)] = &[
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];
const LAYER_LLAMA_NORMS: &[(&str, &str)] = &[("post_attention_layernorm", "ffn_norm")];
const LAYER_GEMMA3_NORMS: &[(&str, &str)] = &[
    ("post_attention_layernorm", "post_attention_norm"),
    ("pre_feedforward_layernorm", "ffn_norm"),
    ("post_feedforward_layernorm", "post_ffw_norm"),
];
const GLOBAL: &[(&str, &str)] = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
];

fn layer_table(arch: &str) -> Option<[&'static [(&'static str, &'static str)]; 2]> {
    match arch {
        "llama" | "qwen2" | "qwen3" => Some([LAYER_COMMON, LAYER_LLAMA_NORMS]),
        "gemma3" => Some([LAYER_COMMON, LAYER_GEMMA3_NORMS]),
        _ => None,
    }
}

/// Splits `name` into (module, `.weight`/`.bias` suffix).
fn split_param(name: &str) -> Option<(&str, &str)> {
    let dot = name.rfind('.')?;
    let (m, p) = name.split_at(dot);
    matches!(p, ".weight" | ".bias").then_some((m, p))
}

/// The GGUF tensor name of an HF parameter (`model.layers.3.self_attn.q_proj.weight` →
/// `blk.3.attn_q.weight`), or `None` when the architecture or module has no GGUF counterpart
/// (e.g. `rotary_emb.inv_freq`).
pub fn gguf_name(arch: &str, hf: &str) -> Option<String> {
    let table = layer_table(arch)?;
    let owned;
    let hf = match hf.strip_prefix("model.language_model.") {
        Some(rest) => {
            owned = format!("model.{rest}");
            owned.as_str()
        }
        None => hf,
    };
    let (module, param) = split_param(hf)?;
    if let Some(&(_, g)) = GLOBAL.iter().find(|(h, _)| *h == module) {
        return Some(format!("{g}{param}"));
    }
    let rest = module.strip_prefix("model.layers.")?;
    let (layer, sub) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let &(_, g) = table.iter().flat_map(|t| t.iter()).find(|(h, _)| *h == sub)?;
    Some(format!("blk.{layer}.{g}{param}"))
}

/// The HF parameter name of a GGUF tensor (`blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj.weight`), or `None` when it has no HF counterpart
/// (e.g. `rope_freqs.weight`).
pub fn hf_name(arch: &str, gguf: &str) -> Option<String> {
    let table = layer_table(arch)?;
    let (module, param) = split_param(gguf)?;
    if let Some(&(h, _)) = GLOBAL.iter().find(|(_, g)| *g == module) {
        return Some(format!("{h}{param}"));
    }
    let rest = module.strip_prefix("blk.")?;
    let (layer, sub) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let &(h, _) = table.iter().flat_map(|t| t.iter()).find(|(_, g)| *g == sub)?;
    Some(format!("model.layers.{layer}.{h}{param}"))
}

/// Whether llama.cpp stores the q/k projection rows of `arch` permuted (see [`permute_qk_rows`]).
pub fn permutes_qk(arch: &str) -> bool {
    arch == "llama"
}

/// What llama.cpp adds to HF norm weights of `arch` when storing them (1 for gemma3, else 0);
/// applies to every tensor whose name ends in `norm.weight`.
pub fn norm_weight_offset(arch: &str) -> f32 {
    if arch == "gemma3" {
        1.0
    } else {
        0.0
    }
}

/// HF → GGUF row order of a llama q/k projection (`LlamaModel.permute` in convert_hf_to_gguf.py):
/// `data` holds `rows × cols` row-major values with `rows = n_head · head_dim`; within each head,
/// row `p · head_dim/2 + i` (p ∈ {0, 1}) moves to row `2i + p`. `n_head` is the number of
/// attention heads for q and of key/value heads for k. Also used for a LoRA `lora_B` [out, r].
pub fn permute_qk_rows(data: &[f32], cols: usize, n_head: usize) -> Vec<f32> {
    reorder_rows(data, cols, n_head, false)
}

/// GGUF → HF: the inverse of [`permute_qk_rows`].
pub fn unpermute_qk_rows(data: &[f32], cols: usize, n_head: usize) -> Vec<f32> {
    reorder_rows(data, cols, n_head, true)
}

/// For each HF row of a q/k matrix with `rows` rows in `n_head` heads, the GGUF row it is stored
/// at (the order [`unpermute_qk_rows`] produces).
pub fn unpermuted_row_order(rows: usize, n_head: usize) -> Vec<usize> {
    let head_dim = rows / n_head.max(1);
    let half = head_dim / 2;
    (0..rows)
        .map(|hf_row| {
            let (h, r) = (hf_row / head_dim, hf_row % head_dim);
            let (p, i) = (r / half, r % half);
            h * head_dim + 2 * i + p
        })
        .collect()
}

fn reorder_rows(data: &[f32], cols: usize, n_head: usize, inverse: bool) -> Vec<f32> {
    assert!(cols > 0 && n_head > 0 && data.len() % (cols * n_head) == 0, "q/k rows must split evenly into heads");
    let rows = data.len() / cols;
    let head_dim = rows / n_head;
    assert!(head_dim % 2 == 0, "head_dim must be even");
    let half = head_dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for p in 0..2 {
            for i in 0..half {
                let hf_row = h * head_dim + p * half + i;
                let gguf_row = h * head_dim + 2 * i + p;
                let (src, dst) = if inverse { (gguf_row, hf_row) } else { (hf_row, gguf_row) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_for_every_arch() {
        for arch in SUPPORTED_ARCHS {
            for hf in [
                "model.embed_tokens.weight",
                "model.norm.weight",
                "lm_head.weight",
                "model.layers.0.input_layernorm.weight",
                "model.layers.11.self_attn.q_proj.weight",
                "model.layers.11.self_attn.q_proj.bias",
                "model.layers.2.self_attn.k_norm.weight",
                "model.layers.2.mlp.down_proj.weight",
                "model.layers.2.post_attention_layernorm.weight",
            ] {
                let g = gguf_name(arch, hf).unwrap_or_else(|| panic!("{arch}: {hf}"));
                assert_eq!(hf_name(arch, &g).as_deref(), Some(hf), "{arch}: {hf} -> {g}");
            }
        }
        assert_eq!(gguf_name("llama", "model.layers.3.self_attn.o_proj.weight").unwrap(), "blk.3.attn_output.weight");
        assert_eq!(gguf_name("qwen2", "model.layers.3.post_attention_layernorm.weight").unwrap(), "blk.3.ffn_norm.weight");
        assert_eq!(gguf_name("gemma3", "model.layers.3.post_attention_layernorm.weight").unwrap(), "blk.3.post_attention_norm.weight");
        assert_eq!(gguf_name("gemma3", "model.layers.3.pre_feedforward_layernorm.weight").unwrap(), "blk.3.ffn_norm.weight");
        assert_eq!(gguf_name("gemma3", "model.language_model.layers.0.post_feedforward_layernorm.weight").unwrap(), "blk.0.post_ffw_norm.weight");
        assert_eq!(gguf_name("llama", "model.layers.0.pre_feedforward_layernorm.weight"), None);
        assert_eq!(gguf_name("llama", "model.layers.0.self_attn.rotary_emb.inv_freq"), None);
        assert_eq!(gguf_name("mamba", "model.norm.weight"), None);
        assert_eq!(hf_name("llama", "rope_freqs.weight"), None);
    }

    #[test]
    fn qk_permutation_matches_convert_hf_to_gguf() {
        // numpy: w.reshape(n_head, 2, hd // 2, cols).swapaxes(1, 2).reshape(w.shape) with n_head 2,
        // hd 4, cols 1 on rows 0..8 gives [0, 2, 1, 3, 4, 6, 5, 7].
        let w: Vec<f32> = (0..8).map(|x| x as f32).collect();
        let p = permute_qk_rows(&w, 1, 2);
        assert_eq!(p, vec![0., 2., 1., 3., 4., 6., 5., 7.]);
        assert_eq!(unpermute_qk_rows(&p, 1, 2), w);
        let w: Vec<f32> = (0..48).map(|x| x as f32).collect();
        assert_eq!(unpermute_qk_rows(&permute_qk_rows(&w, 3, 2), 3, 2), w);
    }
}
