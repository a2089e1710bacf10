//! GPT-2's `Conv1D` (transformers' `pytorch_utils.Conv1D`): a linear layer whose PyTorch weight
//! is stored `[in, out]`, the transpose of `nn.Linear`'s `[out, in]`.
//!
//! Built from Burn's `Linear`, a GPT-2 model loads a stock checkpoint only with a Transpose
//! conversion per weight, and one that is forgotten on a square weight (`c_proj`, `[d, d]`)
//! loads "clean" with wrong numbers: no shape can catch it. [`Conv1D`] declares its layout
//! instead ([`TorchLayout`]: the weight as stored, no transpose), and the default
//! [`TorchLayouts`](crate::TorchLayouts) registers it, so `c_attn.weight`, `c_proj.weight` and
//! the others load as they are, with no conversion.

use burn::module::{Initializer, Param};
use burn::prelude::*;
use burn::tensor::module::linear;

use super::LinearForward;
use crate::load::{Layout, TorchLayout};

/// Configuration of a [`Conv1D`] (transformers' `Conv1D(nf, nx)` is
/// `Conv1DConfig::new(nx, nf)`: input features first, as in Burn's `LinearConfig`).
#[derive(Config, Debug)]
pub struct Conv1DConfig {
    /// Input features (transformers' `nx`).
    pub d_input: usize,
    /// Output features (transformers' `nf`).
    pub d_output: usize,
    /// How the weight is initialized (transformers': normal, std 0.02); the bias starts at zero.
    #[config(default = "Initializer::Normal { mean: 0.0, std: 0.02 }")]
    pub initializer: Initializer,
}

/// GPT-2's `Conv1D`: `y = x @ weight + bias`, with `weight` `[d_input, d_output]` in Burn and
/// in PyTorch checkpoints alike (`c_attn`, `c_proj`, `c_fc` of GPT-2). Its [`TorchLayout`]
/// says so, and the default [`TorchLayouts`](crate::TorchLayouts) registers it.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::prelude::*;
/// use patcher_burn::layers::{Conv1D, Conv1DConfig};
/// use patcher_burn::{model_params, Layout, TorchLayouts};
///
/// let device = Default::default();
/// let c_proj: Conv1D<NdArray> = Conv1DConfig::new(4, 4).init(&device);
/// // Stored as in the checkpoint: no transpose on load (a Burn `Linear` would be transposed).
/// let layouts = TorchLayouts::default();
/// assert_eq!(layouts.torch_param("Conv1D", "weight", 2), Some(("weight", Layout::Same)));
/// assert_eq!(layouts.torch_param("Linear", "weight", 2), Some(("weight", Layout::Transposed)));
/// let names: Vec<_> = model_params(&c_proj).into_iter().map(|p| p.torch_name).collect();
/// assert_eq!(names, ["weight", "bias"]);
/// let y = c_proj.forward(Tensor::<NdArray, 3>::ones([1, 2, 4], &device));
/// assert_eq!(y.dims(), [1, 2, 4]);
/// ```
#[derive(Module, Debug)]
pub struct Conv1D<B: Backend> {
    /// `[d_input, d_output]`, as GPT-2 checkpoints store it.
    pub weight: Param<Tensor<B, 2>>,
    /// `[d_output]`.
    pub bias: Param<Tensor<B, 1>>,
}

impl Conv1DConfig {
    /// A [`Conv1D`] with the configured initializer (bias zero, as transformers').
    pub fn init<B: Backend>(&self, device: &B::Device) -> Conv1D<B> {
        let (d_input, d_output) = (self.d_input, self.d_output);
        let weight =
            self.initializer
                .init_with([d_input, d_output], Some(d_input), Some(d_output), device);
        let bias = Initializer::Zeros.init([d_output], device);
        Conv1D { weight, bias }
    }
}

impl<B: Backend> Conv1D<B> {
    /// `[.., d_input] -> [.., d_output]`: `x @ weight + bias`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        linear(x, self.weight.val(), Some(self.bias.val()))
    }
}

impl<B: Backend> LinearForward<B> for Conv1D<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(x)
    }

    fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward(x)
    }
}

impl<B: Backend> TorchLayout for Conv1D<B> {
    const MODULE_NAME: &'static str = "Conv1D";

    fn torch_param(field: &str, rank: usize) -> Option<(&'static str, Layout)> {
        conv1d(field, rank)
    }
}

/// Conv1D: the weight and the bias as stored (declared, so that no default transposes them).
pub(crate) fn conv1d(field: &str, _rank: usize) -> Option<(&'static str, Layout)> {
    match field {
        "weight" => Some(("weight", Layout::Same)),
        "bias" => Some(("bias", Layout::Same)),
        _ => None,
    }
}
