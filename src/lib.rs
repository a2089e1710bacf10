//! # burn-patcher
//!
//! Model patching for [Burn](https://burn.dev): swap named module classes while a model is built
//! and convert a checkpoint's weights on the way in, so a stock transformers checkpoint loads into
//! a restructured model (fused QKV attention, experts as a list of linears, experimental variants).
//!
//! This facade re-exports the three crates of the workspace:
//! - [`patcher_core`]: checkpoint reader, key patterns, weight conversions, the weight half of a
//!   patcher ([`WeightPatch`]) and the conversion plan;
//! - [`patcher_burn`]: substitutable module slots (with ready ones for Burn's `Linear`, norms and
//!   `Embedding` in [`layers`]), the typed [`Patcher`], building with substitutions, loading and
//!   saving;
//! - `patcher_derive` (feature `derive`, on by default): `#[derive(Patchable)]` and
//!   `#[slot_interface]`.
//!
//! ## Patching a model while it is built
//!
//! The model author writes the model once, patch-ready: a field that may be substituted is a
//! [`Slot`] of an interface trait (what the parent calls, and the arguments of the constructor
//! every class of the slot has); classes are `#[derive(Patchable)]` module structs with their own
//! `new`. A [`Patcher`] then swaps classes, by type, name or path, while the model is built:
//!
//! ```
//! # #[cfg(feature = "derive")] {
//! use burn::backend::NdArray;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::prelude::*;
//! use burn::tensor::activation::{gelu, silu};
//! use burn_patcher::{
//!     list_slots, replacement, slot_interface, BuildContext, Patchable, Patcher, Slot,
//! };
//!
//! /// What the model calls on its MLP. Every class of the slot has a `new` taking these
//! /// arguments (checked at compile time).
//! #[slot_interface]
//! pub trait MlpLayer<B: Backend> {
//!     fn new(hidden: usize, device: &B::Device) -> Self;
//!     fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
//! }
//!
//! /// The original class.
//! #[derive(Module, Patchable, Debug)]
//! #[patchable(name = "LlamaMlp", implements(MlpLayer))]
//! pub struct Mlp<B: Backend> {
//!     up: Linear<B>,
//!     down: Linear<B>,
//! }
//!
//! impl<B: Backend> Mlp<B> {
//!     pub fn new(hidden: usize, device: &B::Device) -> Self {
//!         let up = LinearConfig::new(hidden, 4 * hidden).init(device);
//!         let down = LinearConfig::new(4 * hidden, hidden).init(device);
//!         Self { up, down }
//!     }
//! }
//!
//! impl<B: Backend> MlpLayer<B> for Mlp<B> {
//!     fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
//!         self.down.forward(gelu(self.up.forward(x)))
//!     }
//! }
//!
//! /// A replacement, built from the same arguments.
//! #[derive(Module, Patchable, Debug)]
//! #[patchable(implements(MlpLayer))]
//! pub struct GatedMlp<B: Backend> {
//!     gate_up: Linear<B>,
//!     down: Linear<B>,
//! }
//!
//! impl<B: Backend> GatedMlp<B> {
//!     pub fn new(hidden: usize, device: &B::Device) -> Self {
//!         let gate_up = LinearConfig::new(hidden, 8 * hidden).init(device);
//!         let down = LinearConfig::new(4 * hidden, hidden).init(device);
//!         Self { gate_up, down }
//!     }
//! }
//!
//! impl<B: Backend> MlpLayer<B> for GatedMlp<B> {
//!     fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
//!         let [gate, up] = self.gate_up.forward(x).chunk(2, 1).try_into().unwrap();
//!         self.down.forward(silu(gate) * up)
//!     }
//! }
//!
//! /// The model: the slot is a full Burn module whatever class it holds.
//! #[derive(Module, Patchable, Debug)]
//! pub struct Model<B: Backend> {
//!     mlp: Slot<B, dyn MlpLayer<B>>,
//! }
//!
//! impl<B: Backend> Model<B> {
//!     pub fn new(ctx: &BuildContext<'_, B>) -> Self {
//!         Self { mlp: Slot::build::<Mlp<B>>(ctx, 8) }
//!     }
//!     pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
//!         self.mlp.forward(x)
//!     }
//! }
//!
//! type B = NdArray;
//! let device = Default::default();
//!
//! // Unpatched.
//! let model = Model::<B>::new(&BuildContext::plain(&device));
//! assert_eq!(model.num_params(), (8 * 32 + 32) + (32 * 8 + 8));
//!
//! // `LlamaMlp` swapped for `GatedMlp`: by type, so a class of another interface would not
//! // compile here.
//! let patcher = Patcher::<B>::new().replace::<Mlp<B>, GatedMlp<B>>();
//! let model = BuildContext::build(&patcher, &device, Model::new)?;
//! let slot = &list_slots(&model)[0];
//! assert_eq!((slot.path.as_str(), slot.class.as_str(), slot.replaced), ("mlp", "GatedMlp", true));
//! assert_eq!(model.num_params(), (8 * 64 + 64) + (32 * 8 + 8));
//! assert_eq!(model.forward(Tensor::zeros([2, 8], &device)).dims(), [2, 8]);
//!
//! // By name, a key that names no slot class of the model is an error, with a did-you-mean.
//! let typo = Patcher::<B>::new()
//!     .class_mapping("LlamaMLP", replacement::<GatedMlp<B>, dyn MlpLayer<B>>());
//! let err = BuildContext::build(&typo, &device, Model::new).unwrap_err();
//! assert!(err.to_string().contains("did you mean `LlamaMlp`?"));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use patcher_burn::*;
pub use patcher_core::*;
#[cfg(feature = "derive")]
pub use patcher_derive::{slot_interface, Patchable};

/// The model kit (feature `models`): transformers-compatible families written patch-ready, their
/// building blocks, and replacement modules; see the `patcher-models` crate.
///
/// ```
/// use burn::backend::NdArray;
/// use burn_patcher::models::llama::{LlamaConfig, LlamaForCausalLm};
/// use burn_patcher::models::prelude::*;
///
/// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llama");
/// let config = LlamaConfig::from_file(format!("{dir}/config.json")).unwrap();
/// let model = LlamaForCausalLm::<NdArray>::new(&config, &Default::default());
/// assert_eq!(model.model.layers.len(), config.core.num_hidden_layers);
/// ```
#[cfg(feature = "models")]
pub use patcher_models as models;

/// The crates behind this facade, for paths that must name one of them.
pub mod crates {
    pub use patcher_burn;
    pub use patcher_core;
}
