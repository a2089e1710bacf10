//! The model families the command line knows.
//!
//! A family is one [`Family`] impl (config reader and model constructor; the `family!` macro
//! writes it for a `patcher_models` family) and one [`FamilyName`] variant that dispatches to
//! it; its patches are the kit's [`Patch`] presets its config takes ([`PatchTarget`]). Adding a
//! family is one `family!`, one variant and one line in each `match` of [`FamilyName`].

use std::path::Path;

use burn::backend::NdArray;
use clap::ValueEnum;
use patcher_burn::{BuildContext, PretrainedModel};
use patcher_models::bert::{BertConfig, BertModel};
use patcher_models::common::limits::SizedConfig;
use patcher_models::llama::{LlamaConfig, LlamaForCausalLM};
use patcher_models::mixtral::{MixtralConfig, MixtralForCausalLM};
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLM};
use patcher_models::replacements::{Patch, PatchTarget};
use patcher_models::ConfigError;

/// The backend the command line builds models on: NdArray in f32 (plans read no weights; a
/// conversion computes in f32).
pub(crate) type B = NdArray<f32>;

/// A model family: how the command line reads its config and builds it.
pub(crate) trait Family {
    /// The parsed `config.json`, which says the family's `model_type` and patches.
    type Config: SizedConfig + PatchTarget;
    /// The model (a causal LM, or BERT's encoder).
    type Model: PretrainedModel<B>;

    /// Reads and validates `config.json`.
    fn read_config(path: &Path) -> Result<Self::Config, ConfigError>;
    /// The model built through `ctx` (with the patcher's substitutions).
    fn build(config: &Self::Config, ctx: &BuildContext<'_, B>) -> Self::Model;
}

/// A unit struct implementing [`Family`] for a `patcher_models` family: its config and model
/// types (with `from_file` and `build`).
macro_rules! family {
    ($(#[$doc:meta])* $name:ident { config: $config:ident, model: $model:ident $(,)? }) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl Family for $name {
            type Config = $config;
            type Model = $model<B>;

            fn read_config(path: &Path) -> Result<$config, ConfigError> {
                $config::from_file(path)
            }

            fn build(config: &$config, ctx: &BuildContext<'_, B>) -> Self::Model {
                $model::build(config, ctx)
            }
        }
    };
}

family!(
    /// Llama (`LlamaForCausalLM`).
    Llama { config: LlamaConfig, model: LlamaForCausalLM }
);

family!(
    /// Qwen2-MoE (`Qwen2MoeForCausalLM`).
    Qwen2Moe { config: Qwen2MoeConfig, model: Qwen2MoeForCausalLM }
);

family!(
    /// Mixtral (`MixtralForCausalLM`).
    Mixtral { config: MixtralConfig, model: MixtralForCausalLM }
);

family!(
    /// BERT (`BertModel`).
    Bert { config: BertConfig, model: BertModel }
);

/// The `--model` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FamilyName {
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

    /// Runs `command` with the family's [`Family`] impl.
    pub(crate) fn dispatch<R>(self, command: impl FamilyCommand<Output = R>) -> R {
        match self {
            Self::Llama => command.run::<Llama>(),
            Self::Qwen2Moe => command.run::<Qwen2Moe>(),
            Self::Mixtral => command.run::<Mixtral>(),
            Self::Bert => command.run::<Bert>(),
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
            "--patch {wrong} does not apply to --model {}; its patches are: {}",
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
