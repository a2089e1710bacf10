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

use burn::module::{Module, Param};
use burn::record::{PrecisionSettings, Record};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::listing::parse_marker;
use super::visitor::{with_rank, DynMapper, DynVisitor, TensorKind};

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
    pub(crate) kind: TensorKind,
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
        let params: BTreeMap<&str, (&TensorKind, &Vec<usize>)> = self
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
                    TensorKind::Float => ParamValue::Float(into_item::<Param<Tensor<B, D>>, B, S>(any)),
                    TensorKind::Int => ParamValue::Int(into_item::<Param<Tensor<B, D, Int>>, B, S>(any)),
                    TensorKind::Bool => ParamValue::Bool(into_item::<Param<Tensor<B, D, Bool>>, B, S>(any)),
                });
                ParamItem {
                    path: p.path,
                    rank,
                    value,
                }
            })
            .collect();
        SlotRecordItem {
            class: self.class,
            params,
            slots: self.nested,
        }
    }

    fn from_item<S: PrecisionSettings>(item: Self::Item<S>, device: &B::Device) -> Self {
        let params = item
            .params
            .into_iter()
            .filter(|p| (1..=super::visitor::MAX_RANK).contains(&p.rank))
            .map(|p| {
                let (kind, param, shape): (TensorKind, Box<dyn Any + Send>, Vec<usize>) =
                    with_rank!(p.rank, D => match p.value {
                        ParamValue::Float(v) => {
                            let param = Param::<Tensor<B, D>>::from_item::<S>(v, device);
                            let shape = param.lazy_shape().to_vec();
                            (TensorKind::Float, Box::new(param), shape)
                        }
                        ParamValue::Int(v) => {
                            let param = Param::<Tensor<B, D, Int>>::from_item::<S>(v, device);
                            let shape = param.lazy_shape().to_vec();
                            (TensorKind::Int, Box::new(param), shape)
                        }
                        ParamValue::Bool(v) => {
                            let param = Param::<Tensor<B, D, Bool>>::from_item::<S>(v, device);
                            let shape = param.lazy_shape().to_vec();
                            (TensorKind::Bool, Box::new(param), shape)
                        }
                    });
                ParamRecord::new(p.path, kind, shape, param)
            })
            .collect();
        Self {
            class: item.class,
            params,
            nested: item.slots,
        }
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
    fn new(path: String, kind: TensorKind, shape: Vec<usize>, param: Box<dyn Any + Send>) -> Self {
        Self {
            path,
            kind,
            shape,
            param,
            _backend: std::marker::PhantomData,
        }
    }
}

/// Tracks the relative path of what a slot's module visits, and the slots inside it.
#[derive(Default)]
struct PathStack {
    stack: Vec<String>,
    nested: Vec<NestedSlot>,
}

impl PathStack {
    fn enter(&mut self, name: &str, container_type: &str) {
        if let Some(marker) = parse_marker(container_type) {
            self.nested.push(NestedSlot {
                path: self.current(),
                interface: marker.interface.to_string(),
                class: name.to_string(),
            });
        }
        // Pushed for markers too: their exit pops it.
        self.stack.push(name.to_string());
    }

    fn exit(&mut self) {
        self.stack.pop();
    }

    fn current(&self) -> String {
        self.stack.join(".")
    }
}

/// Collects a slot module's parameters as Burn's parameter records (`transform_for_save`).
pub(crate) struct Collect<B: Backend> {
    path: PathStack,
    pub(crate) params: Vec<ParamRecord<B>>,
}

impl<B: Backend> Collect<B> {
    /// The record of a module of class `class`, once visited.
    pub(crate) fn into_record(self, class: &str) -> SlotRecord<B> {
        SlotRecord {
            class: class.to_string(),
            params: self.params,
            nested: self.path.nested,
        }
    }
}

impl<B: Backend> Collect<B> {
    pub(crate) fn new() -> Self {
        Self {
            path: PathStack::default(),
            params: Vec::new(),
        }
    }
}

impl<B: Backend> DynVisitor<B> for Collect<B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit(&mut self, kind: TensorKind, rank: usize, param: &dyn Any) {
        let saved: Option<(Box<dyn Any + Send>, Vec<usize>)> = with_rank!(rank, D => match kind {
            TensorKind::Float => param
                .downcast_ref::<Param<Tensor<B, D>>>()
                .map(|p| {
                    let p = p.transform_for_save();
                    let shape = p.lazy_shape().to_vec();
                    (Box::new(p) as Box<dyn Any + Send>, shape)
                }),
            TensorKind::Int => param
                .downcast_ref::<Param<Tensor<B, D, Int>>>()
                .map(|p| {
                    let p = p.transform_for_save();
                    let shape = p.lazy_shape().to_vec();
                    (Box::new(p) as Box<dyn Any + Send>, shape)
                }),
            TensorKind::Bool => param
                .downcast_ref::<Param<Tensor<B, D, Bool>>>()
                .map(|p| {
                    let p = p.transform_for_save();
                    let shape = p.lazy_shape().to_vec();
                    (Box::new(p) as Box<dyn Any + Send>, shape)
                }),
        });
        if let Some((param, shape)) = saved {
            self.params
                .push(ParamRecord::new(self.path.current(), kind, shape, param));
        }
    }
}

/// What a slot module expects of a record: `(path, kind, shape)` per parameter.
pub(crate) struct Expect {
    path: PathStack,
    pub(crate) params: Vec<(String, TensorKind, Vec<usize>)>,
}

impl Expect {
    /// The slots inside the visited module.
    pub(crate) fn nested(&self) -> &[NestedSlot] {
        &self.path.nested
    }
}

impl Expect {
    pub(crate) fn new() -> Self {
        Self {
            path: PathStack::default(),
            params: Vec::new(),
        }
    }
}

impl<B: Backend> DynVisitor<B> for Expect {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit(&mut self, kind: TensorKind, rank: usize, param: &dyn Any) {
        let shape: Option<Vec<usize>> = with_rank!(rank, D => match kind {
            TensorKind::Float => param
                .downcast_ref::<Param<Tensor<B, D>>>()
                .map(|p| p.lazy_shape().to_vec()),
            TensorKind::Int => param
                .downcast_ref::<Param<Tensor<B, D, Int>>>()
                .map(|p| p.lazy_shape().to_vec()),
            TensorKind::Bool => param
                .downcast_ref::<Param<Tensor<B, D, Bool>>>()
                .map(|p| p.lazy_shape().to_vec()),
        });
        if let Some(shape) = shape {
            self.params.push((self.path.current(), kind, shape));
        }
    }
}

/// Loads a checked record's parameters into a slot module (Burn's `Param::load_record`).
pub(crate) struct Load<B: Backend> {
    path: PathStack,
    params: BTreeMap<String, Box<dyn Any + Send>>,
    _backend: std::marker::PhantomData<fn() -> B>,
}

impl<B: Backend> Load<B> {
    pub(crate) fn new(params: Vec<ParamRecord<B>>) -> Self {
        Self {
            path: PathStack::default(),
            params: params.into_iter().map(|p| (p.path, p.param)).collect(),
            _backend: std::marker::PhantomData,
        }
    }
}

/// Loads the record in `record` (an `R`) into the `Option<R>` in `slot`.
fn load_param<R: Module<B, Record = R> + 'static, B: Backend>(
    slot: &mut dyn Any,
    record: Box<dyn Any + Send>,
) {
    if let (Some(opt), Ok(record)) = (slot.downcast_mut::<Option<R>>(), record.downcast::<R>()) {
        if let Some(param) = opt.take() {
            *opt = Some(param.load_record(*record));
        }
    }
}

impl<B: Backend> DynMapper<B> for Load<B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map(&mut self, kind: TensorKind, rank: usize, slot: &mut dyn Any) {
        let Some(record) = self.params.remove(&self.path.current()) else {
            return;
        };
        with_rank!(rank, D => match kind {
            TensorKind::Float => load_param::<Param<Tensor<B, D>>, B>(slot, record),
            TensorKind::Int => load_param::<Param<Tensor<B, D, Int>>, B>(slot, record),
            TensorKind::Bool => load_param::<Param<Tensor<B, D, Bool>>, B>(slot, record),
        })
    }
}
