//! The save plan run on a model's values: parameters in PyTorch layout through the reversed
//! conversions, as host tensors in checkpoint naming.

use std::collections::HashMap;

use burn::module::Module;
use burn::prelude::*;
use patcher_core::plan::PlanOptions;
use patcher_core::{ConversionPlan, Groups, HostTensor, TensorMeta, WeightTransform};

use super::filter::ParamFilter;
use super::SaveError;
use crate::load::{from_tensor_data, model_params_with, TorchLayouts};
use crate::visit::{self, Leaf, ModulePath, VisitParams};

/// The tensors a save writes, in checkpoint naming and plan order, and the model's parameters
/// as a load expects them (PyTorch names, dtypes and shapes), to verify against.
pub(crate) struct Collected {
    pub(crate) tensors: Vec<(String, HostTensor<'static>)>,
    pub(crate) params: Vec<(String, TensorMeta)>,
}

/// `model`'s parameters that `filter` keeps, laid out in PyTorch's layout as `layouts` says, by
/// PyTorch name, in the model's order.
pub(crate) fn torch_params<B: Backend, M: Module<B>>(
    model: &M,
    layouts: &TorchLayouts,
    filter: &ParamFilter,
) -> Result<Vec<(String, HostTensor<'static>)>, SaveError> {
    let mut params = model_params_with(model, layouts);
    params.retain(|p| filter.keeps(&p.torch_name));
    let mut values = visit::visit(model, ParamValues::default());
    params
        .iter()
        .map(|param| {
            let data =
                values
                    .data
                    .remove(&param.burn_path)
                    .ok_or_else(|| SaveError::Unsupported {
                        key: param.burn_path.clone(),
                        message: "the model did not visit this parameter twice the same way".into(),
                    })?;
            Ok((param.torch_name.clone(), from_tensor_data(data, param)?))
        })
        .collect()
}

/// Runs the reverse of `conversions` on `params` (PyTorch names and layout, see
/// [`torch_params`]).
pub(crate) fn collect(
    params: Vec<(String, HostTensor<'static>)>,
    conversions: &[WeightTransform],
    options: &PlanOptions,
) -> Result<Collected, SaveError> {
    let metas: Vec<(String, TensorMeta)> =
        params.iter().map(|(k, t)| (k.clone(), t.meta())).collect();
    let mut host: HashMap<&str, HostTensor<'static>> = metas
        .iter()
        .map(|(k, _)| k.as_str())
        .zip(params.into_iter().map(|(_, t)| t))
        .collect();
    let plan = ConversionPlan::for_save(conversions, &metas, options)?;
    if let Some(error) = plan.report().conversion_errors.first() {
        return Err(SaveError::Mismatch {
            message: format!("the reversed conversions cannot run: {}", error.message),
            conversion: error.op.clone(),
            keys: vec![error.target.clone()],
        });
    }

    let mut tensors = Vec::with_capacity(host.len());
    for group in plan.groups() {
        let mut inputs = Groups::new();
        for (pattern, keys) in group.sources.iter() {
            let taken = keys
                .iter()
                .map(|key| take(&mut host, key))
                .collect::<Result<Vec<_>, _>>()?;
            inputs.push(pattern, taken);
        }
        let outputs = group
            .execute(inputs)
            .map_err(SaveError::converting(group))?;
        tensors.extend(outputs.into_iter().map(|(k, t)| (k, t.into_owned())));
    }
    Ok(Collected { tensors, params: metas })
}

fn take(
    host: &mut HashMap<&str, HostTensor<'static>>,
    key: &str,
) -> Result<HostTensor<'static>, SaveError> {
    host.remove(key).ok_or_else(|| SaveError::Unsupported {
        key: key.to_string(),
        message: "the save plan reads a parameter twice or one the model does not have".into(),
    })
}

/// Collects every parameter's data by Burn path.
#[derive(Default)]
struct ParamValues {
    data: HashMap<String, TensorData>,
}

impl<B: Backend> VisitParams<B> for ParamValues {
    fn param<P: Leaf<B>>(&mut self, at: &ModulePath, param: &P) {
        self.data.insert(at.key(), param.data());
    }
}
