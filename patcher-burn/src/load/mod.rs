//! The loader: plan, read, convert, lay out for Burn, upload; and saving back.

mod apply;
mod builder;
mod direct;
mod error;
mod execute;
mod finite;
mod gather;
mod host;
mod layout;
mod model;
mod options;
mod params;
mod pretrained;
mod quantize;
mod slice;

pub use builder::Pretrained;
pub use error::LoadError;
pub use finite::NonFiniteCount;
pub(crate) use host::from_tensor_data;
pub use layout::{Layout, TorchLayout, TorchLayouts};
pub use model::PretrainedModel;
pub use options::{LoadOptions, LoadProgress, MAX_LOAD_THREADS};
pub use params::{model_params, model_params_with, LinearLayout, ParamInfo, ParamKind};
pub use pretrained::{load_with, plan_with, LoadPlan, LoadSpec, Loaded};
pub use quantize::{backend_quant_scheme, Quantization, QuantizeError, QuantizeTargets};
