//! The crate's integration tests, one module a concern, linked into one test binary (a Burn
//! test binary is tens of MB: one per file would multiply the build's disk and link time).
//! `tests/mutation.rs` is a binary of its own: its counting global allocator must see no other
//! test's allocations.

mod auto;
mod autodiff;
mod bad_config;
mod bert;
mod build;
mod cache;
mod common;
#[cfg(feature = "wgpu")]
mod device_map;
mod every_class;
mod gpt2;
mod kernels;
mod loader;
mod lora;
mod lora_save;
mod mixtral;
mod ops_reference;
mod parity;
mod quantized;
mod quantized_schemes;
mod replacements;
mod roundtrip;
mod router;
mod store;
mod tensor_parallel;
mod tensor_parallel_forward;
mod tied;
#[cfg(feature = "tokenizer")]
mod tokenizer;
