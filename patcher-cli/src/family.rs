//! The model families and patches the command line knows.
//!
//! A family is one [`Family`] impl (config reader, model constructor, patcher per set of
//! patches; the `family!` macro writes it for a `patcher_models` family) and one [`FamilyName`]
//! variant that dispatches to it; adding a family is one `family!`, its patcher
//! function, one variant and one line in each `match` of [`FamilyName`] (and a [`PatchName`]
//! for a new patch).

use std::path::Path;

use burn::backend::NdArray;
use clap::ValueEnum;
use patcher_burn::{BuildContext, Patcher, PretrainedModel};
use patcher_models::bert::{BertConfig, BertModel};
use patcher_models::common::limits::SizedConfig;
use patcher_models::llama::{LlamaConfig, LlamaForCausalLM};
use patcher_models::mixtral::{MixtralConfig, MixtralForCausalLM};
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLM};
use patcher_models::replacements::{
    bert_fused_qkv_patcher, llama_fused_qkv_patcher, mixtral_patcher, qwen2_moe_patcher,
};
use patcher_models::ConfigError;

/// The backend the command line builds models on: NdArray in f32 (plans read no weights; a
/// conversion computes in f32).
pub(crate) type B = NdArray<f32>;

/// A patch of the command line: one of the ready patchers' replacements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub(crate) enum PatchName {
    /// The attention's q/k/v projections as one `qkv_proj` (`FusedQKVAttention`; BERT's as one
    /// `qkv`, `FusedQKVBertSelfAttention`).
    FusedQkv,
    /// The experts as a plain list of per-expert linears (`SequentialExperts`).
    SequentialExperts,
}

impl PatchName {
    /// The name on the command line.
    pub(crate) fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// A model family: how the command line reads its config, builds it and patches it.
pub(crate) trait Family {
    /// transformers' `model_type` of the family's `config.json`.
    const MODEL_TYPE: &'static str;
    /// The patches the family takes.
    const PATCHES: &'static [PatchName];
    /// The parsed `config.json`.
    type Config: SizedConfig;
    /// The model (a causal LM, or BERT's encoder).
    type Model: PretrainedModel<B>;

    /// Reads and validates `config.json`.
    fn read_config(path: &Path) -> Result<Self::Config, ConfigError>;
    /// The model built through `ctx` (with the patcher's substitutions).
    fn build(config: &Self::Config, ctx: &BuildContext<'_, B>) -> Self::Model;
    /// The patcher applying `patches` (all of them in [`Self::PATCHES`]).
    fn patcher(config: &Self::Config, patches: &[PatchName]) -> Patcher<B>;
}

/// A unit struct implementing [`Family`] for a `patcher_models` family: its `model_type`, its
/// patches, its config and causal LM types (with `from_file` and `build`), and the function
/// making its patcher.
macro_rules! family {
    ($(#[$doc:meta])* $name:ident {
        model_type: $model_type:literal,
        patches: [$($patch:ident),*],
        config: $config:ident,
        model: $model:ident,
        patcher: $patcher:path $(,)?
    }) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl Family for $name {
            const MODEL_TYPE: &'static str = $model_type;
            const PATCHES: &'static [PatchName] = &[$(PatchName::$patch),*];
            type Config = $config;
            type Model = $model<B>;

            fn read_config(path: &Path) -> Result<$config, ConfigError> {
                $config::from_file(path)
            }

            fn build(config: &$config, ctx: &BuildContext<'_, B>) -> Self::Model {
                $model::build(config, ctx)
            }

            fn patcher(config: &$config, patches: &[PatchName]) -> Patcher<B> {
                $patcher(config, patches)
            }
        }
    };
}

family!(
    /// Llama (`LlamaForCausalLM`).
    Llama {
        model_type: "llama",
        patches: [FusedQkv],
        config: LlamaConfig,
        model: LlamaForCausalLM,
        patcher: llama_patcher,
    }
);

fn llama_patcher(config: &LlamaConfig, patches: &[PatchName]) -> Patcher<B> {
    if patches.contains(&PatchName::FusedQkv) {
        llama_fused_qkv_patcher(config)
    } else {
        Patcher::new()
    }
}

family!(
    /// Qwen2-MoE (`Qwen2MoeForCausalLM`).
    Qwen2Moe {
        model_type: "qwen2_moe",
        patches: [FusedQkv, SequentialExperts],
        config: Qwen2MoeConfig,
        model: Qwen2MoeForCausalLM,
        patcher: qwen2_moe_patches,
    }
);

fn qwen2_moe_patches(config: &Qwen2MoeConfig, patches: &[PatchName]) -> Patcher<B> {
    qwen2_moe_patcher(
        config,
        patches.contains(&PatchName::FusedQkv),
        patches.contains(&PatchName::SequentialExperts),
    )
}

family!(
    /// Mixtral (`MixtralForCausalLM`).
    Mixtral {
        model_type: "mixtral",
        patches: [FusedQkv, SequentialExperts],
        config: MixtralConfig,
        model: MixtralForCausalLM,
        patcher: mixtral_patches,
    }
);

fn mixtral_patches(config: &MixtralConfig, patches: &[PatchName]) -> Patcher<B> {
    mixtral_patcher(
        config,
        patches.contains(&PatchName::FusedQkv),
        patches.contains(&PatchName::SequentialExperts),
    )
}

family!(
    /// BERT (`BertModel`).
    Bert {
        model_type: "bert",
        patches: [FusedQkv],
        config: BertConfig,
        model: BertModel,
        patcher: bert_patcher,
    }
);

fn bert_patcher(config: &BertConfig, patches: &[PatchName]) -> Patcher<B> {
    if patches.contains(&PatchName::FusedQkv) {
        bert_fused_qkv_patcher(config)
    } else {
        Patcher::new()
    }
}

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
        match self {
            Self::Llama => Llama::MODEL_TYPE,
            Self::Qwen2Moe => Qwen2Moe::MODEL_TYPE,
            Self::Mixtral => Mixtral::MODEL_TYPE,
            Self::Bert => Bert::MODEL_TYPE,
        }
    }

    /// The patches the family takes.
    pub(crate) fn patches(self) -> &'static [PatchName] {
        match self {
            Self::Llama => Llama::PATCHES,
            Self::Qwen2Moe => Qwen2Moe::PATCHES,
            Self::Mixtral => Mixtral::PATCHES,
            Self::Bert => Bert::PATCHES,
        }
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

/// `patches` sorted and deduplicated; an error naming the family's patches if one does not
/// apply to `family`.
pub(crate) fn check_patches(
    family: FamilyName,
    patches: &[PatchName],
) -> Result<Vec<PatchName>, String> {
    let mut patches = patches.to_vec();
    patches.sort();
    patches.dedup();
    let valid = family.patches();
    if let Some(wrong) = patches.iter().find(|p| !valid.contains(p)) {
        let names: Vec<String> = valid.iter().map(|p| p.name()).collect();
        return Err(format!(
            "--patch {} does not apply to --model {}; its patches are: {}",
            wrong.name(),
            family.name(),
            names.join(", ")
        ));
    }
    Ok(patches)
}

/// The `--model` names of every family.
pub(crate) fn family_names() -> Vec<String> {
    FamilyName::value_variants()
        .iter()
        .map(|f| f.name())
        .collect()
}
