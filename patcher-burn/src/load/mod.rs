//! The loader: plan, read, convert, lay out for Burn, upload; and saving back.

mod apply;
mod error;
mod execute;
mod host;
mod load;
mod model;
mod options;
mod params;
mod save;

pub use error::LoadError;
pub use load::{from_pretrained, load_checkpoint, load_into, Loaded};
pub use model::PretrainedModel;
pub use options::{LoadOptions, LoadProgress};
pub use params::{model_params, Layout, ParamInfo, ParamKind};
pub use save::save_pretrained;
