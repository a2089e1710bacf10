//! [`AutoRegistry`]: families by `model_type`, each with the function that loads it.

use std::path::Path;

use burn::prelude::*;
use patcher_burn::{LoadError, LoadOptions, Loaded, Pretrained};
use patcher_core::ConfigError;

use super::family::{FamilyConfig, FamilyModel};
use super::loaded::{LoadedCausalLm, LoadedModel};
use crate::bert::BertModel;
use crate::common::CausalLm;
use crate::common::LoadFamily;
use crate::error::{config_path, read_config_file};
use crate::gpt2::Gpt2LmHeadModel;
use crate::llama::LlamaForCausalLm;
use crate::mixtral::MixtralForCausalLm;
use crate::qwen2_moe::Qwen2MoeForCausalLm;
use crate::replacements::{Patch, PatchTarget};

/// One registered family.
struct Family<B: Backend, L: ?Sized> {
    model_type: &'static str,
    /// Loads the checkpoint at the path into the family's model, patched, as the registry's
    /// output.
    #[allow(clippy::type_complexity)]
    load: fn(&Path, Patch, &B::Device, &LoadOptions) -> Result<Box<L>, LoadError>,
}

/// A `Loaded<M>` as the registry's output type `L` (a trait object): how [`AutoRegistry`] hands
/// back a model of any family.
pub trait IntoLoaded<L: ?Sized> {
    /// The loaded model, boxed as `L`.
    fn into_loaded(self) -> Box<L>;
}

impl<B: Backend, M: FamilyModel<B> + 'static> IntoLoaded<dyn LoadedModel<B>> for Loaded<M> {
    fn into_loaded(self) -> Box<dyn LoadedModel<B>> {
        Box::new(self)
    }
}

impl<B: Backend, M: FamilyModel<B> + CausalLm<B> + 'static> IntoLoaded<dyn LoadedCausalLm<B>>
    for Loaded<M>
{
    fn into_loaded(self) -> Box<dyn LoadedCausalLm<B>> {
        Box::new(self)
    }
}

/// Families by `model_type`: reads a checkpoint's `config.json`, picks the family it names, and
/// loads the checkpoint into that family's model with a [`Patch`]. `L` is what a load returns
/// ([`AutoModelForCausalLm`], [`AutoModel`]).
///
/// ```
/// use burn::backend::NdArray;
/// use patcher_models::auto::AutoModelForCausalLm;
///
/// let auto = AutoModelForCausalLm::<NdArray>::new();
/// let kit = ["gpt2", "llama", "mixtral", "qwen2_moe"];
/// assert_eq!(auto.model_types().collect::<Vec<_>>(), kit);
/// // A user's family joins with `register::<MyForCausalLm<B>>()`; one of the same
/// // `model_type` replaces the kit's.
/// let only_llama = AutoModelForCausalLm::<NdArray>::empty()
///     .register::<patcher_models::llama::LlamaForCausalLm<NdArray>>();
/// assert_eq!(only_llama.model_types().collect::<Vec<_>>(), ["llama"]);
/// ```
pub struct AutoRegistry<B: Backend, L: ?Sized> {
    families: Vec<Family<B, L>>,
}

/// transformers' `AutoModelForCausalLM`: the kit's causal LMs (Llama, Mixtral, Qwen2-MoE) and
/// those registered, loaded as [`LoadedCausalLm`].
pub type AutoModelForCausalLm<B> = AutoRegistry<B, dyn LoadedCausalLm<B>>;

/// transformers' `AutoModel`, loaded as [`LoadedModel`]: the kit's BERT (`BertModel`) and the
/// families registered. The kit's decoders are causal LMs, loaded by
/// [`AutoModelForCausalLm`]; a bare decoder from a causal-LM checkpoint would leave `lm_head`
/// unexpected, which a strict load refuses.
pub type AutoModel<B> = AutoRegistry<B, dyn LoadedModel<B>>;

impl<B: Backend, L: ?Sized> AutoRegistry<B, L> {
    /// A registry with no family.
    pub fn empty() -> Self {
        Self { families: Vec::new() }
    }

    /// Adds the family of model `M`, under its config's `model_type` (replacing a family
    /// registered under the same one).
    pub fn register<M>(mut self) -> Self
    where
        M: FamilyModel<B> + 'static,
        Loaded<M>: IntoLoaded<L>,
    {
        let model_type = <M::Config as PatchTarget>::MODEL_TYPE;
        self.families.retain(|f| f.model_type != model_type);
        self.families
            .push(Family { model_type, load: load_family::<B, M, L> });
        self.families.sort_by_key(|f| f.model_type);
        self
    }

    /// The registered `model_type`s, sorted.
    pub fn model_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.families.iter().map(|f| f.model_type)
    }

    /// transformers' `from_pretrained`: reads `config.json` next to the weights at `path` (a
    /// checkpoint folder, a weights file or a sharded index), picks the family its
    /// `model_type` names, and loads the checkpoint into that family's model with `patch`'s
    /// replacements ([`Patch::patcher`]).
    ///
    /// Errors, as [`LoadError::Config`]: a `config.json` without `model_type`, a `model_type`
    /// no family is registered for (the message lists those that are), a patch the family
    /// cannot take; otherwise the family's own load errors.
    pub fn from_pretrained(
        &self,
        path: impl AsRef<Path>,
        patch: Patch,
        device: &B::Device,
        options: &LoadOptions,
    ) -> Result<Box<L>, LoadError> {
        let path = path.as_ref();
        let model_type = read_model_type(&config_path(path))?;
        let family = self
            .families
            .iter()
            .find(|f| f.model_type == model_type)
            .ok_or_else(|| {
                let known: Vec<&str> = self.model_types().collect();
                ConfigError::Unsupported(format!(
                    "model_type `{model_type}` has no registered family (registered: {}); \
                     register yours with `register::<YourModel<B>>()`",
                    known.join(", ")
                ))
            })?;
        (family.load)(path, patch, device, options)
    }
}

impl<B: Backend> AutoModelForCausalLm<B> {
    /// The kit's causal LMs: GPT-2, Llama, Mixtral, Qwen2-MoE.
    pub fn new() -> Self {
        Self::empty()
            .register::<Gpt2LmHeadModel<B>>()
            .register::<LlamaForCausalLm<B>>()
            .register::<MixtralForCausalLm<B>>()
            .register::<Qwen2MoeForCausalLm<B>>()
    }
}

impl<B: Backend> Default for AutoModelForCausalLm<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> AutoModel<B> {
    /// The kit's bare models: BERT.
    pub fn new() -> Self {
        Self::empty().register::<BertModel<B>>()
    }
}

impl<B: Backend> Default for AutoModel<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// A family's entry: reads its config, builds the patcher of `patch`, loads.
fn load_family<B, M, L>(
    path: &Path,
    patch: Patch,
    device: &B::Device,
    options: &LoadOptions,
) -> Result<Box<L>, LoadError>
where
    B: Backend,
    M: FamilyModel<B>,
    Loaded<M>: IntoLoaded<L>,
    L: ?Sized,
{
    let config = M::Config::from_file(&config_path(path))?;
    let patcher = patch.patcher::<B, _>(&config)?;
    let pretrained = Pretrained::from_path(path)
        .patcher(&patcher)
        .options(options.clone());
    let loaded = pretrained.load_with_config::<M>(&config, device)?;
    Ok(loaded.into_loaded())
}

/// The `model_type` of the config file at `path` (read with the bound every config read has),
/// which picks the family. Errors if the file cannot be read, is not JSON, or names none.
pub fn read_model_type(path: &Path) -> Result<String, ConfigError> {
    let json: serde_json::Value = serde_json::from_str(&read_config_file(path)?)?;
    match json.get("model_type").and_then(|t| t.as_str()) {
        Some(model_type) => Ok(model_type.to_string()),
        None => Err(ConfigError::Invalid(format!(
            "{} names no `model_type`, which the Auto classes need to choose a family; load \
             with `Pretrained::from_path(dir).load::<TheFamily<B>>(device)`",
            path.display()
        ))),
    }
}
