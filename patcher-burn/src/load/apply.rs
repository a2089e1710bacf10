//! Puts converted tensors into a model's parameters, by Burn path, keeping parameter ids,
//! devices, gradient settings and load mappers (through `Param::transform_for_load`).

use burn::module::{ModuleMapper, Param};
use burn::prelude::*;

use super::execute::{Converted, Wave};
use super::params::Layout;
use super::quantize::quantize;

/// A mapper that replaces the parameters named in `tensors` and leaves the others as they are
/// (lazy parameters that are not replaced stay uninitialised).
pub(crate) struct Applier {
    path: Vec<String>,
    tensors: Wave,
}

impl Applier {
    pub(crate) fn new(tensors: Wave) -> Self {
        Self {
            path: Vec::new(),
            tensors,
        }
    }

    fn take(&mut self) -> Option<Converted> {
        if self.tensors.is_empty() {
            return None;
        }
        self.tensors.remove(&self.path.join("."))
    }
}

impl<B: Backend> ModuleMapper<B> for Applier {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        match self.take() {
            Some((data, layout, scheme)) => {
                let tensor = Tensor::from_data(data, &param.lazy_device());
                // A Linear weight still in the checkpoint's layout becomes Burn's `[in, out]` as a
                // strided view, without copying it again.
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
            None => param,
        }
    }

    fn map_int<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D, Int>>,
    ) -> Param<Tensor<B, D, Int>> {
        match self.take() {
            // Only Linear weights are transposed, and they are float.
            Some((data, _, _)) => {
                let tensor = Tensor::from_data(data, &param.lazy_device());
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
            None => param,
        }
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D, Bool>>,
    ) -> Param<Tensor<B, D, Bool>> {
        match self.take() {
            // Only Linear weights are transposed, and they are float.
            Some((data, _, _)) => {
                let tensor = Tensor::from_data(data, &param.lazy_device());
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
            None => param,
        }
    }
}
