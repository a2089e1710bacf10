//! Burn's module traits for [`Slot`]: `Module`, `AutodiffModule`, `ModuleDisplay`, `Display`.

use std::fmt;
use std::marker::PhantomData;

use burn::module::{
    AutodiffModule, Content, Devices, DisplaySettings, Module, ModuleDisplay, ModuleDisplayDefault,
    ModuleMapper, ModuleVisitor,
};
use burn::tensor::backend::{AutodiffBackend, Backend};

use super::check::{compare, report};
use super::class::{InterfaceKey, SlotInterface};
use super::record::{Collect, Expect, Load, SlotRecord};
use super::visitor::{ToDynMapper, ToDynVisitor};
use super::Slot;
use crate::visit::{slot_marker, Tracked};

impl<B: Backend, I: ?Sized + SlotInterface> Module<B> for Slot<B, I> {
    type Record = SlotRecord<B>;

    fn collect_devices(&self, devices: Devices<B>) -> Devices<B> {
        self.module.collect_devices(devices)
    }

    fn fork(self, device: &B::Device) -> Self {
        self.map_module(|module| module.fork(device))
    }

    fn to_device(self, device: &B::Device) -> Self {
        self.map_module(|module| module.to_device(device))
    }

    fn num_params(&self) -> usize {
        self.module.num_params()
    }

    fn visit<V: ModuleVisitor<B>>(&self, visitor: &mut V) {
        // An empty enter/exit pair tells listing visitors that a slot is here (path-tracking
        // visitors push and pop it with no parameter in between).
        let marker = slot_marker(
            <I::Key as InterfaceKey>::NAME,
            self.original,
            self.replaced,
            &self.position,
        );
        visitor.enter_module(self.class_name(), &marker);
        visitor.exit_module(self.class_name(), &marker);
        self.module.visit(&mut ToDynVisitor(visitor));
    }

    fn map<M: ModuleMapper<B>>(self, mapper: &mut M) -> Self {
        self.map_module(|module| module.map(&mut ToDynMapper(mapper)))
    }

    fn load_record(self, record: Self::Record) -> Self {
        let mut expect = Tracked::new(Expect::default());
        self.module.visit(&mut ToDynVisitor(&mut expect));
        let interface = <I::Key as InterfaceKey>::NAME;
        if let Some(mismatch) = compare(interface, self.class_name(), &expect.inner, &record) {
            report(mismatch);
            return self;
        }
        let mut load = Tracked::new(Load::new(record.params));
        self.map_module(|module| module.map(&mut ToDynMapper(&mut load)))
    }

    fn into_record(self) -> Self::Record {
        let mut collect = Tracked::new(Collect::new());
        self.module.visit(&mut ToDynVisitor(&mut collect));
        collect.inner.into_record(self.class_name())
    }
}

/// `valid()` always works. `from_inner` needs a route back to `B` for the class inside: slots
/// learn it from `valid()` (any autodiff backend) and when built (to `Autodiff<B>`, so
/// `model.train::<Autodiff<B>>()` works on a model built on `B`). Without one it panics, saying
/// so; build the model on that autodiff backend instead.
impl<B: AutodiffBackend, I: ?Sized + SlotInterface> AutodiffModule<B> for Slot<B, I> {
    type InnerModule = Slot<B::InnerBackend, <I::Key as InterfaceKey>::Dyn<B::InnerBackend>>;

    fn valid(&self) -> Self::InnerModule {
        self.with_module(self.module.valid())
    }

    fn from_inner(module: Self::InnerModule) -> Self {
        let Slot { module, original, replaced, position, .. } = module;
        let class = module.class_name();
        let route = module.routes().get::<B, I::Key>();
        match route.and_then(|route| route(module)) {
            Some(module) => Self {
                module,
                original,
                replaced,
                position,
                _interface: PhantomData,
            },
            None => panic!(
                "Slot::from_inner: the slot of interface `{}` holding class `{class}` has no route \
                 to the autodiff backend `{}`. Slots know the way back to the backend a `valid()` \
                 came from, and to `Autodiff<B>` from the backend `B` they were built on; build \
                 the model on this autodiff backend directly",
                <I::Key as InterfaceKey>::NAME,
                std::any::type_name::<B>(),
            ),
        }
    }
}

impl<B: Backend, I: ?Sized + SlotInterface> ModuleDisplayDefault for Slot<B, I> {
    fn content(&self, content: Content) -> Option<Content> {
        let content = self.module.display_content(content)?;
        Some(self.mark_replaced(content))
    }

    fn num_params(&self) -> usize {
        self.module.num_params()
    }
}

impl<B: Backend, I: ?Sized + SlotInterface> ModuleDisplay for Slot<B, I> {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        self.module.display_custom_settings()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        let content = self.module.display_custom_content(content)?;
        Some(self.mark_replaced(content))
    }
}

impl<B: Backend, I: ?Sized + SlotInterface> Slot<B, I> {
    /// Titles the module with its class name (Burn's derive uses the struct name), and a
    /// replacement as `FusedAttention (replaces LlamaAttention)`.
    fn mark_replaced(&self, content: Content) -> Content {
        if self.replaced {
            let title = format!("{} (replaces {})", self.class_name(), self.original);
            content.set_top_level_type(&title)
        } else {
            content.set_top_level_type(self.class_name())
        }
    }
}

impl<B: Backend, I: ?Sized + SlotInterface> fmt::Display for Slot<B, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format(DisplaySettings::new()))
    }
}
