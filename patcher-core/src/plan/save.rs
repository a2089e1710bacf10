//! Planning a save: transformers' `revert_weight_conversion`, on metadata.

use std::collections::HashSet;
use std::sync::Arc;

use crate::pattern::natural_key_cmp;
use crate::tensor::TensorMeta;
use crate::transform::{TransformError, WeightTransform};

use super::group::{PlannedTarget, PostRenames, RenameStep, TargetStatus};
use super::pending::PendingGroups;
use super::report::{ConversionError, LoadReport};
use super::{ConversionPlan, Direction};

/// The save plan (see [`ConversionPlan::for_save`]).
pub(crate) fn plan_save(
    transforms: &[WeightTransform],
    params: &[(&str, &TensorMeta)],
    base: Option<&str>,
    source_keys: &HashSet<String>,
) -> Result<ConversionPlan, TransformError> {
    // Undo in reverse order: the last transform applied on load is the first undone.
    let mut steps = Vec::new();
    let mut converters = Vec::new();
    for (i, transform) in transforms.iter().enumerate().rev() {
        let reversed = transform.reverse()?;
        if reversed.is_converter() {
            converters.push((i, reversed));
        } else {
            steps.push(RenameStep { reversed, forward: transform.clone() });
        }
    }
    let post = PostRenames {
        steps: Arc::from(steps),
        base: base.map(str::to_string),
        source_keys: Arc::new(source_keys.clone()),
    };

    let mut inputs: Vec<(&str, &TensorMeta)> = params.to_vec();
    inputs.sort_by(|a, b| natural_key_cmp(a.0, b.0));
    let mut pending = PendingGroups::default();
    for input in inputs {
        // At most one reversed converter per key; its outputs get the reversed renamings later.
        let claimed = converters.iter().find_map(|(i, t)| {
            let converter = t.as_converter()?;
            t.rename_with(input.0, base)
                .map(|(key, source)| (*i, converter, key, source))
        });
        match claimed {
            Some((i, converter, key, source)) => {
                pending.add_converted(key, i, converter, source, input)
            }
            None => pending.add_key(post.apply(input.0), input),
        }
    }

    let mut report = LoadReport::default();
    let mut groups = Vec::new();
    let mut written: HashSet<String> = HashSet::new();
    for built in pending.into_groups(Some(post.clone())) {
        let (mut group, metas) = match built {
            Ok(built) => built,
            Err(error) => {
                report.conversion_errors.push(error);
                continue;
            }
        };
        let outputs = match group.infer(metas) {
            Ok(outputs) => outputs,
            Err(error) => {
                report.conversion_errors.push(error.into());
                continue;
            }
        };
        if let Some((key, _)) = outputs.iter().find(|(k, _)| written.contains(k)) {
            report.conversion_errors.push(ConversionError {
                target: group.key.clone(),
                op: None,
                message: format!("would write `{key}`, which another group already writes"),
            });
            continue;
        }
        for (key, meta) in outputs {
            written.insert(key.clone());
            report.loaded += 1;
            group.targets.push(PlannedTarget {
                key,
                meta,
                status: TargetStatus::Ready,
                shard: None,
            });
        }
        groups.push(group);
    }

    Ok(ConversionPlan {
        direction: Direction::Save,
        groups,
        report,
        used: (0..transforms.len()).collect(),
        conversions: Vec::new(),
    })
}
