//! Building a model with a [`Patcher`]'s class substitutions.
//!
//! A model's constructor takes a [`BuildContext`] and builds each substitutable field with
//! [`Slot::build`]: the context looks the original class up in the patcher's `class_mapping` and
//! builds either the original or the replacement from the same arguments. Replacements are
//! registered with [`replacement`], which checks at compile time that the class implements the
//! slot's interface (and so takes the same constructor arguments).

use std::any::TypeId;
use std::cell::RefCell;

use burn::tensor::backend::Backend;
use patcher_core::{ClassReplacement, Patcher, PatcherError};

use crate::slot::{Implements, InterfaceKey, Patchable, Slot, SlotInterface};

/// Builds a replacement's module for a slot of interface `K` from the interface's arguments.
type BuildFn<B, K> = for<'a> fn(
    <K as InterfaceKey>::Args<'a>,
    &BuildContext<'_, B>,
    &'static str,
) -> Slot<B, <K as InterfaceKey>::Dyn<B>>;

/// The factory stored in a [`ClassReplacement`] made by [`replacement`]. Its interface is checked
/// against the slot's before the typed builder is taken out.
struct SlotFactory<B: Backend> {
    interface: TypeId,
    interface_name: &'static str,
    /// A `BuildFn<B, K>` for the interface `K` of `interface`.
    build: Box<dyn std::any::Any + Send + Sync>,
    _backend: std::marker::PhantomData<fn() -> B>,
}

/// A `class_mapping` value that builds class `R` in slots of interface `I`.
///
/// `R` must implement `I` (`#[patchable(implements(Trait))]`), so it takes the same constructor
/// arguments as every class of `I`; a mismatch is a compile error here.
///
/// ```text
/// let patcher = Patcher::new()
///     .class_mapping("LlamaAttention", replacement::<FusedAttention<B>, dyn AttentionLayer<B>>())?;
/// ```
pub fn replacement<R, I>() -> ClassReplacement<R::Backend>
where
    R: Implements<I::Key>,
    I: ?Sized + SlotInterface,
{
    let build: BuildFn<R::Backend, I::Key> = build_replacement::<R, I::Key>;
    ClassReplacement::from_factory(
        R::CLASS_NAME,
        SlotFactory::<R::Backend> {
            interface: TypeId::of::<I::Key>(),
            interface_name: <I::Key as InterfaceKey>::NAME,
            build: Box::new(build),
            _backend: std::marker::PhantomData,
        },
    )
}

fn build_replacement<R: Implements<K>, K: InterfaceKey>(
    args: K::Args<'_>,
    ctx: &BuildContext<'_, R::Backend>,
    original: &'static str,
) -> Slot<R::Backend, K::Dyn<R::Backend>> {
    Slot::from_parts::<R>(R::construct::<R::Backend>(args, ctx), original, true)
}

/// A class-mapping entry or key that does not fit the model being built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A replacement implements another interface than the slot of the class it replaces.
    #[error(
        "class_mapping maps `{original}` to `{replacement}`, which implements `{replacement_interface}`, \
         but `{original}` fills slots of interface `{slot_interface}`; map it to a class with \
         #[patchable(implements({slot_interface}))] (built from the same arguments)"
    )]
    WrongInterface {
        /// The class the slot was built for.
        original: &'static str,
        /// The replacement class.
        replacement: &'static str,
        /// The slot's interface.
        slot_interface: &'static str,
        /// The interface the replacement was registered for.
        replacement_interface: &'static str,
    },
    /// A replacement was not made with [`replacement`].
    #[error(
        "class_mapping maps `{original}` to `{replacement}` with a factory of type `{factory_type}`, \
         which cannot build a slot of interface `{slot_interface}`; make the value with \
         patcher_burn::replacement::<{replacement}<B>, dyn {slot_interface}<B>>()"
    )]
    NotASlotFactory {
        /// The class the slot was built for.
        original: &'static str,
        /// The replacement class.
        replacement: &'static str,
        /// The slot's interface.
        slot_interface: &'static str,
        /// The Rust type of the factory found.
        factory_type: &'static str,
    },
    /// Class-mapping keys that match no substitutable class of the model.
    #[error("{0}")]
    UnknownClasses(PatcherError),
}

/// What a model's constructor gets: the device, and the patcher whose `class_mapping` decides
/// which class each [`Slot`] holds.
///
/// Make one with [`BuildContext::build`] (checks the mapping against the model) or
/// [`BuildContext::plain`] (no patching).
pub struct BuildContext<'p, B: Backend> {
    patcher: Option<&'p Patcher<B>>,
    device: B::Device,
    /// Original classes of the slots built so far, in first-seen order.
    seen: RefCell<Vec<&'static str>>,
    errors: RefCell<Vec<BuildError>>,
}

impl<'p, B: Backend> BuildContext<'p, B> {
    /// A context that builds every slot with its original class.
    pub fn plain(device: &B::Device) -> Self {
        Self::with_patcher(None, device)
    }

    fn with_patcher(patcher: Option<&'p Patcher<B>>, device: &B::Device) -> Self {
        Self {
            patcher,
            device: device.clone(),
            seen: RefCell::new(Vec::new()),
            errors: RefCell::new(Vec::new()),
        }
    }

    /// Builds a model with `patcher`'s substitutions: runs `constructor` (the model's
    /// constructor, building its slots with [`Slot::build`]), then checks the mapping.
    ///
    /// Errors: a replacement registered for another interface than its slot's, or a
    /// `class_mapping` key that matches no slot class of the model (the message lists the model's
    /// slot classes and a did-you-mean).
    pub fn build<M>(
        patcher: &'p Patcher<B>,
        device: &B::Device,
        constructor: impl FnOnce(&Self) -> M,
    ) -> Result<M, BuildError> {
        let ctx = Self::with_patcher(Some(patcher), device);
        let model = constructor(&ctx);
        if let Some(error) = ctx.errors.borrow().first() {
            return Err(error.clone());
        }
        let seen = ctx.seen.borrow();
        patcher
            .check_class_names(&seen)
            .map_err(BuildError::UnknownClasses)?;
        Ok(model)
    }

    /// The device the model is built on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The original classes of the slots built so far, in first-seen order.
    pub fn seen_classes(&self) -> Vec<&'static str> {
        self.seen.borrow().clone()
    }

    fn note(&self, class: &'static str) {
        let mut seen = self.seen.borrow_mut();
        if !seen.contains(&class) {
            seen.push(class);
        }
    }

    fn fail(&self, error: BuildError) {
        let mut errors = self.errors.borrow_mut();
        if !errors.contains(&error) {
            errors.push(error);
        }
    }
}

impl<B: Backend, I: ?Sized + SlotInterface> Slot<B, I> {
    /// Builds the slot for class `C` with the context's substitutions: `C::new(args.., device)`,
    /// or the replacement mapped to `C`'s class name, from the same `args`.
    ///
    /// `args` are the arguments of the interface's `new` without the device (one value, or a
    /// tuple for several). A mapping error is reported by [`BuildContext::build`]; the slot then
    /// holds the original.
    pub fn build<C>(ctx: &BuildContext<'_, B>, args: <I::Key as InterfaceKey>::Args<'_>) -> Self
    where
        C: Implements<I::Key> + Patchable<Backend = B>,
    {
        ctx.note(C::CLASS_NAME);
        if let Some(found) = ctx.patcher.and_then(|p| p.replacement_for(C::CLASS_NAME)) {
            match typed_builder::<B, I::Key>(found, C::CLASS_NAME) {
                Ok(build) => return rebrand(build(args, ctx, C::CLASS_NAME)),
                Err(error) => ctx.fail(error),
            }
        }
        Self::original::<C>(C::construct::<B>(args, ctx))
    }
}

/// The slot type of the builder, seen as `Slot<B, I>` (same key, so same representation).
fn rebrand<B: Backend, I: ?Sized + SlotInterface>(
    slot: Slot<B, <I::Key as InterfaceKey>::Dyn<B>>,
) -> Slot<B, I> {
    slot.rebrand()
}

/// The replacement's typed builder for interface `K`, or why it has none.
fn typed_builder<B: Backend, K: InterfaceKey>(
    found: &ClassReplacement<B>,
    original: &'static str,
) -> Result<BuildFn<B, K>, BuildError> {
    let Some(factory) = found.downcast::<SlotFactory<B>>() else {
        return Err(BuildError::NotASlotFactory {
            original,
            replacement: found.class_name(),
            slot_interface: K::NAME,
            factory_type: found.factory_type_name(),
        });
    };
    let wrong_interface = || BuildError::WrongInterface {
        original,
        replacement: found.class_name(),
        slot_interface: K::NAME,
        replacement_interface: factory.interface_name,
    };
    if factory.interface != TypeId::of::<K>() {
        return Err(wrong_interface());
    }
    factory
        .build
        .downcast_ref::<BuildFn<B, K>>()
        .copied()
        .ok_or_else(wrong_interface)
}
