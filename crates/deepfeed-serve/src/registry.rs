//! The served models: one base and any number of LoRA (or prefix) adapters over it, each a
//! handle sharing the base's weights (`Model::with_adapter`). A request resolves its handle once,
//! when it arrives, so loading, reloading (hot swap) or unloading an adapter never disturbs a
//! request already running: it keeps the handle it took.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use deepfeed_model::Model;
use serde::Serialize;

use crate::error::ApiError;

pub struct LoadedAdapter {
    pub model: Arc<Model>,
    pub path: PathBuf,
    /// Bumped by every reload.
    pub version: u64,
    pub loaded_at: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdapterInfo {
    pub name: String,
    pub path: String,
    pub version: u64,
    pub loaded_at: u64,
}

pub struct Registry {
    pub base_name: String,
    pub base: Arc<Model>,
    /// Admin loads must resolve inside this directory (canonicalised); `None`: admin loads off.
    pub adapter_root: Option<PathBuf>,
    adapters: RwLock<BTreeMap<String, LoadedAdapter>>,
    pub created: u64,
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Adapter names: 1–64 of `A-Z a-z 0-9 _ - .`, not starting with a dot (no `:` or `/`).
pub fn check_adapter_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_param("name", format!("adapter name {name:?}: expected 1-64 characters of A-Z a-z 0-9 _ - . (not starting with a dot)")))
    }
}

impl Registry {
    pub fn new(base_name: String, base: Arc<Model>, adapter_root: Option<PathBuf>) -> Self {
        Registry { base_name, base, adapter_root, adapters: RwLock::new(BTreeMap::new()), created: unix_now() }
    }

    /// The handle for a request's `model`: the base name, `base:adapter`, or an adapter name.
    /// Returns the adapter label used in metrics (`base` for the base model) and the handle.
    pub fn resolve(&self, requested: &str) -> Result<(String, Arc<Model>), ApiError> {
        if requested == self.base_name {
            return Ok(("base".into(), self.base.clone()));
        }
        let name = match requested.split_once(':') {
            Some((base, adapter)) if base == self.base_name => adapter,
            Some(_) => {
                return Err(ApiError::not_found(
                    format!("the model {requested:?} does not exist: this server serves {:?} (use \"{}:ADAPTER\" for an adapter)", self.base_name, self.base_name),
                    "model_not_found",
                ))
            }
            None => requested,
        };
        let adapters = self.adapters.read().expect("adapter registry lock");
        match adapters.get(name) {
            Some(a) => Ok((name.to_string(), a.model.clone())),
            None => Err(ApiError::not_found(
                format!(
                    "the model {requested:?} does not exist: expected {:?}{}",
                    self.base_name,
                    if adapters.is_empty() { " (no adapters are loaded)".to_string() } else { format!(" or one of the adapters {}", adapters.keys().cloned().collect::<Vec<_>>().join(", ")) }
                ),
                "model_not_found",
            )),
        }
    }

    pub fn list(&self) -> Vec<AdapterInfo> {
        self.adapters
            .read()
            .expect("adapter registry lock")
            .iter()
            .map(|(name, a)| AdapterInfo { name: name.clone(), path: a.path.display().to_string(), version: a.version, loaded_at: a.loaded_at })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.adapters.read().expect("adapter registry lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where an admin request's `path` points, if it is allowed: resolved against the adapter
    /// root, canonicalised (symlinks and `..` followed) and required to stay inside it.
    pub fn admin_path(&self, requested: &str) -> Result<PathBuf, ApiError> {
        let root = self.adapter_root.as_ref().ok_or_else(|| {
            ApiError::forbidden("loading adapters over HTTP is off: start the server with --adapter-dir DIR to allow adapters under DIR")
        })?;
        let candidate = root.join(requested);
        let canonical = candidate
            .canonicalize()
            .map_err(|e| ApiError::bad_param("path", format!("adapter path {requested:?} under the adapter directory: {e}")))?;
        if !canonical.starts_with(root) {
            return Err(ApiError::forbidden(format!("adapter path {requested:?} is outside the adapter directory")));
        }
        if !canonical.is_dir() {
            return Err(ApiError::bad_param("path", format!("adapter path {requested:?} is not a directory (expected a PEFT adapter directory)")));
        }
        Ok(canonical)
    }

    /// Loads (or reloads) an adapter; blocking (reads the weights). Returns its info and whether
    /// it replaced an existing one.
    pub fn load(&self, name: &str, path: &Path) -> Result<(AdapterInfo, bool), ApiError> {
        check_adapter_name(name)?;
        if name == self.base_name {
            return Err(ApiError::bad_param("name", format!("adapter name {name:?} is the base model's name")));
        }
        let (model, _cfg) = self.base.with_adapter(path).map_err(|e| ApiError::bad_param("path", format!("cannot load adapter {name:?}: {e}")))?;
        let mut adapters = self.adapters.write().expect("adapter registry lock");
        let version = adapters.get(name).map_or(1, |a| a.version + 1);
        let entry = LoadedAdapter { model: Arc::new(model), path: path.to_path_buf(), version, loaded_at: unix_now() };
        let info = AdapterInfo { name: name.into(), path: path.display().to_string(), version, loaded_at: entry.loaded_at };
        let replaced = adapters.insert(name.to_string(), entry).is_some();
        Ok((info, replaced))
    }

    pub fn unload(&self, name: &str) -> Result<(), ApiError> {
        match self.adapters.write().expect("adapter registry lock").remove(name) {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(format!("no adapter named {name:?} is loaded"), "adapter_not_found")),
        }
    }
}
