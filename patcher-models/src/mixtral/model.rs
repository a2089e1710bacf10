//! Mixtral's classes as transformers 5.23's `modeling_mixtral.py` writes them: attention,
//! experts, router, sparse MoE block, RMSNorm, decoder layer, model and causal LM. Every
//! substitutable field is a slot of a shared interface ([`crate::common`]), so the kit's
//! replacements and a user's fill them.

use burn::module::Param;
use burn::nn::Embedding;
use burn::prelude::*;
use patcher_burn::layers::{InitSlot, LinearSlot, NormForward};
use patcher_burn::{BuildContext, PeerSum, Slot};
use patcher_derive::{slot_interface, Patchable};

use super::config::MixtralConfig;
use crate::auto::FamilyModel;
use crate::common::{
    attention_projections, causal_lm_output, decoder_stack_forward, embedding, fused_expert_params,
    fused_experts_forward, lm_head, normal_param, ones_param, pre_norm_residuals, rms_norm,
    separate_qkv_attention, top_k_routing, Activation, AttentionInputs, AttentionInterface,
    AttentionLayout, AttentionSpec, CausalLm, CausalLmOutput, DecoderAttention, DecoderLayer,
    DecoderNormInterface, ExpertsInterface, ExpertsSpec, FeedForward, KvCache, MoeExperts,
    MoeRouter, Outputs, RotaryEmbedding, RouterInterface, RouterOutput, RouterSpec,
};

/// transformers' `MixtralAttention`: separate q/k/v/o projections without biases, RoPE,
/// grouped-query eager attention (sliding when the config has a window).
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(AttentionInterface))]
pub struct MixtralAttention<B: Backend> {
    /// `hidden -> heads * head_dim`.
    pub q_proj: LinearSlot<B>,
    /// `hidden -> kv_heads * head_dim`.
    pub k_proj: LinearSlot<B>,
    /// `hidden -> kv_heads * head_dim`.
    pub v_proj: LinearSlot<B>,
    /// `heads * head_dim -> hidden`.
    pub o_proj: LinearSlot<B>,
    #[module(skip)]
    spec: AttentionSpec,
}

impl<B: Backend> MixtralAttention<B> {
    /// `MixtralAttention(config, layer_idx)`, from the layer's shape; its linears are slots.
    pub fn new(spec: &AttentionSpec, _layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let [q_proj, k_proj, v_proj, o_proj] =
            attention_projections(spec).map(|c| c.init_slot(ctx));
        let spec = *spec;
        Self { q_proj, k_proj, v_proj, o_proj, spec }
    }
}

impl<B: Backend> DecoderAttention<B> for MixtralAttention<B> {
    fn forward(&self, hidden_states: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3> {
        let projections = [&*self.q_proj, &*self.k_proj, &*self.v_proj, &*self.o_proj];
        let spec = &self.spec;
        separate_qkv_attention(projections, spec, hidden_states, inputs)
    }
}

/// transformers' `MixtralExperts`: every expert's weights fused in two 3-D parameters in
/// PyTorch layout (the hub's per-expert `w1`/`w3`/`w2` are merged by
/// [`default_weight_conversions`](super::default_weight_conversions)).
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(ExpertsInterface))]
pub struct MixtralExperts<B: Backend> {
    /// `[num_local_experts, 2 * intermediate_size, hidden]`: each expert's gate rows, then its
    /// up rows.
    pub gate_up_proj: Param<Tensor<B, 3>>,
    /// `[num_local_experts, hidden, intermediate_size]`.
    pub down_proj: Param<Tensor<B, 3>>,
    #[module(skip)]
    act_fn: Activation,
}

impl<B: Backend> MixtralExperts<B> {
    /// `MixtralExperts(config)`.
    pub fn new(spec: &ExpertsSpec, device: &B::Device) -> Self {
        let (gate_up_proj, down_proj) = fused_expert_params(spec, device);
        let act_fn = spec.hidden_act;
        Self { gate_up_proj, down_proj, act_fn }
    }
}

impl<B: Backend> MoeExperts<B> for MixtralExperts<B> {
    fn forward(
        &self,
        hidden_states: Tensor<B, 2>,
        top_k_index: Tensor<B, 2, Int>,
        top_k_weights: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let (gate_up, down) = (self.gate_up_proj.val(), self.down_proj.val());
        fused_experts_forward(
            gate_up,
            down,
            self.act_fn,
            hidden_states,
            top_k_index,
            top_k_weights,
        )
    }
}

/// transformers' `MixtralTopKRouter`: a bare `weight [num_local_experts, hidden]`, softmax,
/// top-k, renormalised.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(RouterInterface))]
pub struct MixtralTopKRouter<B: Backend> {
    /// `[num_local_experts, hidden]`.
    pub weight: Param<Tensor<B, 2>>,
    #[module(skip)]
    spec: RouterSpec,
}

impl<B: Backend> MixtralTopKRouter<B> {
    /// `MixtralTopKRouter(config)`.
    pub fn new(spec: &RouterSpec, device: &B::Device) -> Self {
        let shape = [spec.num_experts, spec.hidden_size];
        let weight = normal_param(shape, spec.initializer_range, device);
        Self { weight, spec: *spec }
    }
}

impl<B: Backend> MoeRouter<B> for MixtralTopKRouter<B> {
    fn forward(&self, hidden_states: Tensor<B, 2>) -> RouterOutput<B> {
        let (k, norm) = (self.spec.top_k, self.spec.norm_topk_prob);
        top_k_routing(hidden_states, self.weight.val(), k, norm)
    }
}

/// Classes that fill `MixtralDecoderLayer.mlp`: [`MixtralSparseMoeBlock`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait MixtralSparseMoeBlockInterface<B: Backend>: FeedForward<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &MixtralConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// transformers' `MixtralSparseMoeBlock` (router jitter is a training option, left out).
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(MixtralSparseMoeBlockInterface))]
pub struct MixtralSparseMoeBlock<B: Backend> {
    /// The router: [`MixtralTopKRouter`] or its replacement.
    pub gate: Slot<B, dyn RouterInterface<B>>,
    /// The experts: [`MixtralExperts`] or its replacement.
    pub experts: Slot<B, dyn ExpertsInterface<B>>,
}

impl<B: Backend> MixtralSparseMoeBlock<B> {
    /// `MixtralSparseMoeBlock(config)`, its slots built through `ctx`.
    pub fn new(config: &MixtralConfig, ctx: &BuildContext<'_, B>) -> Self {
        Self {
            gate: Slot::build::<MixtralTopKRouter<B>>(ctx, &config.router_spec()),
            experts: Slot::build::<MixtralExperts<B>>(ctx, &config.experts_spec()),
        }
    }
}

impl<B: Backend> FeedForward<B> for MixtralSparseMoeBlock<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let routing = self.gate.forward(x.clone());
        (self.experts).forward(x, routing.top_k_index, routing.top_k_weights)
    }
}

/// transformers' `MixtralRMSNorm`: `weight * x / sqrt(mean(x^2) + eps)`, in f32.
#[derive(Module, Patchable, Debug)]
#[patchable(
    crate = "patcher_burn",
    name = "MixtralRMSNorm",
    implements(DecoderNormInterface)
)]
pub struct MixtralRmsNorm<B: Backend> {
    /// Scale, `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// `variance_epsilon`.
    pub variance_epsilon: f64,
}

impl<B: Backend> MixtralRmsNorm<B> {
    /// A norm over `hidden_size` features, weight at one.
    pub fn new(hidden_size: usize, eps: f64, device: &B::Device) -> Self {
        let weight = ones_param([hidden_size], device);
        Self { weight, variance_epsilon: eps }
    }
}

impl<B: Backend> NormForward<B> for MixtralRmsNorm<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        rms_norm(x, self.weight.val(), self.variance_epsilon)
    }
}

/// Classes that fill `MixtralModel.layers`: [`MixtralDecoderLayer`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait MixtralDecoderLayerInterface<B: Backend>: DecoderLayer<B> {
    /// `Class::new(config, layer_idx, ctx)`.
    fn new(config: &MixtralConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self;
}

/// transformers' `MixtralDecoderLayer`: pre-norm attention and pre-norm sparse MoE block, each
/// residual.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(MixtralDecoderLayerInterface))]
pub struct MixtralDecoderLayer<B: Backend> {
    /// Self-attention: [`MixtralAttention`] or its replacement.
    pub self_attn: Slot<B, dyn AttentionInterface<B>>,
    /// [`MixtralSparseMoeBlock`] or its replacement.
    pub mlp: Slot<B, dyn MixtralSparseMoeBlockInterface<B>>,
    /// Norm before attention: [`MixtralRmsNorm`] or its replacement.
    pub input_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
    /// Norm before the MLP.
    pub post_attention_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
    /// Sums each branch over the tensor-parallel peers, when built as one.
    pub peer_sum: PeerSum<B>,
}

impl<B: Backend> MixtralDecoderLayer<B> {
    /// `MixtralDecoderLayer(config, layer_idx)`, its slots built through `ctx`.
    pub fn new(config: &MixtralConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let norm = || Slot::build::<MixtralRmsNorm<B>>(ctx, config.core.norm_args());
        Self {
            self_attn: Slot::build::<MixtralAttention<B>>(
                ctx,
                (&config.attention_spec(layer_idx), layer_idx),
            ),
            mlp: Slot::build::<MixtralSparseMoeBlock<B>>(ctx, config),
            input_layernorm: norm(),
            post_attention_layernorm: norm(),
            peer_sum: PeerSum::new(ctx),
        }
    }
}

impl<B: Backend> DecoderLayer<B> for MixtralDecoderLayer<B> {
    fn forward(&self, x: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3> {
        pre_norm_residuals(
            x,
            &self.peer_sum,
            |x| {
                self.self_attn
                    .forward(self.input_layernorm.forward(x), inputs)
            },
            |x| {
                self.mlp
                    .forward_3d(self.post_attention_layernorm.forward(x))
            },
        )
    }
}

/// transformers' `MixtralModel`: token embedding, decoder layers, final norm.
#[derive(Module, Debug)]
pub struct MixtralModel<B: Backend> {
    /// `[vocab, hidden]`.
    pub embed_tokens: Embedding<B>,
    /// [`MixtralDecoderLayer`]s or their replacements.
    pub layers: Vec<Slot<B, dyn MixtralDecoderLayerInterface<B>>>,
    /// Final norm: [`MixtralRmsNorm`] or its replacement.
    pub norm: Slot<B, dyn DecoderNormInterface<B>>,
    #[module(skip)]
    rotary_emb: RotaryEmbedding,
    /// Every layer's sliding window (`None`: full attention).
    #[module(skip)]
    sliding_window: Option<usize>,
}

impl<B: Backend> MixtralModel<B> {
    /// `MixtralModel(config)`, its slots built through `ctx`.
    pub fn new(config: &MixtralConfig, ctx: &BuildContext<'_, B>) -> Self {
        let c = &config.core;
        Self {
            embed_tokens: embedding(
                c.vocab_size,
                c.hidden_size,
                c.initializer_range,
                ctx.device(),
            ),
            layers: (0..c.num_hidden_layers)
                .map(|i| Slot::build::<MixtralDecoderLayer<B>>(ctx, (config, i)))
                .collect(),
            norm: Slot::build::<MixtralRmsNorm<B>>(ctx, c.norm_args()),
            rotary_emb: RotaryEmbedding::new(&c.rope, c.head_dim),
            sliding_window: config.sliding_window,
        }
    }

    /// `input_ids [batch, seq]`, placed as `layout` says (after the positions in `cache`, which
    /// takes their keys and values), to the final-normed hidden states, and every hidden state
    /// when asked (see [`CausalLmOutput::hidden_states`]).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        layout: &AttentionLayout,
        cache: Option<&mut KvCache<B>>,
        output_hidden_states: bool,
    ) -> (Tensor<B, 3>, Option<Vec<Tensor<B, 3>>>) {
        let embedded = self.embed_tokens.forward(input_ids);
        let windows = std::iter::repeat(self.sliding_window);
        let norm = |hidden| self.norm.forward(hidden);
        let (rope, layers) = (Some(&self.rotary_emb), &self.layers);
        let step = (layout, cache);
        decoder_stack_forward(
            embedded,
            rope,
            layers,
            windows,
            norm,
            step,
            output_hidden_states,
        )
    }
}

/// transformers' `MixtralForCausalLM`: the model and its LM head.
#[derive(Module, Debug)]
pub struct MixtralForCausalLm<B: Backend> {
    /// The decoder.
    pub model: MixtralModel<B>,
    /// `hidden -> vocab`; `None` when `tie_word_embeddings` (the logits then use
    /// `model.embed_tokens.weight`).
    pub lm_head: Option<LinearSlot<B>>,
}

impl<B: Backend> FamilyModel<B> for MixtralForCausalLm<B> {
    type Config = MixtralConfig;

    fn build(config: &MixtralConfig, ctx: &BuildContext<'_, B>) -> Self {
        let model = MixtralModel::new(config, ctx);
        let lm_head = lm_head(&config.core).map(|c| c.init_slot(ctx));
        Self { model, lm_head }
    }
}

impl<B: Backend> CausalLm<B> for MixtralForCausalLm<B> {
    fn forward_layout(
        &self,
        input_ids: Tensor<B, 2, Int>,
        layout: &AttentionLayout,
        cache: Option<&mut KvCache<B>>,
        outputs: Outputs,
    ) -> CausalLmOutput<B> {
        let hidden = self
            .model
            .forward(input_ids, layout, cache, outputs.hidden_states);
        causal_lm_output(
            self.lm_head.as_deref(),
            &self.model.embed_tokens,
            hidden,
            outputs.logits_to_keep,
        )
    }
}
