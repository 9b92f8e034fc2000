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
use crate::rag::KnowledgeBase;

/// Which knowledge base answers for an adapter.
#[derive(Clone, Default)]
pub enum AdapterKb {
    /// The server's `--kb`, if any.
    #[default]
    Default,
    /// Its own.
    Own(Arc<KnowledgeBase>),
    /// None, even when the server has a default one.
    Off,
}

impl AdapterKb {
    fn describe(&self) -> String {
        match self {
            AdapterKb::Default => "default".into(),
            AdapterKb::Own(kb) => kb.dir.display().to_string(),
            AdapterKb::Off => "none".into(),
        }
    }
}

pub struct LoadedAdapter {
    pub model: Arc<Model>,
    pub path: PathBuf,
    /// Bumped by every reload.
    pub version: u64,
    pub loaded_at: u64,
    pub kb: AdapterKb,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdapterInfo {
    pub name: String,
    pub path: String,
    pub version: u64,
    pub loaded_at: u64,
    /// Its knowledge base: a directory, `default` (the server's `--kb`) or `none`.
    pub kb: String,
}

/// What a request's `model` resolved to.
pub struct Resolved {
    /// `base` or the adapter name (metrics label).
    pub label: String,
    pub model: Arc<Model>,
    pub kb: Option<Arc<KnowledgeBase>>,
}

pub struct Registry {
    pub base_name: String,
    pub base: Arc<Model>,
    /// Admin loads must resolve inside this directory (canonicalised); `None`: admin loads off.
    pub adapter_root: Option<PathBuf>,
    /// Knowledge bases attached over HTTP must lie under this directory (canonicalised).
    pub kb_root: Option<PathBuf>,
    /// The server's `--kb`: used by the base model and by adapters without their own.
    pub default_kb: Option<Arc<KnowledgeBase>>,
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
        Registry { base_name, base, adapter_root, kb_root: None, default_kb: None, adapters: RwLock::new(BTreeMap::new()), created: unix_now() }
    }

    /// The handle and knowledge base for a request's `model` (see [`Registry::resolve`]), read
    /// together so that a hot swap cannot pair one adapter's weights with another's knowledge base.
    pub fn resolve_with_kb(&self, requested: &str) -> Result<Resolved, ApiError> {
        let (label, model, kb) = self.lookup(requested)?;
        let kb = match kb {
            None | Some(AdapterKb::Default) => self.default_kb.clone(),
            Some(AdapterKb::Own(kb)) => Some(kb),
            Some(AdapterKb::Off) => None,
        };
        Ok(Resolved { label, model, kb })
    }

    /// The knowledge base an adapter has now (`None`: not loaded).
    pub fn adapter_kb(&self, name: &str) -> Option<AdapterKb> {
        self.adapters.read().expect("adapter registry lock").get(name).map(|a| a.kb.clone())
    }

    /// Where an admin request's knowledge-base `kb` points, if it is allowed: under `kb_root`,
    /// canonicalised, as for adapter paths.
    pub fn admin_kb_path(&self, requested: &str) -> Result<PathBuf, ApiError> {
        let root = self.kb_root.as_ref().ok_or_else(|| {
            ApiError::forbidden("attaching knowledge bases over HTTP is off: start the server with --kb-dir DIR to allow knowledge bases under DIR")
        })?;
        let canonical = root
            .join(requested)
            .canonicalize()
            .map_err(|e| ApiError::bad_param("kb", format!("knowledge base {requested:?} under the knowledge-base directory: {e}")))?;
        if !canonical.starts_with(root) {
            return Err(ApiError::forbidden(format!("knowledge base {requested:?} is outside the knowledge-base directory")));
        }
        Ok(canonical)
    }

    /// The handle for a request's `model`: the base name, `base:adapter`, or an adapter name.
    /// Returns the adapter label used in metrics (`base` for the base model) and the handle.
    pub fn resolve(&self, requested: &str) -> Result<(String, Arc<Model>), ApiError> {
        self.lookup(requested).map(|(label, model, _)| (label, model))
    }

    /// (label, handle, the adapter's knowledge-base choice; `None` for the base model).
    fn lookup(&self, requested: &str) -> Result<(String, Arc<Model>, Option<AdapterKb>), ApiError> {
        if requested == self.base_name {
            return Ok(("base".into(), self.base.clone(), None));
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
            Some(a) => Ok((name.to_string(), a.model.clone(), Some(a.kb.clone()))),
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
            .map(|(name, a)| AdapterInfo { name: name.clone(), path: a.path.display().to_string(), version: a.version, loaded_at: a.loaded_at, kb: a.kb.describe() })
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
        self.load_with_kb(name, path, AdapterKb::Default)
    }

    /// [`Registry::load`] with the adapter's knowledge base.
    pub fn load_with_kb(&self, name: &str, path: &Path, kb: AdapterKb) -> Result<(AdapterInfo, bool), ApiError> {
        check_adapter_name(name)?;
        if name == self.base_name {
            return Err(ApiError::bad_param("name", format!("adapter name {name:?} is the base model's name")));
        }
        let (model, _cfg) = self.base.with_adapter(path).map_err(|e| ApiError::bad_param("path", format!("cannot load adapter {name:?}: {e}")))?;
        let mut adapters = self.adapters.write().expect("adapter registry lock");
        let version = adapters.get(name).map_or(1, |a| a.version + 1);
        let info = AdapterInfo { name: name.into(), path: path.display().to_string(), version, loaded_at: unix_now(), kb: kb.describe() };
        let entry = LoadedAdapter { model: Arc::new(model), path: path.to_path_buf(), version, loaded_at: info.loaded_at, kb };
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
