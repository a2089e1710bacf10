//! Routes back from the inner backend: what `Slot::from_inner` needs and cannot name.
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
use std::sync::Arc;

use burn::tensor::backend::AutodiffBackend;

use super::class::{Implements, InterfaceKey};
use super::erased::{ErasedModule, Holder};

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

/// The route of class `C` from `AB::InnerBackend` to `AB`.
pub(crate) fn route_from_inner<C, K, AB>(
    module: Box<dyn ErasedModule<AB::InnerBackend, K>>,
) -> Option<Box<dyn ErasedModule<AB, K>>>
where
    C: Implements<K>,
    K: InterfaceKey,
    AB: AutodiffBackend,
{
    let holder = module
        .into_any()
        .downcast::<Holder<C, AB::InnerBackend>>()
        .ok()?;
    let Holder { module, routes } = *holder;
    Some(Box::new(Holder::<C, AB> {
        module: C::from_inner::<AB>(module),
        routes,
    }))
}
