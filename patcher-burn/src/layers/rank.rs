//! A forward for any rank from the two that slot interfaces declare (trait objects cannot have
//! methods generic over the rank).

use burn::prelude::*;

/// `x` of any rank through `forward_2d` (ranks 1 and 2, as `[rows, features]`) or `forward_3d`
/// (ranks 3 and more, leading dimensions flattened), reshaped back with the last dimension of
/// the output. Ranks 2 and 3 go through as they are (a reshape to the same shape is free).
///
/// What a slot interface over the last dimension uses for a `forward` generic over the rank on
/// its trait object (which cannot have generic methods):
///
/// ```
/// use burn::backend::NdArray;
/// use burn::prelude::*;
/// use patcher_burn::layers::any_rank;
///
/// let x = Tensor::<NdArray, 4>::ones([2, 3, 4, 5], &Default::default());
/// let y = any_rank(x, |x| x.narrow(1, 0, 2), |x| x.narrow(2, 0, 2));
/// assert_eq!(y.dims(), [2, 3, 4, 2]);
/// ```
pub fn any_rank<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    forward_2d: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 2>,
    forward_3d: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
) -> Tensor<B, D> {
    let mut dims = x.dims();
    let features = dims[D - 1];
    if D <= 2 {
        let rows = dims[..D - 1].iter().product();
        let y = forward_2d(x.reshape([rows, features]));
        dims[D - 1] = y.dims()[1];
        y.reshape(dims)
    } else {
        let lead = dims[..D - 2].iter().product();
        let y = forward_3d(x.reshape([lead, dims[D - 2], features]));
        dims[D - 1] = y.dims()[2];
        y.reshape(dims)
    }
}
