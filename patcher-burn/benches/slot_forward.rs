//! Forward through slots versus the same model with plain fields (NdArray).
//!
//! The two models hold the same weights; the slot model's forward goes through `Slot`'s `Deref`
//! to the interface trait object (two indirect calls per layer). After Criterion's report, the
//! bench prints the ratio slot/plain from interleaved timing rounds.

use std::hint::black_box;
use std::time::Instant;

use burn::backend::NdArray;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use criterion::{criterion_group, Criterion};
use patcher_burn::Slot;
use patcher_derive::{slot_interface, Patchable};

type Be = NdArray;
const HIDDEN: usize = 64;
const LAYERS: usize = 8;
const BATCH: usize = 8;

#[slot_interface(crate = "patcher_burn")]
pub trait Block<B: Backend> {
    fn new(hidden: usize, device: &B::Device) -> Self;
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(Block))]
pub struct Mlp<B: Backend> {
    up: Linear<B>,
    down: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    fn new(hidden: usize, device: &B::Device) -> Self {
        Self {
            up: LinearConfig::new(hidden, 2 * hidden).init(device),
            down: LinearConfig::new(2 * hidden, hidden).init(device),
        }
    }
}

impl<B: Backend> Block<B> for Mlp<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.clone() + self.down.forward(gelu(self.up.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct PlainModel<B: Backend> {
    layers: Vec<Mlp<B>>,
}

#[derive(Module, Debug)]
pub struct SlotModel<B: Backend> {
    layers: Vec<Slot<B, dyn Block<B>>>,
}

impl<B: Backend> PlainModel<B> {
    fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        for layer in &self.layers {
            x = layer.forward(x);
        }
        x
    }
}

impl<B: Backend> SlotModel<B> {
    fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        for layer in &self.layers {
            x = layer.forward(x);
        }
        x
    }
}

fn models() -> (PlainModel<Be>, SlotModel<Be>, Tensor<Be, 2>) {
    let device = Default::default();
    let plain = PlainModel {
        layers: (0..LAYERS)
            .map(|_| Mlp::<Be>::new(HIDDEN, &device))
            .collect(),
    };
    let x = Tensor::<Be, 2>::random(
        [BATCH, HIDDEN],
        burn::tensor::Distribution::Default,
        &device,
    );
    // Runs first: Burn initializes parameters lazily, and clones of uninitialized ones differ.
    let a = plain
        .forward(x.clone())
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let slots = SlotModel {
        layers: plain.layers.iter().cloned().map(Slot::new).collect(),
    };
    let b = slots
        .forward(x.clone())
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b, "both models compute the same thing");
    (plain, slots, x)
}

fn forward(c: &mut Criterion) {
    let (plain, slots, x) = models();
    let mut group = c.benchmark_group("forward");
    group.bench_function("plain_fields", |b| {
        b.iter(|| plain.forward(black_box(x.clone())))
    });
    group.bench_function("slots", |b| b.iter(|| slots.forward(black_box(x.clone()))));
    group.finish();
}

/// Median over rounds of (slot time / plain time), rounds interleaved to share machine noise.
fn ratio() -> f64 {
    let (plain, slots, x) = models();
    let time = |f: &dyn Fn() -> Tensor<Be, 2>| {
        let start = Instant::now();
        for _ in 0..200 {
            black_box(f());
        }
        start.elapsed().as_secs_f64()
    };
    let mut ratios: Vec<f64> = (0..15)
        .map(|_| {
            let p = time(&|| plain.forward(x.clone()));
            let s = time(&|| slots.forward(x.clone()));
            s / p
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

criterion_group!(benches, forward);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!(
        "slot/plain forward time ratio (median of 15 interleaved rounds, {LAYERS} layers, \
         hidden {HIDDEN}, batch {BATCH}): {:.4}",
        ratio()
    );
}
