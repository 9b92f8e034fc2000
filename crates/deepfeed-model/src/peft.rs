//! PEFT-compatible LoRA adapters: `adapter_config.json` + `adapter_model.safetensors` with keys
//! `base_model.model.<module>.lora_A.weight` ([r, in]) and `….lora_B.weight` ([out, r]), exactly
//! as `peft` saves and loads them. Also merging adapters into the base weights and saving a whole
//! model in Hugging Face layout.
use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::arch::llama::ParamMut;
use crate::error::{read_json, ModelError, Result};
use crate::fsutil::write_dir_atomically;
use crate::lora::{LoraAdapter, LoraConfig};
use crate::model::Model;
use crate::prefix::PrefixTuning;
use crate::weights::save_f32_safetensors;
use crate::weights::WeightFiles;

const PREFIX: &str = "base_model.model.";

/// What kind of adapter a PEFT directory holds.
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterConfig {
    /// LoRA / rsLoRA / DoRA.
    Lora(LoraConfig),
    /// Prefix tuning with this many virtual tokens.
    Prefix { num_virtual_tokens: usize },
}

impl AdapterConfig {
    pub fn lora(&self) -> Option<&LoraConfig> {
        match self {
            AdapterConfig::Lora(c) => Some(c),
            AdapterConfig::Prefix { .. } => None,
        }
    }
}

/// The module name's last part (`model.layers.0.self_attn.q_proj` -> `q_proj`).
fn short_name(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

impl Model {
    fn prefix_slot(&mut self) -> Result<&mut Option<PrefixTuning>> {
        let arch = self.config.architecture.hf_name();
        self.network
            .prefix_slot()
            .ok_or_else(|| ModelError::Invalid(format!("prefix tuning is not supported for {arch}; use LoRA")))
    }

    /// Attaches new LoRA adapters (A random, B zero) to the target modules; returns how many.
    pub fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> Result<usize> {
        let targets = cfg.resolved_targets()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut n = 0;
        let device = self.device.clone();
        let mut present = std::collections::BTreeSet::new();
        for (name, linear) in self.network.linears_mut() {
            present.insert(short_name(&name).to_string());
            if targets.iter().any(|t| t == short_name(&name)) {
                let dims = linear.weight.dims();
                linear.lora = Some(LoraAdapter::init(dims, || linear.weight.dense(&device), &device, cfg, &mut rng));
                n += 1;
            }
        }
        if n == 0 {
            // the names are checked against every architecture's; this one may have none of them
            return Err(ModelError::Invalid(format!(
                "lora.target_modules {:?}: none is a module of this {} model; its linear modules are {}",
                cfg.target_modules,
                self.config.architecture.hf_name(),
                present.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(n)
    }

    /// Attaches new prefix-tuning keys/values (N(0, 1), as PEFT starts them).
    pub fn add_prefix(&mut self, num_virtual_tokens: usize, seed: u64) -> Result<()> {
        if num_virtual_tokens == 0 {
            return Err(ModelError::Invalid("prefix.num_virtual_tokens must be at least 1".into()));
        }
        let prefix = PrefixTuning::init(num_virtual_tokens, &self.config, seed, &self.device);
        *self.prefix_slot()? = Some(prefix);
        Ok(())
    }

    /// Loads a PEFT adapter directory (LoRA, DoRA or prefix tuning) and attaches it.
    pub fn load_adapter(&mut self, dir: &Path) -> Result<AdapterConfig> {
        let cfg_path = dir.join("adapter_config.json");
        if !cfg_path.is_file() {
            return Err(ModelError::MissingFile { dir: dir.into(), what: "adapter_config.json".into(), expected: "a PEFT adapter directory".into() });
        }
        let raw: Value = read_json(&cfg_path)?;
        let field_err = |field: &str, message: String| ModelError::Config { path: cfg_path.clone(), field: field.into(), message };
        match raw.get("peft_type").and_then(|v| v.as_str()) {
            Some("LORA") => {}
            Some("PREFIX_TUNING") => return self.load_prefix(dir, &raw).map_err(|e| match e {
                ModelError::Invalid(m) => field_err("(prefix tuning)", m),
                other => other,
            }),
            _ => {
                return Err(field_err(
                    "peft_type",
                    format!("expected \"LORA\" or \"PREFIX_TUNING\", found {}", raw.get("peft_type").unwrap_or(&Value::Null)),
                ))
            }
        }
        for field in ["rank_pattern", "alpha_pattern"] {
            if raw.get(field).and_then(|v| v.as_object()).is_some_and(|o| !o.is_empty()) {
                return Err(field_err(field, "per-module ranks or alphas are not supported".into()));
            }
        }
        let cfg: LoraConfig = serde_json::from_value(raw.clone()).map_err(|e| field_err("(root)", e.to_string()))?;
        let weights = WeightFiles::open_file(&dir.join("adapter_model.safetensors"))?;
        let device = self.device.clone();
        let mut attached = 0;
        for (name, linear) in self.network.linears_mut() {
            let a_name = format!("{PREFIX}{name}.lora_A.weight");
            if !weights.contains(&a_name) {
                continue;
            }
            let (in_f, out_f) = (linear.in_features(), linear.out_features());
            let a = weights.tensor(&a_name, [cfg.r, in_f], &device)?;
            let b = weights.tensor(&format!("{PREFIX}{name}.lora_B.weight"), [out_f, cfg.r], &device)?;
            let magnitude = if cfg.use_dora {
                Some(Param::from_tensor(weights.tensor(&format!("{PREFIX}{name}.lora_magnitude_vector"), [out_f], &device)?))
            } else {
                None
            };
            linear.lora = Some(LoraAdapter {
                lora_a: Param::from_tensor(a),
                lora_b: Param::from_tensor(b),
                magnitude,
                scale: cfg.scale(),
                dropout: cfg.lora_dropout,
                dropout_seed: None,
            });
            attached += 1;
        }
        let known = attached * if cfg.use_dora { 3 } else { 2 };
        let total = weights.names().count();
        if attached == 0 || known != total {
            let mut unknown: Vec<&str> = weights.names().filter(|n| !is_adapter_param(n)).collect();
            unknown.sort();
            return Err(ModelError::Invalid(format!(
                "{}: {total} tensors, of which {known} match this model's modules{}",
                dir.join("adapter_model.safetensors").display(),
                if unknown.is_empty() { " (was the adapter trained on another architecture?)".to_string() } else { format!("; unexpected: {}", unknown.join(", ")) }
            )));
        }
        Ok(AdapterConfig::Lora(cfg))
    }

    fn load_prefix(&mut self, dir: &Path, raw: &Value) -> Result<AdapterConfig> {
        let get = |k: &str| raw.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
        if raw.get("prefix_projection").and_then(|v| v.as_bool()) == Some(true) {
            return Err(ModelError::Invalid("prefix_projection (an MLP over the prefixes) is not supported".into()));
        }
        let n = get("num_virtual_tokens").ok_or_else(|| ModelError::Invalid("num_virtual_tokens missing".into()))?;
        let (layers, kv) = (self.config.num_hidden_layers, self.config.num_key_value_heads * self.config.head_dim);
        if get("num_layers").is_some_and(|l| l != layers) || get("token_dim").is_some_and(|t| t != kv) {
            return Err(ModelError::Invalid(format!(
                "made for {} layers with {} key/value dims per token, this model has {layers} and {kv}",
                get("num_layers").unwrap_or(0),
                get("token_dim").unwrap_or(0)
            )));
        }
        let weights = WeightFiles::open_file(&dir.join("adapter_model.safetensors"))?;
        let t = weights.tensor("prompt_embeddings", [n, PrefixTuning::width(&self.config)], &self.device)?;
        *self.prefix_slot()? = Some(PrefixTuning::from_tensor(t, &self.config));
        Ok(AdapterConfig::Prefix { num_virtual_tokens: n })
    }

    /// Writes the attached adapter as a PEFT adapter directory (atomically).
    pub fn save_adapter(&mut self, cfg: &AdapterConfig, base_model_name: &str, dir: &Path) -> Result<()> {
        let cfg = match cfg {
            AdapterConfig::Lora(c) => c,
            AdapterConfig::Prefix { num_virtual_tokens } => return self.save_prefix(*num_virtual_tokens, base_model_name, dir),
        };
        let mut tensors = Vec::new();
        for (name, p) in self.network.params_mut() {
            if is_adapter_param(&name) && name != "prompt_embeddings" {
                tensors.push((format!("{PREFIX}{name}"), p.shape(), param_values(&p)?));
            }
        }
        if tensors.is_empty() {
            return Err(ModelError::Invalid("the model has no LoRA adapter to save".into()));
        }
        // the module names actually adapted (`all-linear` names every architecture's modules)
        let mut targets: Vec<String> = cfg.resolved_targets()?;
        let adapted: Vec<String> =
            self.network.linears_mut().into_iter().filter(|(_, l)| l.lora.is_some()).map(|(n, _)| short_name(&n).to_string()).collect();
        targets.retain(|t| adapted.contains(t));
        targets.sort();
        let config = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model_name,
            "r": cfg.r,
            "lora_alpha": cfg.lora_alpha,
            "lora_dropout": cfg.lora_dropout,
            "target_modules": targets,
            "use_rslora": cfg.use_rslora,
            "use_dora": cfg.use_dora,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
        });
        write_dir_atomically(dir, |tmp| {
            std::fs::write(tmp.join("adapter_config.json"), serde_json::to_string_pretty(&config).unwrap())
                .map_err(|e| ModelError::io(tmp.join("adapter_config.json"), e))?;
            save_f32_safetensors(&tmp.join("adapter_model.safetensors"), &tensors)
        })
    }

    fn save_prefix(&mut self, n: usize, base_model_name: &str, dir: &Path) -> Result<()> {
        let c = &self.config;
        let kv = c.num_key_value_heads * c.head_dim;
        let config = json!({
            "peft_type": "PREFIX_TUNING",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model_name,
            "num_virtual_tokens": n,
            "num_layers": c.num_hidden_layers,
            "token_dim": kv,
            "encoder_hidden_size": kv,
            "num_attention_heads": c.num_key_value_heads,
            "num_transformer_submodules": 1,
            "prefix_projection": false,
            "inference_mode": true,
            "revision": null,
        });
        let mut tensors = Vec::new();
        for (name, p) in self.network.params_mut() {
            if name == "prompt_embeddings" {
                tensors.push((name, p.shape(), param_values(&p)?));
            }
        }
        if tensors.is_empty() {
            return Err(ModelError::Invalid("the model has no prefix-tuning adapter to save".into()));
        }
        write_dir_atomically(dir, |tmp| {
            std::fs::write(tmp.join("adapter_config.json"), serde_json::to_string_pretty(&config).unwrap())
                .map_err(|e| ModelError::io(tmp.join("adapter_config.json"), e))?;
            save_f32_safetensors(&tmp.join("adapter_model.safetensors"), &tensors)
        })
    }

    /// Folds every attached adapter into its base weight.
    pub fn merge_adapters(&mut self) {
        let device = self.device.clone();
        for (_, linear) in self.network.linears_mut() {
            linear.merge_lora(&device);
        }
    }

    /// Saves the model (adapters merged first) in Hugging Face layout: config.json, tokenizer
    /// files and safetensors shards of at most `max_shard_bytes` (+ index when sharded).
    pub fn save_pretrained(&mut self, dir: &Path, max_shard_bytes: usize) -> Result<()> {
        if self.network.prefix().is_some() {
            return Err(ModelError::Invalid(
                "a prefix-tuning adapter cannot be merged into the weights; keep it as an adapter (--adapter)".into(),
            ));
        }
        self.merge_adapters();
        let mut shards: Vec<Vec<(String, Vec<usize>, Vec<f32>)>> = vec![vec![]];
        let mut size = 0;
        for (name, p) in self.network.params_mut() {
            let bytes = p.num_elements() * 4;
            if size > 0 && size + bytes > max_shard_bytes {
                shards.push(vec![]);
                size = 0;
            }
            size += bytes;
            shards.last_mut().unwrap().push((name, p.shape(), param_values(&p)?));
        }
        let src = self.dir.clone();
        let mut config = Value::Object(self.config.raw.clone());
        config["torch_dtype"] = json!("float32");
        config["dtype"] = json!("float32");
        write_dir_atomically(dir, |tmp| {
            std::fs::write(tmp.join("config.json"), serde_json::to_string_pretty(&config).unwrap()).map_err(|e| ModelError::io(tmp.join("config.json"), e))?;
            if src.is_file() {
                // a GGUF base: its tokenizer lives in the file's metadata
                for (name, bytes) in self.tokenizer.hf_files()? {
                    std::fs::write(tmp.join(name), bytes).map_err(|e| ModelError::io(tmp.join(name), e))?;
                }
            }
            for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja", "special_tokens_map.json"] {
                if src.join(f).is_file() {
                    std::fs::copy(src.join(f), tmp.join(f)).map_err(|e| ModelError::io(src.join(f), e))?;
                }
            }
            if shards.len() == 1 {
                return save_f32_safetensors(&tmp.join("model.safetensors"), &shards[0]);
            }
            let mut weight_map = BTreeMap::new();
            let total: usize = shards.iter().flatten().map(|t| t.2.len() * 4).sum();
            for (k, shard) in shards.iter().enumerate() {
                let file = format!("model-{:05}-of-{:05}.safetensors", k + 1, shards.len());
                for t in shard {
                    weight_map.insert(t.0.clone(), file.clone());
                }
                save_f32_safetensors(&tmp.join(&file), shard)?;
            }
            let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
            std::fs::write(tmp.join("model.safetensors.index.json"), serde_json::to_string_pretty(&index).unwrap())
                .map_err(|e| ModelError::io(tmp.join("model.safetensors.index.json"), e))
        })
    }
}

/// Whether a parameter name belongs to an adapter (LoRA, DoRA or prefix tuning).
pub fn is_adapter_param(name: &str) -> bool {
    name.contains(".lora_A.") || name.contains(".lora_B.") || name.ends_with(".lora_magnitude_vector") || name == "prompt_embeddings"
}

/// A parameter's values as f32, row-major.
pub fn param_values(p: &ParamMut) -> Result<Vec<f32>> {
    let data: TensorData = match p {
        ParamMut::Vector(p) => p.val().into_data(),
        ParamMut::Matrix(p) => p.val().into_data(),
    };
    data.convert::<f32>().try_into_vec::<f32>().map_err(|e| ModelError::Invalid(format!("reading a parameter: {e:?}")))
}

/// Replaces a parameter's value, keeping its id and shape.
pub fn set_param_values(p: &mut ParamMut, values: Vec<f32>, require_grad: bool) {
    fn set<const D: usize>(p: &mut Param<Tensor<D>>, values: Vec<f32>, require_grad: bool) {
        let shape: [usize; D] = p.shape().dims();
        let device = p.device();
        let t = Tensor::<D>::from_data(TensorData::new(values, shape), &device);
        *p = Param::initialized(p.id, t.set_require_grad(require_grad));
    }
    match p {
        ParamMut::Vector(p) => set(p, values, require_grad),
        ParamMut::Matrix(p) => set(p, values, require_grad),
    }
}
