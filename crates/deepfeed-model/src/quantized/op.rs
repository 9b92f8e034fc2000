//! `x Wᵀ` with a quantised `W` as a burn operation (a backend extension), with its own backward.
//!
//! The point is the backward: burn's autodiff would keep the dequantised `W` of every layer alive
//! until the backward pass reaches it, which is the whole f32 model again. Here the recorded state
//! is the [`QuantizedMatrix`] (shared blocks), and backward dequantises it again, tile by tile,
//! to form `∂L/∂x = ∂L/∂y · W`. `W` is frozen: it never gets a gradient.
//!
//! Backends: burn-flex (the CPU backend, see `backend.rs`) and autodiff over it. Adding CUDA means
//! implementing [`QuantizedMatmulBackend`] for it and listing it in `#[backend_extension]`.
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::{DType, Shape, Tensor, TensorData};

use super::QuantizedMatrix;

#[backend_extension(Flex, Autodiff)]
pub trait QuantizedMatmulBackend: Backend {
    /// x `[…, cols]` -> x Wᵀ `[…, rows]`
    fn quantized_matmul_t(x: FloatTensor<Self>, w: QuantizedMatrix) -> FloatTensor<Self>;
    /// g `[…, rows]` -> g W `[…, cols]`
    fn quantized_matmul(g: FloatTensor<Self>, w: QuantizedMatrix) -> FloatTensor<Self>;
}

/// `x Wᵀ` for x `[n, cols]` -> `[n, rows]`, differentiable in x.
pub fn matmul_t(x: Tensor<2>, w: &QuantizedMatrix) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as QuantizedMatmulBackend>::quantized_matmul_t(x.into_dispatch(), w.clone()))
}

/// Runs `product` on the f32 values of `x` (last dimension `inner`) and returns a tensor whose
/// last dimension is `outer`.
fn on_host(x: FlexTensor, inner: usize, outer: usize, product: impl FnOnce(&[f32], usize) -> Vec<f32>) -> FlexTensor {
    let shape = x.shape();
    let dims = shape.as_slice();
    assert_eq!(dims.last().copied(), Some(inner), "quantised matmul: input {dims:?} must end in {inner}");
    let x = if x.dtype() == DType::F32 { x } else { FlexTensor::from_data(x.into_data().convert::<f32>()) };
    let x = if x.is_contiguous() && x.as_slice::<f32>().is_some() { x } else { x.to_contiguous() };
    let values = x.as_slice::<f32>().expect("contiguous f32");
    let m = values.len() / inner.max(1);
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("rank >= 1") = outer;
    FlexTensor::from_data(TensorData::new(product(values, m), Shape::from(out_dims)))
}

impl QuantizedMatmulBackend for Flex {
    fn quantized_matmul_t(x: FlexTensor, w: QuantizedMatrix) -> FlexTensor {
        let [rows, cols] = w.dims();
        on_host(x, cols, rows, |v, m| w.matmul_t(v, m))
    }

    fn quantized_matmul(g: FlexTensor, w: QuantizedMatrix) -> FlexTensor {
        let [rows, cols] = w.dims();
        on_host(g, rows, cols, |v, m| w.matmul(v, m))
    }
}

/// Backward of both products: `y = x Wᵀ` gives `∂x = ∂y W`, and `y = g W` gives `∂g = ∂y Wᵀ`.
#[derive(Debug)]
struct ProductBackward;

impl<B: QuantizedMatmulBackend> Backward<B, 1> for ProductBackward {
    /// The matrix, and whether the forward product was `x Wᵀ`.
    type State = (QuantizedMatrix, bool);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (w, transposed) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| if transposed { B::quantized_matmul(grad, w) } else { B::quantized_matmul_t(grad, w) });
    }
}

/// Runs one product on the inner backend and records it for backward (the matrix is the state).
fn record<B: QuantizedMatmulBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    w: QuantizedMatrix,
    transposed: bool,
) -> FloatTensor<Autodiff<B, C>> {
    let product = |x, w| if transposed { B::quantized_matmul_t(x, w) } else { B::quantized_matmul(x, w) };
    match ProductBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((w.clone(), transposed), product(x.into_primitive(), w)),
        OpsKind::UnTracked(prep) => prep.finish(product(x.into_primitive(), w)),
    }
}

impl<B: QuantizedMatmulBackend, C: CheckpointStrategy> QuantizedMatmulBackend for Autodiff<B, C> {
    fn quantized_matmul_t(x: FloatTensor<Self>, w: QuantizedMatrix) -> FloatTensor<Self> {
        record::<B, C>(x, w, true)
    }

    fn quantized_matmul(g: FloatTensor<Self>, w: QuantizedMatrix) -> FloatTensor<Self> {
        record::<B, C>(g, w, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{inference_device, training_device};
    use crate::gguf::GgmlType;
    use burn::tensor::Device;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    /// Forward values and the gradient reaching x equal burn's own matmul on the dequantised
    /// matrix, with and without gradient checkpointing; W gets no gradient.
    #[test]
    fn forward_and_input_gradient_match_a_dense_matmul() {
        let (rows, cols, n) = (300, 64, 5);
        let q = QuantizedMatrix::quantize(GgmlType::Q8_0, rows, cols, &random(rows * cols, 3)).unwrap();
        let x_values = random(n * cols, 4);
        let devices: [Device; 2] = [training_device(), training_device().gradient_checkpointing()];
        for device in devices {
            let run = |quantized: bool| {
                let x = Tensor::<2>::from_data(TensorData::new(x_values.clone(), [n, cols]), &device).require_grad();
                let y = if quantized {
                    matmul_t(x.clone(), &q)
                } else {
                    let w = Tensor::<2>::from_data(TensorData::new(q.to_f32(), [rows, cols]), &device);
                    x.clone().matmul(w.transpose())
                };
                // a non-linear loss, so that the gradient depends on y
                let grads = (y.clone() * y.clone()).sum().backward();
                (values(y.detach()), values(x.grad(&grads).unwrap()))
            };
            let ((y_q, g_q), (y_d, g_d)) = (run(true), run(false));
            let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs()));
            assert!(close(&y_q, &y_d), "forward differs");
            assert!(close(&g_q, &g_d), "input gradient differs");
        }
        // the other product, g W (used by backward), is differentiable too
        let device = training_device();
        let g_values = random(n * rows, 5);
        let run = |quantized: bool| {
            let g = Tensor::<2>::from_data(TensorData::new(g_values.clone(), [n, rows]), &device).require_grad();
            let y = if quantized {
                Tensor::from_dispatch(<Dispatch as QuantizedMatmulBackend>::quantized_matmul(g.clone().into_dispatch(), q.clone()))
            } else {
                g.clone().matmul(Tensor::<2>::from_data(TensorData::new(q.to_f32(), [rows, cols]), &device))
            };
            let grads = (y.clone() * y.clone()).sum().backward();
            (values(y.detach()), values(g.grad(&grads).unwrap()))
        };
        let ((y_q, g_q), (y_d, g_d)) = (run(true), run(false));
        assert!(y_q.iter().zip(&y_d).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs())), "g W differs");
        assert!(g_q.iter().zip(&g_d).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs())), "gradient of g W differs");

        // and without autodiff (generation): same values
        let x = Tensor::<2>::from_data(TensorData::new(x_values, [n, cols]), &inference_device());
        let w = Tensor::<2>::from_data(TensorData::new(q.to_f32(), [rows, cols]), &inference_device());
        let (a, b) = (values(matmul_t(x.clone(), &q)), values(x.matmul(w.transpose())));
        assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs())));
    }
}
