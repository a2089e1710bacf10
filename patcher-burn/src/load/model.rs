//! What a model declares for loading: its default weight conversions and base model prefix.

use burn::module::Module;
use burn::tensor::backend::Backend;
use patcher_core::WeightTransform;

use super::layout::TorchLayouts;

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

    /// Renamings of older spellings of this model's checkpoints (transformers'
    /// `mapping["legacy"]`, e.g. `LayerNorm.gamma` -> `LayerNorm.weight`), applied after
    /// [`weight_conversions`](Self::weight_conversions). Unlike those, they are not part of the
    /// model's stock layout: a save reverses them only when the load it saves used them
    /// (transformers' `add_legacy=False` on a fresh save). Default: none.
    fn legacy_weight_conversions() -> Vec<WeightTransform> {
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

    /// The renamings among [`weight_conversions`](Self::weight_conversions) that exist only
    /// because Rust names the field differently from the checkpoint (BERT's `attention.self` is
    /// the field `self_`, `self` being a keyword): a save in the model's own layout reverses
    /// them, so it writes transformers' names, never a Rust field name. Default: none.
    fn field_renamings() -> Vec<WeightTransform> {
        Vec::new()
    }

    /// How the model's module types lay out their parameters in its checkpoints: Burn's layers
    /// by default; add your own modules with [`TorchLayouts::with`] (see
    /// [`TorchLayout`](crate::TorchLayout)). Loads through the model and saves of what they
    /// loaded use them.
    ///
    /// ```
    /// use burn::module::Param;
    /// use burn::nn::Linear;
    /// use burn::prelude::*;
    /// use patcher_burn::{Layout, PretrainedModel, TorchLayout, TorchLayouts};
    ///
    /// /// A norm whose PyTorch twin calls its parameters `weight` and `bias`.
    /// #[derive(Module, Debug)]
    /// struct ScaleShift<B: Backend> {
    ///     scale: Param<Tensor<B, 1>>,
    ///     shift: Param<Tensor<B, 1>>,
    /// }
    ///
    /// impl<B: Backend> TorchLayout for ScaleShift<B> {
    ///     const MODULE_NAME: &'static str = "ScaleShift";
    ///
    ///     fn torch_param(field: &str, _rank: usize) -> Option<(&'static str, Layout)> {
    ///         match field {
    ///             "scale" => Some(("weight", Layout::Same)),
    ///             "shift" => Some(("bias", Layout::Same)),
    ///             _ => None,
    ///         }
    ///     }
    /// }
    ///
    /// #[derive(Module, Debug)]
    /// struct Block<B: Backend> {
    ///     proj: Linear<B>,
    ///     norm: ScaleShift<B>,
    /// }
    ///
    /// impl<B: Backend> PretrainedModel<B> for Block<B> {
    ///     fn torch_layouts() -> TorchLayouts {
    ///         TorchLayouts::default().with::<ScaleShift<B>>()
    ///     }
    /// }
    ///
    /// let layouts = <Block<burn::backend::NdArray> as PretrainedModel<_>>::torch_layouts();
    /// assert_eq!(layouts.torch_param("ScaleShift", "shift", 1), Some(("bias", Layout::Same)));
    /// ```
    fn torch_layouts() -> TorchLayouts {
        TorchLayouts::default()
    }
}

/// Burn's layers load checkpoints of their own parameters as they are: no conversions, the
/// PyTorch layouts of [`TorchLayouts::default`].
macro_rules! pretrained_layer {
    ($($layer:ty),*) => {
        $(impl<B: Backend> PretrainedModel<B> for $layer {})*
    };
}

pretrained_layer!(
    burn::nn::Linear<B>,
    burn::nn::Embedding<B>,
    burn::nn::LayerNorm<B>,
    burn::nn::RmsNorm<B>,
    crate::layers::Conv1D<B>
);
