//! CPU kernels for the burn-patcher model kit, on Burn's Flex and NdArray backends.
//!
//! Flex and NdArray compute transcendental functions one element at a time through libm, and
//! some steps of a transformer cost them more in copies than in arithmetic: Burn's `silu` on a
//! `[2048, 2048]` f32 tensor took 37.6 ms on Flex where PyTorch's took 0.9 ms (2 threads); the
//! eager experts loop's gathers and scatter-adds cost Flex about as much as the experts'
//! matmuls; Flex's attention computes a causal mask's forbidden half. The kernels here run
//! those steps on the tensors' host buffers instead, in parallel over rayon's threads:
//!
//! - [`silu_mul`] and [`silu_mul_halves`]: the gated MLPs' `silu(gate) * up`, vectorised;
//! - [`gather_tokens`] and [`scatter_weighted`]: the routed tokens of each expert, and the
//!   experts' outputs added back with their routing weights in transformers' order;
//! - [`HostHeads`]: attention's head split (RoPE applied on the way, [`HostRope`]) and merge;
//! - [`attention`] (Flex only): softmax attention by blocks of query positions, each block
//!   multiplying only the keys it may attend;
//! - [`matmul_row`] (Flex only): one row times a large matrix (a decode step's projections and
//!   head) with the output columns split over the threads, where Flex's GEMV runs on one;
//! - [`transpose_into`]: the loader's tiled transpose of Linear weights (slices, any backend).
//!
//! # Choice
//!
//! Every kernel takes Burn tensors and either returns its result or hands its inputs back,
//! untouched, for the caller's Burn ops. It runs only where [`HostBackend::of`] recognises the
//! backend *type* (`burn::backend::Flex`, `burn::backend::NdArray`; not `Autodiff<_>`, whose
//! graph a host round trip would cut, nor a GPU), every tensor is f32 (f16 and bf16 fall back to
//! Burn's ops), and the kernels are on: the cargo feature `enabled` and the run-time switch
//! [`set_enabled`] (or [`disabled`] around one thread's calls, or `BURN_PATCHER_KERNELS=off` in
//! the environment). Each choice is a `trace` event (target `patcher_kernels`).
//!
//! # Values
//!
//! Head split, merge, gather and scatter move or add the same values in the same order as the
//! Burn ops they replace (bit for bit). SiLU and softmax use one vectorised `exp` whose result
//! does not depend on the CPU (see [`simd`]), within an ulp or two of libm's.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::Tensor;
//!
//! let device = Default::default();
//! let gate = Tensor::<NdArray, 1>::from_floats([-1.0, 0.0, 2.0], &device);
//! let up = Tensor::<NdArray, 1>::from_floats([1.0, 1.0, 0.5], &device);
//! // A kernel hands its inputs back where it does not run (here: not built for NdArray).
//! let out = match patcher_kernels::silu_mul(gate.clone(), up.clone()) {
//!     Ok(out) => out,
//!     Err((gate, up)) => burn::tensor::activation::silu(gate) * up,
//! };
//! let want = [-0.268_941_43, 0.0, 0.880_797_1];
//! for (got, want) in out.to_data().iter::<f32>().zip(want) {
//!     assert!((got - want).abs() < 1e-6);
//! }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod attention;
mod backend;
mod exp;
mod experts;
mod heads;
mod host;
mod matmul;
mod silu;
pub mod simd;
mod transpose;

pub use attention::attention;
pub use backend::{disabled, enabled, set_enabled, HostBackend};
pub use experts::{gather_tokens, scatter_weighted, RoutedTokens, TokenLayout};
pub use heads::{HostHeads, HostRope};
pub use matmul::matmul_row;
pub use silu::{silu_mul, silu_mul_halves};
pub use transpose::transpose_into;
