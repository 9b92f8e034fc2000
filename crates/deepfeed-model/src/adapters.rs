//! Several adapters served over one base model. A [`Model`] clone shares every weight tensor with
//! the original (burn tensors are reference-counted: cloning copies no data), so a served adapter
//! is a clone of the base with one PEFT adapter attached: only the adapter's own tensors are new
//! memory. Requests pick a handle; replacing a handle (hot swap) leaves the requests that hold
//! the old one untouched.
//!
//! Why not several named adapters inside each `Linear`, chosen per forward: that would thread a
//! selection through every architecture's forward pass, while this works unchanged for every
//! architecture and for prefix tuning too.
use std::path::Path;

use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::peft::AdapterConfig;

impl Model {
    /// A new handle on this model's weights with the PEFT adapter in `dir` attached (LoRA, DoRA
    /// or prefix tuning). `self` must have no adapter of its own.
    pub fn with_adapter(&self, dir: &Path) -> Result<(Model, AdapterConfig)> {
        if self.network.prefix().is_some() || self.network.clone().linears_mut().iter().any(|(_, l)| l.lora.is_some()) {
            return Err(ModelError::Invalid(format!(
                "{}: the base model already has an adapter attached; serve adapters over a plain base model",
                self.dir.display()
            )));
        }
        let mut adapted = self.clone();
        let cfg = adapted.load_adapter(dir)?;
        Ok((adapted, cfg))
    }
}
