//! Quantisation of f32 weights for GGUF export: F16, BF16, Q8_0, Q4_K and Q6_K (ggml's reference,
//! no-imatrix algorithms from `ggml-quants.c`), and the per-tensor type choice of llama.cpp's
//! Q4_K_M recipe (`llama_tensor_get_type` in `llama-quant.cpp`).
use rayon::prelude::*;

use super::types::GgmlType;
use super::QK_K;
use crate::error::{ModelError, Result};

/// Output file types of `deepfeed export gguf`, with llama.cpp's `general.file_type` ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    F16,
    Q8_0,
    Q4KM,
}

impl FileType {
    pub fn parse(s: &str) -> Result<FileType> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(FileType::F16),
            "q8_0" => Ok(FileType::Q8_0),
            "q4_k_m" => Ok(FileType::Q4KM),
            other => Err(ModelError::Invalid(format!("unknown GGUF type {other:?}; expected f16, q8_0 or q4_k_m"))),
        }
    }

    /// `general.file_type` (`enum llama_ftype`).
    pub fn llama_ftype(self) -> u32 {
        match self {
            FileType::F16 => 1,
            FileType::Q8_0 => 7,
            FileType::Q4KM => 15,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileType::F16 => "F16",
            FileType::Q8_0 => "Q8_0",
            FileType::Q4KM => "Q4_K_M",
        }
    }
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third in between.
pub fn use_more_bits(i_layer: usize, n_layer: usize) -> bool {
    i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer >= n_layer / 8 && (i_layer - n_layer / 8) % 3 == 2)
}

/// The ggml type a tensor gets in a file of type `ft`. `name` is the GGUF name, `shape` row-major
/// (`[out, in]`), `n_layer` the block count, `has_output` whether the model has its own
/// `output.weight` (when it does not, `token_embd.weight` doubles as the output and is treated so).
/// 1-D tensors (norms, biases) stay F32, as in llama.cpp; a row length that the chosen block type
/// cannot hold falls back to Q8_0 (rows of 32s) or F16.
pub fn tensor_type(ft: FileType, name: &str, shape: &[usize], n_layer: usize, has_output: bool) -> GgmlType {
    if shape.len() < 2 {
        return GgmlType::F32;
    }
    let row = *shape.last().unwrap();
    let layer = name.strip_prefix("blk.").and_then(|r| r.split('.').next()).and_then(|n| n.parse::<usize>().ok());
    let wanted = match ft {
        FileType::F16 => GgmlType::F16,
        FileType::Q8_0 => GgmlType::Q8_0,
        FileType::Q4KM => {
            let is_output = name == "output.weight" || (!has_output && name == "token_embd.weight");
            let more_bits = layer.is_some_and(|i| use_more_bits(i, n_layer.max(1)));
            if is_output
                || (name.ends_with(".attn_v.weight") && more_bits)
                || (name.ends_with(".ffn_down.weight") && more_bits)
            {
                GgmlType::Q6_K
            } else {
                GgmlType::Q4_K
            }
        }
    };
    if row % wanted.block_size() == 0 {
        wanted
    } else if row % 32 == 0 {
        GgmlType::Q8_0
    } else {
        GgmlType::F16
    }
}

/// Encodes `values` (whole rows of `row_len`) as `ty`.
pub fn quantize(ty: GgmlType, values: &[f32], row_len: usize) -> Result<Vec<u8>> {
    let (bs, ts) = ty.block_layout();
    if row_len == 0 || row_len % bs != 0 || values.len() % row_len != 0 {
        return Err(ModelError::Invalid(format!(
            "cannot quantise {} values in rows of {row_len} as {ty} (blocks of {bs})",
            values.len()
        )));
    }
    let f: fn(&[f32], &mut [u8]) = match ty {
        GgmlType::F32 => |x, o| {
            for (v, c) in x.iter().zip(o.chunks_exact_mut(4)) {
                c.copy_from_slice(&v.to_le_bytes());
            }
        },
        GgmlType::F16 => |x, o| {
            for (v, c) in x.iter().zip(o.chunks_exact_mut(2)) {
                c.copy_from_slice(&half::f16::from_f32(*v).to_bits().to_le_bytes());
            }
        },
        GgmlType::BF16 => |x, o| {
            for (v, c) in x.iter().zip(o.chunks_exact_mut(2)) {
                c.copy_from_slice(&half::bf16::from_f32(*v).to_bits().to_le_bytes());
            }
        },
        GgmlType::Q8_0 => q8_0_block,
        GgmlType::Q4_K => q4_k_block,
        GgmlType::Q6_K => q6_k_block,
        other => return Err(ModelError::Invalid(format!("quantising to {other} is not supported (F32, F16, BF16, Q8_0, Q4_K, Q6_K are)"))),
    };
    let n_blocks = values.len() / bs;
    let mut out = vec![0u8; n_blocks * ts];
    // 64 blocks per task keeps rayon's overhead negligible
    out.par_chunks_mut(64 * ts).zip(values.par_chunks(64 * bs)).for_each(|(o, x)| {
        for (ob, xb) in o.chunks_exact_mut(ts).zip(x.chunks_exact(bs)) {
            f(xb, ob);
        }
    });
    Ok(out)
}

/// ggml's `nearest_int`: round half to even.
#[inline(always)]
fn nearest_int(x: f32) -> i32 {
    x.round_ties_even() as i32
}

#[inline(always)]
fn put_f16(o: &mut [u8], at: usize, v: f32) -> f32 {
    let h = half::f16::from_f32(v);
    o[at..at + 2].copy_from_slice(&h.to_bits().to_le_bytes());
    h.to_f32()
}

/// `quantize_row_q8_0_ref`: d = amax / 127, q = round(x / d) (half away from zero), as the
/// Python `gguf` package does bit for bit.
fn q8_0_block(x: &[f32], o: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(o, 0, d);
    for (q, v) in o[2..34].iter_mut().zip(x) {
        *q = (v * id).round() as i8 as u8;
    }
}

/// ggml's `make_qkx2_quants`: scale and min for `x` with levels 0..=nmax, weighted.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(nmax: i32, x: &[f32], weights: &[f32], l_out: &mut [u8], rmin: f32, rdelta: f32, nstep: i32) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = min.min(x[i]);
        max = max.max(x[i]);
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * diff * diff;
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let (w, lf) = (weights[i], l as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * diff * diff;
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `quantize_row_q4_K_ref`: 8 sub-blocks of 32 with 6-bit scales and mins.
fn q4_k_block(x: &[f32], o: &mut [u8]) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut weights = [0f32; 32];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2: f32 = xs.iter().map(|v| v * v).sum();
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (s, m) = make_qkx2_quants(15, xs, &weights, &mut l[32 * j..32 * j + 32], -1.0, 0.1, 20);
        scales[j] = s;
        mins[j] = m;
        max_scale = max_scale.max(s);
        max_min = max_min.max(m);
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let sc = &mut [0u8; 12];
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let d = put_f16(o, 0, max_scale / 63.0);
    let dmin = put_f16(o, 2, max_min / 63.0);
    o[4..16].copy_from_slice(sc);
    for j in 0..8 {
        let (s, m) = if j < 4 {
            (sc[j] & 63, sc[j + 4] & 63)
        } else {
            ((sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4), (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4))
        };
        let dd = d * s as f32;
        if dd == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / dd).clamp(0, 15) as u8;
        }
    }
    let qs = &mut o[16..144];
    for (jj, j) in (0..QK_K).step_by(64).enumerate() {
        for i in 0..32 {
            qs[32 * jj + i] = l[j + i] | (l[j + i + 32] << 4);
        }
    }
}

/// ggml's `make_qx_quants` with rmse_type 1 (weights x²), levels −nmax..nmax−1, stored + nmax.
fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let n = x.len();
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < 1e-15 {
        l_out[..n].fill(0);
        return 0.0;
    }
    let mut iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        let w = x[i] * x[i];
        sumlx += w * x[i] * l as f32;
        suml2 += w * (l * l) as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            let w = v * v;
            sumlx += w * v * l as f32;
            suml2 += w * (l * l) as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
                l_out[i] = (l + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `quantize_row_q6_K_ref`: 16 sub-blocks of 16 with 8-bit scales.
fn q6_k_block(x: &[f32], o: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for ib in 0..16 {
        let s = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
        scales[ib] = s;
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = s;
        }
    }
    if max_abs_scale < 1e-15 {
        o[..210].fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = put_f16(o, 208, 1.0 / iscale);
    let mut sc = [0i8; 16];
    for ib in 0..16 {
        sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        o[192 + ib] = sc[ib] as u8;
    }
    for j in 0..16 {
        let dd = d * sc[j] as f32;
        if dd == 0.0 {
            continue;
        }
        for ii in 0..16 {
            l[16 * j + ii] = (nearest_int(x[16 * j + ii] / dd).clamp(-32, 31) + 32) as i8;
        }
    }
    let (ql, rest) = o.split_at_mut(128);
    let qh = &mut rest[..64];
    for (half_i, j) in (0..QK_K).step_by(128).enumerate() {
        for i in 0..32 {
            let q = |k: usize| l[j + i + 32 * k] as u8;
            ql[64 * half_i + i] = (q(0) & 0xF) | ((q(2) & 0xF) << 4);
            ql[64 * half_i + i + 32] = (q(1) & 0xF) | ((q(3) & 0xF) << 4);
            qh[32 * half_i + i] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_more_bits_matches_llama_cpp_for_24_layers() {
        // n/8 = 3, 7n/8 = 21: layers 0..3, 21..24 and 3 + 3k + 2 = 5, 8, 11, 14, 17, 20
        let picked: Vec<usize> = (0..24).filter(|&i| use_more_bits(i, 24)).collect();
        assert_eq!(picked, vec![0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]);
    }

    #[test]
    fn q4_k_m_recipe() {
        let t = |name: &str, shape: &[usize], has_output| tensor_type(FileType::Q4KM, name, shape, 24, has_output);
        assert_eq!(t("blk.3.attn_q.weight", &[512, 512], true), GgmlType::Q4_K);
        assert_eq!(t("blk.5.attn_v.weight", &[128, 512], true), GgmlType::Q6_K);
        assert_eq!(t("blk.4.attn_v.weight", &[128, 512], true), GgmlType::Q4_K);
        assert_eq!(t("blk.0.ffn_down.weight", &[512, 1536], true), GgmlType::Q6_K);
        assert_eq!(t("blk.4.ffn_down.weight", &[512, 1536], true), GgmlType::Q4_K);
        assert_eq!(t("output.weight", &[1000, 512], true), GgmlType::Q6_K);
        assert_eq!(t("token_embd.weight", &[1000, 512], true), GgmlType::Q4_K);
        assert_eq!(t("token_embd.weight", &[1000, 512], false), GgmlType::Q6_K);
        assert_eq!(t("blk.0.attn_norm.weight", &[512], true), GgmlType::F32);
        assert_eq!(t("blk.0.attn_q.weight", &[512, 96], true), GgmlType::Q8_0);
        assert_eq!(t("blk.0.attn_q.weight", &[512, 100], true), GgmlType::F16);
    }
}
