//! `SequentialExperts`: the seed's replacement for `Qwen2MoeExperts`, the experts as a list of
//! standard gate/up/down linears (what quantisation libraries expect), computing the same top-k
//! mixture as the fused experts.
//!
//! The list sits directly at the slot's path, like PyTorch's `nn.ModuleList` subclass in the seed:
//! parameters are `mlp.experts.{e}.gate_proj.weight`, ..., exactly the checkpoint's keys, so they
//! load with no conversion (the patcher filters out the fused-expert converters). Burn's derive
//! would insert the field name (`mlp.experts.experts.0...`), hence the hand-written, transparent
//! `Module` implementation below.

use burn::module::{
    AutodiffModule, Content, Devices, HasAutodiffModule, Module, ModuleDisplay,
    ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::IndexingUpdateOp;

use patcher_derive::Patchable;

use crate::common::{gated_mlp, gated_mlp_projections, Activation, ExpertDispatch, MoeExperts};
use crate::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeExpertsInterface};

/// One expert: `down(act(gate(x)) * up(x))`, no biases (the seed's `ExpertMLP`).
#[derive(Module, Debug)]
pub struct ExpertMLP<B: Backend> {
    /// `hidden -> moe_intermediate`.
    pub gate_proj: Linear<B>,
    /// `hidden -> moe_intermediate`.
    pub up_proj: Linear<B>,
    /// `moe_intermediate -> hidden`.
    pub down_proj: Linear<B>,
    #[module(skip)]
    act_fn: Activation,
}

impl<B: Backend> ExpertMLP<B> {
    /// One routed expert of `config`.
    pub fn new(config: &Qwen2MoeConfig, device: &B::Device) -> Self {
        let (h, i) = (config.hidden_size, config.moe_intermediate_size);
        let [gate_proj, up_proj, down_proj] =
            gated_mlp_projections(h, i, false, config.initializer_range, device);
        Self {
            gate_proj,
            up_proj,
            down_proj,
            act_fn: config.hidden_act,
        }
    }

    /// `[n, hidden] -> [n, hidden]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let projections = [&self.gate_proj, &self.up_proj, &self.down_proj];
        gated_mlp(projections, self.act_fn, x)
    }
}

/// The experts as a list of [`ExpertMLP`]s. Fills `Qwen2MoeSparseMoeBlock.experts`.
#[derive(Patchable, Debug, Clone)]
#[patchable(crate = "patcher_burn", implements(Qwen2MoeExpertsInterface))]
pub struct SequentialExperts<B: Backend> {
    experts: Vec<ExpertMLP<B>>,
}

impl<B: Backend> SequentialExperts<B> {
    /// Built from the same arguments as `Qwen2MoeExperts` (`config`): `num_experts` experts.
    pub fn new(config: &Qwen2MoeConfig, device: &B::Device) -> Self {
        Self {
            experts: (0..config.num_experts)
                .map(|_| ExpertMLP::new(config, device))
                .collect(),
        }
    }

    /// The experts, by index.
    pub fn experts(&self) -> &[ExpertMLP<B>] {
        &self.experts
    }

    /// Number of experts.
    pub fn len(&self) -> usize {
        self.experts.len()
    }

    /// Whether there is no expert.
    pub fn is_empty(&self) -> bool {
        self.experts.is_empty()
    }
}

impl<B: Backend> Qwen2MoeExpertsInterface<B> for SequentialExperts<B> {
    fn new(config: &Qwen2MoeConfig, device: &B::Device) -> Self {
        SequentialExperts::new(config, device)
    }
}

impl<B: Backend> MoeExperts<B> for SequentialExperts<B> {
    /// The same loop as `Qwen2MoeExperts` (same dispatch order, same weighting, same
    /// accumulation), each expert being its own linears.
    fn forward(
        &self,
        hidden_states: Tensor<B, 2>,
        top_k_index: Tensor<B, 2, Int>,
        top_k_weights: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let device = hidden_states.device();
        let dispatch = ExpertDispatch::from_tensor(&top_k_index, self.experts.len());
        let mut output = hidden_states.zeros_like();
        for assignment in &dispatch.assignments {
            let tokens = assignment.token_tensor::<B>(&device);
            let state = hidden_states.clone().select(0, tokens.clone());
            let out = self.experts[assignment.expert].forward(state);
            let out = out * assignment.weights(&top_k_weights);
            output = output.select_assign(0, tokens, out, IndexingUpdateOp::Add);
        }
        output
    }
}

// Transparent `Module`: every method delegates to the `Vec`, which names children by index.
impl<B: Backend> Module<B> for SequentialExperts<B> {
    type Record = <Vec<ExpertMLP<B>> as Module<B>>::Record;

    fn collect_devices(&self, devices: Devices<B>) -> Devices<B> {
        self.experts.collect_devices(devices)
    }

    fn fork(self, device: &B::Device) -> Self {
        Self {
            experts: self.experts.fork(device),
        }
    }

    fn to_device(self, device: &B::Device) -> Self {
        Self {
            experts: self.experts.to_device(device),
        }
    }

    fn num_params(&self) -> usize {
        Module::<B>::num_params(&self.experts)
    }

    fn visit<V: ModuleVisitor<B>>(&self, visitor: &mut V) {
        self.experts.visit(visitor);
    }

    fn map<M: ModuleMapper<B>>(self, mapper: &mut M) -> Self {
        Self {
            experts: self.experts.map(mapper),
        }
    }

    fn load_record(self, record: Self::Record) -> Self {
        Self {
            experts: self.experts.load_record(record),
        }
    }

    fn into_record(self) -> Self::Record {
        self.experts.into_record()
    }
}

impl<B: AutodiffBackend> AutodiffModule<B> for SequentialExperts<B> {
    type InnerModule = SequentialExperts<B::InnerBackend>;

    fn valid(&self) -> Self::InnerModule {
        SequentialExperts {
            experts: self.experts.valid(),
        }
    }

    fn from_inner(module: Self::InnerModule) -> Self {
        Self {
            experts: Vec::from_inner(module.experts),
        }
    }
}

impl<B: AutodiffBackend> HasAutodiffModule<B> for SequentialExperts<B::InnerBackend> {
    type TrainModule = SequentialExperts<B>;
}

impl<B: Backend> ModuleDisplayDefault for SequentialExperts<B> {
    fn content(&self, content: Content) -> Option<Content> {
        self.experts
            .iter()
            .enumerate()
            .fold(content, |acc, (i, expert)| acc.add(&i.to_string(), expert))
            .set_top_level_type(&format!("SequentialExperts<0..{}>", self.experts.len()))
            .optional()
    }

    fn num_params(&self) -> usize {
        Module::num_params(self)
    }
}

impl<B: Backend> ModuleDisplay for SequentialExperts<B> {}

impl<B: Backend> core::fmt::Display for SequentialExperts<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", ModuleDisplay::format(self, Default::default()))
    }
}
