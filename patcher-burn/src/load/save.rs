//! Saving a (patched) model in its checkpoint's original layout: the conversions used when
//! loading run in reverse (converters first, then renamings), then the layout step is undone.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use patcher_core::plan::PlanOptions;
use patcher_core::{save_safetensors, ConversionPlan, Groups, HostTensor, WeightTransform};

use super::error::LoadError;
use super::host::from_tensor_data;
use super::params::model_params;

/// Writes `model` to the safetensors file `path` in the layout of the checkpoint it was loaded
/// from: the parameters in PyTorch layout, through the reverse of `conversions` (the ones the
/// load used, [`Loaded::conversions`](crate::Loaded::conversions)). A transformers model of the
/// original class loads the file.
///
/// Errors if a conversion cannot be reversed (an op without a reverse) or the file cannot be
/// written.
pub fn save_pretrained<B: Backend, M: Module<B>>(
    model: &M,
    path: impl AsRef<Path>,
    conversions: &[WeightTransform],
    base_model_prefix: Option<&str>,
) -> Result<(), LoadError> {
    let params = model_params(model);
    let mut values = ParamValues::default();
    model.visit(&mut values);

    let mut host: HashMap<&str, HostTensor<'static>> = HashMap::new();
    for param in &params {
        let data = values
            .data
            .remove(&param.burn_path)
            .ok_or_else(|| LoadError::Unsupported {
                key: param.burn_path.clone(),
                message: "the model did not visit this parameter twice the same way".into(),
            })?;
        host.insert(param.torch_name.as_str(), from_tensor_data(data, param)?);
    }
    let metas: Vec<_> = params
        .iter()
        .map(|p| (p.torch_name.clone(), host[p.torch_name.as_str()].meta()))
        .collect();
    let options = PlanOptions::default().base_model_prefix(base_model_prefix.unwrap_or_default());
    let plan = ConversionPlan::for_save(conversions, &metas, &options)?;

    let mut out: Vec<(String, HostTensor<'static>)> = Vec::with_capacity(params.len());
    for group in plan.groups() {
        let mut inputs = Groups::new();
        for (pattern, keys) in group.sources.iter() {
            let tensors = keys
                .iter()
                .map(|key| take(&mut host, key))
                .collect::<Result<Vec<_>, _>>()?;
            inputs.push(pattern, tensors);
        }
        let outputs = group
            .execute(inputs)
            .map_err(|source| LoadError::Conversion {
                key: group.key.clone(),
                source,
            })?;
        out.extend(outputs.into_iter().map(|(k, t)| (k, t.into_owned())));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    save_safetensors(path.as_ref(), out, Some(metadata))?;
    Ok(())
}

fn take(
    host: &mut HashMap<&str, HostTensor<'static>>,
    key: &str,
) -> Result<HostTensor<'static>, LoadError> {
    host.remove(key).ok_or_else(|| LoadError::Unsupported {
        key: key.to_string(),
        message: "the save plan reads a parameter twice or one the model does not have".into(),
    })
}

/// Collects every parameter's data by Burn path.
#[derive(Default)]
struct ParamValues {
    path: Vec<String>,
    data: HashMap<String, TensorData>,
}

impl<B: Backend> ModuleVisitor<B> for ParamValues {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.data
            .insert(self.path.join("."), param.val().into_data());
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        self.data
            .insert(self.path.join("."), param.val().into_data());
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        self.data
            .insert(self.path.join("."), param.val().into_data());
    }
}
