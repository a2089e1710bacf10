//! [`Holder`]: the module of one class behind a slot's [`ErasedModule`], and its route back
//! from the inner backend.

use std::any::Any;
use std::fmt;

use burn::module::{
    Content, Devices, DisplaySettings, Module, ModuleDisplay, ModuleDisplayDefault,
};
use burn::tensor::backend::{AutodiffBackend, Backend};

use super::class::{Implements, InterfaceKey, Patchable};
use super::erased::{ErasedModule, Routes};
use super::visitor::{AsModuleMapper, AsModuleVisitor, DynMapper, DynVisitor};

/// The module of class `C` on backend `B`, with the routes it knows back to autodiff backends.
pub(crate) struct Holder<C: Patchable, B: Backend> {
    pub(crate) module: C::WithBackend<B>,
    pub(crate) routes: Routes,
}

impl<C: Patchable, B: Backend> Holder<C, B> {
    fn with_module(&self, module: C::WithBackend<B>) -> Self {
        Self { module, routes: self.routes.clone() }
    }
}

impl<B, K, C> ErasedModule<B, K> for Holder<C, B>
where
    B: Backend,
    K: InterfaceKey,
    C: Implements<K>,
{
    fn class_name(&self) -> &'static str {
        C::CLASS_NAME
    }

    fn interface(&self) -> &K::Dyn<B> {
        C::as_interface::<B>(&self.module)
    }

    fn interface_mut(&mut self) -> &mut K::Dyn<B> {
        C::as_interface_mut::<B>(&mut self.module)
    }

    fn clone_box(&self) -> Box<dyn ErasedModule<B, K>> {
        Box::new(self.with_module(self.module.clone()))
    }

    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.module, f)
    }

    fn display_content(&self, content: Content) -> Option<Content> {
        ModuleDisplayDefault::content(&self.module, content)
    }

    fn display_custom_content(&self, content: Content) -> Option<Content> {
        ModuleDisplay::custom_content(&self.module, content)
    }

    fn display_custom_settings(&self) -> Option<DisplaySettings> {
        ModuleDisplay::custom_settings(&self.module)
    }

    fn num_params(&self) -> usize {
        Module::num_params(&self.module)
    }

    fn collect_devices(&self, devices: Devices<B>) -> Devices<B> {
        self.module.collect_devices(devices)
    }

    fn visit(&self, visitor: &mut dyn DynVisitor<B>) {
        self.module.visit(&mut AsModuleVisitor(visitor));
    }

    fn map(self: Box<Self>, mapper: &mut dyn DynMapper<B>) -> Box<dyn ErasedModule<B, K>> {
        let Holder { module, routes } = *self;
        let module = module.map(&mut AsModuleMapper(mapper));
        Box::new(Holder::<C, B> { module, routes })
    }

    fn to_device(self: Box<Self>, device: &B::Device) -> Box<dyn ErasedModule<B, K>> {
        let Holder { module, routes } = *self;
        Box::new(Holder::<C, B> { module: module.to_device(device), routes })
    }

    fn fork(self: Box<Self>, device: &B::Device) -> Box<dyn ErasedModule<B, K>> {
        let Holder { module, routes } = *self;
        Box::new(Holder::<C, B> { module: module.fork(device), routes })
    }

    fn routes(&self) -> &Routes {
        &self.routes
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn valid(&self) -> Box<dyn ErasedModule<B::InnerBackend, K>>
    where
        B: AutodiffBackend,
    {
        // The inner module remembers how to come back to exactly this backend.
        let routes = self.routes.with::<B, K>(route_from_inner::<C, K, B>);
        Box::new(Holder::<C, B::InnerBackend> { module: C::valid::<B>(&self.module), routes })
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
