//! Weights of a Hugging Face model directory: one `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`. Files are memory-mapped; F32, F16 and BF16 are read as f32.
//! Also the one safetensors writer (models, adapters, checkpoints).
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use memmap2::Mmap;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{read_json, ModelError, Result};
use crate::gguf::GgmlType;
use crate::layers::MatrixWeight;
use crate::quantized::QuantizedMatrix;

/// How the large weight matrices are kept in memory. Computation is always f32.
///
/// `Bf16` and `Quantized` keep each matrix as blocks that are widened to f32 a tile at a time
/// when used (`quantized/`), so no f32 copy of a matrix exists, not even in the autodiff graph.
/// `Bf16` halves the memory of the matrices. `Quantized`: a GGUF model keeps the blocks of its
/// own file (Q4_K_M: 1/4 to 1/7 of f32, depending on how much of it the Q8_0/Q6_K embedding is);
/// a safetensors model is quantised to Q8_0 at load (about 1/4). Matrices whose rows are not a
/// whole number of blocks, and GGUF matrices stored as F32, stay f32. Frozen bases only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDType {
    #[default]
    F32,
    Bf16,
    Quantized,
}

impl WeightDType {
    pub fn name(self) -> &'static str {
        match self {
            WeightDType::F32 => "f32",
            WeightDType::Bf16 => "bf16",
            WeightDType::Quantized => "quantized",
        }
    }
}

/// All tensors of a model directory, by name, without reading them yet.
pub struct WeightFiles {
    files: Vec<(PathBuf, Mmap)>,
    /// tensor name -> index in `files`
    index: HashMap<String, usize>,
    /// Or a GGUF file, its tensors served under their HF names (dequantised when read).
    gguf: Option<crate::gguf::load::GgufWeights>,
}

impl WeightFiles {
    /// The tensors of a GGUF model under their Hugging Face names.
    pub fn from_gguf(weights: crate::gguf::load::GgufWeights) -> Self {
        WeightFiles { files: vec![], index: HashMap::new(), gguf: Some(weights) }
    }

    /// Opens the safetensors files of `dir` (sharded or not) and checks their headers.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join("model.safetensors.index.json");
        let shard_names: Vec<String> = if index_path.is_file() {
            #[derive(serde::Deserialize)]
            struct Index {
                weight_map: BTreeMap<String, String>,
            }
            let index: Index = read_json(&index_path)?;
            let mut names: Vec<String> = index.weight_map.into_values().collect();
            names.sort();
            names.dedup();
            names
        } else {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .map_err(|e| ModelError::io(dir, e))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".safetensors") && !n.starts_with("adapter_"))
                .collect();
            names.sort();
            names
        };
        if shard_names.is_empty() {
            return Err(ModelError::MissingFile {
                dir: dir.into(),
                what: "model weights".into(),
                expected: "model.safetensors or model.safetensors.index.json with its shards".into(),
            });
        }
        Self::open_paths(shard_names.iter().map(|n| dir.join(n)).collect())
    }

    /// Opens one safetensors file (e.g. a PEFT `adapter_model.safetensors`).
    pub fn open_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            let dir = path.parent().unwrap_or(Path::new("."));
            let what = path.file_name().map_or("file".into(), |n| n.to_string_lossy().into_owned());
            return Err(ModelError::MissingFile { dir: dir.into(), what, expected: "a safetensors file".into() });
        }
        Self::open_paths(vec![path.to_path_buf()])
    }

    fn open_paths(paths: Vec<PathBuf>) -> Result<Self> {
        let mut files = Vec::new();
        let mut index = HashMap::new();
        for path in paths {
            let file = File::open(&path).map_err(|e| ModelError::io(&path, e))?;
            // SAFETY: the file is opened read-only; deepfeed never writes a weight file in place
            // (outputs go to a temp file and are renamed), so the mapping is not mutated under us.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(&path, e))?;
            let st = SafeTensors::deserialize(&mmap)
                .map_err(|e| ModelError::Safetensors { path: path.clone(), message: e.to_string() })?;
            for tensor_name in st.names() {
                index.insert(tensor_name.to_string(), files.len());
            }
            files.push((path, mmap));
        }
        Ok(WeightFiles { files, index, gguf: None })
    }

    pub fn contains(&self, name: &str) -> bool {
        if let Some(g) = &self.gguf {
            return g.contains(name);
        }
        self.index.contains_key(name)
    }

    /// The stored shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        if let Some(g) = &self.gguf {
            return g.shape(name);
        }
        let &i = self.index.get(name)?;
        let st = SafeTensors::deserialize(&self.files[i].1).ok()?;
        st.tensor(name).ok().map(|v| v.shape().to_vec())
    }

    pub fn names(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match &self.gguf {
            Some(g) => Box::new(g.names()),
            None => Box::new(self.index.keys().map(String::as_str)),
        }
    }

    /// Reads tensor `name` as f32, checking it has shape `expected`.
    pub fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        if let Some(g) = &self.gguf {
            return g.read_f32(name, expected);
        }
        let rows = expected.first().copied().unwrap_or(1);
        self.read_safetensors_rows(name, expected, 0..rows)
    }

    /// Rows `rows` (of the first dimension) of tensor `name`, checked to have shape `expected`,
    /// as f32: a part of [`WeightFiles::read_f32`] without the whole tensor in f32.
    pub fn read_rows_f32(&self, name: &str, expected: &[usize], rows: Range<usize>) -> Result<Vec<f32>> {
        if rows.start > rows.end || Some(&rows.end) > expected.first() {
            return Err(ModelError::Invalid(format!("{name}: rows {rows:?} are outside its shape {expected:?}")));
        }
        match &self.gguf {
            Some(g) => g.read_rows_f32(name, expected, rows),
            None => self.read_safetensors_rows(name, expected, rows),
        }
    }

    fn read_safetensors_rows(&self, name: &str, expected: &[usize], rows: Range<usize>) -> Result<Vec<f32>> {
        let &i = self.index.get(name).ok_or_else(|| ModelError::MissingTensor {
            tensor: name.into(),
            hint: format!(" ({} tensors present in {} file(s))", self.index.len(), self.files.len()),
        })?;
        let (path, mmap) = &self.files[i];
        let st = SafeTensors::deserialize(mmap)
            .map_err(|e| ModelError::Safetensors { path: path.clone(), message: e.to_string() })?;
        let view = st
            .tensor(name)
            .map_err(|e| ModelError::Safetensors { path: path.clone(), message: e.to_string() })?;
        if view.shape() != expected {
            return Err(ModelError::ShapeMismatch {
                tensor: name.into(),
                path: path.clone(),
                expected: expected.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let size = match view.dtype() {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            other => {
                return Err(ModelError::UnsupportedDtype { tensor: name.into(), path: path.clone(), dtype: format!("{other:?}") })
            }
        };
        let row_len: usize = expected.iter().skip(1).product();
        let bytes = &view.data()[rows.start * row_len * size..rows.end * row_len * size];
        Ok(match view.dtype() {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            _ => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        })
    }

    /// Reads tensor `name` with shape `shape` onto `device` as f32.
    pub fn tensor<const D: usize>(&self, name: &str, shape: [usize; D], device: &Device) -> Result<Tensor<D>> {
        Ok(Tensor::from_data(TensorData::new(self.read_f32(name, &shape)?, shape), device))
    }

    /// Reads weight matrix `name` `[rows, cols]`, kept as `dtype` (see [`WeightDType`]).
    pub fn matrix(&self, name: &str, shape: [usize; 2], device: &Device, dtype: WeightDType) -> Result<MatrixWeight> {
        let cols = shape[1];
        let blocks = match dtype {
            WeightDType::F32 => None,
            // bf16 values widened tile by tile like quantised blocks: a bf16 burn tensor would be
            // cast to f32 in every forward, and autodiff would keep those f32 copies for backward
            WeightDType::Bf16 => Some(self.encode_matrix(name, shape, GgmlType::BF16)?),
            WeightDType::Quantized => match &self.gguf {
                Some(g) => g.quantized(name, shape)?,
                None if cols % GgmlType::Q8_0.block_size() == 0 => Some(self.encode_matrix(name, shape, GgmlType::Q8_0)?),
                None => None,
            },
        };
        Ok(match blocks {
            Some(q) => MatrixWeight::Quantized(q),
            None => MatrixWeight::Dense(Param::from_tensor(self.tensor(name, shape, device)?)),
        })
    }

    /// Matrix `name` encoded as `ty` a few MiB of rows at a time, so that its f32 form never
    /// exists whole (a large embedding would otherwise double the peak memory of loading).
    fn encode_matrix(&self, name: &str, [rows, cols]: [usize; 2], ty: GgmlType) -> Result<QuantizedMatrix> {
        let chunk = ((1 << 20) / cols.max(1)).max(1); // 4 MiB of f32
        let mut blocks = Vec::with_capacity(crate::gguf::dequant::row_bytes(ty, cols)? * rows);
        for start in (0..rows).step_by(chunk) {
            let values = self.read_rows_f32(name, &[rows, cols], start..(start + chunk).min(rows))?;
            blocks.extend(crate::gguf::quantize::quantize(ty, &values, cols)?);
        }
        QuantizedMatrix::new(ty, rows, cols, blocks)
    }
}

/// Writes f32 tensors as one safetensors file.
pub fn save_f32_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: HashMap<String, TensorView> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| (name.clone(), TensorView::new(Dtype::F32, shape.clone(), b).expect("shape matches data")))
        .collect();
    safetensors::serialize_to_file(views, None, path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(err) => ModelError::Io { path: path.into(), err },
        other => ModelError::Invalid(format!("{}: cannot write: {other}", path.display())),
    })
}
