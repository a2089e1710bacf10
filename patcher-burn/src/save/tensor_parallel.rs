//! Saving a tensor-parallel model from its peers: every peer's slices put back in place, then
//! the one save of the whole model, in the layout that was loaded.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use patcher_core::plan::TensorParallel;
use patcher_core::HostTensor;

use super::collect::torch_params;
use super::filter::ParamFilter;
use super::{save_params, SaveError, SaveOptions, SavedLayout};
use crate::load::Loaded;

/// Saves the model that `peers` (every peer of one tensor-parallel load, in any order, each
/// loaded with [`LoadOptions::tensor_parallel`](crate::LoadOptions::tensor_parallel)) hold
/// together: each split parameter is reassembled from the peers' slices, the replicated ones
/// are taken once (all peers must hold the same values), then saved as
/// [`save_pretrained_with`](crate::save_pretrained_with) saves a model loaded on one device,
/// verified and committed once. Loaded unchanged, the peers save the original checkpoint back
/// byte for byte.
///
/// Errors ([`SaveError::Unsupported`], nothing written) when a peer was not loaded as a peer,
/// the peers are not all of one load (ranks missing or twice, other parameters), or a
/// replicated parameter differs between them.
pub fn save_tensor_parallel<B: Backend, M: Module<B>>(
    peers: &[Loaded<M>],
    path: impl AsRef<Path>,
    options: &SaveOptions,
) -> Result<Vec<PathBuf>, SaveError> {
    let plans = peer_plans(peers)?;
    let first = &peers[0];
    let filter = ParamFilter::new(options)?;
    let layouts = options.torch_layouts_choice().unwrap_or(&first.layouts);
    let parts = peers
        .iter()
        .map(|peer| torch_params(&peer.model, layouts, &filter))
        .collect::<Result<Vec<_>, _>>()?;
    let mut whole = Vec::with_capacity(parts[0].len());
    for (i, (name, _)) in parts[0].iter().enumerate() {
        let held = parts
            .iter()
            .map(|params| match params.get(i) {
                Some((key, tensor)) if key == name => Ok(tensor),
                _ => Err(unsupported(
                    name,
                    "the peers hold other parameters: save peers of one load",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        whole.push((name.clone(), reassemble(name, &plans, &held)?));
    }
    let layout = SavedLayout {
        conversions: &first.conversions,
        base_model_prefix: first.base_model_prefix.as_deref(),
        source_layout: &first.source_layout,
    };
    save_params(whole, path.as_ref(), &layout, options)
}

/// Every peer's plan, checked to be the ranks `0..N` of `N` peers once each.
fn peer_plans<M>(peers: &[Loaded<M>]) -> Result<Vec<&TensorParallel>, SaveError> {
    let world = peers.len();
    let mut plans = Vec::with_capacity(world);
    let mut seen = vec![false; world];
    for (i, peer) in peers.iter().enumerate() {
        let Some(plan) = &peer.tensor_parallel else {
            let message =
                "this model was not loaded as a tensor-parallel peer; save it with save_pretrained";
            return Err(unsupported(&format!("peers[{i}]"), message));
        };
        if plan.world() != world || std::mem::replace(&mut seen[plan.rank()], true) {
            let message = format!(
                "peer {} of {} given among {world} peers: pass every peer of one load, once each",
                plan.rank(),
                plan.world()
            );
            return Err(unsupported(&format!("peers[{i}]"), &message));
        }
        plans.push(plan);
    }
    if plans.is_empty() {
        return Err(unsupported("peers", "no peer given"));
    }
    Ok(plans)
}

/// Parameter `name` whole, from each peer's part (`held`, in `plans`' order).
fn reassemble(
    name: &str,
    plans: &[&TensorParallel],
    held: &[&HostTensor<'static>],
) -> Result<HostTensor<'static>, SaveError> {
    let first = held[0];
    let Some(shape) = plans[0].full_shape(name, &first.shape) else {
        if held.iter().any(|tensor| tensor.bytes != first.bytes) {
            return Err(unsupported(
                name,
                "the peers hold different values of this replicated parameter",
            ));
        }
        return Ok(first.clone());
    };
    let len = shape.iter().product::<usize>() * first.dtype.size_in_bytes();
    let mut whole = HostTensor::new(first.dtype, shape.clone(), vec![0u8; len]);
    for (plan, part) in plans.iter().zip(held) {
        let slice = plan
            .slice_of(name, &shape)
            .map_err(|e| unsupported(name, &e.to_string()))?;
        let slice =
            slice.ok_or_else(|| unsupported(name, "split on one peer, whole on another"))?;
        slice
            .put(part, &mut whole)
            .map_err(|e| unsupported(name, &e))?;
    }
    Ok(whole)
}

fn unsupported(key: &str, message: &str) -> SaveError {
    SaveError::Unsupported { key: key.to_string(), message: message.to_string() }
}
