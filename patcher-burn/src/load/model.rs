//! What a model declares for loading: its default weight conversions and base model prefix.

use burn::module::Module;
use burn::tensor::backend::Backend;
use patcher_core::WeightTransform;

/// A Burn model that loads transformers checkpoints.
///
/// Like transformers' per-model conversion table (`conversion_mapping.py`), the model declares
/// the conversions its stock checkpoints need. A [`Patcher`](crate::Patcher) then filters
/// them (`filtered_weight_conversion_patterns`) and prepends its own
/// (`extra_weight_conversions`), so `[".gate_up_proj", ".down_proj"]` means what it means there.
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use patcher_burn::PretrainedModel;
/// use patcher_core::{WeightRenaming, WeightTransform};
///
/// #[derive(Module, Debug)]
/// struct Head<B: Backend> {
///     proj: Linear<B>,
/// }
///
/// impl<B: Backend> PretrainedModel<B> for Head<B> {
///     fn weight_conversions() -> Vec<WeightTransform> {
///         // Old checkpoints called the projection `dense`.
///         vec![WeightRenaming::new("dense.", "proj.").unwrap().into()]
///     }
/// }
/// ```
pub trait PretrainedModel<B: Backend>: Module<B> {
    /// The conversions a stock checkpoint of this model needs, in the checkpoint's (PyTorch)
    /// layout. Default: none.
    fn weight_conversions() -> Vec<WeightTransform> {
        Vec::new()
    }

    /// Checkpoint keys that may be present and are not parameters (transformers'
    /// `_keys_to_ignore_on_load_unexpected`), as regexes searched anywhere in the key: BERT's
    /// `embeddings.position_ids`, an old checkpoint's `rotary_emb.inv_freq`. A load reports them
    /// as ignored, never as unexpected. Default: none.
    fn keys_to_ignore_on_load_unexpected() -> Vec<String> {
        Vec::new()
    }

    /// transformers' `base_model_prefix` (e.g. `"model"`): a checkpoint key is stripped of it, or
    /// gets it, when that makes it a parameter of this model. Default: none.
    fn base_model_prefix() -> Option<&'static str> {
        None
    }
}
