//! Checks on the parsed struct, with errors on the offending tokens.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Error, GenericParam, Ident, Result, WherePredicate};

use crate::ast::Input;

/// The name of the backend parameter, as `#[derive(Module)]` requires it.
pub const BACKEND: &str = "B";

impl Input<'_> {
    /// Checks the input and returns the backend parameter.
    pub fn validate(&self) -> Result<Ident> {
        if let Some(name) = &self.attrs.name {
            check_class_name(&name.value()).map_err(|msg| Error::new(name.span(), msg))?;
        }
        let backend = self
            .generics
            .type_params()
            .find(|p| p.ident == BACKEND)
            .map(|p| p.ident.clone())
            .ok_or_else(|| {
                Error::new_spanned(
                    self.ident,
                    "Patchable needs the backend type parameter `B: Backend` (as #[derive(Module)] \
                     does): a class is named once for every backend",
                )
            })?;
        for param in &self.generics.params {
            match param {
                GenericParam::Lifetime(l) => {
                    return Err(Error::new_spanned(
                        l,
                        "Patchable does not support lifetime parameters: modules are 'static",
                    ))
                }
                GenericParam::Type(t) if t.ident != backend => {
                    for bound in &t.bounds {
                        if mentions(bound.to_token_stream(), &backend) {
                            return Err(backend_bound_error(bound));
                        }
                    }
                    if let Some(field) = self
                        .fields
                        .iter()
                        .find(|f| !f.skip && mentions(f.ty.to_token_stream(), &t.ident))
                    {
                        return Err(Error::new_spanned(
                            field.ty,
                            format!(
                                "type parameter `{}` appears in a module field; Patchable carries \
                                 over const parameters and type parameters used only in \
                                 #[module(skip)] fields, since the class must name itself on \
                                 every backend",
                                t.ident
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        if let Some(clause) = &self.generics.where_clause {
            for predicate in &clause.predicates {
                let bounded_is_backend = matches!(predicate, WherePredicate::Type(p)
                    if p.bounded_ty.to_token_stream().to_string() == BACKEND);
                if !bounded_is_backend && mentions(predicate.to_token_stream(), &backend) {
                    return Err(backend_bound_error(predicate));
                }
            }
        }
        Ok(backend)
    }
}

fn backend_bound_error(tokens: impl ToTokens) -> Error {
    Error::new_spanned(
        tokens,
        "Patchable does not support bounds that mention the backend `B` outside `B`'s own bounds: \
         the class must name itself on every backend",
    )
}

/// A class name is a `class_mapping` key and appears in listings: identifier-like.
fn check_class_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let valid_start = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_');
    if valid_start && chars.all(|c| c.is_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!(
            "invalid class name {name:?}: use letters, digits and `_`, not starting with a digit, \
             e.g. \"LlamaAttention\""
        ))
    }
}

/// Whether `tokens` contain the identifier `ident`.
pub fn mentions(tokens: TokenStream, ident: &Ident) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == *ident,
        TokenTree::Group(g) => mentions(g.stream(), ident),
        _ => false,
    })
}
