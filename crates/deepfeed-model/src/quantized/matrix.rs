//! A frozen weight matrix `W` `[rows, cols]` kept in memory as GGUF blocks (Q4_K, Q8_0, F16, …)
//! and dequantised a tile of rows at a time whenever it is used: the QLoRA idea applied to the
//! quantisation the user's GGUF file already has. A tile is small enough to stay in cache, so the
//! f32 copy of the whole matrix never exists; the cost is dequantising `W` once per product.
//!
//! The two products a frozen linear layer needs (forward and the input gradient of backward)
//! are written here on top of the `gemm` crate (the GEMM burn-flex uses): burn has no matmul
//! over GGUF block formats, and its own quantised tensors use other block layouts, which would
//! change the model's numbers.
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use burn::module::{Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor};
use burn::tensor::Device;
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::error::{ModelError, Result};
use crate::gguf::dequant;
use crate::gguf::GgmlType;

/// Dequantised tile size aimed at: 256 KiB of f32, which stays in L2 while `gemm` streams the
/// activations past it. Measured with 16 Ki, 64 Ki and 256 Ki values on the Gemma 3 270M shapes
/// (LM head [262144, 640], MLP [2048, 640] / [640, 2048], m = 320 tokens): 64 Ki was the best
/// or level in every case, and faster than burn's dense f32 matmul on most.
const TILE_VALUES: usize = 64 * 1024;

/// Cheap to clone (the blocks are shared).
#[derive(Clone)]
pub struct QuantizedMatrix {
    inner: Arc<Inner>,
}

struct Inner {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    /// `rows` rows of `row_bytes` bytes, row-major
    blocks: Vec<u8>,
    row_bytes: usize,
}

impl fmt::Debug for QuantizedMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuantizedMatrix({} [{}, {}], {} bytes)", self.inner.ty, self.inner.rows, self.inner.cols, self.inner.blocks.len())
    }
}

impl QuantizedMatrix {
    /// `blocks` holds `rows` rows of `cols` values of type `ty`, row after row.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, blocks: Vec<u8>) -> Result<Self> {
        if !dequant::is_supported(ty) {
            return Err(ModelError::Invalid(format!("cannot keep a {ty} matrix quantised: no dequantisation for {ty}")));
        }
        let row_bytes = dequant::row_bytes(ty, cols)?;
        if rows.checked_mul(row_bytes) != Some(blocks.len()) {
            return Err(ModelError::Invalid(format!(
                "a [{rows}, {cols}] {ty} matrix takes {rows} × {row_bytes} bytes, but {} bytes were given",
                blocks.len()
            )));
        }
        Ok(QuantizedMatrix { inner: Arc::new(Inner { ty, rows, cols, blocks, row_bytes }) })
    }

    /// Quantises f32 values `[rows, cols]` to `ty` (used for safetensors bases, which have no
    /// quantisation of their own).
    pub fn quantize(ty: GgmlType, rows: usize, cols: usize, values: &[f32]) -> Result<Self> {
        Self::new(ty, rows, cols, crate::gguf::quantize::quantize(ty, values, cols)?)
    }

    /// `[rows, cols]`
    pub fn dims(&self) -> [usize; 2] {
        [self.inner.rows, self.inner.cols]
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.inner.ty
    }

    /// Bytes the blocks take in memory.
    pub fn stored_bytes(&self) -> usize {
        self.inner.blocks.len()
    }

    /// Rows `rows` dequantised into `out[..rows.len() * cols]`.
    pub fn dequantize_rows(&self, rows: Range<usize>, out: &mut [f32]) {
        let i = &self.inner;
        let bytes = &i.blocks[rows.start * i.row_bytes..rows.end * i.row_bytes];
        // sizes and the type were checked in `new`
        dequant::dequantize(i.ty, bytes, rows.len() * i.cols, out).expect("checked when the matrix was built");
    }

    /// The whole matrix as f32, row-major (for merging an adapter or exporting).
    pub fn to_f32(&self) -> Vec<f32> {
        let i = &self.inner;
        let mut out = vec![0f32; i.rows * i.cols];
        dequant::dequantize_par(i.ty, &i.blocks, i.rows * i.cols, &mut out).expect("checked when the matrix was built");
        out
    }

    /// Rows `ids` as f32 (an embedding lookup): `[ids.len(), cols]`.
    pub fn gather_rows(&self, ids: &[usize]) -> Vec<f32> {
        let cols = self.inner.cols;
        let mut out = vec![0f32; ids.len() * cols];
        out.par_chunks_mut(cols).zip(ids.par_iter()).for_each(|(o, &r)| self.dequantize_rows(r..r + 1, o));
        out
    }

    /// Rows per dequantised tile.
    fn tile_rows(&self) -> usize {
        (TILE_VALUES / self.inner.cols.max(1)).clamp(4, 1024)
    }

    /// `x Wᵀ`: x `[m, cols]` row-major -> `[m, rows]`.
    pub fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.inner.rows, self.inner.cols);
        assert_eq!(x.len(), m * k, "x must be [{m}, {k}]");
        let mut y = vec![0f32; m * n];
        let t = self.tile_rows();
        let y_ptr = SendPtr(y.as_mut_ptr());
        (0..n.div_ceil(t)).into_par_iter().for_each_init(
            || vec![0f32; t * k],
            |tile, i| {
                let rows = i * t..((i + 1) * t).min(n);
                let tr = rows.len();
                self.dequantize_rows(rows.clone(), tile);
                // y[:, rows] = x [m, k] · tileᵀ [k, tr]; tileᵀ[kk, j] = tile[j*k + kk]
                // SAFETY: tiles write disjoint column ranges of y; every pointer stays inside its
                // buffer for the given sizes and strides.
                unsafe {
                    let dst = y_ptr.get().add(rows.start);
                    gemm(m, tr, k, dst, 1, n as isize, false, x.as_ptr(), 1, k as isize, tile.as_ptr(), k as isize, 1, 0.0, 1.0, false, false, false, Parallelism::None);
                }
            },
        );
        y
    }

    /// `g W`: g `[m, rows]` row-major -> `[m, cols]` (the input gradient of `x Wᵀ`).
    pub fn matmul(&self, g: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.inner.rows, self.inner.cols);
        assert_eq!(g.len(), m * n, "g must be [{m}, {n}]");
        let t = self.tile_rows();
        let tiles = n.div_ceil(t);
        // Each worker sums the products of its share of the tiles into its own [m, k] buffer
        // (tiles overlap in the output); the buffers are added at the end. Their number is
        // capped so that they take at most 256 MiB.
        let max_parts = ((256 << 20) / (4 * m * k).max(1)).max(1);
        let parts = rayon::current_num_threads().min(tiles).min(max_parts).max(1);
        let per = tiles.div_ceil(parts);
        let mut partials: Vec<Vec<f32>> = (0..parts)
            .into_par_iter()
            .map(|p| {
                let mut acc = vec![0f32; m * k];
                let mut tile = vec![0f32; t * k];
                for i in p * per..((p + 1) * per).min(tiles) {
                    let rows = i * t..((i + 1) * t).min(n);
                    let tr = rows.len();
                    self.dequantize_rows(rows.clone(), &mut tile);
                    // acc += g[:, rows] [m, tr] · tile [tr, k]
                    // SAFETY: all pointers stay inside their buffers for these sizes and strides.
                    unsafe {
                        gemm(m, k, tr, acc.as_mut_ptr(), 1, k as isize, true, g.as_ptr().add(rows.start), 1, n as isize, tile.as_ptr(), 1, k as isize, 1.0, 1.0, false, false, false, Parallelism::None);
                    }
                }
                acc
            })
            .collect();
        let mut out = partials.swap_remove(0);
        for p in &partials {
            out.par_iter_mut().zip(p.par_iter()).for_each(|(o, v)| *o += v);
        }
        out
    }
}

// A quantised matrix sits in the model's module tree as a constant: no parameters to visit or
// map, nothing to move between devices (its blocks live on the host), and not saved in records
// (what burn's `#[module(skip)]` does for a struct field; enum variants cannot be skipped).
impl Module for QuantizedMatrix {
    fn visit<V: ModuleVisitor>(&self, _: &mut V) {}

    fn map<M: ModuleMapper>(self, _: &mut M) -> Self {
        self
    }

    fn to_device(self, _: &Device) -> Self {
        self
    }

    fn fork(self, _: &Device) -> Self {
        self
    }

    fn collect_devices(&self, devices: Devices) -> Devices {
        devices
    }

    fn materialize(self) -> Self {
        self
    }

    fn valid(&self) -> Self {
        self.clone()
    }

    fn train(self) -> Self {
        self
    }
}

impl ModuleDisplayDefault for QuantizedMatrix {
    fn content(&self, content: Content) -> Option<Content> {
        content.add_single(&format!("{self:?}")).optional()
    }
}

impl ModuleDisplay for QuantizedMatrix {}

/// A raw pointer the tiles of one product write through (each to its own columns).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only for disjoint writes, see `matmul_t`.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Plain triple loops over the dequantised matrix: the reference.
    fn reference(w: &[f32], rows: usize, cols: usize, x: &[f32], m: usize) -> (Vec<f32>, Vec<f32>) {
        let mut y = vec![0f64; m * rows];
        for i in 0..m {
            for r in 0..rows {
                y[i * rows + r] = (0..cols).map(|c| x[i * cols + c] as f64 * w[r * cols + c] as f64).sum();
            }
        }
        // g W with g = x reshaped as [m, rows] when sizes allow: use y as g
        let g: Vec<f32> = y.iter().map(|&v| v as f32).collect();
        let mut d = vec![0f64; m * cols];
        for i in 0..m {
            for c in 0..cols {
                d[i * cols + c] = (0..rows).map(|r| g[i * rows + r] as f64 * w[r * cols + c] as f64).sum();
            }
        }
        (g, d.into_iter().map(|v| v as f32).collect())
    }

    #[test]
    fn products_match_the_dequantised_matrix_for_each_type() {
        // rows not a multiple of the tile, several tiles, m = 1 (decoding) and m > 1
        for (ty, rows, cols) in [(GgmlType::Q4_K, 300, 256), (GgmlType::Q8_0, 70, 96), (GgmlType::F16, 33, 40), (GgmlType::Q6_K, 5, 512)] {
            let q = QuantizedMatrix::quantize(ty, rows, cols, &random(rows * cols, 1)).unwrap();
            let w = q.to_f32();
            for m in [1, 7] {
                let x = random(m * cols, 2);
                let (y_ref, d_ref) = reference(&w, rows, cols, &x, m);
                let y = q.matmul_t(&x, m);
                let d = q.matmul(&y_ref, m);
                let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-3 * (1.0 + b.abs()));
                assert!(close(&y, &y_ref), "{ty} m={m}: x Wᵀ differs");
                assert!(close(&d, &d_ref), "{ty} m={m}: g W differs");
            }
            // an embedding lookup is the dequantised rows
            let got = q.gather_rows(&[rows - 1, 0]);
            assert_eq!(&got[..cols], &w[(rows - 1) * cols..]);
            assert_eq!(&got[cols..], &w[..cols]);
        }
    }

    #[test]
    fn wrong_sizes_are_refused() {
        let e = QuantizedMatrix::new(GgmlType::Q8_0, 2, 32, vec![0; 10]).unwrap_err().to_string();
        assert!(e.contains("[2, 32] Q8_0 matrix takes 2 × 34 bytes, but 10"), "{e}");
        let e = QuantizedMatrix::new(GgmlType::Q4_K, 1, 100, vec![]).unwrap_err().to_string();
        assert!(e.contains("not a whole number"), "{e}");
    }
}
