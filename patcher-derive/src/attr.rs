//! The `#[patchable(...)]` attributes.

use syn::{Attribute, Error, LitStr, Path, Result, Token};

/// What `#[patchable(...)]` says; each key at most once, across all `#[patchable]` attributes.
#[derive(Default)]
pub struct Attrs {
    /// `name = "ClassName"`.
    pub name: Option<LitStr>,
    /// `implements(Trait, ..)`.
    pub implements: Vec<Path>,
    /// Set when `implements` was given (to reject a second one).
    implements_seen: bool,
    /// `crate = "path"`.
    pub krate: Option<Path>,
    /// `transparent`: the class is its one module field, at the class's own path.
    pub transparent: Option<Path>,
}

pub fn parse(attrs: &[Attribute]) -> Result<Attrs> {
    let mut out = Attrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("patchable")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse().map_err(|e| {
                    Error::new(e.span(), "expected a string: `name = \"ClassName\"`")
                })?;
                if out.name.is_some() {
                    return Err(meta.error("duplicate `name` attribute"));
                }
                out.name = Some(lit);
                Ok(())
            } else if meta.path.is_ident("implements") {
                if out.implements_seen {
                    return Err(meta.error(
                        "duplicate `implements` attribute; list every interface in one: \
                         `implements(A, B)`",
                    ));
                }
                out.implements_seen = true;
                meta.parse_nested_meta(|inner| {
                    if !inner.input.is_empty() && !inner.input.peek(Token![,]) {
                        return Err(inner.error(
                            "expected a trait path without arguments: `implements(AttentionLayer)` \
                             (the backend argument is added)",
                        ));
                    }
                    out.implements.push(inner.path);
                    Ok(())
                })
            } else if meta.path.is_ident("transparent") {
                if out.transparent.is_some() {
                    return Err(meta.error("duplicate `transparent` attribute"));
                }
                if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                    return Err(meta.error("`transparent` takes no value"));
                }
                out.transparent = Some(meta.path);
                Ok(())
            } else if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                if out.krate.is_some() {
                    return Err(meta.error("duplicate `crate` attribute"));
                }
                out.krate = Some(lit.parse().map_err(|_| {
                    Error::new(
                        lit.span(),
                        "expected a crate path, e.g. `crate = \"patcher_burn\"`",
                    )
                })?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown patchable attribute; expected `name = \"..\"`, `implements(..)`, \
                     `transparent` or `crate = \"..\"`",
                ))
            }
        })?;
    }
    Ok(out)
}
