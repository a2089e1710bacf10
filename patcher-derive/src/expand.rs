//! Code generation for `#[derive(Patchable)]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, GenericParam, Ident, Path, Result};

use crate::ast::Input;

/// The crate path generated code names by default: the facade.
pub fn default_crate() -> Path {
    syn::parse_quote!(::burn_patcher)
}

pub fn derive(node: &DeriveInput) -> Result<TokenStream> {
    let input = Input::from_syn(node)?;
    let backend = input.validate()?;
    let krate = input.attrs.krate.clone().unwrap_or_else(default_crate);
    let ident = input.ident;
    let class_name = input
        .attrs
        .name
        .as_ref()
        .map(|n| n.value())
        .unwrap_or_else(|| ident.to_string());

    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let x = format_ident!("__X");
    let ab = format_ident!("__AB");
    let with_x = with_backend(&input, &backend, &quote!(#x));
    let with_ab = with_backend(&input, &backend, &quote!(#ab));
    let with_ab_inner = with_backend(
        &input,
        &backend,
        &quote!(<#ab as #krate::__private::burn::tensor::backend::AutodiffBackend>::InnerBackend),
    );
    let burn = quote!(#krate::__private::burn);
    let backend_trait = quote!(#burn::tensor::backend::Backend);
    let autodiff_trait = quote!(#burn::tensor::backend::AutodiffBackend);
    let autodiff_module = quote!(#burn::module::AutodiffModule<#ab>);

    // Type parameters carried over (used only in #[module(skip)] fields) must meet what Burn's
    // derive and a slot need of them.
    let mut predicates: Vec<TokenStream> = where_clause
        .map(|w| w.predicates.iter().map(|p| quote!(#p)).collect())
        .unwrap_or_default();
    predicates.extend(
        input
            .generics
            .type_params()
            .filter(|p| p.ident != backend)
            .map(|p| {
                let t = &p.ident;
                quote!(#t: ::core::clone::Clone + ::core::fmt::Debug + ::core::marker::Send
                    + ::core::marker::Sync + 'static)
            }),
    );
    let where_tokens = quote!(where #(#predicates),*);

    let patchable = quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Patchable for #ident #ty_generics #where_tokens {
            const CLASS_NAME: &'static str = #class_name;
            type Backend = #backend;
            type WithBackend<#x: #backend_trait> = #with_x;

            fn into_with_backend(self) -> Self::WithBackend<Self::Backend> {
                self
            }

            fn valid<#ab: #autodiff_trait>(
                module: &Self::WithBackend<#ab>,
            ) -> Self::WithBackend<<#ab as #autodiff_trait>::InnerBackend> {
                <#with_ab as #autodiff_module>::valid(module)
            }

            fn from_inner<#ab: #autodiff_trait>(
                module: Self::WithBackend<<#ab as #autodiff_trait>::InnerBackend>,
            ) -> Self::WithBackend<#ab> {
                let module: #with_ab_inner = module;
                <#with_ab as #autodiff_module>::from_inner(module)
            }
        }
    };

    let implements = input.attrs.implements.iter().map(|interface| {
        // Spanned on the trait path: "the trait `X<__X>` is not implemented" points at it.
        let span = interface.span();
        let key = quote_spanned!(span=> <dyn #interface<#backend> + 'static as #krate::SlotInterface>::Key);
        let key_trait = quote!(#krate::InterfaceKey);
        quote_spanned! {span=>
            #[automatically_derived]
            impl #impl_generics #krate::Implements<#key> for #ident #ty_generics #where_tokens {
                fn as_interface<#x: #backend_trait>(
                    module: &Self::WithBackend<#x>,
                ) -> &<#key as #key_trait>::Dyn<#x> {
                    module
                }

                fn as_interface_mut<#x: #backend_trait>(
                    module: &mut Self::WithBackend<#x>,
                ) -> &mut <#key as #key_trait>::Dyn<#x> {
                    module
                }

                fn construct<#x: #backend_trait>(
                    args: <#key as #key_trait>::Args<'_>,
                    ctx: &#krate::BuildContext<'_, #x>,
                ) -> Self::WithBackend<#x> {
                    // The class's own `new`, checked against the interface's arguments.
                    <dyn #interface<#x> + 'static>::__patcher_new(args, ctx, <#with_x>::new)
                }
            }
        }
    });

    // A class of exactly one interface is the original of that interface's slots.
    let original = match input.attrs.implements.as_slice() {
        [interface] => {
            let span = interface.span();
            quote_spanned! {span=>
                #[automatically_derived]
                impl #impl_generics #krate::OriginalClass for #ident #ty_generics #where_tokens {
                    type Interface = <dyn #interface<#backend> + 'static as #krate::SlotInterface>::Key;
                }
            }
        }
        _ => TokenStream::new(),
    };

    let transparent = match &input.attrs.transparent {
        Some(attr) => crate::transparent::expand(&input, attr, &backend, &krate, &class_name)?,
        None => TokenStream::new(),
    };

    Ok(quote! {
        #patchable
        #(#implements)*
        #original
        #transparent
    })
}

/// `Ident<..>` with the backend parameter replaced by `backend_ty`.
fn with_backend(input: &Input, backend: &Ident, backend_ty: &TokenStream) -> TokenStream {
    let ident = input.ident;
    let args = input.generics.params.iter().map(|param| match param {
        GenericParam::Type(t) if t.ident == *backend => backend_ty.clone(),
        GenericParam::Type(t) => {
            let t = &t.ident;
            quote!(#t)
        }
        GenericParam::Const(c) => {
            let c = &c.ident;
            quote!(#c)
        }
        GenericParam::Lifetime(l) => {
            let l = &l.lifetime;
            quote!(#l)
        }
    });
    quote!(#ident<#(#args),*>)
}
