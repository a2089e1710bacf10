//! The [`Patcher`]: which module classes to swap while a model is built, and how the model's
//! default weight conversions change to match (filter, then prepend).

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use burn::tensor::backend::Backend;

/// A type-erased replacement for one module class, stored in a [`Patcher`]'s `class_mapping`.
///
/// The value inside is a factory whose concrete type is known only to the build side
/// (`patcher-burn`), which creates it with [`ClassReplacement::from_factory`] and gets it back with
/// [`ClassReplacement::downcast`]. A downcast to the wrong factory type returns `None`, and the
/// build side reports both type names ([`ClassReplacement::factory_type_name`]).
pub struct ClassReplacement<B: Backend> {
    class_name: &'static str,
    factory_type_name: &'static str,
    factory: Arc<dyn Any + Send + Sync>,
    _backend: PhantomData<fn() -> B>,
}

impl<B: Backend> ClassReplacement<B> {
    /// Wraps `factory`, which builds instances of the replacement class `class_name`.
    pub fn from_factory<F: Any + Send + Sync>(class_name: &'static str, factory: F) -> Self {
        Self {
            class_name,
            factory_type_name: std::any::type_name::<F>(),
            factory: Arc::new(factory),
            _backend: PhantomData,
        }
    }

    /// Class name of the replacement (what the model lists for a patched slot).
    pub fn class_name(&self) -> &'static str {
        self.class_name
    }

    /// Rust type name of the stored factory, for error messages.
    pub fn factory_type_name(&self) -> &'static str {
        self.factory_type_name
    }

    /// The factory, if it is an `F`.
    pub fn downcast<F: Any>(&self) -> Option<&F> {
        self.factory.downcast_ref::<F>()
    }
}

impl<B: Backend> Clone for ClassReplacement<B> {
    fn clone(&self) -> Self {
        Self {
            class_name: self.class_name,
            factory_type_name: self.factory_type_name,
            factory: Arc::clone(&self.factory),
            _backend: PhantomData,
        }
    }
}

impl<B: Backend> fmt::Debug for ClassReplacement<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassReplacement")
            .field("class_name", &self.class_name)
            .field("factory", &self.factory_type_name)
            .finish()
    }
}
