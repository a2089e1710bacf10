//! Llama's classes as transformers 5.23's `modeling_llama.py` writes them: attention, MLP,
//! RMSNorm, decoder layer, model and causal LM. Every substitutable field is a slot of a shared
//! interface ([`crate::common`]), so the kit's replacements and a user's fill them.

use burn::module::Param;
use burn::nn::Embedding;
use burn::prelude::*;
use patcher_burn::layers::{InitSlot, LinearSlot, NormForward};
use patcher_burn::{BuildContext, PeerSum, Slot};
use patcher_derive::{slot_interface, Patchable};

use super::config::LlamaConfig;
use crate::auto::FamilyModel;
use crate::common::{
    attention_projections, causal_lm_output, decoder_stack_forward, embedding, gated_mlp,
    gated_mlp_projections, lm_head, ones_param, pre_norm_residuals, rms_norm,
    separate_qkv_attention, Activation, AttentionInputs, AttentionInterface, AttentionLayout,
    AttentionSpec, CausalLm, CausalLmOutput, DecoderAttention, DecoderLayer, DecoderNormInterface,
    FeedForward, KvCache, MlpInterface, MlpSpec, Outputs, RotaryEmbedding,
};

/// transformers' `LlamaAttention`: separate q/k/v/o projections (biased when
/// `attention_bias`), RoPE, grouped-query eager attention.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(AttentionInterface))]
pub struct LlamaAttention<B: Backend> {
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

impl<B: Backend> LlamaAttention<B> {
    /// `LlamaAttention(config, layer_idx)`, from the layer's shape; its linears are slots.
    pub fn new(spec: &AttentionSpec, _layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let [q_proj, k_proj, v_proj, o_proj] =
            attention_projections(spec).map(|c| c.init_slot(ctx));
        Self { q_proj, k_proj, v_proj, o_proj, spec: *spec }
    }
}

impl<B: Backend> DecoderAttention<B> for LlamaAttention<B> {
    fn forward(&self, hidden_states: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3> {
        let projections = [&*self.q_proj, &*self.k_proj, &*self.v_proj, &*self.o_proj];
        separate_qkv_attention(projections, &self.spec, hidden_states, inputs)
    }
}

/// transformers' `LlamaMLP`: `down(act(gate(x)) * up(x))`, biased when `mlp_bias`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", name = "LlamaMLP", implements(MlpInterface))]
pub struct LlamaMlp<B: Backend> {
    /// `hidden -> intermediate`.
    pub gate_proj: LinearSlot<B>,
    /// `hidden -> intermediate`.
    pub up_proj: LinearSlot<B>,
    /// `intermediate -> hidden`.
    pub down_proj: LinearSlot<B>,
    #[module(skip)]
    act_fn: Activation,
}

impl<B: Backend> LlamaMlp<B> {
    /// `LlamaMLP(config)`, its linears slots.
    pub fn new(spec: &MlpSpec, ctx: &BuildContext<'_, B>) -> Self {
        let [gate_proj, up_proj, down_proj] = gated_mlp_projections(spec).map(|c| c.init_slot(ctx));
        let act_fn = spec.hidden_act;
        Self { gate_proj, up_proj, down_proj, act_fn }
    }
}

impl<B: Backend> FeedForward<B> for LlamaMlp<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let projections = [&*self.gate_proj, &*self.up_proj, &*self.down_proj];
        gated_mlp(projections, self.act_fn, x)
    }
}

/// transformers' `LlamaRMSNorm`: `weight * x / sqrt(mean(x^2) + eps)`, in f32.
#[derive(Module, Patchable, Debug)]
#[patchable(
    crate = "patcher_burn",
    name = "LlamaRMSNorm",
    implements(DecoderNormInterface)
)]
pub struct LlamaRmsNorm<B: Backend> {
    /// Scale, `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// `variance_epsilon`.
    pub variance_epsilon: f64,
}

impl<B: Backend> LlamaRmsNorm<B> {
    /// A norm over `hidden_size` features, weight at one.
    pub fn new(hidden_size: usize, eps: f64, device: &B::Device) -> Self {
        let weight = ones_param([hidden_size], device);
        Self { weight, variance_epsilon: eps }
    }
}

impl<B: Backend> NormForward<B> for LlamaRmsNorm<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        rms_norm(x, self.weight.val(), self.variance_epsilon)
    }
}

/// Classes that fill `LlamaModel.layers`: [`LlamaDecoderLayer`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait LlamaDecoderLayerInterface<B: Backend>: DecoderLayer<B> {
    /// `Class::new(config, layer_idx, ctx)`.
    fn new(config: &LlamaConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self;
}

/// transformers' `LlamaDecoderLayer`: pre-norm attention and pre-norm MLP, each residual.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(LlamaDecoderLayerInterface))]
pub struct LlamaDecoderLayer<B: Backend> {
    /// Self-attention: [`LlamaAttention`] or its replacement.
    pub self_attn: Slot<B, dyn AttentionInterface<B>>,
    /// [`LlamaMlp`] or its replacement.
    pub mlp: Slot<B, dyn MlpInterface<B>>,
    /// Norm before attention: [`LlamaRmsNorm`] or its replacement.
    pub input_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
    /// Norm before the MLP.
    pub post_attention_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
    /// Sums each branch over the tensor-parallel peers, when built as one.
    pub peer_sum: PeerSum<B>,
}

impl<B: Backend> LlamaDecoderLayer<B> {
    /// `LlamaDecoderLayer(config, layer_idx)`, its slots built through `ctx`.
    pub fn new(config: &LlamaConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let norm = || Slot::build::<LlamaRmsNorm<B>>(ctx, config.core.norm_args());
        Self {
            self_attn: Slot::build::<LlamaAttention<B>>(
                ctx,
                (&config.attention_spec(layer_idx), layer_idx),
            ),
            mlp: Slot::build::<LlamaMlp<B>>(ctx, &config.mlp_spec()),
            input_layernorm: norm(),
            post_attention_layernorm: norm(),
            peer_sum: PeerSum::new(ctx),
        }
    }
}

impl<B: Backend> DecoderLayer<B> for LlamaDecoderLayer<B> {
    fn forward(&self, x: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3> {
        pre_norm_residuals(
            x,
            &self.peer_sum,
            |x| {
                self.self_attn
                    .forward(self.input_layernorm.forward(x), inputs)
            },
            |x| self.mlp.forward(self.post_attention_layernorm.forward(x)),
        )
    }
}

/// transformers' `LlamaModel`: token embedding, decoder layers, final norm.
#[derive(Module, Debug)]
pub struct LlamaModel<B: Backend> {
    /// `[vocab, hidden]`.
    pub embed_tokens: Embedding<B>,
    /// [`LlamaDecoderLayer`]s or their replacements.
    pub layers: Vec<Slot<B, dyn LlamaDecoderLayerInterface<B>>>,
    /// Final norm: [`LlamaRmsNorm`] or its replacement.
    pub norm: Slot<B, dyn DecoderNormInterface<B>>,
    #[module(skip)]
    rotary_emb: RotaryEmbedding,
}

impl<B: Backend> LlamaModel<B> {
    /// `LlamaModel(config)`, its slots built through `ctx`.
    pub fn new(config: &LlamaConfig, ctx: &BuildContext<'_, B>) -> Self {
        let c = &config.core;
        Self {
            embed_tokens: embedding(
                c.vocab_size,
                c.hidden_size,
                c.initializer_range,
                ctx.device(),
            ),
            layers: (0..c.num_hidden_layers)
                .map(|i| Slot::build::<LlamaDecoderLayer<B>>(ctx, (config, i)))
                .collect(),
            norm: Slot::build::<LlamaRmsNorm<B>>(ctx, c.norm_args()),
            rotary_emb: RotaryEmbedding::new(&c.rope, c.head_dim),
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
        let windows = std::iter::repeat(None);
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

/// transformers' `LlamaForCausalLM`: the model and its LM head.
#[derive(Module, Debug)]
pub struct LlamaForCausalLm<B: Backend> {
    /// The decoder.
    pub model: LlamaModel<B>,
    /// `hidden -> vocab`; `None` when `tie_word_embeddings` (the logits then use
    /// `model.embed_tokens.weight`).
    pub lm_head: Option<LinearSlot<B>>,
}

impl<B: Backend> FamilyModel<B> for LlamaForCausalLm<B> {
    type Config = LlamaConfig;

    fn build(config: &LlamaConfig, ctx: &BuildContext<'_, B>) -> Self {
        let model = LlamaModel::new(config, ctx);
        let lm_head = lm_head(&config.core).map(|c| c.init_slot(ctx));
        Self { model, lm_head }
    }
}

impl<B: Backend> CausalLm<B> for LlamaForCausalLm<B> {
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
