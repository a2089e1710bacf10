//! The parameter types visitors see, behind one trait: Burn gives float, int and bool tensors
//! separate methods, while most visitors do the same with each.

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::TensorData;

use crate::load::ParamKind;

/// A parameter tensor of any kind and rank, as visitors handle it.
pub(crate) trait Leaf<B: Backend>: Module<B, Record = Self> + Send + 'static {
    /// Float, int or bool.
    const KIND: ParamKind;
    /// The shape, without initialising a lazy parameter.
    fn shape(&self) -> Vec<usize>;
    /// The values.
    fn data(&self) -> TensorData;
    /// Burn's `transform_for_save`.
    fn for_save(&self) -> Self;
    /// The parameter holding `data` instead, on its device, with its id, gradient setting and
    /// load mapper (Burn's `transform_for_load`).
    fn with_data(self, data: TensorData) -> Self;
}

/// The three impls differ only in the tensor kind.
macro_rules! leaf {
    ($kind:ident) => {
        impl<B: Backend, const D: usize> Leaf<B> for Param<Tensor<B, D, $kind>> {
            const KIND: ParamKind = ParamKind::$kind;

            fn shape(&self) -> Vec<usize> {
                self.lazy_shape().to_vec()
            }

            fn data(&self) -> TensorData {
                self.val().into_data()
            }

            fn for_save(&self) -> Self {
                self.transform_for_save()
            }

            fn with_data(self, data: TensorData) -> Self {
                let tensor = Tensor::from_data(data, &self.lazy_device());
                let id = self.id;
                self.transform_for_load(tensor, id)
            }
        }
    };
}
leaf!(Float);
leaf!(Int);
leaf!(Bool);
