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
}
