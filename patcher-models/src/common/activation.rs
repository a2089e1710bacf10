//! The activation named by a config's `hidden_act` (transformers' `ACT2FN`), for the ones these
//! models use.

use burn::prelude::*;
use burn::tensor::activation;

use super::cpu;
use crate::error::ConfigError;

/// An activation function from `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `"silu"` / `"swish"`: `x * sigmoid(x)`.
    Silu,
    /// `"gelu"`: the exact (erf) GELU.
    Gelu,
    /// `"relu"`.
    Relu,
}

impl Activation {
    /// Parses transformers' name.
    pub fn from_name(name: &str) -> Result<Self, ConfigError> {
        match name {
            "silu" | "swish" => Ok(Self::Silu),
            "gelu" => Ok(Self::Gelu),
            "relu" => Ok(Self::Relu),
            other => Err(ConfigError::Unsupported(format!(
                "hidden_act `{other}` (supported: silu, swish, gelu, relu)"
            ))),
        }
    }

    /// Applies the activation.
    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Silu => activation::silu(x),
            Self::Gelu => activation::gelu(x),
            Self::Relu => activation::relu(x),
        }
    }

    /// `act(gate) * up`, the gated MLPs' product (transformers' `act_fn(gate_proj(x)) *
    /// up_proj(x)`). SiLU on the CPU backends runs as one vectorised pass on the host (see
    /// `common::cpu`); the values are PyTorch's formula, `x / (1 + exp(-x)) * up`.
    pub fn gated<B: Backend, const D: usize>(
        &self,
        gate: Tensor<B, D>,
        up: Tensor<B, D>,
    ) -> Tensor<B, D> {
        let (gate, up) = match self {
            Self::Silu => match cpu::silu_mul(gate, up) {
                Ok(out) => return out,
                Err(inputs) => inputs,
            },
            _ => (gate, up),
        };
        self.forward(gate) * up
    }

    /// [`Self::gated`] of the two halves of `x [2I, n]`'s rows (gate rows, then up rows), as
    /// `[I, n]`: the fused experts' product, with SiLU on the CPU backends computed in `x`'s
    /// buffer (see `common::cpu`).
    pub fn gated_halves<B: Backend>(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = match self {
            Self::Silu => match cpu::silu_mul_halves(x) {
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
