//! [`Slot<B, I>`]: a module field whose class is chosen while the model is built.

mod build;
mod check;
mod class;
mod context;
mod erased;
mod holder;
mod listing;
mod mapping;
mod module;
mod options;
mod record;
mod visitor;

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use burn::tensor::backend::Backend;

pub use check::{load_file_checked, load_record_checked, LoadRecordError, RecordMismatch};
pub use class::{Implements, InterfaceKey, OriginalClass, Patchable, SlotInterface};
pub use context::{BuildContext, BuildError};
pub use listing::{list_slots, SlotInfo};
pub use mapping::{replacement, ClassReplacement};
pub use options::BuildOptions;
pub use record::{SlotRecord, SlotRecordItem};
pub use visitor::MAX_RANK;

pub(crate) use mapping::{ClassMapping, Selector};

use erased::{ErasedModule, Routes};
use holder::{route_from_inner, Holder};

/// A module field that holds the original class or, when the model was built with a
/// [`Patcher`](crate::Patcher) mapping that class, its replacement.
///
/// `I` is the trait object of the interface the parent calls, e.g.
/// `Slot<B, dyn AttentionLayer<B>>` for a `#[slot_interface]` trait `AttentionLayer`. The slot
/// dereferences to it, so the parent writes `self.self_attn.forward(x)` whatever class is inside.
///
/// A slot is a complete Burn [`Module`](burn::module::Module): parameters keep the paths of the
/// class inside (`layers.0.self_attn.qkv_proj.weight`), records save the class name with the
/// parameters and refuse a record of another class, and on an autodiff backend `valid()` gives the
/// same class on the inner backend (see [`AutodiffModule`](burn::module::AutodiffModule) on
/// `Slot` for the one limit of `from_inner`).
///
/// Slots are made by [`Slot::build`] in a model's constructor, or by [`Slot::new`] from a module.
pub struct Slot<B: Backend, I: ?Sized + SlotInterface> {
    module: Box<dyn ErasedModule<B, I::Key>>,
    /// The class the model asked for (the `class_mapping` key that would replace it).
    original: &'static str,
    replaced: bool,
    /// Where [`Slot::build`] built it among the model's slots (`3`, `3.0`; empty for
    /// [`Slot::new`]): how a build with path keys finds the slot's path.
    position: String,
    _interface: PhantomData<fn() -> Box<I>>,
}

impl<B: Backend, I: ?Sized + SlotInterface> Slot<B, I> {
    /// A slot holding `module`, as the original class (no patching).
    pub fn new<C>(module: C) -> Self
    where
        C: Implements<I::Key> + Patchable<Backend = B>,
    {
        Self::original::<C>(module.into_with_backend())
    }

    /// A slot holding a freshly built original module; it learns the route to `Autodiff<B>`.
    pub(crate) fn original<C: Implements<I::Key>>(module: C::WithBackend<B>) -> Self {
        Self::from_parts::<C>(module, C::CLASS_NAME, false)
    }

    /// A slot holding `module` of class `C` in place of `original`.
    pub(crate) fn from_parts<C: Implements<I::Key>>(
        module: C::WithBackend<B>,
        original: &'static str,
        replaced: bool,
    ) -> Self {
        let routes = Routes::default().with::<burn::backend::Autodiff<B>, I::Key>(
            route_from_inner::<C, I::Key, burn::backend::Autodiff<B>>,
        );
        Self {
            module: Box::new(Holder::<C, B> { module, routes }),
            original,
            replaced,
            position: String::new(),
            _interface: PhantomData,
        }
    }

    /// The same slot, built at `position`.
    pub(crate) fn at_position(mut self, position: String) -> Self {
        self.position = position;
        self
    }

    /// The class of the module inside (the replacement's name when replaced).
    pub fn class_name(&self) -> &'static str {
        self.module.class_name()
    }

    /// The class the model built this slot for.
    pub fn original_class_name(&self) -> &'static str {
        self.original
    }

    /// Whether the module inside replaces the original class.
    pub fn is_replaced(&self) -> bool {
        self.replaced
    }

    /// The module inside, if it is of class `C` (to reach what the interface does not show: a
    /// class's own fields, say); `None` for another class.
    ///
    /// ```
    /// use burn::backend::NdArray;
    /// use burn::nn::{Linear, LinearConfig};
    /// use patcher_burn::layers::InitSlot;
    /// use patcher_burn::BuildContext;
    ///
    /// let ctx = BuildContext::<NdArray>::plain(&Default::default());
    /// let slot = LinearConfig::new(4, 2).init_slot(&ctx);
    /// let linear: &Linear<NdArray> = slot.module_as::<Linear<NdArray>>().unwrap();
    /// assert_eq!(linear.weight.dims(), [4, 2]);
    /// ```
    pub fn module_as<C: Patchable<Backend = B>>(&self) -> Option<&C::WithBackend<B>> {
        self.module
            .as_any()
            .downcast_ref::<Holder<C, B>>()
            .map(|holder| &holder.module)
    }

    /// The name of the slot's interface trait.
    pub fn interface_name(&self) -> &'static str {
        <I::Key as InterfaceKey>::NAME
    }

    /// The same slot as another `Slot` type of the same interface (same key, same representation).
    pub(crate) fn rebrand<J: ?Sized + SlotInterface<Key = I::Key>>(self) -> Slot<B, J> {
        Slot {
            module: self.module,
            original: self.original,
            replaced: self.replaced,
            position: self.position,
            _interface: PhantomData,
        }
    }

    /// The same slot with its module passed through `f` (fork, device moves, map, load).
    pub(crate) fn map_module(
        self,
        f: impl FnOnce(Box<dyn ErasedModule<B, I::Key>>) -> Box<dyn ErasedModule<B, I::Key>>,
    ) -> Self {
        let module = f(self.module);
        Self {
            module,
            original: self.original,
            replaced: self.replaced,
            position: self.position,
            _interface: PhantomData,
        }
    }

    /// The same slot metadata around another erased module (backend moves, valid, from_inner).
    fn with_module<B2: Backend, I2: ?Sized + SlotInterface>(
        &self,
        module: Box<dyn ErasedModule<B2, I2::Key>>,
    ) -> Slot<B2, I2> {
        Slot {
            module,
            original: self.original,
            replaced: self.replaced,
            position: self.position.clone(),
            _interface: PhantomData,
        }
    }
}

impl<B: Backend, I: ?Sized + SlotInterface> Deref for Slot<B, I> {
    type Target = <I::Key as InterfaceKey>::Dyn<B>;

    fn deref(&self) -> &Self::Target {
        self.module.interface()
    }
}

impl<B: Backend, I: ?Sized + SlotInterface> DerefMut for Slot<B, I> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.module.interface_mut()
    }
}

impl<B: Backend, I: ?Sized + SlotInterface> Clone for Slot<B, I> {
    fn clone(&self) -> Self {
        self.with_module(self.module.clone_box())
    }
}

impl<B: Backend, I: ?Sized + SlotInterface> fmt::Debug for Slot<B, I> {
    /// The module inside, as its own `Debug` shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.module.debug(f)
    }
}
