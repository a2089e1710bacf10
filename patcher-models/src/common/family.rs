//! Macros that write the classes decoder families have in common, so that each family keeps
//! transformers' class names and parameter paths while the code lives once: the separate-q/k/v
//! attention, the fused experts, the top-k router, the RMSNorm, the pre-norm decoder layer, the
//! model (embedding, layers, final norm) and the causal LM. A family invokes them with its own
//! names (`decoder_layer_class!(MixtralDecoderLayer, MixtralConfig, ...)`) and writes by hand
//! only what is its own (Qwen2-MoE's shared expert, Mixtral's MoE block).
//!
//! Each expects the fields transformers names (`q_proj`, `gate_up_proj`, `input_layernorm`,
//! `model`, `lm_head`, ...) and the config fields every family has.

use burn::nn::Linear;
use burn::prelude::*;
use patcher_burn::layers::{LinearLayer, LinearSlot};

/// A linear field as the shared forwards take it: a Burn `Linear` or a substitutable
/// [`LinearSlot`].
pub trait AsLinearLayer<B: Backend> {
    /// The linear behind the field.
    fn as_linear_layer(&self) -> &dyn LinearLayer<B>;
}

impl<B: Backend> AsLinearLayer<B> for Linear<B> {
    fn as_linear_layer(&self) -> &dyn LinearLayer<B> {
        self
    }
}

impl<B: Backend> AsLinearLayer<B> for LinearSlot<B> {
    fn as_linear_layer(&self) -> &dyn LinearLayer<B> {
        &**self
    }
}

/// `XxxAttention` with separate `q_proj`, `k_proj`, `v_proj`, `o_proj` of type `$linear`
/// (`Linear` or `LinearSlot`, built with `$init`: `init` or `init_slot`): the struct, its
/// `new(config, layer_idx, ctx)` from `config.attention_spec(layer_idx)`, `spec()` and the
/// [`DecoderAttention`](crate::common::DecoderAttention) forward.
macro_rules! separate_qkv_attention_class {
    ($name:ident, $config:ty, $interface:ident, $linear:ident, $init:ident) => {
        #[doc = concat!("transformers' `", stringify!($name), "`.")]
        #[derive(burn::module::Module, patcher_derive::Patchable, Debug)]
        #[patchable(crate = "patcher_burn", implements($interface))]
        pub struct $name<B: burn::prelude::Backend> {
            /// `hidden -> heads * head_dim`.
            pub q_proj: $linear<B>,
            /// `hidden -> kv_heads * head_dim`.
            pub k_proj: $linear<B>,
            /// `hidden -> kv_heads * head_dim`.
            pub v_proj: $linear<B>,
            /// `heads * head_dim -> hidden`.
            pub o_proj: $linear<B>,
            #[module(skip)]
            spec: $crate::common::AttentionSpec,
        }

        impl<B: burn::prelude::Backend> $name<B> {
            #[doc = concat!("`", stringify!($name), "(config, layer_idx)`.")]
            pub fn new(
                config: &$config,
                layer_idx: usize,
                ctx: &patcher_burn::BuildContext<'_, B>,
            ) -> Self {
                let spec = config.attention_spec(layer_idx);
                let [q_proj, k_proj, v_proj, o_proj] = $crate::common::attention_projections(&spec)
                    .map(|c| $crate::common::init_linear!(c, $init, ctx));
                Self {
                    q_proj,
                    k_proj,
                    v_proj,
                    o_proj,
                    spec,
                }
            }

            /// The layer's attention shape.
            pub fn spec(&self) -> &$crate::common::AttentionSpec {
                &self.spec
            }
        }

        impl<B: burn::prelude::Backend> $crate::common::DecoderAttention<B> for $name<B> {
            fn forward(
                &self,
                hidden_states: burn::prelude::Tensor<B, 3>,
                position_embeddings: &$crate::common::PositionEmbeddings<B>,
                attention_mask: Option<&burn::prelude::Tensor<B, 4, burn::prelude::Bool>>,
            ) -> burn::prelude::Tensor<B, 3> {
                use $crate::common::AsLinearLayer;
                let projections = [&self.q_proj, &self.k_proj, &self.v_proj, &self.o_proj]
                    .map(|p| p.as_linear_layer());
                $crate::common::separate_qkv_attention(
                    projections,
                    &self.spec,
                    hidden_states,
                    position_embeddings,
                    attention_mask,
                )
            }
        }
    };
}

/// A `LinearConfig` built as a plain `Linear` (`init`) or a slot (`init_slot`).
macro_rules! init_linear {
    ($config:expr, init, $ctx:expr) => {
        $config.init($ctx.device())
    };
    ($config:expr, init_slot, $ctx:expr) => {
        patcher_burn::layers::InitSlot::init_slot(&$config, $ctx)
    };
}

/// `XxxExperts`: every expert's weights fused in two 3-D parameters in PyTorch layout, as
/// transformers 5 holds them in memory: the struct, `new(config, device)` (`num_experts` and
/// `intermediate` name the config's fields) and the [`MoeExperts`](crate::common::MoeExperts)
/// forward, transformers' eager loop
/// ([`fused_experts_forward`](crate::common::fused_experts_forward)).
macro_rules! fused_experts_class {
    ($name:ident, $config:ty, $interface:ident, $num_experts:ident, $intermediate:ident) => {
        #[doc = concat!("transformers' `", stringify!($name), "`.")]
        #[derive(burn::module::Module, patcher_derive::Patchable, Debug)]
        #[patchable(crate = "patcher_burn", implements($interface))]
        pub struct $name<B: burn::prelude::Backend> {
            #[doc = concat!(
                "`[", stringify!($num_experts), ", 2 * ", stringify!($intermediate),
                ", hidden]`: each expert's gate rows, then its up rows."
            )]
            pub gate_up_proj: burn::module::Param<burn::prelude::Tensor<B, 3>>,
            #[doc = concat!("`[", stringify!($num_experts), ", hidden, ", stringify!($intermediate), "]`.")]
            pub down_proj: burn::module::Param<burn::prelude::Tensor<B, 3>>,
            #[module(skip)]
            act_fn: $crate::common::Activation,
        }

        impl<B: burn::prelude::Backend> $name<B> {
            #[doc = concat!("`", stringify!($name), "(config)`.")]
            pub fn new(config: &$config, device: &B::Device) -> Self {
                let (gate_up_proj, down_proj) = $crate::common::fused_expert_params(
                    config.$num_experts,
                    config.hidden_size,
                    config.$intermediate,
                    config.initializer_range,
                    device,
                );
                Self {
                    gate_up_proj,
                    down_proj,
                    act_fn: config.hidden_act,
                }
            }
        }

        impl<B: burn::prelude::Backend> $crate::common::MoeExperts<B> for $name<B> {
            fn forward(
                &self,
                hidden_states: burn::prelude::Tensor<B, 2>,
                top_k_index: burn::prelude::Tensor<B, 2, burn::prelude::Int>,
                top_k_weights: burn::prelude::Tensor<B, 2>,
            ) -> burn::prelude::Tensor<B, 2> {
                $crate::common::fused_experts_forward(
                    self.gate_up_proj.val(),
                    self.down_proj.val(),
                    self.act_fn,
                    hidden_states,
                    top_k_index,
                    top_k_weights,
                )
            }
        }
    };
}

/// `XxxTopKRouter`: a bare `weight [num_experts, hidden]` in PyTorch layout (not an `nn.Linear`,
/// so the checkpoint's `mlp.gate.weight` loads as is), `top_k` and whether the top-k
/// probabilities are renormalised (`norm_topk_prob`: `true`, or the config field that says):
/// the struct, `new(config, device)` and the forward
/// ([`top_k_routing`](crate::common::top_k_routing)).
macro_rules! top_k_router_class {
    (@norm $config:ident true) => {
        true
    };
    (@norm $config:ident $field:ident) => {
        $config.$field
    };
    ($name:ident, $config:ty, $interface:ident, $num_experts:ident, norm_topk_prob = $norm:tt) => {
        #[doc = concat!("transformers' `", stringify!($name), "`.")]
        #[derive(burn::module::Module, patcher_derive::Patchable, Debug)]
        #[patchable(crate = "patcher_burn", implements($interface))]
        pub struct $name<B: burn::prelude::Backend> {
            #[doc = concat!("`[", stringify!($num_experts), ", hidden]`.")]
            pub weight: burn::module::Param<burn::prelude::Tensor<B, 2>>,
            /// `k`.
            pub top_k: usize,
            /// Renormalise the top-k probabilities.
            pub norm_topk_prob: bool,
        }

        impl<B: burn::prelude::Backend> $name<B> {
            #[doc = concat!("`", stringify!($name), "(config)`.")]
            pub fn new(config: &$config, device: &B::Device) -> Self {
                let shape = [config.$num_experts, config.hidden_size];
                Self {
                    weight: $crate::common::normal_param(shape, config.initializer_range, device),
                    top_k: config.num_experts_per_tok,
                    norm_topk_prob: $crate::common::top_k_router_class!(@norm config $norm),
                }
            }

            /// `[tokens, hidden]` to the router logits and each token's top-k experts and
            /// weights: softmax in f32, top-k in PyTorch's CPU tie order, renormalised when
            /// `norm_topk_prob`.
            pub fn forward(
                &self,
                hidden_states: burn::prelude::Tensor<B, 2>,
            ) -> $crate::common::RouterOutput<B> {
                let (weight, k) = (self.weight.val(), self.top_k);
                $crate::common::top_k_routing(hidden_states, weight, k, self.norm_topk_prob)
            }
        }

        impl<B: burn::prelude::Backend> $crate::common::MoeRouter<B> for $name<B> {
            fn forward(
                &self,
                hidden_states: burn::prelude::Tensor<B, 2>,
            ) -> $crate::common::RouterOutput<B> {
                $name::forward(self, hidden_states)
            }
        }
    };
}

/// `XxxDecoderLayer` (filling `$layer_interface` slots): `self_attn` (a slot of `$interface`,
/// `$attention` by default), `mlp` and two `$norm` slots: the struct, `new(config, layer_idx,
/// ctx)` and the pre-norm forward as [`DecoderLayer`](crate::common::DecoderLayer) (`h = x +
/// attn(norm(x))`, then `h + mlp(norm(h))`).
///
/// The `mlp` is either one slot of `$mlp_interface` (`$mlp` by default, built from the config),
/// or, with `per_layer_mlp = $mlp_ty`, a `$mlp_ty` built by `$mlp_ty::new(config, layer_idx,
/// ctx)` (a family whose layers differ, as Qwen2-MoE's dense and sparse layers do).
macro_rules! decoder_layer_class {
    (
        $name:ident, $config:ty, $layer_interface:ident,
        $attention:ident, $interface:ident, $mlp:ident, $mlp_interface:ident, $norm:ident
    ) => {
        $crate::common::decoder_layer_class!(
            @class $name, $config, $layer_interface, $attention, $interface, $norm,
            patcher_burn::Slot<B, dyn $mlp_interface<B>>,
            concat!("`", stringify!($mlp), "` or its replacement."),
            |config: &$config, _: usize, ctx: &patcher_burn::BuildContext<'_, B>| {
                patcher_burn::Slot::build::<$mlp<B>>(ctx, config)
            }
        );
    };
    (
        $name:ident, $config:ty, $layer_interface:ident,
        $attention:ident, $interface:ident, per_layer_mlp = $mlp_ty:ident, $norm:ident
    ) => {
        $crate::common::decoder_layer_class!(
            @class $name, $config, $layer_interface, $attention, $interface, $norm,
            $mlp_ty<B>,
            concat!("The layer's MLP: see [`", stringify!($mlp_ty), "`]."),
            |config: &$config, layer_idx: usize, ctx: &patcher_burn::BuildContext<'_, B>| {
                $mlp_ty::new(config, layer_idx, ctx)
            }
        );
    };
    (
        @class $name:ident, $config:ty, $layer_interface:ident, $attention:ident,
        $interface:ident, $norm:ident, $mlp_field:ty, $mlp_doc:expr, $build_mlp:expr
    ) => {
        #[doc = concat!("transformers' `", stringify!($name), "`.")]
        #[derive(burn::module::Module, patcher_derive::Patchable, Debug)]
        #[patchable(crate = "patcher_burn", implements($layer_interface))]
        pub struct $name<B: burn::prelude::Backend> {
            #[doc = concat!("Self-attention: `", stringify!($attention), "` or its replacement.")]
            pub self_attn: patcher_burn::Slot<B, dyn $interface<B>>,
            #[doc = $mlp_doc]
            pub mlp: $mlp_field,
            #[doc = concat!("Norm before attention: `", stringify!($norm), "` or its replacement.")]
            pub input_layernorm: patcher_burn::Slot<B, dyn crate::common::DecoderNormInterface<B>>,
            /// Norm before the MLP.
            pub post_attention_layernorm:
                patcher_burn::Slot<B, dyn crate::common::DecoderNormInterface<B>>,
        }

        impl<B: burn::prelude::Backend> $name<B> {
            #[doc = concat!("`", stringify!($name), "(config, layer_idx)`, its slots built through `ctx`.")]
            pub fn new(
                config: &$config,
                layer_idx: usize,
                ctx: &patcher_burn::BuildContext<'_, B>,
            ) -> Self {
                use patcher_burn::Slot;
                let norm = || Slot::build::<$norm<B>>(ctx, (config.hidden_size, config.rms_norm_eps));
                Self {
                    self_attn: Slot::build::<$attention<B>>(ctx, (config, layer_idx)),
                    mlp: ($build_mlp)(config, layer_idx, ctx),
                    input_layernorm: norm(),
                    post_attention_layernorm: norm(),
                }
            }
        }

        const _: () = {
            use burn::prelude::{Backend, Bool, Tensor};
            use $crate::common::{pre_norm_residuals, DecoderLayer, PositionEmbeddings};

            impl<B: Backend> DecoderLayer<B> for $name<B> {
                fn forward(
                    &self,
                    x: Tensor<B, 3>,
                    pos: &PositionEmbeddings<B>,
                    mask: Option<&Tensor<B, 4, Bool>>,
                ) -> Tensor<B, 3> {
                    pre_norm_residuals(
                        x,
                        |x| (self.self_attn).forward(self.input_layernorm.forward(x), pos, mask),
                        |x| self.mlp.forward(self.post_attention_layernorm.forward(x)),
                    )
                }
            }
        };
    };
}

/// The slot interfaces of a mixture-of-experts family's decoder layer (`$layer`), sparse MoE
/// block (`$block`) and router (`$router`), built from the family's `$config`.
macro_rules! moe_layer_interfaces {
    ($config:ty, $layer:ident, $block:ident, $router:ident) => {
        #[doc = concat!("Classes that fill the family's decoder-layer slots (`", stringify!($layer), "`).")]
        #[patcher_derive::slot_interface(crate = "patcher_burn")]
        pub trait $layer<B: burn::prelude::Backend>: $crate::common::DecoderLayer<B> {
            /// `Class::new(config, layer_idx, ctx)`.
            fn new(config: &$config, layer_idx: usize, ctx: &patcher_burn::BuildContext<'_, B>) -> Self;
        }

        #[doc = concat!("Classes that fill the family's sparse-MoE-block slots (`", stringify!($block), "`).")]
        #[patcher_derive::slot_interface(crate = "patcher_burn")]
        pub trait $block<B: burn::prelude::Backend>: $crate::common::FeedForward<B> {
            /// `Class::new(config, ctx)`.
            fn new(config: &$config, ctx: &patcher_burn::BuildContext<'_, B>) -> Self;
        }

        $crate::common::any_rank_forward!($block<B>);

        #[doc = concat!("Classes that fill the family's router slots (`", stringify!($router), "`).")]
        #[patcher_derive::slot_interface(crate = "patcher_burn")]
        pub trait $router<B: burn::prelude::Backend>: $crate::common::MoeRouter<B> {
            /// `Class::new(config, device)`.
            fn new(config: &$config, device: &B::Device) -> Self;
        }
    };
}

/// `XxxForCausalLM`: `model` (`$model`) and `lm_head` (a `$linear` built with `$init`, `None`
/// when tied): the struct, `new`, `with_patcher`, `build`, `forward` and
/// `forward_with_hidden_states`.
macro_rules! causal_lm_class {
    ($name:ident, $model:ident, $config:ty, $linear:ident, $init:ident) => {
        #[doc = concat!("transformers' `", stringify!($name), "`.")]
        #[derive(burn::module::Module, Debug)]
        pub struct $name<B: burn::prelude::Backend> {
            /// The decoder.
            pub model: $model<B>,
            /// `hidden -> vocab`, no bias; `None` when `tie_word_embeddings` (the logits then
            /// use `model.embed_tokens.weight`, and the checkpoint has no `lm_head.weight`).
            pub lm_head: Option<$linear<B>>,
        }

        impl<B: burn::prelude::Backend> $name<B> {
            $crate::common::root_model_constructors!($name, $config);

            /// The model built through `ctx` (what [`Self::new`] and [`Self::with_patcher`]
            /// call).
            pub fn build(config: &$config, ctx: &patcher_burn::BuildContext<'_, B>) -> Self {
                Self {
                    model: $model::new(config, ctx),
                    lm_head: $crate::common::lm_head(
                        config.tie_word_embeddings,
                        config.hidden_size,
                        config.vocab_size,
                        config.initializer_range,
                    )
                    .map(|c| $crate::common::init_linear!(c, $init, ctx)),
                }
            }

            /// `input_ids [batch, seq]` to logits `[batch, seq, vocab]`.
            pub fn forward(
                &self,
                input_ids: burn::prelude::Tensor<B, 2, burn::prelude::Int>,
            ) -> burn::prelude::Tensor<B, 3> {
                self.forward_output(input_ids, false).logits
            }

            /// Logits and every hidden state (transformers' `output_hidden_states=True`).
            pub fn forward_with_hidden_states(
                &self,
                input_ids: burn::prelude::Tensor<B, 2, burn::prelude::Int>,
            ) -> $crate::common::CausalLMOutput<B> {
                self.forward_output(input_ids, true)
            }

            fn forward_output(
                &self,
                input_ids: burn::prelude::Tensor<B, 2, burn::prelude::Int>,
                output_hidden_states: bool,
            ) -> $crate::common::CausalLMOutput<B> {
                use $crate::common::AsLinearLayer;
                let model_output = self.model.forward(input_ids, output_hidden_states);
                $crate::common::causal_lm_output(
                    self.lm_head.as_ref().map(|l| l.as_linear_layer()),
                    &self.model.embed_tokens,
                    model_output,
                )
            }
        }
    };
}

/// `new(config, device)` and `with_patcher(config, patcher, device)` of a model built by its
/// `build(config, ctx)` (the causal LMs, `BertModel`), inside its `impl` block.
macro_rules! root_model_constructors {
    ($name:ident, $config:ty) => {
        #[doc = concat!("`", stringify!($name), "(config)` with every original class, ")]
        /// parameters lazily initialised (nothing is allocated until loaded or used).
        pub fn new(config: &$config, device: &B::Device) -> Self {
            Self::build(config, &patcher_burn::BuildContext::plain(device))
        }

        /// The model with `patcher`'s class substitutions.
        ///
        /// Errors when a `class_mapping` key names no substitutable class of this model (the
        /// message lists them, with a did-you-mean) or maps a class to a replacement of
        /// another interface.
        pub fn with_patcher(
            config: &$config,
            patcher: &patcher_burn::Patcher<B>,
            device: &B::Device,
        ) -> Result<Self, patcher_burn::BuildError> {
            patcher_burn::BuildContext::build(patcher, device, |ctx| Self::build(config, ctx))
        }
    };
}

/// `XxxRMSNorm`: a `weight` (named as in the checkpoint) and an epsilon, the struct and its
/// `new(hidden_size, eps, device)` (weight at one) and `forward` ([`rms_norm`](crate::common::rms_norm)).
macro_rules! rms_norm_class {
    ($name:ident) => {
        #[doc = concat!("transformers' `", stringify!($name), "`.")]
        #[derive(burn::module::Module, patcher_derive::Patchable, Debug)]
        #[patchable(
            crate = "patcher_burn",
            implements(crate::common::DecoderNormInterface)
        )]
        pub struct $name<B: burn::prelude::Backend> {
            /// Scale, `[hidden]`.
            pub weight: burn::module::Param<burn::prelude::Tensor<B, 1>>,
            /// `variance_epsilon`.
            pub variance_epsilon: f64,
        }

        impl<B: burn::prelude::Backend> $name<B> {
            /// A norm over `hidden_size` features, weight at one.
            pub fn new(hidden_size: usize, eps: f64, device: &B::Device) -> Self {
                Self {
                    weight: $crate::common::ones_param([hidden_size], device),
                    variance_epsilon: eps,
                }
            }

            /// Normalises the last dimension.
            pub fn forward<const D: usize>(
                &self,
                x: burn::prelude::Tensor<B, D>,
            ) -> burn::prelude::Tensor<B, D> {
                $crate::common::rms_norm(x, self.weight.val(), self.variance_epsilon)
            }
        }

        impl<B: burn::prelude::Backend> patcher_burn::layers::NormForward<B> for $name<B> {
            fn forward_2d(&self, x: burn::prelude::Tensor<B, 2>) -> burn::prelude::Tensor<B, 2> {
                self.forward(x)
            }

            fn forward_3d(&self, x: burn::prelude::Tensor<B, 3>) -> burn::prelude::Tensor<B, 3> {
                self.forward(x)
            }
        }
    };
}

/// `XxxModel`: `embed_tokens`, `layers` of `$layer`, the final `norm` of `$norm`, RoPE and each
/// layer's sliding window (`config.sliding_windows()`): the struct, `new(config, ctx)` and the
/// forward ([`decoder_stack_forward`](crate::common::decoder_stack_forward)).
macro_rules! decoder_model_class {
    ($name:ident, $config:ty, $layer:ident, $layer_interface:ident, $norm:ident) => {
        #[doc = concat!("transformers' `", stringify!($name), "`.")]
        #[derive(burn::module::Module, Debug)]
        pub struct $name<B: burn::prelude::Backend> {
            /// `[vocab, hidden]`.
            pub embed_tokens: burn::nn::Embedding<B>,
            #[doc = concat!("The decoder layers: `", stringify!($layer), "` or its replacement.")]
            pub layers: Vec<patcher_burn::Slot<B, dyn $layer_interface<B>>>,
            #[doc = concat!("Final norm: `", stringify!($norm), "` or its replacement.")]
            pub norm: patcher_burn::Slot<B, dyn crate::common::DecoderNormInterface<B>>,
            #[module(skip)]
            rotary_emb: $crate::common::RotaryEmbedding,
            /// Per layer, its sliding window (`None` for full attention).
            #[module(skip)]
            windows: Vec<Option<usize>>,
        }

        impl<B: burn::prelude::Backend> $name<B> {
            #[doc = concat!("`", stringify!($name), "(config)`, its slots built through `ctx`.")]
            pub fn new(config: &$config, ctx: &patcher_burn::BuildContext<'_, B>) -> Self {
                let device = ctx.device();
                Self {
                    embed_tokens: $crate::common::embedding(
                        config.vocab_size,
                        config.hidden_size,
                        config.initializer_range,
                        device,
                    ),
                    layers: (0..config.num_hidden_layers)
                        .map(|i| patcher_burn::Slot::build::<$layer<B>>(ctx, (config, i)))
                        .collect(),
                    norm: patcher_burn::Slot::build::<$norm<B>>(
                        ctx,
                        (config.hidden_size, config.rms_norm_eps),
                    ),
                    rotary_emb: $crate::common::RotaryEmbedding::new(&config.rope, config.head_dim),
                    windows: config.sliding_windows(),
                }
            }

            /// `input_ids [batch, seq]` (positions `0..seq`, no padding) to the final-normed
            /// hidden states, and all hidden states when asked (see
            /// [`CausalLMOutput::hidden_states`](crate::common::CausalLMOutput::hidden_states)).
            #[allow(clippy::type_complexity)]
            pub fn forward(
                &self,
                input_ids: burn::prelude::Tensor<B, 2, burn::prelude::Int>,
                output_hidden_states: bool,
            ) -> (
                burn::prelude::Tensor<B, 3>,
                Option<Vec<burn::prelude::Tensor<B, 3>>>,
            ) {
                $crate::common::decoder_stack_forward(
                    &self.embed_tokens,
                    &self.rotary_emb,
                    &self.layers,
                    self.windows.iter().copied(),
                    |hidden| self.norm.forward(hidden),
                    input_ids,
                    output_hidden_states,
                )
            }
        }
    };
}

pub(crate) use {
    causal_lm_class, decoder_layer_class, decoder_model_class, fused_experts_class, init_linear,
    moe_layer_interfaces, rms_norm_class, root_model_constructors, separate_qkv_attention_class,
    top_k_router_class,
};
