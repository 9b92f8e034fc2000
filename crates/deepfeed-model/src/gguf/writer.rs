//! GGUF v3 writer: metadata in insertion order, tensor infos, then each tensor's data aligned to
//! `general.alignment` (32 unless set) — the layout of llama.cpp's `gguf.GGUFWriter`, byte for byte
//! (tests/gguf_writer.rs rewrites a file written by the Python package and compares the bytes).
//! The file is written to a temporary sibling and renamed into place.
use std::io::Write;
use std::path::Path;

use super::types::{GgmlType, GgufArray, GgufValue};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC};
use crate::error::{ModelError, Result};

struct PendingTensor {
    name: String,
    /// ggml order (ne0 first)
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory and writes it out.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Sets `key` (replacing an earlier value in place, keeping its position).
    pub fn set(&mut self, key: impl Into<String>, value: GgufValue) {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
    }

    pub fn set_str(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.set(key, GgufValue::String(value.into()));
    }

    pub fn set_u32(&mut self, key: impl Into<String>, value: u32) {
        self.set(key, GgufValue::U32(value));
    }

    pub fn set_f32(&mut self, key: impl Into<String>, value: f32) {
        self.set(key, GgufValue::F32(value));
    }

    pub fn set_bool(&mut self, key: impl Into<String>, value: bool) {
        self.set(key, GgufValue::Bool(value));
    }

    pub fn set_array(&mut self, key: impl Into<String>, value: GgufArray) {
        self.set(key, GgufValue::Array(value));
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Alignment of the tensor data (`general.alignment`, 32 when unset).
    pub fn alignment(&self) -> u64 {
        match self.get("general.alignment") {
            Some(GgufValue::U32(a)) => *a as u64,
            _ => DEFAULT_ALIGNMENT,
        }
    }

    pub fn set_alignment(&mut self, alignment: u32) -> Result<()> {
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(ModelError::Invalid(format!("GGUF alignment must be a power of two, got {alignment}")));
        }
        self.set_u32("general.alignment", alignment);
        Ok(())
    }

    /// Adds a tensor of row-major `shape` (`[out, in]` for a weight; stored as ggml dims reversed)
    /// whose `data` is already encoded as `ggml_type`.
    pub fn add_tensor(&mut self, name: impl Into<String>, shape: &[usize], ggml_type: GgmlType, data: Vec<u8>) -> Result<()> {
        let name = name.into();
        if shape.is_empty() || shape.len() > super::reader::MAX_DIMS {
            return Err(ModelError::Invalid(format!("tensor `{name}`: GGUF tensors have 1 to 4 dimensions, got shape {shape:?}")));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(ModelError::Invalid(format!("tensor `{name}` added twice to the GGUF file")));
        }
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let n: u64 = dims.iter().product();
        let need = ggml_type.bytes_for(n).filter(|_| dims[0] % ggml_type.block_size() as u64 == 0);
        if need != Some(data.len() as u64) {
            return Err(ModelError::Invalid(format!(
                "tensor `{name}`: shape {shape:?} as {ggml_type} needs {} bytes (rows a multiple of {}), got {}",
                need.map(|n| n.to_string()).unwrap_or_else(|| "whole blocks".into()),
                ggml_type.block_size(),
                data.len()
            )));
        }
        self.tensors.push(PendingTensor { name, dims, ggml_type, data });
        Ok(())
    }

    /// Adds an f32 tensor.
    pub fn add_f32(&mut self, name: impl Into<String>, shape: &[usize], values: &[f32]) -> Result<()> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_tensor(name, shape, GgmlType::F32, data)
    }

    /// The whole file image.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Writes the file to `path` through a temporary sibling and a rename.
    pub fn write(&self, path: &Path) -> Result<()> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out.gguf".into());
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let result = (|| {
            let file = std::fs::File::create(&tmp)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            self.write_to(&mut w)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(ModelError::io(path, e));
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ModelError::io(path, e)
        })
    }

    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let align = self.alignment();
        let mut header = Vec::new();
        header.extend_from_slice(&GGUF_MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut header, k);
            header.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut header, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offset += (t.data.len() as u64).div_ceil(align) * align;
        }
        w.write_all(&header)?;
        let zeros = vec![0u8; align as usize];
        let pad = |n: u64| ((n.div_ceil(align) * align) - n) as usize;
        w.write_all(&zeros[..pad(header.len() as u64)])?;
        for t in &self.tensors {
            w.write_all(&t.data)?;
            w.write_all(&zeros[..pad(t.data.len() as u64)])?;
        }
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.push(*x as u8),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(*x as u8),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut Vec<u8>, a: &GgufArray) {
    out.extend_from_slice(&(a.element_type() as u32).to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        GgufArray::U8(v) => out.extend_from_slice(v),
        GgufArray::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        GgufArray::U16(v) => le!(v),
        GgufArray::I16(v) => le!(v),
        GgufArray::U32(v) => le!(v),
        GgufArray::I32(v) => le!(v),
        GgufArray::U64(v) => le!(v),
        GgufArray::I64(v) => le!(v),
        GgufArray::F32(v) => le!(v),
        GgufArray::F64(v) => le!(v),
        GgufArray::Bool(v) => out.extend(v.iter().map(|&x| x as u8)),
        GgufArray::String(v) => {
            for s in v {
                put_str(out, s);
            }
        }
        GgufArray::Array(v) => {
            for inner in v {
                put_array(out, inner);
            }
        }
    }
}
