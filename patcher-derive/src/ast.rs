//! The struct `#[derive(Patchable)]` applies to, parsed into what the expansion needs.

use syn::{Data, DeriveInput, Error, Fields, Generics, Ident, Result, Type};

use crate::attr::{self, Attrs};

/// A Burn module struct.
pub struct Input<'a> {
    pub ident: &'a Ident,
    pub generics: &'a Generics,
    pub attrs: Attrs,
    pub fields: Vec<Field<'a>>,
}

/// One named field.
pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    /// `#[module(skip)]`: Burn does not treat the field as a module.
    pub skip: bool,
}

impl<'a> Input<'a> {
    pub fn from_syn(node: &'a DeriveInput) -> Result<Self> {
        let fields = match &node.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named.named.iter().map(Field::from_syn).collect(),
                Fields::Unnamed(fields) => {
                    return Err(Error::new_spanned(
                        fields,
                        "Patchable needs named fields, as #[derive(Module)] does: \
                         `struct Name<B: Backend> { field: Type }`",
                    ))
                }
                Fields::Unit => {
                    return Err(Error::new_spanned(
                        &node.ident,
                        "Patchable needs a struct with named fields and a backend parameter \
                         `B: Backend`; a unit struct has no module to patch",
                    ))
                }
            },
            Data::Enum(data) => {
                return Err(Error::new_spanned(
                    data.enum_token,
                    "Patchable supports structs only: a class is a module struct whose fields \
                     can be replaced; wrap the enum in a struct",
                ))
            }
            Data::Union(data) => {
                return Err(Error::new_spanned(
                    data.union_token,
                    "Patchable supports structs only, not unions",
                ))
            }
        };
        Ok(Self {
            ident: &node.ident,
            generics: &node.generics,
            attrs: attr::parse(&node.attrs)?,
            fields,
        })
    }
}

impl<'a> Field<'a> {
    fn from_syn(field: &'a syn::Field) -> Self {
        let skip = field.attrs.iter().any(|a| {
            a.path().is_ident("module") && {
                let mut skip = false;
                // Burn's own derive reports malformed #[module(..)]; only `skip` matters here.
                let _ = a.parse_nested_meta(|meta| {
                    skip |= meta.path.is_ident("skip");
                    Ok(())
                });
                skip
            }
        });
        Self {
            ident: field.ident.as_ref().expect("named fields have names"),
            ty: &field.ty,
            skip,
        }
    }
}
