//! Qwen2-MoE's dense classes as transformers 5.23's `modeling_qwen2_moe.py` writes them:
//! attention, MLP, RMSNorm, decoder layer, model and causal LM (the sparse block is in `moe`).

use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::prelude::*;
use patcher_burn::layers::NormForward;
use patcher_burn::{BuildContext, PeerSum, Slot};
use patcher_derive::{slot_interface, Patchable};

use super::config::Qwen2MoeConfig;
use super::moe::Qwen2MoeLayerMlp;
use crate::auto::FamilyModel;
use crate::common::{
    attention_projections, causal_lm_output, decoder_stack_forward, embedding, gated_mlp,
    gated_mlp_projections, lm_head, ones_param, pre_norm_residuals, rms_norm,
    separate_qkv_attention, Activation, AttentionInputs, AttentionInterface, AttentionLayout,
    AttentionSpec, CausalLm, CausalLmOutput, DecoderAttention, DecoderLayer, DecoderNormInterface,
    FeedForward, KvCache, MlpInterface, MlpSpec, Outputs, RotaryEmbedding,
};

/// transformers' `Qwen2MoeAttention`: separate q/k/v projections (biased when `qkv_bias`), RoPE,
/// grouped-query eager attention (sliding on `sliding_attention` layers), output projection
/// without bias.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(AttentionInterface))]
pub struct Qwen2MoeAttention<B: Backend> {
    /// `hidden -> heads * head_dim`.
    pub q_proj: Linear<B>,
    /// `hidden -> kv_heads * head_dim`.
    pub k_proj: Linear<B>,
    /// `hidden -> kv_heads * head_dim`.
    pub v_proj: Linear<B>,
    /// `heads * head_dim -> hidden`.
    pub o_proj: Linear<B>,
    #[module(skip)]
    spec: AttentionSpec,
}

impl<B: Backend> Qwen2MoeAttention<B> {
    /// `Qwen2MoeAttention(config, layer_idx)`, from the layer's shape.
    pub fn new(spec: &AttentionSpec, _layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let [q_proj, k_proj, v_proj, o_proj] =
            attention_projections(spec).map(|c| c.init(ctx.device()));
        let spec = *spec;
        Self { q_proj, k_proj, v_proj, o_proj, spec }
    }
}

impl<B: Backend> DecoderAttention<B> for Qwen2MoeAttention<B> {
    fn forward(&self, hidden_states: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3> {
        separate_qkv_attention(
            [&self.q_proj, &self.k_proj, &self.v_proj, &self.o_proj],
            &self.spec,
            hidden_states,
            inputs,
        )
    }
}

/// transformers' `Qwen2MoeMLP` (a dense layer's MLP and the shared expert):
/// `down(act(gate(x)) * up(x))`, no biases.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", name = "Qwen2MoeMLP", implements(MlpInterface))]
pub struct Qwen2MoeMlp<B: Backend> {
    /// `hidden -> intermediate`.
    pub gate_proj: Linear<B>,
    /// `hidden -> intermediate`.
    pub up_proj: Linear<B>,
    /// `intermediate -> hidden`.
    pub down_proj: Linear<B>,
    #[module(skip)]
    act_fn: Activation,
}

impl<B: Backend> Qwen2MoeMlp<B> {
    /// `Qwen2MoeMLP(config, intermediate_size)`.
    pub fn new(spec: &MlpSpec, ctx: &BuildContext<'_, B>) -> Self {
        let [gate_proj, up_proj, down_proj] =
            gated_mlp_projections(spec).map(|c| c.init(ctx.device()));
        let act_fn = spec.hidden_act;
        Self { gate_proj, up_proj, down_proj, act_fn }
    }
}

impl<B: Backend> FeedForward<B> for Qwen2MoeMlp<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        gated_mlp(
            [&self.gate_proj, &self.up_proj, &self.down_proj],
            self.act_fn,
            x,
        )
    }
}

/// transformers' `Qwen2MoeRMSNorm`: `weight * x / sqrt(mean(x^2) + eps)`, in f32.
#[derive(Module, Patchable, Debug)]
#[patchable(
    crate = "patcher_burn",
    name = "Qwen2MoeRMSNorm",
    implements(DecoderNormInterface)
)]
pub struct Qwen2MoeRmsNorm<B: Backend> {
    /// Scale, `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// `variance_epsilon`.
    pub variance_epsilon: f64,
}

impl<B: Backend> Qwen2MoeRmsNorm<B> {
    /// A norm over `hidden_size` features, weight at one.
    pub fn new(hidden_size: usize, eps: f64, device: &B::Device) -> Self {
        let weight = ones_param([hidden_size], device);
        Self { weight, variance_epsilon: eps }
    }
}

impl<B: Backend> NormForward<B> for Qwen2MoeRmsNorm<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        rms_norm(x, self.weight.val(), self.variance_epsilon)
    }
}

/// Classes that fill `Qwen2MoeModel.layers`: [`Qwen2MoeDecoderLayer`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait Qwen2MoeDecoderLayerInterface<B: Backend>: DecoderLayer<B> {
    /// `Class::new(config, layer_idx, ctx)`.
    fn new(config: &Qwen2MoeConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self;
}

/// transformers' `Qwen2MoeDecoderLayer`: pre-norm attention and pre-norm MLP (sparse or dense),
/// each residual.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(Qwen2MoeDecoderLayerInterface))]
pub struct Qwen2MoeDecoderLayer<B: Backend> {
    /// Self-attention: [`Qwen2MoeAttention`] or its replacement.
    pub self_attn: Slot<B, dyn AttentionInterface<B>>,
    /// The layer's sparse MoE block or dense MLP.
    pub mlp: Qwen2MoeLayerMlp<B>,
    /// Norm before attention: [`Qwen2MoeRmsNorm`] or its replacement.
    pub input_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
    /// Norm before the MLP.
    pub post_attention_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
    /// Sums each branch over the tensor-parallel peers, when built as one.
    pub peer_sum: PeerSum<B>,
}

impl<B: Backend> Qwen2MoeDecoderLayer<B> {
    /// `Qwen2MoeDecoderLayer(config, layer_idx)`, its slots built through `ctx`.
    pub fn new(config: &Qwen2MoeConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let norm = || Slot::build::<Qwen2MoeRmsNorm<B>>(ctx, config.core.norm_args());
        let attention = (&config.attention_spec(layer_idx), layer_idx);
        Self {
            self_attn: Slot::build::<Qwen2MoeAttention<B>>(ctx, attention),
            mlp: Qwen2MoeLayerMlp::new(config, layer_idx, ctx),
            input_layernorm: norm(),
            post_attention_layernorm: norm(),
            peer_sum: PeerSum::new(ctx),
        }
    }
}

impl<B: Backend> DecoderLayer<B> for Qwen2MoeDecoderLayer<B> {
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

/// transformers' `Qwen2MoeModel`: token embedding, decoder layers, final norm.
#[derive(Module, Debug)]
pub struct Qwen2MoeModel<B: Backend> {
    /// `[vocab, hidden]`.
    pub embed_tokens: Embedding<B>,
    /// [`Qwen2MoeDecoderLayer`]s or their replacements.
    pub layers: Vec<Slot<B, dyn Qwen2MoeDecoderLayerInterface<B>>>,
    /// Final norm: [`Qwen2MoeRmsNorm`] or its replacement.
    pub norm: Slot<B, dyn DecoderNormInterface<B>>,
    #[module(skip)]
    rotary_emb: RotaryEmbedding,
    /// Per layer, its sliding window (`None` for full attention).
    #[module(skip)]
    windows: Vec<Option<usize>>,
}

impl<B: Backend> Qwen2MoeModel<B> {
    /// `Qwen2MoeModel(config)`, its slots built through `ctx`.
    pub fn new(config: &Qwen2MoeConfig, ctx: &BuildContext<'_, B>) -> Self {
        let c = &config.core;
        let layers = 0..c.num_hidden_layers;
        Self {
            embed_tokens: embedding(
                c.vocab_size,
                c.hidden_size,
                c.initializer_range,
                ctx.device(),
            ),
            layers: (layers.clone())
                .map(|i| Slot::build::<Qwen2MoeDecoderLayer<B>>(ctx, (config, i)))
                .collect(),
            norm: Slot::build::<Qwen2MoeRmsNorm<B>>(ctx, c.norm_args()),
            rotary_emb: RotaryEmbedding::new(&c.rope, c.head_dim),
            windows: layers
                .map(|i| config.attention_spec(i).sliding_window)
                .collect(),
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
        let windows = self.windows.iter().copied();
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

/// transformers' `Qwen2MoeForCausalLM`: the model and its LM head.
#[derive(Module, Debug)]
pub struct Qwen2MoeForCausalLm<B: Backend> {
    /// The decoder.
    pub model: Qwen2MoeModel<B>,
    /// `hidden -> vocab`; `None` when `tie_word_embeddings` (the logits then use
    /// `model.embed_tokens.weight`).
    pub lm_head: Option<Linear<B>>,
}

impl<B: Backend> FamilyModel<B> for Qwen2MoeForCausalLm<B> {
    type Config = Qwen2MoeConfig;

    fn build(config: &Qwen2MoeConfig, ctx: &BuildContext<'_, B>) -> Self {
        let model = Qwen2MoeModel::new(config, ctx);
        let lm_head = lm_head(&config.core).map(|c| c.init(ctx.device()));
        Self { model, lm_head }
    }
}

impl<B: Backend> CausalLm<B> for Qwen2MoeForCausalLm<B> {
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
            self.lm_head.as_ref().map(|l| l as _),
            &self.model.embed_tokens,
            hidden,
            outputs.logits_to_keep,
        )
    }
}
