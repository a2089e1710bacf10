//! Every class of the shipped families is a slot: a decoder layer and an RMSNorm are replaced
//! like any other class, by type or by path, and the stock checkpoint still loads.

use crate::common::{fixtures, input_ids, max_abs_diff, read_reference};
use burn::backend::NdArray;
use burn::module::Param;
use burn::prelude::*;
use patcher_burn::layers::NormForward;
use patcher_burn::{list_slots, replacement, BuildContext, Patchable, Patcher, Slot};
use patcher_models::common::{
    AttentionInputs, AttentionInterface, DecoderAttention, DecoderLayer, DecoderNormInterface,
};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{
    Qwen2MoeAttention, Qwen2MoeConfig, Qwen2MoeDecoderLayer, Qwen2MoeDecoderLayerInterface,
    Qwen2MoeForCausalLm, Qwen2MoeLayerMlp, Qwen2MoeRmsNorm,
};

type B = NdArray<f32>;

/// RMSNorm without the f32 upcast (the same numbers for an f32 model), with the checkpoint's
/// parameter name.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(DecoderNormInterface))]
pub struct PlainRMSNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> PlainRMSNorm<B> {
    pub fn new(hidden_size: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([hidden_size], device)),
            eps,
        }
    }

    fn norm<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let rms = (x.clone().square().mean_dim(D - 1) + self.eps).sqrt();
        x / rms * self.weight.val().unsqueeze()
    }
}

impl<B: Backend> NormForward<B> for PlainRMSNorm<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.norm(x)
    }
    fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.norm(x)
    }
}

/// GPT-J's parallel block: `x + attention(norm1(x)) + mlp(norm2(x))`, with Qwen2-MoE's own
/// parts (so its parameters are the checkpoint's).
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(Qwen2MoeDecoderLayerInterface))]
pub struct ParallelDecoderLayer<B: Backend> {
    pub self_attn: Slot<B, dyn AttentionInterface<B>>,
    pub mlp: Qwen2MoeLayerMlp<B>,
    pub input_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
    pub post_attention_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
}

impl<B: Backend> ParallelDecoderLayer<B> {
    pub fn new(config: &Qwen2MoeConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let norm = || Slot::build::<Qwen2MoeRmsNorm<B>>(ctx, config.core.norm_args());
        let attention = (&config.attention_spec(layer_idx), layer_idx);
        Self {
            self_attn: Slot::build::<Qwen2MoeAttention<B>>(ctx, attention),
            mlp: Qwen2MoeLayerMlp::new(config, layer_idx, ctx),
            input_layernorm: norm(),
            post_attention_layernorm: norm(),
        }
    }
}

impl<B: Backend> DecoderLayer<B> for ParallelDecoderLayer<B> {
    fn forward(&self, x: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3> {
        let attention = DecoderAttention::forward(
            &*self.self_attn,
            self.input_layernorm.forward(x.clone()),
            inputs,
        );
        let mlp = self
            .mlp
            .forward(self.post_attention_layernorm.forward(x.clone()));
        x + attention + mlp
    }
}

fn load(patcher: &Patcher<B>) -> patcher_burn::Loaded<Qwen2MoeForCausalLm<B>> {
    load_fixture("qwen2_moe", patcher)
}

fn load_fixture(name: &str, patcher: &Patcher<B>) -> patcher_burn::Loaded<Qwen2MoeForCausalLm<B>> {
    Pretrained::<B>::from_path(fixtures().join(name))
        .patcher(patcher)
        .load::<Qwen2MoeForCausalLm<B>>(&Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn logits(model: &Qwen2MoeForCausalLm<B>) -> (Tensor<B, 3>, crate::common::Reference) {
    let reference = read_reference(&fixtures().join("qwen2_moe"));
    let out = model.forward(input_ids::<B>(&reference, &Default::default()));
    (out, reference)
}

#[test]
fn every_rms_norm_replaced_by_type() {
    let patched = load(&Patcher::new().replace::<Qwen2MoeRmsNorm<B>, PlainRMSNorm<B>>());
    let norms: Vec<_> = list_slots(&patched.model)
        .into_iter()
        .filter(|s| s.original_class == "Qwen2MoeRMSNorm")
        .collect();
    let layers = patched.model.model.layers.len();
    assert_eq!(
        norms.len(),
        2 * layers + 1,
        "two per layer and the final norm"
    );
    assert!(norms.iter().all(|s| s.class == "PlainRMSNorm"));
    assert!(patched.report.is_clean(), "{}", patched.report);
    // The same math without the upcast: transformers' logits within the parity bound.
    let (out, reference) = logits(&patched.model);
    let diff = max_abs_diff(&out, &reference.logits);
    assert!(diff <= 1e-4, "max |logits - transformers| = {diff}");
}

#[test]
fn decoder_layers_replaced_by_type_and_by_path() {
    let plain = load(&Patcher::new());
    let (expected, _) = logits(&plain.model);

    // Every layer parallel: loads the stock checkpoint, computes something else.
    let parallel =
        load(&Patcher::new().replace::<Qwen2MoeDecoderLayer<B>, ParallelDecoderLayer<B>>());
    assert!(parallel.report.is_clean(), "{}", parallel.report);
    let layers: Vec<_> = list_slots(&parallel.model)
        .into_iter()
        .filter(|s| s.original_class == "Qwen2MoeDecoderLayer")
        .map(|s| (s.path, s.class))
        .collect();
    assert_eq!(
        layers,
        [
            (
                "model.layers.0".to_string(),
                "ParallelDecoderLayer".to_string()
            ),
            (
                "model.layers.1".to_string(),
                "ParallelDecoderLayer".to_string()
            ),
        ]
    );
    let (out, _) = logits(&parallel.model);
    let moved = (out - expected.clone()).abs().max().into_scalar();
    assert!(moved > 1e-3, "the parallel layers were not used ({moved})");

    // Only the last layer, by path; its slots inside are still patched by class.
    let patcher = Patcher::new()
        .replace_path(
            "model.layers.1",
            replacement::<ParallelDecoderLayer<B>, dyn Qwen2MoeDecoderLayerInterface<B>>(),
        )
        .replace::<Qwen2MoeRmsNorm<B>, PlainRMSNorm<B>>();
    let one = load(&patcher);
    let slots = list_slots(&one.model);
    let class_at = |path: &str| {
        slots
            .iter()
            .find(|s| s.path == path)
            .map(|s| s.class.clone())
            .unwrap()
    };
    assert_eq!(class_at("model.layers.0"), "Qwen2MoeDecoderLayer");
    assert_eq!(class_at("model.layers.1"), "ParallelDecoderLayer");
    assert_eq!(class_at("model.layers.1.input_layernorm"), "PlainRMSNorm");
    let (out, _) = logits(&one.model);
    let moved = (out - expected).abs().max().into_scalar();
    assert!(moved > 1e-3, "layer 1 was not replaced ({moved})");
}

#[test]
fn dense_and_sparse_mlps_are_slots_at_transformers_paths() {
    // Layers 0, 2, 3 dense (decoder_sparse_step 2, mlp_only_layers [3]), layer 1 sparse.
    let patcher = Patcher::new().replace::<Qwen2MoeRmsNorm<B>, PlainRMSNorm<B>>();
    let loaded = load_fixture("qwen2_moe_dense", &patcher);
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    let slots = list_slots(&loaded.model);
    let paths = |class: &str| -> Vec<String> {
        let of = slots.iter().filter(|s| s.original_class == class);
        of.map(|s| s.path.clone()).collect()
    };
    let mlps = [
        "model.layers.0.mlp",
        "model.layers.1.mlp.shared_expert",
        "model.layers.2.mlp",
        "model.layers.3.mlp",
    ];
    assert_eq!(paths("Qwen2MoeMLP"), mlps);
    assert_eq!(paths("Qwen2MoeSparseMoeBlock"), ["model.layers.1.mlp"]);
    let layers = loaded.model.model.layers.iter();
    let dense: Vec<bool> = layers
        .map(|layer| {
            let layer = layer.module_as::<Qwen2MoeDecoderLayer<B>>().unwrap();
            matches!(layer.mlp, Qwen2MoeLayerMlp::Dense(_))
        })
        .collect();
    assert_eq!(dense, [true, false, true, true]);
}
