//! The model's parameters as a checkpoint names them: PyTorch names, shapes and layout.
//!
//! Burn and PyTorch disagree in two places, and this is the only file that knows it:
//! - `burn::nn::Linear` stores its weight `[in, out]`, PyTorch `[out, in]`;
//! - Burn's norms call their parameters `gamma`/`beta`, PyTorch `weight`/`bias`.
//!
//! Everything else (embeddings, bare `Param`s such as fused expert tensors) has the same name and
//! layout on both sides.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use patcher_core::{DType, TensorMeta};

/// How a parameter's bytes go from the checkpoint (PyTorch) layout to Burn's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Same shape and element order.
    Same,
    /// A 2-D matrix whose two dimensions are swapped (`nn::Linear` weights).
    Transposed,
}

/// How a load lays out Linear weights (`[out, in]` in the checkpoint, `[in, out]` in Burn).
///
/// Measured on the 189M-parameter Qwen2-MoE benchmark checkpoint (f32, 2 cores, Burn 0.21
/// with `simd` and threads): a Linear forward on a transposed view runs 1.5 to 2.8 times
/// slower than on contiguous `[in, out]` weights for a 1 x 128 prefill, on NdArray and Flex
/// alike, and within noise of it for 4 x 512; the transpose fused into the load's one copy costs
/// little. Hence [`Contiguous`](Self::Contiguous) by default, on every backend; see
/// `docs/benchmarks.md`.
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

/// Lists every parameter of `module` (without initialising lazy parameters), in visit order.
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
    let mut collector = ParamCollector::default();
    module.visit(&mut collector);
    collector.params
}

#[derive(Default)]
struct ParamCollector {
    path: Vec<String>,
    containers: Vec<String>,
    params: Vec<ParamInfo>,
}

impl ParamCollector {
    fn push(&mut self, shape: Vec<usize>, kind: ParamKind) {
        let burn_path = self.path.join(".");
        let leaf = self.path.last().map(String::as_str).unwrap_or_default();
        let owner = self
            .containers
            .last()
            .and_then(|c| c.strip_prefix("Struct:"))
            .unwrap_or_default();
        let (torch_leaf, layout) = torch_leaf(owner, leaf, shape.len());
        let mut torch_path = self.path.clone();
        if let Some(last) = torch_path.last_mut() {
            *last = torch_leaf.to_string();
        }
        let torch_shape = match layout {
            Layout::Same => shape.clone(),
            Layout::Transposed => vec![shape[1], shape[0]],
        };
        self.params.push(ParamInfo {
            burn_path,
            torch_name: torch_path.join("."),
            burn_shape: shape,
            torch_shape,
            layout,
            kind,
        });
    }
}

/// The PyTorch name and layout of parameter `leaf` of a module of type `owner`.
fn torch_leaf<'a>(owner: &str, leaf: &'a str, rank: usize) -> (&'a str, Layout) {
    const NORMS: [&str; 5] = [
        "RmsNorm",
        "LayerNorm",
        "GroupNorm",
        "InstanceNorm",
        "BatchNorm",
    ];
    match (owner, leaf) {
        ("Linear", "weight") if rank == 2 => ("weight", Layout::Transposed),
        (norm, "gamma") if NORMS.contains(&norm) => ("weight", Layout::Same),
        (norm, "beta") if NORMS.contains(&norm) => ("bias", Layout::Same),
        _ => (leaf, Layout::Same),
    }
}

impl<B: Backend> ModuleVisitor<B> for ParamCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.containers.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.push(param.lazy_shape().to_vec(), ParamKind::Float);
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        self.push(param.lazy_shape().to_vec(), ParamKind::Int);
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        self.push(param.lazy_shape().to_vec(), ParamKind::Bool);
    }
}
