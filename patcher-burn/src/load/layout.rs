//! The PyTorch-to-Burn layout step: how a module type's parameters sit in a PyTorch checkpoint.
//!
//! Burn and PyTorch disagree for some module types, and the types say so by implementing
//! [`TorchLayout`]; a [`TorchLayouts`] registry holds those a load (and a save) applies. Burn's
//! own layers are registered by default:
//! - `burn::nn::Linear` stores its weight `[in, out]`, PyTorch `[out, in]`;
//! - Burn's norms call their parameters `gamma`/`beta`, PyTorch `weight`/`bias`;
//! - the kit's GPT-2 [`Conv1D`](crate::layers::Conv1D) stores its weight `[in, out]` on both
//!   sides (declared, so that it is never transposed as a `Linear` weight is).
//!
//! A parameter of any other type (embeddings, bare `Param`s such as fused expert tensors) has
//! the same name and layout on both sides.

use std::collections::BTreeMap;
use std::fmt;

use burn::tensor::backend::Backend;

/// How a parameter's bytes go from the checkpoint (PyTorch) layout to Burn's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Same shape and element order.
    Same,
    /// A 2-D matrix whose two dimensions are swapped (`nn::Linear` weights).
    Transposed,
}

/// How a module type's parameters sit in a PyTorch checkpoint, where that differs from Burn.
///
/// Implemented for Burn's `Linear`, `LayerNorm`, `RmsNorm`, `GroupNorm`, `InstanceNorm` and
/// `BatchNorm`, and the kit's [`Conv1D`](crate::layers::Conv1D); implement it for a module of your own whose fields PyTorch names or lays out
/// otherwise, and register it with [`TorchLayouts::with`] (in a model's
/// [`PretrainedModel::torch_layouts`](crate::PretrainedModel::torch_layouts), for loads and saves
/// through the model).
///
/// ```
/// use burn::backend::NdArray;
/// use burn::module::Param;
/// use burn::prelude::*;
/// use patcher_burn::{model_params, model_params_with, Layout, TorchLayout, TorchLayouts};
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
/// let device = Default::default();
/// let norm = ScaleShift::<NdArray> {
///     scale: Param::from_tensor(Tensor::ones([4], &device)),
///     shift: Param::from_tensor(Tensor::zeros([4], &device)),
/// };
/// let layouts = TorchLayouts::default().with::<ScaleShift<NdArray>>();
/// let names: Vec<_> = model_params_with(&norm, &layouts)
///     .into_iter()
///     .map(|p| p.torch_name)
///     .collect();
/// assert_eq!(names, ["weight", "bias"]);
/// // Unregistered, the parameters keep Burn's names.
/// assert_eq!(model_params(&norm)[0].torch_name, "scale");
/// ```
pub trait TorchLayout {
    /// The type's name as `#[derive(Module)]` gives it to visitors: the struct's name without
    /// its generics (`"Linear"` for `Linear<B>`; Burn passes `Struct:Linear`).
    const MODULE_NAME: &'static str;

    /// The PyTorch name and layout of the parameter this type holds in field `field`, of rank
    /// `rank`; `None` when it is the same on both sides.
    ///
    /// [`Layout::Transposed`] applies to rank-2 float parameters; for any other it is ignored
    /// (the parameter keeps Burn's layout).
    fn torch_param(field: &str, rank: usize) -> Option<(&'static str, Layout)>;
}

/// A [`TorchLayout::torch_param`].
type TorchParamFn = fn(&str, usize) -> Option<(&'static str, Layout)>;

/// One registered type.
#[derive(Clone, Copy)]
struct Registered {
    type_name: &'static str,
    torch_param: TorchParamFn,
}

/// The module types whose parameters a load lays out from PyTorch's layout (and a save back),
/// by [`TorchLayout::MODULE_NAME`].
///
/// The default registers Burn's layers (see [`TorchLayout`]); [`with`](Self::with) adds a type
/// of yours, or replaces the type registered under the same name. Two registries are equal when
/// they register the same types under the same names.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::nn::Linear;
/// use patcher_burn::{Layout, TorchLayouts};
///
/// let layouts = TorchLayouts::default();
/// assert_eq!(layouts.torch_param("Linear", "weight", 2), Some(("weight", Layout::Transposed)));
/// assert_eq!(layouts.torch_param("RmsNorm", "gamma", 1), Some(("weight", Layout::Same)));
/// assert_eq!(layouts.torch_param("Embedding", "weight", 2), None);
/// // A checkpoint whose linear weights are stored `[in, out]` (GPT-2's `Conv1D`): nothing but
/// // the norms' names differs.
/// let as_stored = TorchLayouts::empty().with::<burn::nn::LayerNorm<NdArray>>();
/// assert_eq!(as_stored.torch_param("Linear", "weight", 2), None);
/// ```
#[derive(Clone)]
pub struct TorchLayouts {
    modules: BTreeMap<&'static str, Registered>,
}

impl TorchLayouts {
    /// A registry with no type: every parameter keeps Burn's name and layout.
    pub fn empty() -> Self {
        Self { modules: BTreeMap::new() }
    }

    /// Registers `T` under its [`TorchLayout::MODULE_NAME`], replacing a type registered under
    /// that name.
    pub fn with<T: TorchLayout>(mut self) -> Self {
        let registered = Registered {
            type_name: std::any::type_name::<T>(),
            torch_param: T::torch_param,
        };
        self.modules.insert(T::MODULE_NAME, registered);
        self
    }

    /// The PyTorch name and layout of parameter `field` (rank `rank`) of a module whose
    /// [`TorchLayout::MODULE_NAME`] is `module`; `None` when it is the same on both sides.
    pub fn torch_param(
        &self,
        module: &str,
        field: &str,
        rank: usize,
    ) -> Option<(&'static str, Layout)> {
        let registered = self.modules.get(module)?;
        (registered.torch_param)(field, rank)
    }
}

impl fmt::Debug for TorchLayouts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.modules.iter().map(|(name, r)| (name, r.type_name)))
            .finish()
    }
}

impl PartialEq for TorchLayouts {
    fn eq(&self, other: &Self) -> bool {
        let types = |l: &Self| -> Vec<(&str, &str)> {
            l.modules.iter().map(|(n, r)| (*n, r.type_name)).collect()
        };
        types(self) == types(other)
    }
}

impl Eq for TorchLayouts {}

/// Linear: the weight is transposed, the bias is not.
fn linear(field: &str, rank: usize) -> Option<(&'static str, Layout)> {
    (field == "weight" && rank == 2).then_some(("weight", Layout::Transposed))
}

/// Burn's norms: `gamma`/`beta` are PyTorch's `weight`/`bias`.
fn norm(field: &str, _rank: usize) -> Option<(&'static str, Layout)> {
    match field {
        "gamma" => Some(("weight", Layout::Same)),
        "beta" => Some(("bias", Layout::Same)),
        _ => None,
    }
}

/// The impls for Burn's layers and the default registry come from one list, so they agree.
macro_rules! burn_layouts {
    ($($module:ident => $torch_param:ident),* $(,)?) => {
        $(
            impl<B: Backend> TorchLayout for burn::nn::$module<B> {
                const MODULE_NAME: &'static str = stringify!($module);

                fn torch_param(field: &str, rank: usize) -> Option<(&'static str, Layout)> {
                    $torch_param(field, rank)
                }
            }
        )*

        /// Burn's layers and the kit's [`Conv1D`](crate::layers::Conv1D) (registered without
        /// a backend: their layout does not depend on it).
        impl Default for TorchLayouts {
            fn default() -> Self {
                let mut layouts = Self::empty();
                $(
                    layouts.modules.insert(stringify!($module), Registered {
                        type_name: concat!("burn::nn::", stringify!($module)),
                        torch_param: $torch_param,
                    });
                )*
                layouts.modules.insert("Conv1D", Registered {
                    type_name: "patcher_burn::layers::Conv1D",
                    torch_param: crate::layers::conv1d_torch_param,
                });
                layouts
            }
        }
    };
}

burn_layouts! {
    Linear => linear,
    LayerNorm => norm,
    RmsNorm => norm,
    GroupNorm => norm,
    InstanceNorm => norm,
    BatchNorm => norm,
}
