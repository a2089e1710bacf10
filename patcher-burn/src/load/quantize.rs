//! Quantizing while loading: each selected parameter is quantized as soon as it is uploaded, so
//! the full-precision model is never resident (at most one wave of it, the bytes in flight).

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::quantization::{compute_q_params, compute_range, Calibration, QuantScheme};
use patcher_core::pattern::PatternSet;

use super::error::LoadError;
use super::layout::Layout;
use super::params::{ParamInfo, ParamKind};

mod support;

pub use support::{backend_quant_scheme, QuantizeError};

/// Which parameters a quantized load quantizes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QuantizeTargets {
    /// The weights of `nn::Linear` modules (the default): every projection, experts included
    /// when they are `Linear`s (`SequentialExperts`); embeddings, norms, biases and bare `Param`s
    /// (fused expert tensors) stay in full precision.
    #[default]
    LinearWeights,
    /// Every float parameter whose checkpoint (PyTorch) name matches one of these key patterns
    /// (the conversions' syntax: regexes searched anywhere in the name, `*` for an index).
    Matching(Vec<String>),
}

/// A load's quantization: Burn's [`QuantScheme`] and the parameters it applies to.
///
/// Each parameter is quantized exactly as Burn's `Module::quantize_weights` with a
/// `Quantizer { calibration: Calibration::MinMax, scheme }` quantizes it, so a quantized load
/// gives the same bits as quantizing after a full-precision load.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantization {
    /// How values are quantized (`QuantScheme::default()`: 8-bit, symmetric, per tensor, packed
    /// in u32 words; [`backend_quant_scheme`] gives the backend's own 8-bit scheme). A scheme
    /// the backend or a parameter's shape does not allow fails the load before anything is
    /// uploaded, with [`LoadError::Quantize`](crate::LoadError::Quantize).
    pub scheme: QuantScheme,
    /// Which parameters are quantized.
    pub targets: QuantizeTargets,
}

/// [`Quantization`] ready to decide per parameter (patterns compiled).
pub(crate) struct QuantizeSelector {
    scheme: QuantScheme,
    patterns: Option<PatternSet>,
}

impl QuantizeSelector {
    pub(crate) fn new(quantization: Option<&Quantization>) -> Result<Option<Self>, LoadError> {
        let Some(quantization) = quantization else {
            return Ok(None);
        };
        let patterns = match &quantization.targets {
            QuantizeTargets::LinearWeights => None,
            QuantizeTargets::Matching(patterns) => Some(PatternSet::new(patterns.clone())?),
        };
        Ok(Some(Self { scheme: quantization.scheme, patterns }))
    }

    /// The scheme `param` is quantized with, if it is selected.
    pub(crate) fn scheme_for(&self, param: &ParamInfo) -> Option<QuantScheme> {
        let selected = param.kind == ParamKind::Float
            && match &self.patterns {
                None => param.layout == Layout::Transposed,
                Some(patterns) => patterns.is_match(&param.torch_name),
            };
        selected.then_some(self.scheme)
    }
}

/// `tensor` quantized as Burn's `Quantizer` (min-max calibration) quantizes a parameter.
pub(crate) fn quantize<B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
    scheme: &QuantScheme,
) -> Tensor<B, D> {
    let range = compute_range(scheme, &tensor, &Calibration::MinMax);
    let qparams = compute_q_params(scheme, range);
    tensor.quantize(scheme, qparams)
}

/// The device of `model`'s first parameter, read without initialising it: Burn's
/// `Module::devices` initialises every lazy parameter (the whole model, in full precision, which
/// a quantized load must never hold) to ask its device.
pub(crate) fn model_device<B: Backend, M: Module<B>>(model: &M) -> B::Device {
    struct FirstDevice<B: Backend>(Option<B::Device>);
    impl<B: Backend> ModuleVisitor<B> for FirstDevice<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if self.0.is_none() {
                self.0 = Some(param.lazy_device());
            }
        }
    }
    let mut first = FirstDevice::<B>(None);
    model.visit(&mut first);
    first.0.unwrap_or_default()
}

/// Fails with [`LoadError::Quantize`] naming the first of `params` (the model's) that
/// `selector` quantizes if its scheme itself cannot run on `B` (whatever the shapes): the check
/// before planning, so a wrong scheme costs no plan.
pub(crate) fn check_scheme<'a, B: Backend>(
    selector: &QuantizeSelector,
    params: impl IntoIterator<Item = &'a ParamInfo>,
    device: &B::Device,
) -> Result<(), LoadError> {
    let first = params
        .into_iter()
        .find_map(|param| Some((param, selector.scheme_for(param)?)));
    match first {
        Some((param, scheme)) => support::check_scheme_on::<B>(&scheme, device)
            .map_err(|source| LoadError::Quantize { key: param.torch_name.clone(), source }),
        None => Ok(()),
    }
}

/// Fails with [`LoadError::Quantize`], before anything is loaded, naming the first of `params`
/// (the parameters the load writes) that `selector` quantizes and that its scheme cannot
/// quantize on `B` (see `support.rs`): a failed check leaves the caller's model untouched.
pub(crate) fn check_supported<'a, B: Backend>(
    selector: &QuantizeSelector,
    params: impl IntoIterator<Item = &'a ParamInfo>,
    float_bytes: usize,
    device: &B::Device,
) -> Result<(), LoadError> {
    for param in params {
        let Some(scheme) = selector.scheme_for(param) else {
            continue;
        };
        support::check::<B>(&scheme, &param.burn_shape, float_bytes, device)
            .map_err(|source| LoadError::Quantize { key: param.torch_name.clone(), source })?;
    }
    Ok(())
}
