//! # patcher-models
//!
//! Qwen2-MoE, Llama, Mixtral, GPT-2 and BERT written patch-ready for burn-patcher, matching
//! transformers 5.23's modules class for class and parameter for parameter (checkpoint keys map
//! 1:1 to Burn parameter paths, up to Burn's `[in, out]` Linear layout and BERT's `self` ->
//! `self_`), and the seed's replacement classes.
//!
//! - [`qwen2_moe`] has `Qwen2MoeForCausalLm` and its parts; the experts are fused in memory
//!   (`gate_up_proj [E, 2I, H]`, `down_proj [E, H, I]`) and
//!   [`qwen2_moe::default_weight_conversions`] merges the checkpoint's per-expert linears, as
//!   transformers does.
//! - [`llama`] has `LlamaForCausalLm` and its parts (no default conversions).
//! - [`mixtral`] has `MixtralForCausalLm` and its parts; experts fused in memory as in
//!   Qwen2-MoE, and [`mixtral::default_weight_conversions`] renames the hub's
//!   `block_sparse_moe` to `mlp` and merges its per-expert `w1`/`w3`/`w2`.
//! - [`gpt2`] has `Gpt2LmHeadModel` and its parts: `Conv1D` layers loaded as stored, learned
//!   positions, the head tied to `transformer.wte` (through the embedding slot), and the hub's
//!   original layout (no `transformer.` prefix, `attn.bias` buffers) loading too.
//! - [`bert`] has `BertModel` (the encoder with its pooler; token types, absolute positions,
//!   padding mask) and its classes, every one a slot; [`bert::default_weight_conversions`]
//!   renames `attention.self` (a Rust keyword) to the field `self_`, and old checkpoints'
//!   `bert.` prefix and `LayerNorm.gamma`/`.beta` load as in transformers.
//! - [`replacements`] has [`FusedQkvAttention`](replacements::FusedQkvAttention),
//!   [`SequentialExperts`](replacements::SequentialExperts),
//!   [`FusedQkvBertSelfAttention`](replacements::FusedQkvBertSelfAttention), and
//!   [`Patch`](replacements::Patch), the presets that apply them to any family
//!   ([`Patch::seed`](replacements::Patch::seed) is the seed's patcher).
//! - [`auto`] has transformers' Auto classes: [`AutoModelForCausalLm`](auto::AutoModelForCausalLm)
//!   and [`AutoModel`](auto::AutoModel) load any registered family by `config.json`'s
//!   `model_type`; a user's family registers as the kit's do.
//! - [`common`] has the public blocks every family is written with, the kit's and a user's:
//!   the slot interfaces shared by all families (an attention class is built from an
//!   [`AttentionSpec`](common::AttentionSpec), experts from an
//!   [`ExpertsSpec`](common::ExpertsSpec), ...), RoPE in transformers' rotate-half convention,
//!   eager grouped-query attention, the KV cache ([`KvCache`](common::KvCache)) and padding
//!   ([`AttentionLayout`](common::AttentionLayout)), RMSNorm, `torch.topk`'s CPU tie order,
//!   expert dispatch, the decoder stack, and [`CausalLm`](common::CausalLm), the forwards every
//!   causal LM gets from its one `forward_layout`.
//!
//! - [`tokenizer`] (feature `tokenizer`, on by default) reads a checkpoint's `tokenizer.json`
//!   and chat template as transformers' `AutoTokenizer` does, for text in and out of
//!   [`generate`](common::CausalLm::generate).
//!
//! - [`kernels`] is the `patcher-kernels` crate: on Flex and NdArray, the blocks above run some
//!   steps (SiLU, expert gather and scatter, head split with RoPE, Flex's attention) as host
//!   kernels, chosen by backend type; feature `kernels` (on by default) and
//!   [`kernels::set_enabled`] turn them off, for Burn's own ops.
//!
//! Each family is a folder of plain structs, readable and copyable: `llama/model.rs` is the
//! whole Llama.
//!
//! The substitutable fields (each layer's `self_attn`, each sparse block's `experts`) are
//! [`Slot`](patcher_burn::Slot)s: a model built with a [`Patcher`](patcher_burn::Patcher) holds
//! the replacement there, built from the original's constructor arguments.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::prelude::*;
//! use patcher_burn::list_slots;
//! use patcher_models::prelude::*;
//! use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
//! use patcher_models::replacements::Patch;
//!
//! type B = NdArray<f32>;
//! let config = Qwen2MoeConfig::from_json_str(
//!     r#"{"vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 1,
//!         "num_attention_heads": 2, "num_key_value_heads": 1, "moe_intermediate_size": 8,
//!         "shared_expert_intermediate_size": 8, "num_experts": 4, "num_experts_per_tok": 2}"#,
//! )?;
//! let device = Default::default();
//! let patcher = Patch::seed().patcher(&config)?;
//! let model = Qwen2MoeForCausalLm::<B>::with_patcher(&config, &patcher, &device)?;
//! for slot in list_slots(&model) {
//!     println!("{}: {} (was {})", slot.path, slot.class, slot.original_class);
//! }
//! let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3], [1, 3]), &device);
//! assert_eq!(model.forward(ids).dims(), [1, 3, 32]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The decoders' forward passes ([`CausalLm`](common::CausalLm), in [`prelude`]): `forward`
//! returns the logits of `input_ids [batch, seq]`, `forward_with_hidden_states` also the hidden
//! states in transformers' `output_hidden_states` convention (see [`common::CausalLmOutput`]),
//! `forward_masked` those of a left-padded batch, and `forward_cached` decodes through a
//! [`KvCache`](common::KvCache) (transformers' `DynamicCache`). BERT's takes token types and a
//! padding mask too (see [`bert::BertModel::forward`]).

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auto;
pub mod bert;
pub mod common;
mod error;
pub mod gpt2;
pub mod llama;
pub mod mixtral;
pub mod qwen2_moe;
pub mod replacements;
#[cfg(feature = "tokenizer")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokenizer")))]
pub mod tokenizer;

pub use error::ConfigError;
pub use patcher_kernels as kernels;

/// The traits a model's user calls through: [`FamilyModel`](auto::FamilyModel) (`new`,
/// `with_patcher`), [`LoadFamily`](common::LoadFamily) (`Pretrained::from_path(dir).load()`)
/// and [`CausalLm`](common::CausalLm) (`forward`, `forward_cached`, ...), and the cache.
pub mod prelude {
    pub use crate::auto::FamilyModel;
    pub use crate::common::{
        CausalLm, GenerationConfig, KvCache, LoadFamily, TensorParallelConfig,
    };
    pub use patcher_burn::Pretrained;
}

/// The README's examples, run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
