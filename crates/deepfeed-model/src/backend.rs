//! The one place that chooses the tensor backend. Everything else takes a `burn::tensor::Device`.
//!
//! Today: burn's pure-Rust `flex` CPU backend, built with SIMD, rayon and AVX-512 kernels (see the
//! workspace Cargo.toml). A CUDA device can be added here (`Device::cuda(0)` behind a cargo
//! feature) without touching model code.
use burn::tensor::Device;

/// Device for inference (no autodiff graph is recorded).
pub fn inference_device() -> Device {
    Device::flex()
}

/// Device for training: the same backend with autodiff enabled.
pub fn training_device() -> Device {
    inference_device().autodiff()
}
