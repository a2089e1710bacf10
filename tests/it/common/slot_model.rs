#![allow(dead_code)] // The shared test model: each test file uses a part of it.
//! A small patch-ready model for the slot tests: slot interfaces at different depths, one slot
//! class (the decoder layer) holding a slot of its own.
//!
//! ```text
//! TinyModel
//! ├─ embed: Linear 4 -> 8
//! ├─ layers: Vec<Slot<dyn DecoderLayer>>     TinyLayer (2 layers)
//! │  └─ self_attn: Slot<dyn AttentionLayer>   TinyAttention | FusedAttention
//! ├─ mlp: Slot<dyn MlpLayer>                  TinyMlp | GatedMlp
//! ├─ final_mlp: Option<Slot<dyn MlpLayer>>    (Some)
//! └─ head: Linear 8 -> 3
//! ```

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, silu, softmax};
use burn_patcher::{slot_interface, BuildContext, Patchable, Slot};

pub const INPUT: usize = 4;
pub const HIDDEN: usize = 8;
pub const FFN: usize = 16;
pub const OUTPUT: usize = 3;
pub const LAYERS: usize = 2;

/// The model's configuration.
#[derive(Debug, Clone)]
pub struct TinyConfig {
    pub hidden: usize,
    pub ffn: usize,
    pub layers: usize,
}

impl TinyConfig {
    pub fn new() -> Self {
        Self { hidden: HIDDEN, ffn: FFN, layers: LAYERS }
    }
}

/// What a layer calls on its attention.
#[slot_interface]
pub trait AttentionLayer<B: Backend> {
    fn new(config: &TinyConfig, layer_idx: usize, device: &B::Device) -> Self;
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

/// What the model calls on its MLPs.
#[slot_interface]
pub trait MlpLayer<B: Backend> {
    fn new(config: &TinyConfig, device: &B::Device) -> Self;
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

fn linear<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_in, d_out).init(device)
}

fn attend<B: Backend>(q: Tensor<B, 2>, k: Tensor<B, 2>, v: Tensor<B, 2>) -> Tensor<B, 2> {
    let scale = (q.dims()[1] as f64).sqrt();
    let scores = q.matmul(k.transpose()).div_scalar(scale);
    softmax(scores, 1).matmul(v)
}

/// The original attention: separate q, k, v projections.
#[derive(Module, Patchable, Debug)]
#[patchable(name = "TinyAttention", implements(AttentionLayer))]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub layer_idx: usize,
}

impl<B: Backend> Attention<B> {
    pub fn new(config: &TinyConfig, layer_idx: usize, device: &B::Device) -> Self {
        let h = config.hidden;
        Self {
            q_proj: linear(h, h, device),
            k_proj: linear(h, h, device),
            v_proj: linear(h, h, device),
            o_proj: linear(h, h, device),
            layer_idx,
        }
    }
}

impl<B: Backend> AttentionLayer<B> for Attention<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let out = attend(
            self.q_proj.forward(x.clone()),
            self.k_proj.forward(x.clone()),
            self.v_proj.forward(x),
        );
        self.o_proj.forward(out)
    }
}

/// A replacement: one fused qkv projection.
#[derive(Module, Patchable, Debug)]
#[patchable(implements(AttentionLayer))]
pub struct FusedAttention<B: Backend> {
    pub qkv_proj: Linear<B>,
    pub o_proj: Linear<B>,
}

impl<B: Backend> FusedAttention<B> {
    pub fn new(config: &TinyConfig, _layer_idx: usize, device: &B::Device) -> Self {
        let h = config.hidden;
        Self {
            qkv_proj: linear(h, 3 * h, device),
            o_proj: linear(h, h, device),
        }
    }
}

impl<B: Backend> AttentionLayer<B> for FusedAttention<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut qkv = self.qkv_proj.forward(x).chunk(3, 1).into_iter();
        let (q, k, v) = (
            qkv.next().unwrap(),
            qkv.next().unwrap(),
            qkv.next().unwrap(),
        );
        self.o_proj.forward(attend(q, k, v))
    }
}

/// The original MLP.
#[derive(Module, Patchable, Debug)]
#[patchable(name = "TinyMlp", implements(MlpLayer))]
pub struct Mlp<B: Backend> {
    pub up: Linear<B>,
    pub down: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    pub fn new(config: &TinyConfig, device: &B::Device) -> Self {
        Self {
            up: linear(config.hidden, config.ffn, device),
            down: linear(config.ffn, config.hidden, device),
        }
    }
}

impl<B: Backend> MlpLayer<B> for Mlp<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.down.forward(gelu(self.up.forward(x)))
    }
}

/// A replacement: gated MLP with a fused gate/up projection.
#[derive(Module, Patchable, Debug)]
#[patchable(implements(MlpLayer))]
pub struct GatedMlp<B: Backend> {
    pub gate_up: Linear<B>,
    pub down: Linear<B>,
}

impl<B: Backend> GatedMlp<B> {
    pub fn new(config: &TinyConfig, device: &B::Device) -> Self {
        Self {
            gate_up: linear(config.hidden, 2 * config.ffn, device),
            down: linear(config.ffn, config.hidden, device),
        }
    }
}

impl<B: Backend> MlpLayer<B> for GatedMlp<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut gate_up = self.gate_up.forward(x).chunk(2, 1).into_iter();
        let (gate, up) = (gate_up.next().unwrap(), gate_up.next().unwrap());
        self.down.forward(silu(gate) * up)
    }
}

/// What the model calls on a decoder layer. Its constructor takes the build context, so layer
/// classes can hold slots of their own.
#[slot_interface]
pub trait DecoderLayer<B: Backend> {
    fn new(config: &TinyConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self;
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

/// A decoder layer: the attention slot is two levels down (`layers.<i>.self_attn`), inside a
/// slot.
#[derive(Module, Patchable, Debug)]
#[patchable(name = "TinyLayer", implements(DecoderLayer))]
pub struct Layer<B: Backend> {
    pub self_attn: Slot<B, dyn AttentionLayer<B>>,
}

impl<B: Backend> Layer<B> {
    pub fn new(config: &TinyConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        Self {
            self_attn: Slot::build::<Attention<B>>(ctx, (config, layer_idx)),
        }
    }
}

impl<B: Backend> DecoderLayer<B> for Layer<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.clone() + self.self_attn.forward(x)
    }
}

/// The model.
#[derive(Module, Patchable, Debug)]
pub struct TinyModel<B: Backend> {
    pub embed: Linear<B>,
    pub layers: Vec<Slot<B, dyn DecoderLayer<B>>>,
    pub mlp: Slot<B, dyn MlpLayer<B>>,
    pub final_mlp: Option<Slot<B, dyn MlpLayer<B>>>,
    pub head: Linear<B>,
}

impl<B: Backend> TinyModel<B> {
    pub fn new(ctx: &BuildContext<'_, B>, config: &TinyConfig) -> Self {
        let device = ctx.device();
        Self {
            embed: linear(INPUT, config.hidden, device),
            layers: (0..config.layers)
                .map(|i| Slot::build::<Layer<B>>(ctx, (config, i)))
                .collect(),
            mlp: Slot::build::<Mlp<B>>(ctx, config),
            final_mlp: Some(Slot::build::<Mlp<B>>(ctx, config)),
            head: linear(config.hidden, OUTPUT, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut x = self.embed.forward(x);
        for layer in &self.layers {
            x = layer.forward(x);
        }
        x = x.clone() + self.mlp.forward(x);
        if let Some(mlp) = &self.final_mlp {
            x = x.clone() + mlp.forward(x);
        }
        self.head.forward(x)
    }
}
