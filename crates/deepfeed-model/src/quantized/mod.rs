//! A frozen base that stays quantised in memory (`base_dtype: quantized`): the matrices keep their
//! GGUF blocks (`matrix.rs`) and are multiplied through a burn operation with its own backward
//! (`op.rs`), so neither the forward nor the autodiff graph ever holds a dequantised copy.
mod matrix;
mod op;

pub use matrix::QuantizedMatrix;
pub use op::{matmul_t, QuantizedMatmulBackend};
