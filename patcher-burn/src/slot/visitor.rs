//! Object-safe stand-ins for Burn's `ModuleVisitor` and `ModuleMapper`.
//!
//! Burn's traits have methods generic over the tensor rank, so they cannot be called through a
//! trait object. A slot's module is behind one, so a visit crosses it in two steps: the caller's
//! visitor is wrapped in [`DynVisitor`] (rank and tensor kind passed at run time, the parameter as
//! `&dyn Any`), and on the far side [`AsModuleVisitor`] turns the calls back into a generic
//! `ModuleVisitor` for the concrete module. Ranks 1..=8 are supported; a module with a parameter
//! of another rank inside a slot fails to compile (a const assertion), never at run time.

use std::any::Any;

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

use crate::load::ParamKind;

/// The highest parameter rank a slot can carry.
pub const MAX_RANK: usize = 8;

/// Runs `$body` with `$D` bound to the run-time rank `$rank` as a const (1..=8).
macro_rules! with_rank {
    ($rank:expr, $D:ident => $body:expr) => {
        match $rank {
            1 => { const $D: usize = 1; $body }
            2 => { const $D: usize = 2; $body }
            3 => { const $D: usize = 3; $body }
            4 => { const $D: usize = 4; $body }
            5 => { const $D: usize = 5; $body }
            6 => { const $D: usize = 6; $body }
            7 => { const $D: usize = 7; $body }
            8 => { const $D: usize = 8; $body }
            rank => unreachable!("rank {rank} cannot reach a slot: AsModuleVisitor/AsModuleMapper assert 1..=8 at compile time"),
        }
    };
}
pub(crate) use with_rank;

/// Fails to compile for a rank a slot cannot dispatch.
const fn assert_rank<const D: usize>() {
    assert!(
        D >= 1 && D <= MAX_RANK,
        "patcher-burn: a module inside a Slot has a parameter of a rank outside 1..=8"
    );
}

/// Object-safe module visitor: what crosses a slot's trait object.
pub(crate) trait DynVisitor<B: Backend> {
    fn enter_module(&mut self, name: &str, container_type: &str);
    fn exit_module(&mut self, name: &str, container_type: &str);
    /// `param` is a `&Param<Tensor<B, rank, kind>>`.
    fn visit(&mut self, kind: ParamKind, rank: usize, param: &dyn Any);
}

/// Object-safe module mapper: what crosses a slot's trait object.
pub(crate) trait DynMapper<B: Backend> {
    fn enter_module(&mut self, name: &str, container_type: &str);
    fn exit_module(&mut self, name: &str, container_type: &str);
    /// `param` is a `&mut Option<Param<Tensor<B, rank, kind>>>`: take it, map it, put it back.
    fn map(&mut self, kind: ParamKind, rank: usize, param: &mut dyn Any);
}

/// A caller's generic visitor, seen as a [`DynVisitor`].
pub(crate) struct ToDynVisitor<'a, V>(pub &'a mut V);

impl<B: Backend, V: ModuleVisitor<B>> DynVisitor<B> for ToDynVisitor<'_, V> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }

    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }

    fn visit(&mut self, kind: ParamKind, rank: usize, param: &dyn Any) {
        // The downcasts cannot fail: AsModuleVisitor passed exactly this type for (kind, rank).
        with_rank!(rank, D => match kind {
            ParamKind::Float => {
                if let Some(p) = param.downcast_ref::<Param<Tensor<B, D>>>() {
                    self.0.visit_float(p)
                }
            }
            ParamKind::Int => {
                if let Some(p) = param.downcast_ref::<Param<Tensor<B, D, Int>>>() {
                    self.0.visit_int(p)
                }
            }
            ParamKind::Bool => {
                if let Some(p) = param.downcast_ref::<Param<Tensor<B, D, Bool>>>() {
                    self.0.visit_bool(p)
                }
            }
        })
    }
}

/// A [`DynVisitor`], seen as a generic `ModuleVisitor` for the concrete module in a slot.
pub(crate) struct AsModuleVisitor<'a, B: Backend>(pub &'a mut dyn DynVisitor<B>);

impl<B: Backend> ModuleVisitor<B> for AsModuleVisitor<'_, B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }

    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        const { assert_rank::<D>() };
        self.0.visit(ParamKind::Float, D, param);
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        const { assert_rank::<D>() };
        self.0.visit(ParamKind::Int, D, param);
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        const { assert_rank::<D>() };
        self.0.visit(ParamKind::Bool, D, param);
    }
}

/// A caller's generic mapper, seen as a [`DynMapper`].
pub(crate) struct ToDynMapper<'a, M>(pub &'a mut M);

/// Takes the parameter out of `slot`, maps it with `f` and puts it back.
fn map_in_place<T: 'static>(slot: &mut dyn Any, f: impl FnOnce(T) -> T) {
    if let Some(opt) = slot.downcast_mut::<Option<T>>() {
        if let Some(value) = opt.take() {
            *opt = Some(f(value));
        }
    }
}

impl<B: Backend, M: ModuleMapper<B>> DynMapper<B> for ToDynMapper<'_, M> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }

    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }

    fn map(&mut self, kind: ParamKind, rank: usize, param: &mut dyn Any) {
        let mapper = &mut *self.0;
        with_rank!(rank, D => match kind {
            ParamKind::Float => {
                map_in_place::<Param<Tensor<B, D>>>(param, |p| mapper.map_float(p))
            }
            ParamKind::Int => {
                map_in_place::<Param<Tensor<B, D, Int>>>(param, |p| mapper.map_int(p))
            }
            ParamKind::Bool => {
                map_in_place::<Param<Tensor<B, D, Bool>>>(param, |p| mapper.map_bool(p))
            }
        })
    }
}

/// A [`DynMapper`], seen as a generic `ModuleMapper` for the concrete module in a slot.
pub(crate) struct AsModuleMapper<'a, B: Backend>(pub &'a mut dyn DynMapper<B>);

impl<B: Backend> AsModuleMapper<'_, B> {
    fn cross<T: 'static>(&mut self, kind: ParamKind, rank: usize, param: T) -> T {
        let mut slot = Some(param);
        self.0.map(kind, rank, &mut slot);
        slot.expect("a DynMapper puts the mapped parameter back")
    }
}

impl<B: Backend> ModuleMapper<B> for AsModuleMapper<'_, B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }

    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        const { assert_rank::<D>() };
        self.cross(ParamKind::Float, D, param)
    }

    fn map_int<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D, Int>>,
    ) -> Param<Tensor<B, D, Int>> {
        const { assert_rank::<D>() };
        self.cross(ParamKind::Int, D, param)
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D, Bool>>,
    ) -> Param<Tensor<B, D, Bool>> {
        const { assert_rank::<D>() };
        self.cross(ParamKind::Bool, D, param)
    }
}
