//! The model families the command line knows.
//!
//! A family is the kit's model type ([`FamilyModel`]: its config, read with
//! [`FamilyConfig::from_file`](patcher_models::auto::FamilyConfig::from_file), and its
//! constructor), dispatched to from one [`FamilyName`] variant; its patches are the kit's
//! [`Patch`] presets its config takes ([`PatchTarget`]). Adding a family is one variant and one
//! line in [`FamilyName::dispatch`].

use burn::backend::NdArray;
use clap::ValueEnum;
use patcher_models::bert::BertModel;
use patcher_models::gpt2::Gpt2LmHeadModel;
use patcher_models::llama::LlamaForCausalLm;
use patcher_models::mixtral::MixtralForCausalLm;
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::Qwen2MoeForCausalLm;
use patcher_models::replacements::{Patch, PatchTarget};

/// The backend the command line builds models on: NdArray in f32 (plans read no weights; a
/// conversion computes in f32).
pub(crate) type B = NdArray<f32>;

/// A model family on the command line's backend: a model type of the kit (a causal LM, or
/// BERT's encoder).
pub(crate) trait Family: FamilyModel<B> {}

impl<M: FamilyModel<B>> Family for M {}

/// The `--model` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FamilyName {
    /// GPT-2 (`model_type: gpt2`).
    Gpt2,
    /// Llama (`model_type: llama`).
    Llama,
    /// Qwen2-MoE (`model_type: qwen2_moe`).
    #[value(name = "qwen2-moe", alias = "qwen2_moe")]
    Qwen2Moe,
    /// Mixtral (`model_type: mixtral`).
    Mixtral,
    /// BERT (`model_type: bert`).
    Bert,
}

impl FamilyName {
    /// The name on the command line.
    pub(crate) fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// transformers' `model_type` of the family.
    pub(crate) fn model_type(self) -> &'static str {
        self.dispatch(ModelType)
    }

    /// Every patch the family takes.
    pub(crate) fn patches(self) -> Patch {
        self.dispatch(Patches)
    }

    /// The family whose `model_type` is `model_type`, if the command line knows it.
    pub(crate) fn of_model_type(model_type: &str) -> Option<Self> {
        Self::value_variants()
            .iter()
            .copied()
            .find(|f| f.model_type() == model_type)
    }

    /// Runs `command` with the family's model type.
    pub(crate) fn dispatch<R>(self, command: impl FamilyCommand<Output = R>) -> R {
        match self {
            Self::Gpt2 => command.run::<Gpt2LmHeadModel<B>>(),
            Self::Llama => command.run::<LlamaForCausalLm<B>>(),
            Self::Qwen2Moe => command.run::<Qwen2MoeForCausalLm<B>>(),
            Self::Mixtral => command.run::<MixtralForCausalLm<B>>(),
            Self::Bert => command.run::<BertModel<B>>(),
        }
    }
}

/// A command generic over the family (what [`FamilyName::dispatch`] runs).
pub(crate) trait FamilyCommand {
    /// What the command returns.
    type Output;
    /// Runs the command for family `F`.
    fn run<F: Family>(self) -> Self::Output;
}

/// [`FamilyName::model_type`].
struct ModelType;

impl FamilyCommand for ModelType {
    type Output = &'static str;

    fn run<F: Family>(self) -> &'static str {
        <F::Config as PatchTarget>::MODEL_TYPE
    }
}

/// [`FamilyName::patches`].
struct Patches;

impl FamilyCommand for Patches {
    type Output = Patch;

    fn run<F: Family>(self) -> Patch {
        <F::Config as PatchTarget>::PATCHES
    }
}

/// The `--patch` values combined; an error naming the family's patches if one does not apply
/// to `family`.
pub(crate) fn check_patches(family: FamilyName, patches: &[Patch]) -> Result<Patch, String> {
    let patch = patches.iter().fold(Patch::NONE, |all, p| all | *p);
    let valid = family.patches();
    if let Some((wrong, _)) = patch.presets().find(|(_, p)| !valid.contains(*p)) {
        return Err(format!(
            "--patch {wrong} does not apply to the {} family; its patches are: {}",
            family.name(),
            valid
                .presets()
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(patch)
}

/// The `--model` names of every family.
pub(crate) fn family_names() -> Vec<String> {
    FamilyName::value_variants()
        .iter()
        .map(|f| f.name())
        .collect()
}
