//! A slot's record: its class name and its parameters by path relative to the slot.
//!
//! The class behind a slot is only known at run time, so its record cannot be the class's typed
//! record. It keeps Burn's own parameter records (ids, save/load mappers and precision settings
//! behave as for any Burn module) under their relative paths, which is also what makes it
//! checkable: a record of another class, or with other parameters, is refused before anything is
//! loaded.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;

use burn::module::Param;
use burn::record::{PrecisionSettings, Record};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::visitor::with_rank;
use crate::load::ParamKind;
use crate::visit::{Leaf, MapParams, ModulePath, SlotMark, VisitParams};

/// The record of a [`Slot`](crate::Slot): the class it held and its parameters (Burn's
/// parameter records) by path relative to the slot, e.g. `qkv_proj.weight`.
pub struct SlotRecord<B: Backend> {
    pub(crate) class: String,
    pub(crate) params: Vec<ParamRecord<B>>,
    /// Slots inside the module (a slot class may hold slots), by relative path.
    pub(crate) nested: Vec<NestedSlot>,
}

/// A slot inside a slot's module, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NestedSlot {
    pub(crate) path: String,
    pub(crate) interface: String,
    pub(crate) class: String,
}

/// One parameter of a slot record.
pub(crate) struct ParamRecord<B: Backend> {
    pub(crate) path: String,
    pub(crate) kind: ParamKind,
    pub(crate) shape: Vec<usize>,
    /// A `Param<Tensor<B, shape.len(), kind>>`.
    pub(crate) param: Box<dyn Any + Send>,
    _backend: std::marker::PhantomData<fn() -> B>,
}

impl<B: Backend> SlotRecord<B> {
    /// The class name of the module the record was taken from.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The parameter paths, relative to the slot, in visiting order.
    pub fn param_paths(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.path.as_str())
    }
}

impl<B: Backend> fmt::Debug for SlotRecord<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: BTreeMap<&str, (&ParamKind, &Vec<usize>)> = self
            .params
            .iter()
            .map(|p| (p.path.as_str(), (&p.kind, &p.shape)))
            .collect();
        f.debug_struct("SlotRecord")
            .field("class", &self.class)
            .field("params", &params)
            .field("nested", &self.nested)
            .finish()
    }
}

type FloatItem<B, S> = <Param<Tensor<B, 1>> as Record<B>>::Item<S>;
type IntItem<B, S> = <Param<Tensor<B, 1, Int>> as Record<B>>::Item<S>;
type BoolItem<B, S> = <Param<Tensor<B, 1, Bool>> as Record<B>>::Item<S>;

/// The serialized form of a [`SlotRecord`] (Burn's `Record::Item`): the class name and Burn's
/// parameter items with their relative paths and ranks.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SlotRecordItem<B: Backend, S: PrecisionSettings> {
    class: String,
    params: Vec<ParamItem<B, S>>,
    slots: Vec<NestedSlot>,
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct ParamItem<B: Backend, S: PrecisionSettings> {
    path: String,
    rank: usize,
    // Burn's item type does not depend on the rank, so one type serves every rank.
    value: ParamValue<B, S>,
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
enum ParamValue<B: Backend, S: PrecisionSettings> {
    Float(FloatItem<B, S>),
    Int(IntItem<B, S>),
    Bool(BoolItem<B, S>),
}

impl<B: Backend, S: PrecisionSettings> Clone for SlotRecordItem<B, S> {
    fn clone(&self) -> Self {
        Self {
            class: self.class.clone(),
            params: self.params.clone(),
            slots: self.slots.clone(),
        }
    }
}

impl<B: Backend, S: PrecisionSettings> Clone for ParamItem<B, S> {
    fn clone(&self) -> Self {
        Self {
            path: self.path.clone(),
            rank: self.rank,
            value: match &self.value {
                ParamValue::Float(v) => ParamValue::Float(v.clone()),
                ParamValue::Int(v) => ParamValue::Int(v.clone()),
                ParamValue::Bool(v) => ParamValue::Bool(v.clone()),
            },
        }
    }
}

impl<B: Backend> Record<B> for SlotRecord<B> {
    type Item<S: PrecisionSettings> = SlotRecordItem<B, S>;

    fn into_item<S: PrecisionSettings>(self) -> Self::Item<S> {
        let params = self
            .params
            .into_iter()
            .map(|p| {
                let rank = p.shape.len();
                let any = p.param;
                let value = with_rank!(rank, D => match p.kind {
                    ParamKind::Float => ParamValue::Float(into_item::<Param<Tensor<B, D>>, B, S>(any)),
                    ParamKind::Int => ParamValue::Int(into_item::<Param<Tensor<B, D, Int>>, B, S>(any)),
                    ParamKind::Bool => ParamValue::Bool(into_item::<Param<Tensor<B, D, Bool>>, B, S>(any)),
                });
                ParamItem {
                    path: p.path,
                    rank,
                    value,
                }
            })
            .collect();
        SlotRecordItem { class: self.class, params, slots: self.nested }
    }

    fn from_item<S: PrecisionSettings>(item: Self::Item<S>, device: &B::Device) -> Self {
        let params = item
            .params
            .into_iter()
            .filter(|p| (1..=super::visitor::MAX_RANK).contains(&p.rank))
            .map(|p| {
                let (kind, param, shape): (ParamKind, Box<dyn Any + Send>, Vec<usize>) =
                    with_rank!(p.rank, D => match p.value {
                        ParamValue::Float(v) => {
                            let param = Param::<Tensor<B, D>>::from_item::<S>(v, device);
                            let shape = param.lazy_shape().to_vec();
                            (ParamKind::Float, Box::new(param), shape)
                        }
                        ParamValue::Int(v) => {
                            let param = Param::<Tensor<B, D, Int>>::from_item::<S>(v, device);
                            let shape = param.lazy_shape().to_vec();
                            (ParamKind::Int, Box::new(param), shape)
                        }
                        ParamValue::Bool(v) => {
                            let param = Param::<Tensor<B, D, Bool>>::from_item::<S>(v, device);
                            let shape = param.lazy_shape().to_vec();
                            (ParamKind::Bool, Box::new(param), shape)
                        }
                    });
                ParamRecord::new(p.path, kind, shape, param)
            })
            .collect();
        Self { class: item.class, params, nested: item.slots }
    }
}

/// Burn's item of a boxed parameter record (the box holds an `R`, by construction).
fn into_item<R, B, S>(param: Box<dyn Any + Send>) -> R::Item<S>
where
    R: Record<B> + 'static,
    B: Backend,
    S: PrecisionSettings,
{
    let param = param
        .downcast::<R>()
        .expect("a slot record's parameter has the type its kind and rank say");
    (*param).into_item::<S>()
}

impl<B: Backend> ParamRecord<B> {
    fn new(path: String, kind: ParamKind, shape: Vec<usize>, param: Box<dyn Any + Send>) -> Self {
        Self { path, kind, shape, param, _backend: std::marker::PhantomData }
    }
}

impl NestedSlot {
    /// The slot `slot`, at `at` relative to the visited slot's module.
    fn at(at: &ModulePath, slot: &SlotMark<'_>) -> Self {
        Self {
            path: at.key(),
            interface: slot.interface.to_string(),
            class: slot.class.to_string(),
        }
    }
}

/// Collects a slot module's parameters as Burn's parameter records (`transform_for_save`).
/// Run through the slot's trait object with `ToDynVisitor(&mut Tracked::new(..))`.
pub(crate) struct Collect<B: Backend> {
    params: Vec<ParamRecord<B>>,
    nested: Vec<NestedSlot>,
}

impl<B: Backend> Collect<B> {
    pub(crate) fn new() -> Self {
        Self { params: Vec::new(), nested: Vec::new() }
    }

    /// The record of a module of class `class`, once visited.
    pub(crate) fn into_record(self, class: &str) -> SlotRecord<B> {
        SlotRecord {
            class: class.to_string(),
            params: self.params,
            nested: self.nested,
        }
    }
}

impl<B: Backend> VisitParams<B> for Collect<B> {
    fn param<P: Leaf<B>>(&mut self, at: &ModulePath, param: &P) {
        let saved = param.for_save();
        let shape = saved.shape();
        let record = ParamRecord::new(at.key(), P::KIND, shape, Box::new(saved));
        self.params.push(record);
    }

    fn slot(&mut self, at: &ModulePath, slot: &SlotMark<'_>) {
        self.nested.push(NestedSlot::at(at, slot));
    }
}

/// What a slot module expects of a record: `(path, kind, shape)` per parameter, and the slots
/// inside it.
#[derive(Default)]
pub(crate) struct Expect {
    pub(crate) params: Vec<(String, ParamKind, Vec<usize>)>,
    pub(crate) nested: Vec<NestedSlot>,
}

impl<B: Backend> VisitParams<B> for Expect {
    fn param<P: Leaf<B>>(&mut self, at: &ModulePath, param: &P) {
        self.params.push((at.key(), P::KIND, param.shape()));
    }

    fn slot(&mut self, at: &ModulePath, slot: &SlotMark<'_>) {
        self.nested.push(NestedSlot::at(at, slot));
    }
}

/// Loads a checked record's parameters into a slot module (Burn's `Param::load_record`).
pub(crate) struct Load {
    params: BTreeMap<String, Box<dyn Any + Send>>,
}

impl Load {
    pub(crate) fn new<B: Backend>(params: Vec<ParamRecord<B>>) -> Self {
        Self {
            params: params.into_iter().map(|p| (p.path, p.param)).collect(),
        }
    }
}

impl<B: Backend> MapParams<B> for Load {
    fn map<P: Leaf<B>>(&mut self, at: &ModulePath, param: P) -> P {
        // The record was checked against the module: same paths, kinds and ranks.
        match self.params.remove(&at.key()).map(|r| r.downcast::<P>()) {
            Some(Ok(record)) => param.load_record(*record),
            _ => param,
        }
    }
}
