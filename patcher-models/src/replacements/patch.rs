//! [`Patch`]: the kit's replacements as values, combined with `|` and applied to any family's
//! config through [`PatchTarget`].

use std::fmt;
use std::ops::{BitOr, BitOrAssign};
use std::str::FromStr;

use burn::prelude::*;
use patcher_burn::Patcher;

use crate::ConfigError;

/// Which of the kit's replacements to apply: a set, built from the presets and combined with
/// `|`, then turned into a [`Patcher`] for a family's config with [`Patch::patcher`].
///
/// - [`Patch::fused_qkv`]: the attention's q/k/v projections as one `qkv_proj`
///   ([`FusedQkvAttention`](super::FusedQkvAttention); BERT's as one `qkv`,
///   [`FusedQkvBertSelfAttention`](super::FusedQkvBertSelfAttention)), with the weight (and bias)
///   concatenations that load a stock checkpoint into it and split it back on save;
/// - [`Patch::sequential_experts`]: the fused experts as a plain list of per-expert linears
///   ([`SequentialExperts`](super::SequentialExperts)), the checkpoint's per-expert keys loaded
///   as they are;
/// - [`Patch::seed`]: both, the seed's Python `Patcher`.
///
/// A patch names what to replace, not a family: the same value applies to every family that has
/// the classes, and [`Patch::patcher`] returns [`ConfigError::UnsupportedPatch`] for one that
/// does not (experts on Llama).
///
/// ```
/// use burn::backend::NdArray;
/// use patcher_models::llama::LlamaConfig;
/// use patcher_models::qwen2_moe::Qwen2MoeConfig;
/// use patcher_models::replacements::Patch;
///
/// let patch = Patch::fused_qkv() | Patch::sequential_experts();
/// assert_eq!(patch, Patch::seed());
/// assert_eq!(patch.to_string(), "fused-qkv+sequential-experts");
/// assert_eq!("sequential-experts+fused-qkv".parse::<Patch>()?, patch);
///
/// let moe = Qwen2MoeConfig::from_json_str(r#"{"num_experts": 4}"#)?;
/// let patcher = patch.patcher::<NdArray, _>(&moe)?;
/// let mut mapped: Vec<&str> = patcher.mapped_keys().collect();
/// mapped.sort();
/// assert_eq!(mapped, ["Qwen2MoeAttention", "Qwen2MoeExperts"]);
///
/// // Llama has no experts: a typed error naming what it takes.
/// let llama = LlamaConfig::from_json_str("{}")?;
/// let error = patch.patcher::<NdArray, _>(&llama).unwrap_err();
/// assert!(error.to_string().contains("llama takes: fused-qkv"), "{error}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Patch {
    fused_qkv: bool,
    sequential_experts: bool,
}

/// Each preset with its name on a command line, in display order.
const PRESETS: [(&str, Patch); 2] = [
    ("fused-qkv", Patch::FUSED_QKV),
    ("sequential-experts", Patch::SEQUENTIAL_EXPERTS),
];

impl Patch {
    /// No replacement: a patcher that builds every original class.
    pub const NONE: Self = Self { fused_qkv: false, sequential_experts: false };
    const FUSED_QKV: Self = Self { fused_qkv: true, sequential_experts: false };
    const SEQUENTIAL_EXPERTS: Self = Self { fused_qkv: false, sequential_experts: true };

    /// The attention's q/k/v projections fused into one.
    pub const fn fused_qkv() -> Self {
        Self::FUSED_QKV
    }

    /// The fused experts as a list of per-expert linears.
    pub const fn sequential_experts() -> Self {
        Self::SEQUENTIAL_EXPERTS
    }

    /// The seed's patch: fused QKV attention and sequential experts.
    pub const fn seed() -> Self {
        Self { fused_qkv: true, sequential_experts: true }
    }

    /// Whether every replacement of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        (self.fused_qkv || !other.fused_qkv)
            && (self.sequential_experts || !other.sequential_experts)
    }

    /// Whether the patch replaces nothing.
    pub const fn is_empty(self) -> bool {
        !self.fused_qkv && !self.sequential_experts
    }

    /// Whether the patch fuses q/k/v.
    pub const fn has_fused_qkv(self) -> bool {
        self.fused_qkv
    }

    /// Whether the patch makes the experts sequential.
    pub const fn has_sequential_experts(self) -> bool {
        self.sequential_experts
    }

    /// The presets this patch is made of, each with its name, in display order.
    pub fn presets(self) -> impl Iterator<Item = (&'static str, Patch)> {
        PRESETS.into_iter().filter(move |(_, p)| self.contains(*p))
    }

    /// Every patch made of some of this one's presets, the empty one and this one included,
    /// smallest first.
    pub fn subsets(self) -> impl Iterator<Item = Patch> {
        let presets: Vec<Patch> = self.presets().map(|(_, p)| p).collect();
        (0u32..1 << presets.len()).map(move |mask| {
            presets
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .fold(Patch::NONE, |all, (_, p)| all | *p)
        })
    }

    /// The patcher applying this patch to `config`'s family: the class mappings and the weight
    /// conversions that load the family's stock checkpoint into the replacements (and save them
    /// back in the stock layout).
    ///
    /// Errors with [`ConfigError::UnsupportedPatch`] when the family lacks a replaced class.
    pub fn patcher<B: Backend, C: PatchTarget>(
        self,
        config: &C,
    ) -> Result<Patcher<B>, ConfigError> {
        let supported = C::PATCHES;
        if !supported.contains(self) {
            return Err(ConfigError::UnsupportedPatch {
                patch: self.to_string(),
                model_type: C::MODEL_TYPE.to_string(),
                supported: supported.to_string(),
            });
        }
        Ok(config.patcher_for(self))
    }
}

/// A family config a [`Patch`] applies to: the kit's families implement it, and a user's family
/// can too, with its own classes.
pub trait PatchTarget {
    /// transformers' `model_type` of the family (named in errors).
    const MODEL_TYPE: &'static str;
    /// Every replacement the family takes.
    const PATCHES: Patch;

    /// The patcher for `patch`, which [`Patch::patcher`] has checked is in
    /// [`PATCHES`](Self::PATCHES).
    fn patcher_for<B: Backend>(&self, patch: Patch) -> Patcher<B>;
}

impl BitOr for Patch {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self {
            fused_qkv: self.fused_qkv || other.fused_qkv,
            sequential_experts: self.sequential_experts || other.sequential_experts,
        }
    }
}

impl BitOrAssign for Patch {
    fn bitor_assign(&mut self, other: Self) {
        *self = *self | other;
    }
}

/// `fused-qkv+sequential-experts`; `none` for the empty patch.
impl fmt::Display for Patch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.presets().map(|(name, _)| name).collect();
        f.write_str(&names.join("+"))
    }
}

/// A patch's name is not one of the presets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown patch `{0}`: the patches are fused-qkv, sequential-experts, seed (both) and none, \
     combined with `+` or `,`"
)]
pub struct UnknownPatch(pub String);

/// Parses what [`Display`](fmt::Display) writes, `seed` and `none`, with the parts joined by `+`
/// or `,` in any order (`_` may stand for `-`).
impl FromStr for Patch {
    type Err = UnknownPatch;

    fn from_str(text: &str) -> Result<Self, UnknownPatch> {
        text.split(['+', ','])
            .map(|part| {
                let name = part.trim().replace('_', "-");
                match name.as_str() {
                    "none" => Some(Patch::NONE),
                    "seed" => Some(Patch::seed()),
                    _ => PRESETS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p),
                }
                .ok_or_else(|| UnknownPatch(part.trim().to_string()))
            })
            .try_fold(Patch::NONE, |all, part| Ok(all | part?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_patch_round_trips_through_its_name() {
        for patch in [
            Patch::NONE,
            Patch::fused_qkv(),
            Patch::sequential_experts(),
            Patch::seed(),
        ] {
            assert_eq!(patch.to_string().parse::<Patch>(), Ok(patch));
        }
        assert_eq!("seed".parse::<Patch>(), Ok(Patch::seed()));
        assert_eq!("fused_qkv, none".parse::<Patch>(), Ok(Patch::fused_qkv()));
        assert_eq!(
            "fused-qkv+lora".parse::<Patch>(),
            Err(UnknownPatch("lora".into()))
        );
    }

    #[test]
    fn subsets_are_every_combination() {
        let all: Vec<Patch> = Patch::seed().subsets().collect();
        assert_eq!(
            all,
            [
                Patch::NONE,
                Patch::fused_qkv(),
                Patch::sequential_experts(),
                Patch::seed()
            ]
        );
        assert_eq!(Patch::NONE.subsets().collect::<Vec<_>>(), [Patch::NONE]);
    }

    #[test]
    fn contains_is_the_subset_order() {
        assert!(Patch::seed().contains(Patch::fused_qkv()));
        assert!(Patch::seed().contains(Patch::NONE));
        assert!(!Patch::fused_qkv().contains(Patch::sequential_experts()));
        assert!(!Patch::fused_qkv().contains(Patch::seed()));
    }
}
