//! `#[patchable(transparent)]`: Burn's module traits for a class that is its one module field,
//! at the class's own path.
//!
//! Burn's `#[derive(Module)]` names each field in parameter paths
//! (`mlp.experts.experts.0.gate_proj.weight`). A list-shaped class such as transformers'
//! `nn.ModuleList` subclasses must instead put its items at its own path
//! (`mlp.experts.0.gate_proj.weight`), so these impls delegate every method to the field:
//! `Module`, `AutodiffModule`, `HasAutodiffModule`, `ModuleDisplay(Default)` and `Display`.
//! Other fields must be `#[module(skip)]` (they are moved or cloned along).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::visit_mut::VisitMut;
use syn::{Error, Ident, Path, Result, Type};

use crate::ast::{Field, Input};

/// The one module field, or an error on the `transparent` attribute.
fn module_field<'a>(input: &'a Input<'a>, attr: &Path) -> Result<&'a Field<'a>> {
    let modules: Vec<&Field> = input.fields.iter().filter(|f| !f.skip).collect();
    match modules.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::new_spanned(
            attr,
            "a transparent class has exactly one module field (the list or module it is); found \
             none",
        )),
        [_, second, ..] => Err(Error::new_spanned(
            second.ident,
            "a transparent class has exactly one module field, at the class's own path; mark the \
             others #[module(skip)] or drop `transparent`",
        )),
    }
}

/// Replaces the backend parameter in a type with another type.
struct SwapBackend<'a> {
    backend: &'a Ident,
    with: &'a Type,
}

impl VisitMut for SwapBackend<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::Path(p) = ty {
            if p.qself.is_none() && p.path.is_ident(self.backend) {
                *ty = self.with.clone();
                return;
            }
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

pub fn expand(
    input: &Input,
    attr: &Path,
    backend: &Ident,
    krate: &Path,
    class_name: &str,
) -> Result<TokenStream> {
    let field = module_field(input, attr)?;
    let ident = input.ident;
    let name = field.ident;
    let ty = field.ty;
    let skipped: Vec<&Ident> = input
        .fields
        .iter()
        .filter(|f| f.skip)
        .map(|f| f.ident)
        .collect();
    let burn = quote!(#krate::__private::burn);
    let module = quote!(#burn::module);
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();

    // `Self { field: f(self.field), skipped: self.skipped }`.
    let rebuild = |value: TokenStream| quote!(Self { #name: #value, #(#skipped: self.#skipped,)* });
    let fork = rebuild(quote!(#module::Module::<#backend>::fork(self.#name, device)));
    let to_device = rebuild(quote!(#module::Module::<#backend>::to_device(self.#name, device)));
    let map = rebuild(quote!(#module::Module::<#backend>::map(self.#name, mapper)));
    let load = rebuild(quote!(#module::Module::<#backend>::load_record(self.#name, record)));

    // The same struct on the inner backend, for AutodiffModule.
    let inner_backend: Type = syn::parse_quote!(
        <#backend as #burn::tensor::backend::AutodiffBackend>::InnerBackend
    );
    let mut inner_ty: Type = syn::parse_quote!(#ident #ty_generics);
    SwapBackend { backend, with: &inner_backend }.visit_type_mut(&mut inner_ty);
    let mut autodiff_generics = input.generics.clone();
    for param in autodiff_generics.type_params_mut() {
        if param.ident == *backend {
            param.bounds = syn::parse_quote!(#burn::tensor::backend::AutodiffBackend);
        }
    }
    let (ad_impl, _, ad_where) = autodiff_generics.split_for_impl();
    let inner_field = format_ident!("__inner");

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #module::Module<#backend> for #ident #ty_generics #where_clause {
            type Record = <#ty as #module::Module<#backend>>::Record;

            fn collect_devices(
                &self,
                devices: #module::Devices<#backend>,
            ) -> #module::Devices<#backend> {
                #module::Module::<#backend>::collect_devices(&self.#name, devices)
            }

            fn fork(self, device: &#backend::Device) -> Self {
                #fork
            }

            fn to_device(self, device: &#backend::Device) -> Self {
                #to_device
            }

            fn num_params(&self) -> usize {
                #module::Module::<#backend>::num_params(&self.#name)
            }

            fn visit<__V: #module::ModuleVisitor<#backend>>(&self, visitor: &mut __V) {
                #module::Module::<#backend>::visit(&self.#name, visitor)
            }

            fn map<__M: #module::ModuleMapper<#backend>>(self, mapper: &mut __M) -> Self {
                #map
            }

            fn load_record(self, record: Self::Record) -> Self {
                #load
            }

            fn into_record(self) -> Self::Record {
                #module::Module::<#backend>::into_record(self.#name)
            }
        }

        #[automatically_derived]
        impl #ad_impl #module::AutodiffModule<#backend> for #ident #ty_generics #ad_where {
            type InnerModule = #inner_ty;

            fn valid(&self) -> Self::InnerModule {
                let #inner_field = #module::AutodiffModule::<#backend>::valid(&self.#name);
                #ident { #name: #inner_field, #(#skipped: ::core::clone::Clone::clone(&self.#skipped),)* }
            }

            fn from_inner(module: Self::InnerModule) -> Self {
                Self {
                    #name: #module::AutodiffModule::<#backend>::from_inner(module.#name),
                    #(#skipped: module.#skipped,)*
                }
            }
        }

        #[automatically_derived]
        impl #ad_impl #module::HasAutodiffModule<#backend> for #inner_ty #ad_where {
            type TrainModule = #ident #ty_generics;
        }

        #[automatically_derived]
        impl #impl_generics #module::ModuleDisplayDefault for #ident #ty_generics #where_clause {
            fn content(&self, content: #module::Content) -> ::core::option::Option<#module::Content> {
                #module::ModuleDisplayDefault::content(&self.#name, content)
                    .map(|content| content.set_top_level_type(#class_name))
            }

            fn num_params(&self) -> usize {
                #module::Module::<#backend>::num_params(&self.#name)
            }
        }

        #[automatically_derived]
        impl #impl_generics #module::ModuleDisplay for #ident #ty_generics #where_clause {}

        #[automatically_derived]
        impl #impl_generics ::core::fmt::Display for #ident #ty_generics #where_clause {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(&#module::ModuleDisplay::format(self, ::core::default::Default::default()))
            }
        }
    })
}
