//! BERT as transformers 5.23 writes it (`models/bert/modeling_bert.py`): `BertModel` and its
//! classes, each a slot, with transformers' class and parameter names.
//!
//! One name differs: Rust cannot name a field `self`, so `BertAttention.self` is `self_`, and
//! [`default_weight_conversions`] renames the checkpoint's `.attention.self.` to it on load (and
//! back on save). [`legacy_weight_conversions`] renames old checkpoints' `LayerNorm.gamma`/`.beta`
//! to `.weight`/`.bias`, as transformers does. The bare model loads the `bert.` keys of
//! `BertForPreTraining`/`BertForMaskedLM` checkpoints and ignores their heads (`cls.`).

mod config;
mod model;

use patcher_core::{WeightRenaming, WeightTransform};

pub use crate::common::{
    EncoderInputError as BertInputError, EncoderMask as BertMask, EncoderOutput as BertModelOutput,
};
pub use config::BertConfig;
pub use model::*;

/// transformers' `BertAttention.self` is `self_` here (Rust cannot name a field `self`): the
/// renaming of checkpoint keys `.attention.self.` -> `.attention.self_.` on load (and back on
/// save).
pub fn default_weight_conversions() -> Vec<WeightTransform> {
    let renaming = WeightRenaming::new(r"\.attention\.self\.", ".attention.self_.");
    vec![renaming.expect("a valid pattern").into()]
}

/// transformers' `mapping["legacy"]` for BERT: `LayerNorm.gamma` -> `LayerNorm.weight`,
/// `LayerNorm.beta` -> `LayerNorm.bias` (saved back only when a load used them).
pub fn legacy_weight_conversions() -> Vec<WeightTransform> {
    let names = [("gamma", "weight"), ("beta", "bias")];
    names
        .map(|(old, new)| {
            let renaming =
                WeightRenaming::new(format!("LayerNorm.{old}"), format!("LayerNorm.{new}"));
            renaming.expect("a valid pattern").into()
        })
        .into()
}

impl<B: burn::prelude::Backend> patcher_burn::PretrainedModel<B> for BertModel<B> {
    fn weight_conversions() -> Vec<WeightTransform> {
        default_weight_conversions()
    }

    fn legacy_weight_conversions() -> Vec<WeightTransform> {
        legacy_weight_conversions()
    }

    fn field_renamings() -> Vec<WeightTransform> {
        // The defaults are only `attention.self` -> `attention.self_`.
        default_weight_conversions()
    }

    fn base_model_prefix() -> Option<&'static str> {
        Some("bert")
    }

    fn keys_to_ignore_on_load_unexpected() -> Vec<String> {
        // The heads of `BertFor*` checkpoints, and the position ids older ones saved.
        vec![r"^cls\.".into(), r"embeddings\.position_ids$".into()]
    }
}

impl crate::auto::FamilyConfig for BertConfig {
    fn from_file(path: &std::path::Path) -> Result<Self, patcher_core::ConfigError> {
        BertConfig::from_file(path)
    }
}

impl<B: burn::prelude::Backend> crate::auto::FamilyModel<B> for BertModel<B> {
    type Config = BertConfig;

    fn build(config: &BertConfig, ctx: &patcher_burn::BuildContext<'_, B>) -> Self {
        BertModel::build(config, ctx)
    }
}
