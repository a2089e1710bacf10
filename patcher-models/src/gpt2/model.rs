//! GPT-2's classes as transformers 5.23's `modeling_gpt2.py` writes them: attention (one fused
//! `c_attn`), MLP, block, model and LM head model. `Conv1D` layers (weights stored `[in, out]`),
//! learned positions, pre-norm blocks, the head tied to `wte`.

use burn::module::Initializer;
use burn::nn::{EmbeddingConfig, LayerNormConfig};
use burn::prelude::*;
use patcher_burn::layers::{
    Conv1D, Conv1DConfig, EmbeddingSlot, InitSlot, LayerNormSlot, LinearSlot,
};
use patcher_burn::{BuildContext, Slot};
use patcher_derive::{slot_interface, Patchable};

use super::config::Gpt2Config;
use crate::auto::FamilyModel;
use crate::common::{
    causal_lm_output, decoder_stack_forward, fused_qkv_attention, linear_config, Activation,
    AttentionInputs, AttentionInterface, AttentionLayout, AttentionSpec, CausalLm, CausalLmOutput,
    DecoderAttention, DecoderLayer, FeedForward, KvCache, MlpInterface, MlpSpec, Outputs,
};

fn conv1d<B: Backend>(d_in: usize, d_out: usize, std: f64, device: &B::Device) -> Conv1D<B> {
    let initializer = Initializer::Normal { mean: 0.0, std };
    Conv1DConfig::new(d_in, d_out)
        .with_initializer(initializer)
        .init(device)
}

/// transformers' `GPT2Attention`: q/k/v from one `c_attn` (their columns in that order), no
/// RoPE, output through `c_proj`.
#[derive(Module, Patchable, Debug)]
#[patchable(
    crate = "patcher_burn",
    name = "GPT2Attention",
    implements(AttentionInterface)
)]
pub struct Gpt2Attention<B: Backend> {
    /// `n_embd -> 3 * n_embd`.
    pub c_attn: Conv1D<B>,
    /// `n_embd -> n_embd`.
    pub c_proj: Conv1D<B>,
    #[module(skip)]
    spec: AttentionSpec,
}

impl<B: Backend> Gpt2Attention<B> {
    /// `GPT2Attention(config, layer_idx)`.
    pub fn new(spec: &AttentionSpec, _layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let (h, std, device) = (spec.hidden_size, spec.initializer_range, ctx.device());
        let (c_attn, c_proj) = (conv1d(h, 3 * h, std, device), conv1d(h, h, std, device));
        Self { c_attn, c_proj, spec: *spec }
    }
}

impl<B: Backend> DecoderAttention<B> for Gpt2Attention<B> {
    fn forward(&self, x: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3> {
        let qkv = self.c_attn.forward(x);
        self.c_proj
            .forward(fused_qkv_attention(&self.spec, qkv, inputs))
    }
}

/// transformers' `GPT2MLP`: `c_proj(act(c_fc(x)))`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", name = "GPT2MLP", implements(MlpInterface))]
pub struct Gpt2Mlp<B: Backend> {
    /// `n_embd -> n_inner`.
    pub c_fc: Conv1D<B>,
    /// `n_inner -> n_embd`.
    pub c_proj: Conv1D<B>,
    #[module(skip)]
    act: Activation,
}

impl<B: Backend> Gpt2Mlp<B> {
    /// `GPT2MLP(intermediate_size, config)`.
    pub fn new(spec: &MlpSpec, ctx: &BuildContext<'_, B>) -> Self {
        let (h, i, std) = (
            spec.hidden_size,
            spec.intermediate_size,
            spec.initializer_range,
        );
        let (c_fc, c_proj) = (
            conv1d(h, i, std, ctx.device()),
            conv1d(i, h, std, ctx.device()),
        );
        Self { c_fc, c_proj, act: spec.hidden_act }
    }
}

impl<B: Backend> FeedForward<B> for Gpt2Mlp<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.c_proj.forward(self.act.forward(self.c_fc.forward(x)))
    }
}

/// Classes that fill `GPT2Model.h`: [`Gpt2Block`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait Gpt2BlockInterface<B: Backend>: DecoderLayer<B> {
    /// `Class::new(config, layer_idx, ctx)`.
    fn new(config: &Gpt2Config, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self;
}

/// transformers' `GPT2Block`: `x + attn(ln_1(x))`, then `h + mlp(ln_2(h))`.
#[derive(Module, Patchable, Debug)]
#[patchable(
    crate = "patcher_burn",
    name = "GPT2Block",
    implements(Gpt2BlockInterface)
)]
pub struct Gpt2Block<B: Backend> {
    /// Norm before attention.
    pub ln_1: LayerNormSlot<B>,
    /// [`Gpt2Attention`] or its replacement.
    pub attn: Slot<B, dyn AttentionInterface<B>>,
    /// Norm before the MLP.
    pub ln_2: LayerNormSlot<B>,
    /// [`Gpt2Mlp`] or its replacement.
    pub mlp: Slot<B, dyn MlpInterface<B>>,
}

impl<B: Backend> Gpt2Block<B> {
    /// `GPT2Block(config, layer_idx)`, its slots built through `ctx`.
    pub fn new(config: &Gpt2Config, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let norm = LayerNormConfig::new(config.n_embd).with_epsilon(config.layer_norm_epsilon);
        let attention = (&config.attention_spec(), layer_idx);
        Self {
            ln_1: norm.init_slot(ctx),
            attn: Slot::build::<Gpt2Attention<B>>(ctx, attention),
            ln_2: norm.init_slot(ctx),
            mlp: Slot::build::<Gpt2Mlp<B>>(ctx, &config.mlp_spec()),
        }
    }
}

impl<B: Backend> DecoderLayer<B> for Gpt2Block<B> {
    fn forward(&self, x: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3> {
        let h = x.clone() + self.attn.forward(self.ln_1.forward(x), inputs);
        h.clone() + self.mlp.forward(self.ln_2.forward(h))
    }
}

/// transformers' `GPT2Model`: token and learned position embeddings, blocks, final norm.
#[derive(Module, Debug)]
pub struct Gpt2Model<B: Backend> {
    /// `[vocab, n_embd]`, also the head's weight when tied.
    pub wte: EmbeddingSlot<B>,
    /// `[n_positions, n_embd]`.
    pub wpe: EmbeddingSlot<B>,
    /// [`Gpt2Block`]s or their replacements.
    pub h: Vec<Slot<B, dyn Gpt2BlockInterface<B>>>,
    /// Final norm.
    pub ln_f: LayerNormSlot<B>,
    #[module(skip)]
    n_positions: usize,
}

impl<B: Backend> Gpt2Model<B> {
    /// `GPT2Model(config)`, its slots built through `ctx`.
    pub fn new(c: &Gpt2Config, ctx: &BuildContext<'_, B>) -> Self {
        let std = c.initializer_range;
        let table = |rows| {
            let init = Initializer::Normal { mean: 0.0, std };
            EmbeddingConfig::new(rows, c.n_embd)
                .with_initializer(init)
                .init_slot(ctx)
        };
        let blocks = (0..c.n_layer).map(|i| Slot::build::<Gpt2Block<B>>(ctx, (c, i)));
        Self {
            wte: table(c.vocab_size),
            wpe: table(c.n_positions),
            h: blocks.collect(),
            ln_f: LayerNormConfig::new(c.n_embd)
                .with_epsilon(c.layer_norm_epsilon)
                .init_slot(ctx),
            n_positions: c.n_positions,
        }
    }

    /// `input_ids [batch, seq]` placed as `layout` says (positions after the cached ones,
    /// counted over the kept tokens), through `cache` when given, to the final-normed hidden
    /// states, and every hidden state when asked.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        layout: &AttentionLayout,
        cache: Option<&mut KvCache<B>>,
        output_hidden_states: bool,
    ) -> (Tensor<B, 3>, Option<Vec<Tensor<B, 3>>>) {
        let positions = layout.positions().iter().map(|&p| p as i64).collect();
        let shape = [layout.position_rows(), layout.seq_len()];
        let positions = Tensor::from_data(TensorData::new(positions, shape), &input_ids.device());
        let embedded = self.wte.forward(input_ids) + self.wpe.forward(positions);
        let norm = |hidden| self.ln_f.forward(hidden);
        let (windows, step) = (std::iter::repeat(None), (layout, cache));
        decoder_stack_forward(
            embedded,
            None,
            &self.h,
            windows,
            norm,
            step,
            output_hidden_states,
        )
    }
}

/// transformers' `GPT2LMHeadModel`: the model and its head, tied to `transformer.wte` unless the
/// config says otherwise.
#[derive(Module, Debug)]
pub struct Gpt2LmHeadModel<B: Backend> {
    /// The decoder.
    pub transformer: Gpt2Model<B>,
    /// `n_embd -> vocab`; `None` when tied (the logits then use `transformer.wte`).
    pub lm_head: Option<LinearSlot<B>>,
}

impl<B: Backend> FamilyModel<B> for Gpt2LmHeadModel<B> {
    type Config = Gpt2Config;

    fn build(config: &Gpt2Config, ctx: &BuildContext<'_, B>) -> Self {
        let transformer = Gpt2Model::new(config, ctx);
        let lm_head = (!config.tie_word_embeddings).then(|| {
            let (h, v, std) = (config.n_embd, config.vocab_size, config.initializer_range);
            linear_config(h, v, false, std).init_slot(ctx)
        });
        Self { transformer, lm_head }
    }
}

impl<B: Backend> CausalLm<B> for Gpt2LmHeadModel<B> {
    fn max_positions(&self) -> Option<usize> {
        Some(self.transformer.n_positions)
    }

    fn forward_layout(
        &self,
        input_ids: Tensor<B, 2, Int>,
        layout: &AttentionLayout,
        cache: Option<&mut KvCache<B>>,
        outputs: Outputs,
    ) -> CausalLmOutput<B> {
        let hidden = self
            .transformer
            .forward(input_ids, layout, cache, outputs.hidden_states);
        causal_lm_output(
            self.lm_head.as_deref(),
            &*self.transformer.wte,
            hidden,
            outputs.logits_to_keep,
        )
    }
}
