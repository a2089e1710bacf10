//! Puts converted tensors into a model's parameters, by Burn path, keeping parameter ids,
//! devices, gradient settings and load mappers (through `Param::transform_for_load`).

use burn::module::Param;
use burn::prelude::*;

use super::execute::{Converted, Wave};
use super::layout::Layout;
use super::quantize::quantize;
use crate::visit::{Leaf, MapParams, ModulePath};

/// A mapper that replaces the parameters named in `tensors` and leaves the others as they are
/// (lazy parameters that are not replaced stay uninitialised). Run it with `visit::map`.
pub(crate) struct Applier {
    tensors: Wave,
}

impl Applier {
    pub(crate) fn new(tensors: Wave) -> Self {
        Self { tensors }
    }

    fn take(&mut self, at: &ModulePath) -> Option<Converted> {
        if self.tensors.is_empty() {
            return None;
        }
        self.tensors.remove(&at.key())
    }
}

impl<B: Backend> MapParams<B> for Applier {
    /// Int and bool parameters: never transposed (`model_params` transposes float matrices
    /// only) nor quantized.
    fn map<P: Leaf<B>>(&mut self, at: &ModulePath, param: P) -> P {
        match self.take(at) {
            Some((data, _, _)) => param.with_data(data),
            None => param,
        }
    }

    fn map_float<const D: usize>(
        &mut self,
        at: &ModulePath,
        param: Param<Tensor<B, D>>,
    ) -> Param<Tensor<B, D>> {
        let Some((data, layout, scheme)) = self.take(at) else {
            return param;
        };
        let tensor = Tensor::from_data(data, &param.lazy_device());
        // A weight still in the checkpoint's layout becomes Burn's as a strided view, without
        // copying it again.
        let tensor = match layout {
            Layout::Same => tensor,
            Layout::Transposed => tensor.transpose(),
        };
        // Quantized now, so the full-precision tensor is dropped before the next wave.
        let tensor = match scheme {
            Some(scheme) => quantize(tensor, &scheme),
            None => tensor,
        };
        let id = param.id;
        param.transform_for_load(tensor, id)
    }
}
