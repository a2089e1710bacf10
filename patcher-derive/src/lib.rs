//! Procedural macros of burn-patcher: `#[derive(Patchable)]` and `#[slot_interface]`.
//!
//! Use them through the `burn-patcher` facade (`burn_patcher::Patchable`,
//! `burn_patcher::slot_interface`); the generated code names `::burn_patcher`, or the path given
//! with `crate = "..."` (e.g. `patcher_burn` inside the workspace).
//!
//! The derive is organized like thiserror's: `ast` parses the struct, `attr` its
//! `#[patchable(...)]` attributes, `valid` checks both, and `expand` generates the code.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod ast;
mod attr;
mod expand;
mod interface;
mod transparent;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput, ItemTrait};

/// Makes a Burn module struct a class addressable by name in a `Patcher`'s `class_mapping`, and
/// (with `implements(..)`) a class that fills slots of the given interfaces. The `burn-patcher`
/// crate documentation has a complete, tested example; the shape is:
///
/// ```text
/// #[derive(Module, Patchable, Debug)]
/// #[patchable(name = "LlamaAttention", implements(AttentionLayer))]
/// pub struct Attention<B: Backend> { /* ... */ }
/// ```
///
/// Attributes (all optional, each at most once):
/// - `name = "ClassName"`: the class name (default: the struct's name);
/// - `implements(Trait, path::Other)`: `#[slot_interface]` traits the struct implements for
///   every backend;
/// - `crate = "path"`: where burn-patcher is (default `::burn_patcher`).
///
/// The struct has named fields and a backend type parameter `B`, like `#[derive(Module)]`
/// requires; other generics may be const parameters, or type parameters used only in
/// `#[module(skip)]` fields.
#[proc_macro_derive(Patchable, attributes(patchable))]
pub fn derive_patchable(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes a trait the interface of slots: `Slot<B, dyn Trait<B>>` fields hold any class that
/// implements it, built with its `new`.
///
/// The trait is generic over the backend only and declares the constructor every class of the
/// interface is built with, the device last:
///
/// ```text
/// #[slot_interface]
/// pub trait AttentionLayer<B: Backend> {
///     fn new(config: &Config, layer_idx: usize, device: &B::Device) -> Self where Self: Sized;
///     fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3>;
/// }
/// ```
///
/// `where Self: Sized` is added to `new` when missing. Option: `crate = "path"`.
#[proc_macro_attribute]
pub fn slot_interface(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as ItemTrait);
    // On error the trait is kept, so the error is the only one (no cascade of unknown names).
    let unchanged = quote::ToTokens::to_token_stream(&item);
    interface::expand(args.into(), item)
        .unwrap_or_else(|e| {
            let mut out = e.into_compile_error();
            out.extend(unchanged);
            out
        })
        .into()
}
