//! [`BuildContext`]: what a model's constructor threads to every [`Slot::build`], deciding which
//! class each slot holds.
//!
//! A slot is found by its original class, or by its Burn path (`model.layers.0.self_attn`).
//! Constructors do not know paths, so a patcher with path keys builds the model twice: a plain
//! build first, whose slots are listed with their paths and their build positions (the n-th slot
//! built, or the m-th slot built inside it), then the real build, where each slot finds its path
//! by its position. Burn's layers make lazy parameters, so the first build allocates no weights.

use std::cell::RefCell;
use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::backend::Backend;
use patcher_core::PatcherErrors;

use super::listing::list_slots_with_positions;
use super::mapping::ClassMapping;
use super::options::BuildOptions;
use crate::{Patcher, TensorParallelPeer};

/// A class-mapping entry that does not fit the model being built, or a patcher with errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A replacement implements another interface than the slot it was mapped to.
    #[error(
        "the patcher maps `{original}`{} to `{replacement}`, which fills slots of interface \
         `{replacement_interface}`, but that slot has interface `{slot_interface}`; map it to a \
         class with #[patchable(implements({slot_interface}))]",
        at_path(.path)
    )]
    WrongInterface {
        /// The class the slot was built for.
        original: &'static str,
        /// The slot's path, when the build knew it.
        path: Option<String>,
        /// The replacement class.
        replacement: &'static str,
        /// The slot's interface.
        slot_interface: &'static str,
        /// The interface the replacement was registered for.
        replacement_interface: &'static str,
    },
    /// The patcher's builder calls kept errors (bad regexes, converters that cannot run), or
    /// some of its keys select no slot of the model. All are listed.
    #[error("{0}")]
    Patcher(PatcherErrors),
    /// A device map rule names no slot of the model (its parameters would silently stay on
    /// the model's device).
    #[error(
        "the device map's rule `{pattern}` names no slot of the model; rules match the end of a \
         slot's path at whole names (`layers.1` or `layers.*` for `{example}`)"
    )]
    DeviceMapUnmatched {
        /// The rule's pattern.
        pattern: String,
        /// A slot path of the model, for the message.
        example: String,
    },
}

fn at_path(path: &Option<String>) -> String {
    path.as_ref()
        .map(|p| format!(" (at `{p}`)"))
        .unwrap_or_default()
}

/// What a model's constructor gets: the device, and the patcher whose class mapping decides
/// which class each [`Slot`](super::Slot) holds.
///
/// Make one with [`BuildContext::build`] (applies and checks a [`Patcher`]) or
/// [`BuildContext::plain`] (no patching).
pub struct BuildContext<'p, B: Backend> {
    classes: Option<&'p ClassMapping<B>>,
    device: B::Device,
    /// Slot paths by build position, from a first, plain build (only for path keys).
    paths: HashMap<String, String>,
    /// The tensor-parallel peer and the device map.
    options: BuildOptions<B>,
    /// The device-map rule placing the slot being built: one per nesting level, `None` for
    /// the model's device.
    placed: RefCell<Vec<Option<usize>>>,
    /// Original classes of the slots built so far, in first-seen order.
    seen: RefCell<Vec<&'static str>>,
    errors: RefCell<Vec<BuildError>>,
    /// The build position being built: one counter per nesting level, the last one counting
    /// the children of the slot being built.
    position: RefCell<Vec<u32>>,
}

impl<'p, B: Backend> BuildContext<'p, B> {
    /// A context that builds every slot with its original class.
    pub fn plain(device: &B::Device) -> Self {
        Self::new(None, device, HashMap::new(), BuildOptions::default())
    }

    fn new(
        classes: Option<&'p ClassMapping<B>>,
        device: &B::Device,
        paths: HashMap<String, String>,
        options: BuildOptions<B>,
    ) -> Self {
        Self {
            classes,
            device: device.clone(),
            paths,
            options,
            placed: RefCell::new(vec![None]),
            seen: RefCell::new(Vec::new()),
            errors: RefCell::new(Vec::new()),
            position: RefCell::new(vec![0]),
        }
    }

    /// Builds a model with `patcher`'s substitutions: runs `constructor` (the model's
    /// constructor, building its slots with [`Slot::build`](super::Slot::build)), then checks
    /// the mapping against the model.
    ///
    /// With path keys the constructor runs twice (see the module documentation), so it is an
    /// `Fn`.
    ///
    /// Errors, all collected: the patcher's own errors (bad regexes, converters that cannot
    /// run), a replacement mapped to a slot of another interface, and keys that select no slot
    /// (each with a did-you-mean among the model's slot classes or paths).
    ///
    /// A constructor kept in a variable needs its argument's type spelled out, lifetime
    /// included (`&BuildContext<'_, B>`), since Rust does not infer a closure's
    /// higher-ranked argument from a later call:
    ///
    /// ```
    /// use burn::backend::NdArray;
    /// use burn::nn::LinearConfig;
    /// use burn::prelude::*;
    /// use patcher_burn::layers::{InitSlot, LinearSlot};
    /// use patcher_burn::{BuildContext, Patcher};
    ///
    /// type B = NdArray<f32>;
    /// let config = LinearConfig::new(4, 2);
    /// let constructor = |ctx: &BuildContext<'_, B>| -> LinearSlot<B> { config.init_slot(ctx) };
    /// let device = Default::default();
    /// let linear = BuildContext::build(&Patcher::<B>::new(), &device, constructor)?;
    /// assert_eq!(linear.forward(Tensor::<B, 2>::ones([3, 4], &device)).dims(), [3, 2]);
    /// # Ok::<(), patcher_burn::BuildError>(())
    /// ```
    pub fn build<M: Module<B>>(
        patcher: &'p Patcher<B>,
        device: &B::Device,
        constructor: impl Fn(&Self) -> M,
    ) -> Result<M, BuildError> {
        Self::build_with(patcher, device, &BuildOptions::default(), constructor)
    }

    /// [`build`](Self::build) with `options`: as a tensor-parallel peer (the classes whose
    /// forward ends in a rowwise projection sum their partial results with it, see
    /// [`tensor_parallel`](Self::tensor_parallel); build from the peer's config and load with
    /// its plan), and with a device map (each slot it names built on its device, see
    /// [`device`](Self::device)). [`Pretrained`](crate::Pretrained) passes its own.
    pub fn build_with<M: Module<B>>(
        patcher: &'p Patcher<B>,
        device: &B::Device,
        options: &BuildOptions<B>,
        constructor: impl Fn(&Self) -> M,
    ) -> Result<M, BuildError> {
        let own = patcher.errors();
        if !own.is_empty() {
            return Err(BuildError::Patcher(PatcherErrors(own)));
        }
        let classes = patcher.class_mapping_entries();
        // A device map names slots by path: the real build needs them as path keys do.
        let (paths, slot_paths) = if classes.has_paths() || options.device_map.is_some() {
            let probe = constructor(&Self::plain(device));
            let slots = list_slots_with_positions(&probe);
            let paths = slots.iter().map(|(s, _)| s.path.clone()).collect();
            let by_position = slots
                .into_iter()
                .map(|(slot, position)| (position, slot.path))
                .collect();
            (by_position, paths)
        } else {
            (HashMap::new(), Vec::new())
        };
        if let Some(map) = &options.device_map {
            if let Some(pattern) = map.unmatched(&slot_paths) {
                let example = slot_paths.first().cloned().unwrap_or_default();
                return Err(BuildError::DeviceMapUnmatched { pattern, example });
            }
        }
        let ctx = Self::new(Some(classes), device, paths, options.clone());
        let model = constructor(&ctx);
        let errors = ctx.errors.into_inner();
        if let Some(error) = errors.into_iter().next() {
            return Err(error);
        }
        let unmatched = classes.unmatched(&ctx.seen.borrow(), &slot_paths);
        if !unmatched.is_empty() {
            return Err(BuildError::Patcher(PatcherErrors(unmatched)));
        }
        Ok(model)
    }

    /// The device to build on: the model's, or within a slot the device map names (and
    /// everything inside it), that slot's.
    pub fn device(&self) -> &B::Device {
        let rule = self.placed.borrow().last().copied().flatten();
        match (rule, &self.options.device_map) {
            (Some(rule), Some(map)) => map.rule_device(rule),
            _ => &self.device,
        }
    }

    /// The tensor-parallel peer the model is built as: a class whose forward ends in a rowwise
    /// projection keeps it and sums its partial result with
    /// [`TensorParallelPeer::all_reduce`]. `None` on one device.
    pub fn tensor_parallel(&self) -> Option<&TensorParallelPeer<B>> {
        self.options.peer()
    }

    /// The original classes of the slots built so far, in first-seen order.
    pub fn seen_classes(&self) -> Vec<&'static str> {
        self.seen.borrow().clone()
    }

    /// The class mapping, if the context patches.
    pub(super) fn classes(&self) -> Option<&'p ClassMapping<B>> {
        self.classes
    }

    /// Starts building a slot of class `class`: returns its build position (`3`, or `3.0` for
    /// the first slot built inside the fourth) and its path when known.
    pub(super) fn enter_slot(&self, class: &'static str) -> (String, Option<&str>) {
        {
            let mut seen = self.seen.borrow_mut();
            if !seen.contains(&class) {
                seen.push(class);
            }
        }
        let mut position = self.position.borrow_mut();
        let last = position.len() - 1;
        let own = position[last];
        position[last] += 1;
        let mut at: Vec<String> = position[..last]
            .iter()
            .map(|n| (n - 1).to_string())
            .collect();
        at.push(own.to_string());
        position.push(0);
        let at = at.join(".");
        let path = self.paths.get(&at).map(String::as_str);
        let mut placed = self.placed.borrow_mut();
        let inherited = placed.last().copied().flatten();
        let own = path.and_then(|p| self.options.device_map.as_ref()?.rule_of(p));
        placed.push(own.or(inherited));
        (at, path)
    }

    /// Ends the slot started by the last [`Self::enter_slot`].
    pub(super) fn exit_slot(&self) {
        self.position.borrow_mut().pop();
        self.placed.borrow_mut().pop();
    }

    /// Records a mapping error (reported by [`Self::build`]).
    pub(super) fn fail(&self, error: BuildError) {
        let mut errors = self.errors.borrow_mut();
        if !errors.contains(&error) {
            errors.push(error);
        }
    }
}
