//! A loaded model directory: config, tokenizer and network on a device.
use std::path::{Path, PathBuf};

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::arch::{KvCache, Network};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::layers::Rotary;
use crate::tokenizer::TextTokenizer;
use crate::weights::{WeightDType, WeightFiles};

/// Cloning is cheap: burn tensors are reference-counted, so a clone shares every weight
/// (see `adapters.rs`, which serves several adapters over one base this way).
#[derive(Clone)]
pub struct Model {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub tokenizer: TextTokenizer,
    pub network: Network,
    pub rotary: Rotary,
    pub device: Device,
}

impl Model {
    /// Loads a Hugging Face model directory (config.json, safetensors, tokenizer files).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_as(dir, device, WeightDType::F32)
    }

    /// Like [`Model::load`], keeping the weight matrices in `dtype` (bf16 halves their memory).
    /// `dir` may also be a `.gguf` file, or a directory holding one and no config.json: the
    /// architecture, tokenizer and chat template then come from its metadata and its tensors
    /// are dequantised at load (see `gguf/load.rs`).
    pub fn load_as(dir: &Path, device: &Device, dtype: WeightDType) -> Result<Self> {
        let model = Self::load_any(dir, device, dtype);
        release_freed_memory();
        model
    }

    fn load_any(dir: &Path, device: &Device, dtype: WeightDType) -> Result<Self> {
        if let Some(path) = crate::gguf::load::gguf_path(dir)? {
            return Self::load_gguf(&path, device, dtype);
        }
        if !dir.exists() {
            return Err(ModelError::MissingFile { dir: dir.into(), what: "model directory".into(), expected: "an existing directory".into() });
        }
        if !dir.is_dir() {
            return Err(ModelError::Invalid(format!(
                "{}: is a file, expected a model directory (config.json, *.safetensors, tokenizer.json)",
                dir.display()
            )));
        }
        let config = ModelConfig::from_dir(dir)?;
        let tokenizer = TextTokenizer::from_dir(dir, Some(&config))?;
        let weights = WeightFiles::open(dir)?;
        let network = Network::load(&weights, &config, device, dtype)?;
        let rotary = Rotary::new(&config);
        Ok(Model { dir: dir.into(), config, tokenizer, network, rotary, device: device.clone() })
    }

    fn load_gguf(path: &Path, device: &Device, dtype: WeightDType) -> Result<Self> {
        let file = crate::gguf::GgufFile::open(path)?;
        let config = crate::gguf::load::config_from_gguf(&file)?;
        let tokenizer = crate::gguf::tokenizer::tokenizer_from_gguf(&file)?;
        let weights = WeightFiles::from_gguf(crate::gguf::load::GgufWeights::new(file, &config)?);
        let network = Network::load(&weights, &config, device, dtype)?;
        let rotary = Rotary::new(&config);
        Ok(Model { dir: path.into(), config, tokenizer, network, rotary, device: device.clone() })
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_hidden_layers)
    }

    /// Token ids must index the embedding table.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.config.vocab_size) {
            return Err(ModelError::Invalid(format!(
                "token id {bad} is outside the model's vocabulary of {} (tokenizer and model do not match?)",
                self.config.vocab_size
            )));
        }
        Ok(())
    }

    fn ids_tensor(&self, ids: &[u32]) -> Tensor<2, Int> {
        let data: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
        Tensor::from_data(TensorData::new(data, [1, ids.len()]), &self.device)
    }

    /// Logits for every position of `ids` in one pass without cache: [s, V].
    pub fn logits(&self, ids: &[u32]) -> Result<Tensor<2>> {
        self.check_ids(ids)?;
        let positions: Vec<usize> = (0..ids.len()).collect();
        let hidden = self.network.forward_hidden(self.ids_tensor(ids), &self.rotary, &positions, None, None);
        let [_, s, v] = [1, ids.len(), self.config.vocab_size];
        Ok(self.network.logits(hidden).reshape([s, v]))
    }

    /// Feeds `ids` after what `cache` holds and returns the logits of the last position.
    pub fn next_logits(&self, ids: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        self.check_ids(ids)?;
        let past = cache.tokens();
        let positions: Vec<usize> = (past..past + ids.len()).collect();
        let s = ids.len();
        let hidden = self.network.forward_hidden(self.ids_tensor(ids), &self.rotary, &positions, None, Some(cache));
        let [b, _, h] = hidden.dims();
        let last = hidden.slice([0..b, s - 1..s, 0..h]);
        let logits = self.network.logits(last);
        logits.into_data().try_into_vec::<f32>().map_err(|e| ModelError::Invalid(format!("reading logits: {e:?}")))
    }

    /// Negative log-likelihood of each token of `ids` given the ones before it: `ids.len() - 1`
    /// values (the first token has no prediction).
    pub fn token_nll(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.len() < 2 {
            return Ok(vec![]);
        }
        let s = ids.len() - 1;
        let logp = log_softmax(self.logits(&ids[..s])?, 1); // [s, V]
        let targets: Vec<i32> = ids[1..].iter().map(|&i| i as i32).collect();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [s, 1]), &self.device);
        let picked = logp.gather(1, targets).neg(); // [s, 1]
        picked.into_data().try_into_vec::<f32>().map_err(|e| ModelError::Invalid(format!("reading log-probs: {e:?}")))
    }
}

/// Hands the heap memory freed while loading (f32 conversion buffers, the tokenizer's JSON) back
/// to the OS. glibc keeps freed pages in its arenas: after loading Gemma 3 270M with
/// `base_dtype: quantized`, 827 MiB stayed resident without this call and 357 MiB with it.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the OS; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
