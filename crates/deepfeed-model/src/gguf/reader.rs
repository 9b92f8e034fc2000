//! GGUF reader: header, metadata and tensor infos of v2/v3 little-endian files, tensor data by mmap.
//!
//! Every count and size read from the file is checked against the bytes that remain before anything
//! is allocated, so a malformed or hostile file gives an error naming the offset, never a panic or a
//! huge allocation (`fuzz/` fuzzes exactly this parser).
//!
//! Written here rather than taken from a crate: the GGUF readers on crates.io either panic or
//! allocate on untrusted counts, or come with a whole ML framework (candle); the format is small.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::types::{GgmlType, GgufArray, GgufValue, GgufValueType};
use super::{dequant, DEFAULT_ALIGNMENT, GGUF_MAGIC};
use crate::error::{ModelError, Result};

/// Largest tensor rank ggml supports (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Arrays nested deeper than this are refused (the format allows nesting; nobody uses it beyond 1).
const MAX_ARRAY_DEPTH: usize = 8;

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` (ne0) is the contiguous dimension, i.e. the row length.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset of the data, relative to `GgufFile::data_offset`.
    pub offset: u64,
}

impl GgufTensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of tensor data (checked when the file was read).
    pub fn n_bytes(&self) -> u64 {
        self.ggml_type.bytes_for(self.n_elements()).unwrap_or(u64::MAX)
    }

    /// Row-major shape as used elsewhere in this crate: the ggml dims reversed
    /// (a GGUF `[4096, 11008]` matrix is a `[11008, 4096]` `[out, in]` weight).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Length of one row (`ne0`) and number of rows (product of the other dims).
    pub fn rows(&self) -> (usize, usize) {
        let row_len = self.dims.first().copied().unwrap_or(1) as usize;
        let n_rows = self.dims.iter().skip(1).product::<u64>() as usize;
        (row_len, n_rows)
    }
}

enum Storage {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// An opened GGUF file: parsed header plus the mapped bytes.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, GgufValue)>,
    /// Tensor infos in file order.
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the tensor data section.
    pub data_offset: u64,
    storage: Storage,
    key_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Opens and memory-maps `path`, parsing and validating the header and every tensor info.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        let len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
        let storage = if len == 0 {
            Storage::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only; as with every mmap'd model loader, the file must not be
            // truncated by another process while it is open.
            Storage::Mmap(unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?)
        };
        Self::parse(path.to_path_buf(), storage)
    }

    /// Parses a GGUF image held in memory (`path` only names it in errors).
    pub fn from_bytes(bytes: Vec<u8>, path: impl Into<PathBuf>) -> Result<GgufFile> {
        Self::parse(path.into(), Storage::Owned(bytes))
    }

    fn parse(path: PathBuf, storage: Storage) -> Result<GgufFile> {
        let header = parse_header(storage.bytes(), &path)?;
        let key_index = header.metadata.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
        let tensor_index = header.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(GgufFile {
            path,
            version: header.version,
            metadata: header.metadata,
            tensors: header.tensors,
            alignment: header.alignment,
            data_offset: header.data_offset,
            storage,
            key_index,
            tensor_index,
        })
    }

    fn err(&self, message: impl Into<String>) -> ModelError {
        ModelError::Gguf { path: self.path.clone(), message: message.into() }
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// `general.architecture` (e.g. `llama`, `qwen2`, `gemma3`).
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// An integer value of any integer type that fits u32.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key)?.as_u32()
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)?.as_i64()
    }

    /// A float (or integer) value as f32.
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f32()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    pub fn get_array(&self, key: &str) -> Option<&GgufArray> {
        self.get(key)?.as_array()
    }

    pub fn get_str_array(&self, key: &str) -> Option<&[String]> {
        match self.get_array(key)? {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }

    pub fn get_f32_array(&self, key: &str) -> Option<Vec<f32>> {
        self.get_array(key)?.to_f32_vec()
    }

    pub fn get_i64_array(&self, key: &str) -> Option<Vec<i64>> {
        self.get_array(key)?.to_i64_vec()
    }

    /// A required key, with an error naming the key and the type found when it is missing or of
    /// the wrong type. `what` is the expected type in words (`"u32"`).
    pub fn require<'a, T>(&'a self, key: &str, what: &str, get: impl Fn(&'a GgufValue) -> Option<T>) -> Result<T> {
        match self.get(key) {
            None => Err(self.err(format!("metadata key `{key}` missing (expected {what})"))),
            Some(v) => get(v).ok_or_else(|| self.err(format!("metadata key `{key}`: expected {what}, found {}", v.describe()))),
        }
    }

    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw (possibly quantised) bytes of a tensor.
    pub fn tensor_bytes(&self, info: &GgufTensorInfo) -> Result<&[u8]> {
        let n_bytes = info.ggml_type.bytes_for(info.n_elements()).ok_or_else(|| {
            self.err(format!(
                "tensor `{}`: {} elements is not a whole number of {} blocks of {}",
                info.name,
                info.n_elements(),
                info.ggml_type,
                info.ggml_type.block_size()
            ))
        })?;
        let start = self.data_offset.checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(n_bytes));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.bytes().len() as u64 => Ok(&self.bytes()[s as usize..e as usize]),
            _ => Err(self.err(format!(
                "tensor `{}`: data at {}+{} ({} bytes) runs past the end of the file ({} bytes)",
                info.name,
                self.data_offset,
                info.offset,
                n_bytes,
                self.bytes().len()
            ))),
        }
    }

    /// A tensor dequantised to f32: (row-major shape = ggml dims reversed, values).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self.tensor_info(name).ok_or_else(|| {
            ModelError::MissingTensor { tensor: name.to_string(), hint: format!(" in {}", self.path.display()) }
        })?;
        let bytes = self.tensor_bytes(info)?;
        let n = info.n_elements() as usize;
        let mut out = vec![0f32; n];
        dequant::dequantize_par(info.ggml_type, bytes, n, &mut out)
            .map_err(|e| self.err(format!("tensor `{}`: {e}", info.name)))?;
        Ok((info.shape(), out))
    }

    /// Rows `rows` of a tensor dequantised into `out` (`rows.len() * row_len` values): the
    /// on-the-fly form, for a base that stays quantised in memory.
    pub fn tensor_rows_f32(&self, info: &GgufTensorInfo, rows: std::ops::Range<usize>, out: &mut [f32]) -> Result<()> {
        let bytes = self.tensor_bytes(info)?;
        let (row_len, _) = info.rows();
        dequant::dequantize_rows(info.ggml_type, bytes, row_len, rows, out)
            .map_err(|e| self.err(format!("tensor `{}`: {e}", info.name)))
    }
}

struct Header {
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<GgufTensorInfo>,
    alignment: u64,
    data_offset: u64,
}

/// Reads little-endian values from the file image, with every read bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, message: impl Into<String>) -> ModelError {
        ModelError::Gguf { path: self.path.to_path_buf(), message: message.into() }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if (n as u64) > self.remaining() {
            return Err(self.err(format!(
                "truncated: expected {n} bytes of {what} at offset {}, but the file ends at {}",
                self.pos,
                self.bytes.len()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items that each take at least `min_item_bytes` bytes: refused when the rest of
    /// the file could not hold that many, before anything is allocated.
    fn count(&mut self, what: &str, min_item_bytes: u64) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let need = n.checked_mul(min_item_bytes.max(1));
        match need {
            Some(need) if need <= self.remaining() => Ok(n as usize),
            _ => Err(self.err(format!(
                "{what} at offset {at} is {n}, which cannot fit in the {} bytes left in the file",
                self.remaining()
            ))),
        }
    }

    fn bytes_string(&mut self, what: &str) -> Result<&'a [u8]> {
        let n = self.count(&format!("length of {what}"), 1)?;
        self.take(n, what)
    }

    /// A string that must be valid UTF-8 (keys, tensor names).
    fn strict_string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let b = self.bytes_string(what)?;
        String::from_utf8(b.to_vec()).map_err(|e| self.err(format!("{what} at offset {at} is not valid UTF-8 ({e})")))
    }

    /// A string value: invalid UTF-8 (seen in a few vocabularies) is replaced, not refused.
    fn value_string(&mut self, what: &str) -> Result<String> {
        let b = self.bytes_string(what)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn value_type(&mut self, what: &str) -> Result<GgufValueType> {
        let at = self.pos;
        let id = self.u32(what)?;
        GgufValueType::from_id(id).ok_or_else(|| self.err(format!("{what} at offset {at}: unknown value type {id} (expected 0..=12)")))
    }

    fn value(&mut self, ty: GgufValueType, key: &str, depth: usize) -> Result<GgufValue> {
        use GgufValueType as T;
        Ok(match ty {
            T::U8 => GgufValue::U8(self.array::<1>(key)?[0]),
            T::I8 => GgufValue::I8(self.array::<1>(key)?[0] as i8),
            T::U16 => GgufValue::U16(u16::from_le_bytes(self.array(key)?)),
            T::I16 => GgufValue::I16(i16::from_le_bytes(self.array(key)?)),
            T::U32 => GgufValue::U32(u32::from_le_bytes(self.array(key)?)),
            T::I32 => GgufValue::I32(i32::from_le_bytes(self.array(key)?)),
            T::U64 => GgufValue::U64(u64::from_le_bytes(self.array(key)?)),
            T::I64 => GgufValue::I64(i64::from_le_bytes(self.array(key)?)),
            T::F32 => GgufValue::F32(f32::from_le_bytes(self.array(key)?)),
            T::F64 => GgufValue::F64(f64::from_le_bytes(self.array(key)?)),
            T::Bool => {
                let at = self.pos;
                match self.array::<1>(key)?[0] {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    b => return Err(self.err(format!("value of `{key}` at offset {at}: expected a bool (0 or 1), found {b}"))),
                }
            }
            T::String => GgufValue::String(self.value_string(&format!("value of `{key}`"))?),
            T::Array => GgufValue::Array(self.array_value(key, depth)?),
        })
    }

    fn array_value(&mut self, key: &str, depth: usize) -> Result<GgufArray> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.err(format!("value of `{key}` at offset {}: arrays nested deeper than {MAX_ARRAY_DEPTH}", self.pos)));
        }
        let ty = self.value_type(&format!("array element type of `{key}`"))?;
        let n = self.count(&format!("array length of `{key}`"), ty.min_encoded_size())?;
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                const W: usize = std::mem::size_of::<$t>();
                let raw = self.take(n * W, key)?;
                GgufArray::$variant(raw.chunks_exact(W).map(|c| <$t>::from_le_bytes(c.try_into().unwrap())).collect())
            }};
        }
        use GgufValueType as T;
        Ok(match ty {
            T::U8 => GgufArray::U8(self.take(n, key)?.to_vec()),
            T::I8 => GgufArray::I8(self.take(n, key)?.iter().map(|&b| b as i8).collect()),
            T::U16 => fixed!(U16, u16),
            T::I16 => fixed!(I16, i16),
            T::U32 => fixed!(U32, u32),
            T::I32 => fixed!(I32, i32),
            T::U64 => fixed!(U64, u64),
            T::I64 => fixed!(I64, i64),
            T::F32 => fixed!(F32, f32),
            T::F64 => fixed!(F64, f64),
            T::Bool => {
                let at = self.pos;
                let raw = self.take(n, key)?;
                if let Some(i) = raw.iter().position(|&b| b > 1) {
                    return Err(self.err(format!(
                        "value of `{key}`: element {i} at offset {} is {}, expected a bool (0 or 1)",
                        at + i,
                        raw[i]
                    )));
                }
                GgufArray::Bool(raw.iter().map(|&b| b == 1).collect())
            }
            T::String => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(self.value_string(&format!("element {i} of `{key}`"))?);
                }
                GgufArray::String(v)
            }
            T::Array => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array_value(key, depth + 1)?);
                }
                GgufArray::Array(v)
            }
        })
    }
}

fn parse_header(bytes: &[u8], path: &Path) -> Result<Header> {
    let mut c = Cursor { bytes, pos: 0, path };
    if bytes.len() < 4 || bytes[..4] != GGUF_MAGIC {
        let found = &bytes[..bytes.len().min(4)];
        return Err(c.err(format!(
            "not a GGUF file: expected the magic bytes \"GGUF\" at offset 0, found {:?} ({} bytes in the file)",
            String::from_utf8_lossy(found),
            bytes.len()
        )));
    }
    c.pos = 4;
    let version = c.u32("version")?;
    match version {
        2 | 3 => {}
        1 => return Err(c.err("GGUF version 1 (2023, 32-bit counts) is not supported; expected version 2 or 3 — re-convert the model with a current llama.cpp")),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(c.err(format!("big-endian GGUF (version {}) is not supported; expected a little-endian file", v.swap_bytes())))
        }
        v => return Err(c.err(format!("unsupported GGUF version {v}; expected 2 or 3"))),
    }
    // A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes,
    // a metadata entry at least 8 (key length) + 4 (type) + 1 (value).
    let n_tensors = c.count("tensor count", 24)?;
    let n_kv = c.count("metadata count", 13)?;

    let mut metadata: Vec<(String, GgufValue)> = Vec::with_capacity(n_kv);
    let mut seen = std::collections::HashSet::with_capacity(n_kv);
    for i in 0..n_kv {
        let at = c.pos;
        let key = c.strict_string(&format!("key of metadata entry {i}"))?;
        if !seen.insert(key.clone()) {
            return Err(c.err(format!("metadata key `{key}` at offset {at} appears twice")));
        }
        let ty = c.value_type(&format!("type of `{key}`"))?;
        let value = c.value(ty, &key, 0)?;
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, GgufValue::U32(a))) if *a != 0 && a.is_power_of_two() => *a as u64,
        Some((_, v)) => {
            return Err(c.err(format!("`general.alignment`: expected a u32 power of two, found {}", v.describe())));
        }
    };

    let mut tensors = Vec::with_capacity(n_tensors);
    let mut names = std::collections::HashSet::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let at = c.pos;
        let name = c.strict_string(&format!("name of tensor {i}"))?;
        if !names.insert(name.clone()) {
            return Err(c.err(format!("tensor name `{name}` at offset {at} appears twice")));
        }
        let n_dims = c.u32(&format!("rank of tensor `{name}`"))? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(c.err(format!("tensor `{name}` (offset {at}): expected 1 to {MAX_DIMS} dimensions, found {n_dims}")));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(c.u64(&format!("dimensions of tensor `{name}`"))?);
        }
        let type_at = c.pos;
        let type_id = c.u32(&format!("type of tensor `{name}`"))?;
        let ggml_type = GgmlType::from_id(type_id)
            .ok_or_else(|| c.err(format!("tensor `{name}`: unknown ggml type id {type_id} at offset {type_at}")))?;
        let offset = c.u64(&format!("data offset of tensor `{name}`"))?;

        let n_elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= i64::MAX as u64);
        let Some(n_elements) = n_elements else {
            return Err(c.err(format!("tensor `{name}`: dimensions {dims:?} overflow the element count")));
        };
        if dims[0] % ggml_type.block_size() as u64 != 0 {
            return Err(c.err(format!(
                "tensor `{name}`: row length {} is not a multiple of the {ggml_type} block size {}",
                dims[0],
                ggml_type.block_size()
            )));
        }
        if offset % alignment != 0 {
            return Err(c.err(format!("tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}")));
        }
        if ggml_type.bytes_for(n_elements).is_none() {
            return Err(c.err(format!("tensor `{name}`: byte size of {n_elements} {ggml_type} elements overflows")));
        }
        tensors.push(GgufTensorInfo { name, dims, ggml_type, offset });
    }

    let header_end = c.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    let file_len = bytes.len() as u64;
    if !tensors.is_empty() && data_offset > file_len {
        return Err(c.err(format!(
            "truncated: the tensor data section should start at offset {data_offset}, but the file has only {file_len} bytes"
        )));
    }
    for t in &tensors {
        let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes()));
        match end {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(c.err(format!(
                    "tensor `{}` ({} {:?}): its {} bytes of data at data offset {} + {} run past the end of the file ({file_len} bytes); the file is truncated or the offset is wrong",
                    t.name,
                    t.ggml_type,
                    t.dims,
                    t.n_bytes(),
                    data_offset,
                    t.offset
                )))
            }
        }
    }
    Ok(Header { version, metadata, tensors, alignment, data_offset })
}
