//! The loader: plan, read, convert, lay out for Burn, upload; and saving back.

mod apply;
mod error;
mod execute;
mod finite;
mod gather;
mod host;
mod model;
mod options;
mod params;
mod pretrained;
mod quantize;

pub use error::LoadError;
pub use finite::NonFiniteCount;
pub(crate) use host::from_tensor_data;
pub use model::PretrainedModel;
pub use options::{LoadOptions, LoadProgress};
pub use params::{model_params, Layout, LinearLayout, ParamInfo, ParamKind};
pub use pretrained::{from_pretrained, load_checkpoint, load_into, load_with, LoadSpec, Loaded};
pub use quantize::{Quantization, QuantizeTargets};
