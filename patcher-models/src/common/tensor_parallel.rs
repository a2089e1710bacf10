//! Tensor parallelism for the kit's decoders: each family's config gives one peer's config
//! (its share of the heads and of the MLP and expert widths) and the plan that loads its
//! slices (transformers' `base_model_tp_plan`, with the rules of the kit's patched classes).

use patcher_core::plan::{ShardError, Split, TensorParallel};

use super::config::DecoderConfig;
use crate::error::ConfigError;

/// A config that a model can be split across peers with (transformers' `tp_plan`).
///
/// ```
/// use patcher_models::llama::LlamaConfig;
/// use patcher_models::prelude::*;
///
/// let config = LlamaConfig::from_json_str(
///     r#"{"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
///         "intermediate_size": 112, "num_hidden_layers": 2, "vocab_size": 128}"#,
/// )?;
/// let (peer, plan) = config.tensor_parallel(1, 2)?;
/// assert_eq!(peer.core.num_attention_heads, config.core.num_attention_heads / 2);
/// assert_eq!(peer.core.intermediate_size, config.core.intermediate_size / 2);
/// assert_eq!((plan.rank(), plan.world()), (1, 2));
/// // 4 peers over 2 KV heads: each keeps the one its query head uses.
/// let (peer, _) = config.tensor_parallel(3, 4)?;
/// assert_eq!((peer.core.num_attention_heads, peer.core.num_key_value_heads), (1, 1));
/// // Load it with `LoadOptions::default().tensor_parallel(plan)` and build it from `peer`.
/// # Ok::<(), patcher_models::ConfigError>(())
/// ```
pub trait TensorParallelConfig: Sized {
    /// Peer `rank` of `world`: the config its model is built from (local widths) and the plan
    /// that loads its slices of the full checkpoint.
    ///
    /// Errors when a width does not divide among the peers (query heads, MLP or expert widths),
    /// or when KV heads neither divide among them nor divide them (fewer KV heads than peers are
    /// replicated: each peer keeps the head its query heads use).
    fn tensor_parallel(
        &self,
        rank: usize,
        world: usize,
    ) -> Result<(Self, TensorParallel), ConfigError>;
}

/// The fields every decoder has: peer `rank` of `world` gets its share of the query heads, of
/// the KV heads (or one replicated KV head) and of `intermediate_size`, the head width
/// unchanged; and [`DecoderConfig::tensor_parallel_plan`].
impl TensorParallelConfig for DecoderConfig {
    fn tensor_parallel(
        &self,
        rank: usize,
        world: usize,
    ) -> Result<(Self, TensorParallel), ConfigError> {
        let plan = self.tensor_parallel_plan(rank, world)?;
        let (heads, kv) = (self.num_attention_heads, self.num_key_value_heads);
        let local_heads = share("num_attention_heads", heads, world)?;
        if !kv.is_multiple_of(world) && !world.is_multiple_of(kv) {
            return Err(ConfigError::Field {
                field: "num_key_value_heads".into(),
                value: kv.to_string(),
                reason: format!(
                    "{kv} KV heads can neither be shared out among {world} peers nor \
                     replicated on an equal number of them; use a number of peers that \
                     divides or is a multiple of it"
                ),
            });
        }
        let mut peer = self.clone();
        peer.num_attention_heads = local_heads;
        peer.num_key_value_heads = (kv / world).max(1);
        peer.intermediate_size = share("intermediate_size", self.intermediate_size, world)?;
        peer.validate()?;
        Ok((peer, plan))
    }
}

impl DecoderConfig {
    /// The plan of peer `rank` of `world` for the kit's decoder classes: q/k/v by heads (and a
    /// fused `qkv_proj` by its q, k and v heads), `o_proj` rowwise; the MLP's, the shared
    /// expert's and every expert's gate/up colwise and down rowwise (transformers 5's fused
    /// `experts.gate_up_proj` as packed gate|up). Embeddings, norms, routers and the LM head are
    /// whole on every peer.
    pub fn tensor_parallel_plan(
        &self,
        rank: usize,
        world: usize,
    ) -> Result<TensorParallel, ShardError> {
        let (heads, kv) = (self.num_attention_heads, self.num_key_value_heads);
        let attn = "layers.*.self_attn";
        let mut plan = TensorParallel::new(rank, world)?
            .split(&format!("{attn}.q_proj"), Split::Heads(vec![heads]))?
            .split(&format!("{attn}.k_proj"), Split::Heads(vec![kv]))?
            .split(&format!("{attn}.v_proj"), Split::Heads(vec![kv]))?
            .split(
                &format!("{attn}.qkv_proj"),
                Split::Heads(vec![heads, kv, kv]),
            )?
            .split(&format!("{attn}.o_proj"), Split::Rowwise)?
            .split(
                "layers.*.mlp.experts.gate_up_proj",
                Split::PackedColwise(vec![1, 1]),
            )?
            .split("layers.*.mlp.experts.down_proj", Split::Rowwise)?;
        for mlp in [
            "layers.*.mlp",
            "layers.*.mlp.shared_expert",
            "layers.*.mlp.experts.*",
        ] {
            plan = plan
                .split(&format!("{mlp}.gate_proj"), Split::Colwise)?
                .split(&format!("{mlp}.up_proj"), Split::Colwise)?
                .split(&format!("{mlp}.down_proj"), Split::Rowwise)?;
        }
        Ok(plan)
    }
}

/// `value / world`, or an error naming `field`.
pub(crate) fn share(field: &str, value: usize, world: usize) -> Result<usize, ConfigError> {
    match value.is_multiple_of(world) {
        true => Ok(value / world),
        false => Err(indivisible(field, value, world)),
    }
}

fn indivisible(field: &str, value: usize, world: usize) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        value: value.to_string(),
        reason: format!(
            "does not divide among {world} peers; use a number of peers that divides it"
        ),
    }
}
