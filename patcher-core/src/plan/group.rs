//! One unit of work of a plan: the checkpoint keys that make some parameters, and how.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::shard::ShardSlice;
use crate::ops::{ConversionOp, Groups, OpContext, OpError};
use crate::tensor::{DType, HostTensor, TensorMeta};
use crate::transform::WeightTransform;

/// Whether a planned target is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetStatus {
    /// Written: into the model parameter (load) or into the checkpoint (save).
    Ready,
    /// The model has the parameter with another shape: not loaded (reported).
    Mismatched {
        /// The model's shape.
        model_shape: Vec<usize>,
    },
    /// The model has no such parameter: not loaded (reported as unexpected).
    NotInModel,
    /// The model's parameter holds another kind of value (a float tensor for an int buffer): not
    /// loaded (reported).
    DTypeMismatch {
        /// The model's dtype.
        model_dtype: DType,
    },
}

/// One output of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTarget {
    /// Full name (PyTorch naming on load, checkpoint naming on save).
    pub key: String,
    /// Dtype and shape the ops produce from the checkpoint dtypes.
    pub meta: TensorMeta,
    /// Whether it is written.
    pub status: TargetStatus,
    /// The part of it this peer keeps, for a tensor-parallel load of a split parameter
    /// ([`PlanOptions::tensor_parallel`](super::PlanOptions::tensor_parallel)); `meta` is the
    /// full tensor's.
    pub shard: Option<ShardSlice>,
}

/// The checkpoint keys that make one or more parameters, and the ops that make them.
///
/// Read the tensors of [`sources`](Self::sources) (same patterns, same order), cast them if
/// needed, and pass them to [`execute`](Self::execute).
#[derive(Debug, Clone)]
pub struct PlannedGroup {
    /// Index of the converter in the transform list (in [`PlanOptions::reversible`] when
    /// [`backwards`](Self::backwards)), or `None` for a key that is only renamed (or kept as is).
    ///
    /// [`PlanOptions::reversible`]: super::PlanOptions::reversible
    pub transform: Option<usize>,
    /// Whether the converter runs backwards: the checkpoint holds its targets and the model
    /// wants its sources. [`ops`](Self::ops) are then the reversed ops.
    pub backwards: bool,
    /// Ops to run in order (empty for a pass-through key).
    pub ops: Vec<Arc<dyn ConversionOp>>,
    /// The converter's source patterns (for a pass-through key: the checkpoint key).
    pub source_patterns: Vec<String>,
    /// The converter's target patterns (for a pass-through key: the target key).
    pub target_patterns: Vec<String>,
    /// Full name of the first target: the group's key, given to ops as `target_key`.
    pub key: String,
    /// Input keys per source pattern, in declared pattern order, keys in natural order.
    pub sources: Groups<String>,
    /// Outputs, with shapes and whether each is written.
    pub targets: Vec<PlannedTarget>,
    /// Save direction: reversed renamings applied to the converter's output keys.
    pub(crate) post_renamings: Option<PostRenames>,
}

/// What [`PlannedGroup::infer_pinned`] found per op.
pub(crate) type PinnedOps = Vec<Option<Arc<dyn ConversionOp>>>;

/// Reversed renamings run on a reversed converter's outputs, with the base model prefix in use.
#[derive(Debug, Clone)]
pub(crate) struct PostRenames {
    pub(crate) steps: Arc<[RenameStep]>,
    pub(crate) base: Option<String>,
    /// Keys of the checkpoint the model was loaded from, if known (see [`PostRenames::apply`]).
    pub(crate) source_keys: Arc<HashSet<String>>,
}

/// A reversed renaming for saving, with its forward form for the "already in source form" guard.
#[derive(Debug, Clone)]
pub(crate) struct RenameStep {
    pub(crate) reversed: WeightTransform,
    pub(crate) forward: WeightTransform,
}

impl PostRenames {
    /// Applies the reversed renamings in order. A step is skipped for a key its forward renaming
    /// would match: that key is already in checkpoint form (transformers #46650 renamed such keys
    /// twice). The guard is wrong for a renaming whose source pattern also matches its own
    /// output (`\.experts\.(\d+)\.` -> `.experts.experts.\1.`, or an unescaped `attention.self.`
    /// that matches `attention.self_attn.`); when the loaded checkpoint's keys are known, the
    /// unguarded result wins if it is one of them and the guarded one is not.
    ///
    /// The load gave a key the base model prefix, or took it away, when that made it a model
    /// key; the save undoes that when the loaded checkpoint's keys are known: a result that is
    /// not one of them but is with the prefix removed (or added) takes that form.
    pub(crate) fn apply(&self, key: &str) -> String {
        let guarded = self.run(key, true);
        if self.source_keys.is_empty() || self.source_keys.contains(&guarded) {
            return guarded;
        }
        let unguarded = self.run(key, false);
        if self.source_keys.contains(&unguarded) {
            return unguarded;
        }
        let found = self
            .source_form(&guarded)
            .or_else(|| self.source_form(&unguarded));
        found.unwrap_or(guarded)
    }

    /// `key` with the base model prefix removed or added, if that is a loaded checkpoint key.
    fn source_form(&self, key: &str) -> Option<String> {
        let base = self.base.as_deref()?;
        let stripped = key
            .strip_prefix(base)
            .and_then(|k| k.strip_prefix('.'))
            .map(str::to_string);
        let added = format!("{base}.{key}");
        stripped
            .into_iter()
            .chain([added])
            .find(|k| self.source_keys.contains(k))
    }

    fn run(&self, key: &str, guard: bool) -> String {
        let base = self.base.as_deref();
        let mut key = key.to_string();
        for step in self.steps.iter() {
            // A group rename chains its pairs (`norm0 -> norm1 -> norm2`) by design: its own
            // guard decided on load, so it is always undone.
            let grouped = step.forward.as_group_rename().is_some();
            if guard && !grouped && step.forward.matches_with(&key, base) {
                continue;
            }
            if let Some((renamed, _)) = step.reversed.rename_with(&key, base) {
                key = renamed;
            }
        }
        key
    }
}

impl PlannedGroup {
    /// The target named `key`.
    pub fn target(&self, key: &str) -> Option<&PlannedTarget> {
        self.targets.iter().find(|t| t.key == key)
    }

    /// Targets that are written.
    pub fn ready_targets(&self) -> impl Iterator<Item = &PlannedTarget> {
        self.targets
            .iter()
            .filter(|t| t.status == TargetStatus::Ready)
    }

    fn context(&self) -> OpContext<'_> {
        OpContext {
            source_patterns: &self.source_patterns,
            target_patterns: &self.target_patterns,
            target_key: &self.key,
        }
    }

    /// Runs the ops on the source tensors and returns the targets to write, as
    /// `(full key, tensor)` in target order. Targets that are not written (mismatched, not in the
    /// model) are left out. Errors if an op fails, or if the ops do not give a written target the
    /// shape the plan computed (an op whose `convert` disagrees with its `infer`).
    pub fn execute<'a>(
        &self,
        inputs: Groups<HostTensor<'a>>,
    ) -> Result<Vec<(String, HostTensor<'a>)>, OpError> {
        let outputs = self.run(inputs, |op, data, ctx| op.convert(data, ctx))?;
        let mut by_key: HashMap<String, HostTensor<'a>> = outputs.into_iter().collect();
        let mut written = Vec::new();
        for target in self.ready_targets() {
            let tensor = by_key.remove(&target.key).ok_or_else(|| {
                self.error(format!(
                    "the ops did not produce planned target `{}`",
                    target.key
                ))
            })?;
            if tensor.shape != target.meta.shape {
                return Err(self.error(format!(
                    "the ops produced shape {:?} for `{}` but the plan computed {:?}; the op's \
                     `convert` and `infer` disagree",
                    tensor.shape, target.key, target.meta.shape
                )));
            }
            written.push((target.key.clone(), tensor));
        }
        Ok(written)
    }

    /// Shapes of the outputs, from the source metas (what the plan uses before reading bytes).
    pub(crate) fn infer(
        &self,
        inputs: Groups<TensorMeta>,
    ) -> Result<Vec<(String, TensorMeta)>, OpError> {
        self.run(inputs, |op, data, ctx| op.infer(data, ctx))
    }

    /// [`infer`](Self::infer), and each op [`pinned`](ConversionOp::pinned) on the inputs it got
    /// (`None` where pinning changes nothing), in op order.
    pub(crate) fn infer_pinned(
        &self,
        inputs: Groups<TensorMeta>,
    ) -> Result<(Vec<(String, TensorMeta)>, PinnedOps), OpError> {
        let pins = std::cell::RefCell::new(Vec::with_capacity(self.ops.len()));
        let outputs = self.run(inputs, |op, data, ctx| {
            pins.borrow_mut().push(op.pinned(&data, ctx));
            op.infer(data, ctx)
        })?;
        Ok((outputs, pins.into_inner()))
    }

    /// Runs `step` for each op (or passes the single input through) and names the outputs.
    fn run<T>(
        &self,
        inputs: Groups<T>,
        step: impl Fn(&dyn ConversionOp, Groups<T>, &OpContext<'_>) -> Result<Groups<T>, OpError>,
    ) -> Result<Vec<(String, T)>, OpError> {
        if self.ops.is_empty() {
            let mut values: Vec<T> = inputs.into_iter().flat_map(|(_, v)| v).collect();
            let count = values.len();
            return match values.pop() {
                Some(value) if count == 1 => Ok(vec![(self.key.clone(), value)]),
                _ => Err(self.error(format!(
                    "a renamed key takes exactly one tensor, got {count}"
                ))),
            };
        }
        let ctx = self.context();
        let mut data = inputs;
        for op in &self.ops {
            data = step(op.as_ref(), data, &ctx)?;
        }
        self.name_outputs(data)
    }

    /// Full names of the outputs, as transformers' `WeightConverter.convert` gives them: the first
    /// output pattern found in the group key splits it into prefix and suffix, which every
    /// output gets. If none is found, the ops named the outputs themselves.
    fn name_outputs<T>(&self, outputs: Groups<T>) -> Result<Vec<(String, T)>, OpError> {
        let full = self.key.replace(".*.", ".0.");
        let affix = outputs.patterns().filter(|p| !p.is_empty()).find_map(|p| {
            full.find(p)
                .map(|at| (full[..at].to_string(), full[at + p.len()..].to_string()))
        });
        let mut named = Vec::with_capacity(outputs.len());
        for (pattern, mut values) in outputs {
            let count = values.len();
            let value = match values.pop() {
                Some(value) if count == 1 => value,
                _ => {
                    return Err(self.error(format!(
                        "the last op returned {count} tensors for `{pattern}`; it must return \
                         one tensor per target"
                    )))
                }
            };
            let key = match &affix {
                Some((prefix, suffix)) => format!("{prefix}{pattern}{suffix}"),
                None => pattern,
            };
            let key = match &self.post_renamings {
                Some(post) => post.apply(&key),
                None => key,
            };
            named.push((key, value));
        }
        Ok(named)
    }

    fn error(&self, message: String) -> OpError {
        let op = match self.ops.last() {
            Some(_) => self
                .ops
                .iter()
                .map(|op| op.name())
                .collect::<Vec<_>>()
                .join(", "),
            None => "rename".to_string(),
        };
        OpError { op, target: self.key.clone(), message }
    }
}
