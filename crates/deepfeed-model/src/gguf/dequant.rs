//! Dequantisation of ggml tensor data to f32: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the
//! k-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
//!
//! Each block function follows the block layout of ggml's `ggml-common.h` and performs the float
//! operations in the same order as the PyPI `gguf` package's numpy code (`gguf/quants.py`), so the
//! results match it bit for bit (tests/gguf_dequant.rs checks every type against a fixture written
//! by scripts/make_gguf_reference.py). Element order inside a block is spelled out per type.
use std::ops::Range;

use rayon::prelude::*;

use super::types::GgmlType;
use super::QK_K;
use crate::error::{ModelError, Result};

/// Whether `dequantize` handles `ty`.
pub fn is_supported(ty: GgmlType) -> bool {
    block_fn(ty).is_some()
}

/// The types `dequantize` handles.
pub const SUPPORTED: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

type BlockFn = fn(&[u8], &mut [f32]);

fn block_fn(ty: GgmlType) -> Option<BlockFn> {
    Some(match ty {
        GgmlType::F32 => f32_block,
        GgmlType::F16 => f16_block,
        GgmlType::BF16 => bf16_block,
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q2_K => q2_k,
        GgmlType::Q3_K => q3_k,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        _ => return None,
    })
}

/// Dequantises `n_elements` values of type `ty` from `bytes` into `out[..n_elements]`.
/// `bytes` must hold exactly the blocks of those elements.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize, out: &mut [f32]) -> Result<()> {
    let f = check(ty, bytes, n_elements, out)?;
    let (bs, ts) = ty.block_layout();
    if bs == 1 {
        // element types: one call over the whole slice lets the loop vectorise
        f(bytes, &mut out[..n_elements]);
    } else {
        for (b, o) in bytes.chunks_exact(ts).zip(out[..n_elements].chunks_exact_mut(bs)) {
            f(b, o);
        }
    }
    Ok(())
}

/// Like `dequantize`, split over the rayon thread pool (for whole tensors at load time).
pub fn dequantize_par(ty: GgmlType, bytes: &[u8], n_elements: usize, out: &mut [f32]) -> Result<()> {
    check(ty, bytes, n_elements, out)?;
    let (bs, ts) = ty.block_layout();
    // chunks of 64 Ki elements (a whole number of blocks: block sizes divide 65536)
    const CHUNK: usize = 1 << 16;
    let blocks_per_chunk = CHUNK / bs;
    out[..n_elements]
        .par_chunks_mut(CHUNK)
        .zip(bytes.par_chunks(blocks_per_chunk * ts))
        .try_for_each(|(o, b)| dequantize(ty, b, o.len(), o))
}

/// Bytes taken by one row of `row_len` elements of type `ty`.
pub fn row_bytes(ty: GgmlType, row_len: usize) -> Result<usize> {
    ty.bytes_for(row_len as u64).map(|b| b as usize).ok_or_else(|| {
        ModelError::Invalid(format!("a row of {row_len} elements is not a whole number of {ty} blocks of {}", ty.block_size()))
    })
}

/// Dequantises rows `rows` of a matrix with rows of `row_len` elements stored as `ty` in
/// `tensor_bytes` (the whole tensor) into `out[..rows.len() * row_len]`. This is the on-the-fly form.
pub fn dequantize_rows(ty: GgmlType, tensor_bytes: &[u8], row_len: usize, rows: Range<usize>, out: &mut [f32]) -> Result<()> {
    let rb = row_bytes(ty, row_len)?;
    let (start, end) = (rows.start.saturating_mul(rb), rows.end.saturating_mul(rb));
    if rows.start > rows.end || end > tensor_bytes.len() {
        return Err(ModelError::Invalid(format!(
            "rows {rows:?} of {row_len} {ty} elements need bytes {start}..{end}, but the tensor has {} bytes",
            tensor_bytes.len()
        )));
    }
    dequantize(ty, &tensor_bytes[start..end], rows.len() * row_len, out)
}

fn check(ty: GgmlType, bytes: &[u8], n_elements: usize, out: &[f32]) -> Result<BlockFn> {
    let f = block_fn(ty).ok_or_else(|| {
        let names: Vec<&str> = SUPPORTED.iter().map(|t| t.name()).collect();
        ModelError::Invalid(format!("cannot dequantise tensor type {ty} (supported: {})", names.join(", ")))
    })?;
    let need = ty.bytes_for(n_elements as u64).ok_or_else(|| {
        ModelError::Invalid(format!("{n_elements} elements is not a whole number of {ty} blocks of {}", ty.block_size()))
    })?;
    if need != bytes.len() as u64 {
        return Err(ModelError::Invalid(format!(
            "{n_elements} {ty} elements take {need} bytes, but {} bytes were given",
            bytes.len()
        )));
    }
    if out.len() < n_elements {
        return Err(ModelError::Invalid(format!("output holds {} values, {n_elements} needed", out.len())));
    }
    Ok(f)
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

fn f32_block(b: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// Through a small aligned buffer so that half's slice conversion can use F16C (8 at a time)
/// instead of one runtime-dispatched call per element.
fn f16_block(b: &[u8], out: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    let mut buf = [half::f16::ZERO; 256];
    for (o, c) in out.chunks_mut(256).zip(b.chunks(512)) {
        let h = &mut buf[..o.len()];
        for (x, p) in h.iter_mut().zip(c.chunks_exact(2)) {
            *x = half::f16::from_bits(u16::from_le_bytes([p[0], p[1]]));
        }
        h.convert_to_f32_slice(o);
    }
}

fn bf16_block(b: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
        *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
    }
}

/// Q4_0, 18 bytes: d (f16), qs[16]. Element l < 16 is the low nibble of qs[l], l ≥ 16 the high
/// nibble of qs[l-16]; value = d · (q − 8).
fn q4_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for l in 0..16 {
        out[l] = d * ((qs[l] & 0x0F) as i32 - 8) as f32;
        out[l + 16] = d * ((qs[l] >> 4) as i32 - 8) as f32;
    }
}

/// Q4_1, 20 bytes: d, m (f16), qs[16] (nibbles as Q4_0); value = d · q + m.
fn q4_1(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for l in 0..16 {
        out[l] = d * (qs[l] & 0x0F) as f32 + m;
        out[l + 16] = d * (qs[l] >> 4) as f32 + m;
    }
}

/// Q5_0, 22 bytes: d (f16), qh (u32: bit l = 5th bit of element l), qs[16] (low nibbles as Q4_0);
/// value = d · (q − 16).
fn q5_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for l in 0..16 {
        let lo = (qs[l] & 0x0F) as u32 | (((qh >> l) & 1) << 4);
        let hi = (qs[l] >> 4) as u32 | (((qh >> (l + 16)) & 1) << 4);
        out[l] = d * (lo as i32 - 16) as f32;
        out[l + 16] = d * (hi as i32 - 16) as f32;
    }
}

/// Q5_1, 24 bytes: d, m (f16), qh (u32), qs[16]; value = d · q + m.
fn q5_1(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for l in 0..16 {
        let lo = (qs[l] & 0x0F) as u32 | (((qh >> l) & 1) << 4);
        let hi = (qs[l] >> 4) as u32 | (((qh >> (l + 16)) & 1) << 4);
        out[l] = d * lo as f32 + m;
        out[l + 16] = d * hi as f32 + m;
    }
}

/// Q8_0, 34 bytes: d (f16), qs[32] (i8); value = q · d.
fn q8_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in out[..32].iter_mut().zip(&b[2..34]) {
        *o = (q as i8) as f32 * d;
    }
}

/// Q2_K, 84 bytes: scales[16] (low nibble scale, high nibble min, one per 16 elements), qs[64]
/// (2-bit), d, dmin (f16). Element e = 128·j + 32·s + l takes bits 2s of qs[32·j + l];
/// value = (d · scale) · q − dmin · min.
fn q2_k(b: &[u8], out: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    for j in 0..2 {
        for s in 0..4 {
            for half16 in 0..2 {
                let e0 = 128 * j + 32 * s + 16 * half16;
                let sc = scales[e0 / 16];
                let dl = d * (sc & 0x0F) as f32;
                let ml = dmin * (sc >> 4) as f32;
                for l in 16 * half16..16 * half16 + 16 {
                    let q = (qs[32 * j + l] >> (2 * s)) & 3;
                    out[128 * j + 32 * s + l] = dl * q as f32 - ml;
                }
            }
        }
    }
}

/// Q3_K, 110 bytes: hmask[32], qs[64] (low 2 bits), scales[12] (16 six-bit scales), d (f16).
/// Element e = 128·j + 32·s + l: low bits 2s of qs[32·j + l], high bit (j·4+s) of hmask[l]
/// (a *clear* bit subtracts 4); value = (d · (scale − 32)) · q.
fn q3_k(b: &[u8], out: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let sb = &b[96..108];
    let d = f16_at(b, 108);
    let mut dl = [0f32; 16];
    for (k, v) in dl.iter_mut().enumerate() {
        let low = if k < 8 { sb[k] & 0x0F } else { sb[k - 8] >> 4 };
        let high = (sb[8 + k % 4] >> (2 * (k / 4))) & 3;
        let sc = (low | (high << 4)) as i32 - 32;
        *v = d * sc as f32;
    }
    for j in 0..2 {
        for s in 0..4 {
            let shift = j * 4 + s;
            for l in 0..32 {
                let e = 128 * j + 32 * s + l;
                let ql = ((qs[32 * j + l] >> (2 * s)) & 3) as i32;
                let h = (hmask[l] >> shift) & 1;
                let q = ql - if h == 1 { 0 } else { 4 };
                out[e] = dl[e / 16] * q as f32;
            }
        }
    }
}

/// The 8 six-bit (scale, min) pairs of Q4_K/Q5_K packed in 12 bytes (`get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for k in 0..4 {
        sc[k] = s[k] & 0x3F;
        mn[k] = s[k + 4] & 0x3F;
        sc[k + 4] = (s[k + 8] & 0x0F) | ((s[k] >> 2) & 0x30);
        mn[k + 4] = (s[k + 8] >> 4) | ((s[k + 4] >> 2) & 0x30);
    }
    (sc, mn)
}

/// Q4_K, 144 bytes: d, dmin (f16), scales[12], qs[128]. Element e = 64·j + 32·h + l is nibble h
/// of qs[32·j + l], in sub-block 2j + h; value = (d · scale) · q − dmin · min.
fn q4_k(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let (sc, mn) = scale_min_k4(&b[4..16]);
    let qs = &b[16..144];
    for j in 0..4 {
        for h in 0..2 {
            let sub = 2 * j + h;
            let ds = d * sc[sub] as f32;
            let dm = dmin * mn[sub] as f32;
            let o = &mut out[32 * sub..32 * sub + 32];
            for l in 0..32 {
                let q = (qs[32 * j + l] >> (4 * h)) & 0x0F;
                o[l] = ds * q as f32 - dm;
            }
        }
    }
}

/// Q5_K, 176 bytes: d, dmin (f16), scales[12], qh[32], qs[128]. As Q4_K, plus the 5th bit of
/// element e = 32·sub + l is bit `sub` of qh[l].
fn q5_k(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let (sc, mn) = scale_min_k4(&b[4..16]);
    let qh = &b[16..48];
    let qs = &b[48..176];
    for j in 0..4 {
        for h in 0..2 {
            let sub = 2 * j + h;
            let ds = d * sc[sub] as f32;
            let dm = dmin * mn[sub] as f32;
            let o = &mut out[32 * sub..32 * sub + 32];
            for l in 0..32 {
                let q = ((qs[32 * j + l] >> (4 * h)) & 0x0F) | (((qh[l] >> sub) & 1) << 4);
                o[l] = ds * q as f32 - dm;
            }
        }
    }
}

/// Q6_K, 210 bytes: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (i8), d (f16).
/// Element e = 128·j + 32·s + l: low nibble (s / 2) of ql[64·j + 32·(s % 2) + l], high bits 2s of
/// qh[32·j + l]; value = (d · scale[e / 16]) · (q − 32).
fn q6_k(b: &[u8], out: &mut [f32]) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let scales = &b[192..208];
    let d = f16_at(b, 208);
    let mut ds = [0f32; 16];
    for (k, v) in ds.iter_mut().enumerate() {
        *v = d * (scales[k] as i8) as f32;
    }
    for j in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                let e = 128 * j + 32 * s + l;
                let lo = (ql[64 * j + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0F;
                let hi = (qh[32 * j + l] >> (2 * s)) & 3;
                let q = (lo | (hi << 4)) as i32 - 32;
                out[e] = ds[e / 16] * q as f32;
            }
        }
    }
}

const _: () = assert!(QK_K == 256);
