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

/// Runs the reverse of `conversions` on `model`'s parameters that `filter` keeps, laid out in
/// PyTorch's layout as `layouts` says.
pub(crate) fn collect<B: Backend, M: Module<B>>(
    model: &M,
    conversions: &[WeightTransform],
    options: &PlanOptions,
    layouts: &TorchLayouts,
    filter: &ParamFilter,
) -> Result<Collected, SaveError> {
    let mut params = model_params_with(model, layouts);
    params.retain(|p| filter.keeps(&p.torch_name));
    let mut values = visit::visit(model, ParamValues::default());

    let mut host: HashMap<&str, HostTensor<'static>> = HashMap::new();
    for param in &params {
        let data = values
            .data
            .remove(&param.burn_path)
            .ok_or_else(|| SaveError::Unsupported {
                key: param.burn_path.clone(),
                message: "the model did not visit this parameter twice the same way".into(),
            })?;
        host.insert(param.torch_name.as_str(), from_tensor_data(data, param)?);
    }
    let metas: Vec<(String, TensorMeta)> = params
        .iter()
        .map(|p| (p.torch_name.clone(), host[p.torch_name.as_str()].meta()))
        .collect();
    let plan = ConversionPlan::for_save(conversions, &metas, options)?;
    if let Some(error) = plan.report().conversion_errors.first() {
        return Err(SaveError::Mismatch {
            message: format!("the reversed conversions cannot run: {}", error.message),
            conversion: error.op.clone(),
            keys: vec![error.target.clone()],
        });
    }

    let mut tensors = Vec::with_capacity(params.len());
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
