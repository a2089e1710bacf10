//! The model's parameters as a checkpoint names them: PyTorch names, shapes and layout, as the
//! [`TorchLayouts`] registry says (`layout.rs`).

use burn::module::Module;
use burn::prelude::*;
use patcher_core::{DType, TensorMeta};

use super::layout::{Layout, TorchLayouts};
use crate::visit::{self, Leaf, ModulePath, VisitParams};

/// How a load lays out Linear weights (`[out, in]` in the checkpoint, `[in, out]` in Burn), and
/// any parameter a [`TorchLayout`](crate::TorchLayout) says is [`Layout::Transposed`].
///
/// Measured on the forward benchmark's Qwen2-MoE checkpoint (f32, 2 cores, Burn 0.21 with
/// `simd` and threads): a whole 1 x 128 prefill runs 1.5 to 1.6 times slower with transposed
/// views than with contiguous `[in, out]` weights, on NdArray and Flex alike (a Linear alone
/// 1.5 to 2.8 times), and about 1.05 times at 4 x 512; the transpose during the load costs it
/// about a fifth of its time. Hence [`Contiguous`](Self::Contiguous) by default, on every
/// backend; see `docs/benchmarks.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinearLayout {
    /// Transposed on the host during the load's single copy: contiguous `[in, out]` tensors,
    /// the layout Burn's matmuls are fastest with (the default).
    #[default]
    Contiguous,
    /// The checkpoint's `[out, in]` bytes uploaded as they are and transposed as a strided view
    /// (no transpose at load time; slower forwards on the CPU backends).
    TransposedView,
}

/// The element kind of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A float tensor (converted to the backend's float type).
    Float,
    /// An integer tensor.
    Int,
    /// A boolean tensor.
    Bool,
}

/// One parameter of a Burn model, seen from both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// Burn's path, e.g. `model.layers.0.input_layernorm.gamma`.
    pub burn_path: String,
    /// The checkpoint name, e.g. `model.layers.0.input_layernorm.weight`.
    pub torch_name: String,
    /// Shape in Burn's layout.
    pub burn_shape: Vec<usize>,
    /// Shape in the checkpoint's layout.
    pub torch_shape: Vec<usize>,
    /// How to go from one layout to the other.
    pub layout: Layout,
    /// Float, int or bool.
    pub kind: ParamKind,
}

impl ParamInfo {
    /// The parameter as the conversion plan expects it: checkpoint name and shape, with the dtype
    /// it will have once loaded (`float_dtype` for float parameters).
    pub fn expected(&self, float_dtype: DType) -> (String, TensorMeta) {
        let dtype = match self.kind {
            ParamKind::Float => float_dtype,
            ParamKind::Int => DType::I64,
            ParamKind::Bool => DType::Bool,
        };
        (
            self.torch_name.clone(),
            TensorMeta::new(dtype, self.torch_shape.clone()),
        )
    }
}

/// Lists every parameter of `module` (without initialising lazy parameters), in visit order,
/// with the PyTorch names and layouts of Burn's layers ([`TorchLayouts::default`]).
///
/// ```
/// use burn::backend::NdArray;
/// use burn::nn::LinearConfig;
/// use patcher_burn::{model_params, Layout};
///
/// let linear = LinearConfig::new(3, 2).init::<NdArray>(&Default::default());
/// let params = model_params(&linear);
/// assert_eq!(params[0].burn_path, "weight");
/// assert_eq!(params[0].burn_shape, vec![3, 2]);
/// assert_eq!(params[0].torch_shape, vec![2, 3]);
/// assert_eq!(params[0].layout, Layout::Transposed);
/// ```
pub fn model_params<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamInfo> {
    model_params_with(module, &TorchLayouts::default())
}

/// [`model_params`] with the PyTorch names and layouts `layouts` registers (see
/// [`TorchLayout`](crate::TorchLayout) for an example).
///
/// ```
/// use burn::backend::NdArray;
/// use burn::nn::LinearConfig;
/// use patcher_burn::{model_params_with, Layout, TorchLayouts};
///
/// let linear = LinearConfig::new(3, 2).init::<NdArray>(&Default::default());
/// // A checkpoint that stores linear weights `[in, out]`, as Burn does.
/// let params = model_params_with(&linear, &TorchLayouts::empty());
/// assert_eq!(params[0].torch_shape, vec![3, 2]);
/// assert_eq!(params[0].layout, Layout::Same);
/// ```
pub fn model_params_with<B: Backend, M: Module<B>>(
    module: &M,
    layouts: &TorchLayouts,
) -> Vec<ParamInfo> {
    let collector = ParamCollector { layouts, params: Vec::new() };
    visit::visit(module, collector).params
}

struct ParamCollector<'a> {
    layouts: &'a TorchLayouts,
    params: Vec<ParamInfo>,
}

impl<B: Backend> VisitParams<B> for ParamCollector<'_> {
    fn param<P: Leaf<B>>(&mut self, at: &ModulePath, param: &P) {
        let shape = param.shape();
        let leaf = at.leaf();
        let (torch_leaf, layout) = at
            .owner()
            .and_then(|owner| self.layouts.torch_param(owner, leaf, shape.len()))
            .unwrap_or((leaf, Layout::Same));
        // Only a float matrix can be transposed (a user's layout may say otherwise).
        let (layout, torch_shape) = match (layout, P::KIND, shape.as_slice()) {
            (Layout::Transposed, ParamKind::Float, &[rows, cols]) => {
                (Layout::Transposed, vec![cols, rows])
            }
            _ => (Layout::Same, shape.clone()),
        };
        self.params.push(ParamInfo {
            burn_path: at.key(),
            torch_name: at.renamed(torch_leaf),
            burn_shape: shape,
            torch_shape,
            layout,
            kind: P::KIND,
        });
    }
}
