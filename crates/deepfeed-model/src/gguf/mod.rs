//! GGUF, the file format of llama.cpp and Ollama: reading (header, metadata, tensor infos, mmap'd
//! tensor data), dequantisation of the common quant types, the HF↔GGUF tensor-name map, and (in
//! `writer.rs` / `quantize.rs`) writing and quantising.
//!
//! Format reference: ggml's `docs/gguf.md` and `ggml/src/gguf.cpp`. All integers are little-endian.
//! Tensor dimensions are kept in ggml order (`ne0` first, the contiguous one); the row-major shape
//! used everywhere else in this crate is that list reversed.
pub mod dequant;
pub mod export;
pub mod load;
pub mod ollama;
pub mod names;
pub mod quantize;
pub mod reader;
pub mod tokenizer;
pub mod writer;
mod types;

pub use reader::{GgufFile, GgufTensorInfo};
pub use writer::GgufWriter;
pub use types::{GgmlType, GgufArray, GgufValue, GgufValueType};

/// The magic at offset 0 of every GGUF file: the bytes `GGUF`.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Elements per super-block of the k-quants.
pub const QK_K: usize = 256;
