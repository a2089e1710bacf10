//! The object-safe module trait behind a slot ([`ErasedModule`]; its one implementation is
//! [`Holder`](super::holder::Holder)), and the routes it carries back from the inner backend.
//!
//! `from_inner` receives a module on `AB::InnerBackend` behind a trait object and must produce the
//! same class on `AB`; only code instantiated with both the class and `AB` can do that. A slot
//! therefore carries a small table of such functions, keyed by the autodiff backend:
//! - `valid()` adds the route back to the backend it came from (so `valid` then `from_inner`
//!   always works, whatever the autodiff backend);
//! - building a slot on `B` adds the route to `Autodiff<B>` (so `model.train::<Autodiff<B>>()`
//!   works on a model built on the inner backend).
//!
//! Any other pair (e.g. `Autodiff<B, BalancedCheckpointing>` for a model built on `B`) has no
//! route; `from_inner` then panics with a message saying so, as Burn's signature leaves no error
//! channel. Build the model on that autodiff backend directly instead.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use burn::module::{Content, Devices, DisplaySettings};
use burn::tensor::backend::{AutodiffBackend, Backend};

use super::class::InterfaceKey;
use super::visitor::{DynMapper, DynVisitor};

/// A module of some class filling a slot of interface `K` on backend `B`.
///
/// The consuming operations take `self: Box<Self>` and return a new box, so a slot moves its
/// module through `map`, `to_device` and `fork` without cloning tensors.
pub(crate) trait ErasedModule<B: Backend, K: InterfaceKey>: Send + Sync + 'static {
    fn class_name(&self) -> &'static str;
    fn interface(&self) -> &K::Dyn<B>;
    fn interface_mut(&mut self) -> &mut K::Dyn<B>;
    fn clone_box(&self) -> Box<dyn ErasedModule<B, K>>;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn display_content(&self, content: Content) -> Option<Content>;
    fn display_custom_content(&self, content: Content) -> Option<Content>;
    fn display_custom_settings(&self) -> Option<DisplaySettings>;
    fn num_params(&self) -> usize;
    fn collect_devices(&self, devices: Devices<B>) -> Devices<B>;
    fn visit(&self, visitor: &mut dyn DynVisitor<B>);
    fn map(self: Box<Self>, mapper: &mut dyn DynMapper<B>) -> Box<dyn ErasedModule<B, K>>;
    fn to_device(self: Box<Self>, device: &B::Device) -> Box<dyn ErasedModule<B, K>>;
    fn fork(self: Box<Self>, device: &B::Device) -> Box<dyn ErasedModule<B, K>>;
    fn routes(&self) -> &Routes;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    fn as_any(&self) -> &dyn Any;
    /// Only in the vtables of autodiff backends (the where clause is impossible elsewhere).
    fn valid(&self) -> Box<dyn ErasedModule<B::InnerBackend, K>>
    where
        B: AutodiffBackend;
}

/// Brings a module of the route's class from `AB::InnerBackend` to `AB`; `None` if the module is
/// of another class (cannot happen: a route travels with its own class's modules).
pub(crate) type RouteFn<AB, K> = fn(
    Box<dyn ErasedModule<<AB as AutodiffBackend>::InnerBackend, K>>,
) -> Option<Box<dyn ErasedModule<AB, K>>>;

/// The routes a module knows, keyed by the autodiff backend they lead to.
#[derive(Clone, Default)]
pub(crate) struct Routes(Arc<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>);

impl Routes {
    /// These routes plus `route` to `AB` (shared, not copied, when it is already known).
    pub(crate) fn with<AB: AutodiffBackend, K: InterfaceKey>(&self, route: RouteFn<AB, K>) -> Self {
        let key = TypeId::of::<AB>();
        if self.0.iter().any(|(k, _)| *k == key) {
            return self.clone();
        }
        let mut table = (*self.0).clone();
        table.push((key, Arc::new(route)));
        Self(Arc::new(table))
    }

    /// The route to `AB`, if known.
    pub(crate) fn get<AB: AutodiffBackend, K: InterfaceKey>(&self) -> Option<RouteFn<AB, K>> {
        let key = TypeId::of::<AB>();
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, route)| route.downcast_ref::<RouteFn<AB, K>>().copied())
    }
}
