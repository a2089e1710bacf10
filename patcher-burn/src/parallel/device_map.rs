//! [`DeviceMap`]: which device each slot of a model is built and loaded on (pipeline
//! parallelism in one process), [`module_device`], where a built module's parameters are, and
//! [`to_device_via_host`], how activations cross a boundary.

use std::ops::Range;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use patcher_core::plan::ModulePattern;

/// A device map pattern that is not a module path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceMapError {
    /// The pattern has characters a module path has not, or is empty.
    #[error(
        "device map pattern `{pattern}`: write a module path such as `layers.*` or `model.norm` \
         (letters, digits, `_`, `.`, and `*` for an index)"
    )]
    Pattern {
        /// The pattern as given.
        pattern: String,
    },
}

/// Which device each part of a model lives on: transformers' `device_map`, pipeline
/// parallelism in one process. Rules name slots by path (`layers.3`, `layers.*`,
/// `model.norm`; matched against the end of a slot's Burn path, first rule wins); a slot and
/// everything built inside it go to its rule's device, the rest to the device the model is
/// built with.
///
/// Give it to [`Pretrained::device_map`](crate::Pretrained::device_map) (or
/// [`BuildOptions::device_map`](crate::BuildOptions::device_map)): each parameter is built and
/// loaded on its device, and the kit's decoders move their activations once at each boundary
/// between layers on different devices (embeddings, final norm and head stay on the model's
/// device).
///
/// ```
/// use burn::backend::NdArray;
/// use patcher_burn::DeviceMap;
///
/// let device = Default::default();
/// // The first two layers on one device, the others on another (here the same CPU).
/// let map = DeviceMap::<NdArray>::new()
///     .layers("layers", 0..2, device)?
///     .place("layers.*", device)?;
/// assert!(map.device_of("model.layers.1").is_some());
/// assert!(map.device_of("model.embed_tokens").is_none());
/// # Ok::<(), patcher_burn::DeviceMapError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DeviceMap<B: Backend> {
    rules: Vec<(ModulePattern, B::Device)>,
}

impl<B: Backend> Default for DeviceMap<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> DeviceMap<B> {
    /// A map without rules: everything on the model's device.
    pub fn new() -> Self {
        Self { rules: Vec::new() }
    }

    /// Puts the slots at `pattern` (a module path, `*` for an index) on `device`.
    pub fn place(mut self, pattern: &str, device: B::Device) -> Result<Self, DeviceMapError> {
        let pattern =
            ModulePattern::new(pattern).map_err(|pattern| DeviceMapError::Pattern { pattern })?;
        self.rules.push((pattern, device));
        Ok(self)
    }

    /// Puts layers `range` of the list at `layers` (`"layers"`, `"model.layers"`) on `device`.
    pub fn layers(
        mut self,
        layers: &str,
        range: Range<usize>,
        device: B::Device,
    ) -> Result<Self, DeviceMapError> {
        for index in range {
            self = self.place(&format!("{layers}.{index}"), device.clone())?;
        }
        Ok(self)
    }

    /// The device of the slot at `path`, if a rule names it.
    pub fn device_of(&self, path: &str) -> Option<&B::Device> {
        self.rule_of(path).map(|rule| self.rule_device(rule))
    }

    /// The first rule that names none of `slot_paths`, if any.
    pub(crate) fn unmatched(&self, slot_paths: &[String]) -> Option<String> {
        self.rules
            .iter()
            .find(|(pattern, _)| !slot_paths.iter().any(|p| pattern.matches_module(p)))
            .map(|(pattern, _)| pattern.as_str().to_string())
    }

    /// The first rule naming the slot at `path`.
    pub(crate) fn rule_of(&self, path: &str) -> Option<usize> {
        self.rules
            .iter()
            .position(|(pattern, _)| pattern.matches_module(path))
    }

    /// The device of rule `rule`.
    pub(crate) fn rule_device(&self, rule: usize) -> &B::Device {
        &self.rules[rule].1
    }

    /// Whether no rule was added.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The device of `module`'s first parameter (where a layer runs), without initialising a lazy
/// one; `None` for a module without parameters.
pub fn module_device<B: Backend, M: Module<B>>(module: &M) -> Option<B::Device> {
    struct First<B: Backend>(Option<B::Device>);
    impl<B: Backend> ModuleVisitor<B> for First<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.get_or_insert_with(|| param.lazy_device());
        }
    }
    let mut first = First(None);
    module.visit(&mut first);
    first.0
}

/// `tensor` on `device`, through the host when it is elsewhere: Burn 0.21's `to_device` between
/// two wgpu devices panics (burn-cubecl asks cubecl for a device-to-device copy, which its wgpu
/// runtime does not implement), while reading back and uploading works on every backend. The
/// activations crossing a device map's boundary are small next to a layer's work.
pub fn to_device_via_host<B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
    device: &B::Device,
) -> Tensor<B, D> {
    if tensor.device() == *device {
        return tensor;
    }
    Tensor::from_data(tensor.into_data(), device)
}
