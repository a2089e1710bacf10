//! The activation named by a config's `hidden_act` (transformers' `ACT2FN`), for the ones these
//! models use.

use burn::prelude::*;
use burn::tensor::activation;

use crate::error::ConfigError;

/// An activation function from `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `"silu"` / `"swish"`: `x * sigmoid(x)`.
    Silu,
    /// `"gelu"`: the exact (erf) GELU.
    Gelu,
    /// `"gelu_new"` / `"gelu_pytorch_tanh"`: GELU's tanh approximation (GPT-2's),
    /// `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))`.
    GeluTanh,
    /// `"relu"`.
    Relu,
}

impl Activation {
    /// Parses transformers' name.
    pub fn from_name(name: &str) -> Result<Self, ConfigError> {
        match name {
            "silu" | "swish" => Ok(Self::Silu),
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => Err(ConfigError::Unsupported(format!(
                "hidden_act `{other}` (supported: silu, swish, gelu, gelu_new, \
                 gelu_pytorch_tanh, relu)"
            ))),
        }
    }

    /// Applies the activation.
    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Silu => activation::silu(x),
            Self::Gelu => activation::gelu(x),
            Self::GeluTanh => {
                // transformers' `NewGELUActivation`, term for term.
                let inner = x.clone() + x.clone().powi_scalar(3) * 0.044715;
                let tanh = (inner * (2.0f64 / std::f64::consts::PI).sqrt()).tanh();
                x * 0.5 * (tanh + 1.0)
            }
            Self::Relu => activation::relu(x),
        }
    }

    /// `act(gate) * up`, the gated MLPs' product (transformers' `act_fn(gate_proj(x)) *
    /// up_proj(x)`). SiLU on the CPU backends runs as one vectorised pass on the host (see
    /// `patcher_kernels::silu_mul`); the values are PyTorch's formula, `x / (1 + exp(-x)) * up`.
    pub fn gated<B: Backend, const D: usize>(
        &self,
        gate: Tensor<B, D>,
        up: Tensor<B, D>,
    ) -> Tensor<B, D> {
        let (gate, up) = match self {
            Self::Silu => match patcher_kernels::silu_mul(gate, up) {
                Ok(out) => return out,
                Err(inputs) => inputs,
            },
            _ => (gate, up),
        };
        self.forward(gate) * up
    }

    /// [`Self::gated`] of the two halves of `x [2I, n]`'s rows (gate rows, then up rows), as
    /// `[I, n]`: the fused experts' product, with SiLU on the CPU backends computed in `x`'s
    /// buffer (see `patcher_kernels`).
    pub fn gated_halves<B: Backend>(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = match self {
            Self::Silu => match patcher_kernels::silu_mul_halves(x) {
                Ok(out) => return out,
                Err(x) => x,
            },
            _ => x,
        };
        let inter = x.dims()[0] / 2;
        let gate = x.clone().narrow(0, 0, inter);
        self.gated(gate, x.narrow(0, inter, inter))
    }
}
