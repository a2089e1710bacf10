//! The one path-tracking visitor: Burn's module path, the owner of each parameter and the slot
//! markers, for every visitor and mapper of the crate.
//!
//! Burn tells visitors where they are only through `enter_module`/`exit_module` pairs. A visitor
//! here implements [`VisitParams`] or [`MapParams`] (what it does per parameter, per slot) and
//! runs wrapped in [`Tracked`], which keeps the path and implements Burn's `ModuleVisitor` or
//! `ModuleMapper`; through `ToDynVisitor`/`ToDynMapper` it also crosses a slot's trait object.
//!
//! Slots announce themselves with an empty `enter_module`/`exit_module` pair whose container type
//! is a marker ([`slot_marker`]). [`Tracked`] passes it to [`VisitParams::slot`] and otherwise
//! treats it like any container: pushed, popped, no parameter in between, so keys never see it.

mod leaf;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

pub(crate) use leaf::Leaf;

/// Prefix of the container type a slot's marker uses:
/// `Slot:<interface>:<original>:<state>:<build position>`.
const SLOT_CONTAINER: &str = "Slot:";

/// Prefix of the container type `#[derive(Module)]` gives an enum's variant: `Enum:<name>`.
const ENUM_CONTAINER: &str = "Enum:";

/// The container type of a slot's marker.
pub(crate) fn slot_marker(
    interface: &str,
    original: &str,
    replaced: bool,
    position: &str,
) -> String {
    let state = if replaced { "replaced" } else { "original" };
    format!("{SLOT_CONTAINER}{interface}:{original}:{state}:{position}")
}

/// A slot's marker, parsed back; `class` is the name the marker was entered with.
pub(crate) struct SlotMark<'a> {
    pub(crate) class: &'a str,
    pub(crate) interface: &'a str,
    pub(crate) original: &'a str,
    pub(crate) replaced: bool,
    /// Where the model's constructor built the slot (empty for `Slot::new`).
    pub(crate) position: &'a str,
}

impl<'a> SlotMark<'a> {
    fn parse(name: &'a str, container_type: &'a str) -> Option<Self> {
        let mark = container_type.strip_prefix(SLOT_CONTAINER)?;
        let mut parts = mark.splitn(4, ':');
        Some(Self {
            class: name,
            interface: parts.next().unwrap_or_default(),
            original: parts.next().unwrap_or_default(),
            replaced: parts.next() == Some("replaced"),
            position: parts.next().unwrap_or_default(),
        })
    }
}

/// Where a visit is: the names entered so far and the container type each was entered with.
#[derive(Default)]
pub(crate) struct ModulePath {
    entries: Vec<(String, String)>,
}

impl ModulePath {
    /// The dotted key, Burn's parameter path: `layers.0.q_proj.weight`.
    ///
    /// An enum module's variant is no part of it (`mlp.Dense.gate_proj.weight` is
    /// `mlp.gate_proj.weight`): a PyTorch module attribute holds one class or another under one
    /// name, which is what a Rust enum of modules stands for (burn-store skips variants for
    /// PyTorch checkpoints too).
    pub(crate) fn key(&self) -> String {
        self.names().join(".")
    }

    /// The key with its last name (a parameter's field name) replaced by `leaf`.
    pub(crate) fn renamed(&self, leaf: &str) -> String {
        let mut names = self.names();
        if let Some(last) = names.last_mut() {
            *last = leaf;
        }
        names.join(".")
    }

    /// The names of the key: every name entered, but enum variants.
    fn names(&self) -> Vec<&str> {
        let named = self
            .entries
            .iter()
            .filter(|(_, container)| !container.starts_with(ENUM_CONTAINER));
        named.map(|(name, _)| name.as_str()).collect()
    }

    /// The last name: a parameter's field name in its module.
    pub(crate) fn leaf(&self) -> &str {
        self.entries.last().map_or("", |(name, _)| name)
    }

    /// The struct that owns the parameter, as `#[derive(Module)]` names it (`Linear` for
    /// `Struct:Linear`); `None` outside a struct (a `Vec`, the root).
    pub(crate) fn owner(&self) -> Option<&str> {
        let (_, container) = self.entries.last()?;
        container.strip_prefix("Struct:")
    }

    fn enter(&mut self, name: &str, container_type: &str) {
        let entry = (name.to_string(), container_type.to_string());
        self.entries.push(entry);
    }

    fn exit(&mut self) {
        self.entries.pop();
    }
}

/// What a visitor does per parameter and per slot; run it with [`Tracked`].
pub(crate) trait VisitParams<B: Backend> {
    /// A parameter at `at` (`at.key()` is its path).
    fn param<P: Leaf<B>>(&mut self, at: &ModulePath, param: &P) {
        let _ = (at, param);
    }

    /// A slot at `at`, before its module's parameters.
    fn slot(&mut self, at: &ModulePath, slot: &SlotMark<'_>) {
        let _ = (at, slot);
    }
}

/// What a mapper does per parameter; run it with [`Tracked`].
pub(crate) trait MapParams<B: Backend> {
    /// A parameter at `at`, mapped.
    fn map<P: Leaf<B>>(&mut self, at: &ModulePath, param: P) -> P;

    /// A float parameter, for mappers that do more with floats (by default, [`Self::map`]).
    fn map_float<const D: usize>(
        &mut self,
        at: &ModulePath,
        param: Param<Tensor<B, D>>,
    ) -> Param<Tensor<B, D>> {
        self.map(at, param)
    }
}

/// A [`VisitParams`] or [`MapParams`] with the path tracked: Burn's visitor or mapper.
pub(crate) struct Tracked<V> {
    path: ModulePath,
    /// The wrapped visitor, with what it gathered.
    pub(crate) inner: V,
}

impl<V> Tracked<V> {
    pub(crate) fn new(inner: V) -> Self {
        Self { path: ModulePath::default(), inner }
    }
}

/// Visits `module` with `visitor`, tracking the path, and gives the visitor back.
pub(crate) fn visit<B: Backend, M: Module<B>, V: VisitParams<B>>(module: &M, visitor: V) -> V {
    let mut tracked = Tracked::new(visitor);
    module.visit(&mut tracked);
    tracked.inner
}

/// Maps `module` with `mapper`, tracking the path.
pub(crate) fn map<B: Backend, M: Module<B>, V: MapParams<B>>(module: M, mapper: V) -> M {
    module.map(&mut Tracked::new(mapper))
}

impl<B: Backend, V: VisitParams<B>> ModuleVisitor<B> for Tracked<V> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if let Some(mark) = SlotMark::parse(name, container_type) {
            self.inner.slot(&self.path, &mark);
        }
        // Markers are entered too: their exit pops them.
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.inner.param(&self.path, param);
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        self.inner.param(&self.path, param);
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        self.inner.param(&self.path, param);
    }
}

impl<B: Backend, V: MapParams<B>> ModuleMapper<B> for Tracked<V> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        self.inner.map_float(&self.path, param)
    }

    fn map_int<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D, Int>>,
    ) -> Param<Tensor<B, D, Int>> {
        self.inner.map(&self.path, param)
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D, Bool>>,
    ) -> Param<Tensor<B, D, Bool>> {
        self.inner.map(&self.path, param)
    }
}
