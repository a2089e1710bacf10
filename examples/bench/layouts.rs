//! Why the loader transposes Linear weights: one Linear forward with the weight as a contiguous
//! `[in, out]` tensor and as a transposed view of the checkpoint's `[out, in]`.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::module::linear;

use super::stats::median;

/// A prefill shape: `(batch, tokens)`.
pub type Prefill = (usize, usize);

/// `(backend, prefill, n, contiguous seconds, view seconds)` of one Linear forward.
pub type LayoutRow = (String, Prefill, usize, f64, f64);

/// Seconds of `f`, its result dropped after.
pub fn timed<T>(f: impl FnOnce() -> T) -> f64 {
    let start = Instant::now();
    let out = f();
    let seconds = start.elapsed().as_secs_f64();
    drop(out);
    seconds
}

/// `(backend, shape, n, contiguous s, view s)` of one Linear forward per layout.
pub fn linear_layouts<B: Backend>(
    name: &str,
    shapes: &[Prefill],
    rounds: usize,
    device: &B::Device,
) -> Vec<LayoutRow> {
    let mut out = Vec::new();
    for &(b, s) in shapes {
        for n in [1024, 512, 8192] {
            let x =
                Tensor::<B, 3>::random([b, s, 1024], burn::tensor::Distribution::Default, device);
            let torch =
                Tensor::<B, 2>::random([n, 1024], burn::tensor::Distribution::Default, device);
            let view = torch.clone().transpose();
            let contiguous = Tensor::<B, 2>::from_data(view.clone().into_data(), device);
            let run = |w: &Tensor<B, 2>| timed(|| linear(x.clone(), w.clone(), None).into_data());
            run(&view);
            run(&contiguous);
            let (mut tc, mut tv) = (Vec::new(), Vec::new());
            for _ in 0..rounds.max(5) {
                tc.push(run(&contiguous));
                tv.push(run(&view));
            }
            out.push((name.to_string(), (b, s), n, median(tc), median(tv)));
        }
    }
    out
}
