//! BERT through the real loader (`LoadFamily::load`): parity with transformers on the
//! last hidden state, the pooler output and every hidden state, with token types and a padding
//! mask, unpatched and with the fused-QKV patch; each load saved back byte for byte; the legacy
//! layout (`bert.` prefix, `LayerNorm.gamma`/`.beta`, extra buffers and heads) loads to the same
//! outputs; bad configs and inputs are typed errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::{assert_saves_back_byte_for_byte, fixtures, max_abs_diff, read_file, HostF32};
use burn::nn::LinearConfig;
use burn::prelude::*;
use patcher_burn::layers::{InitSlot, LinearSlot};
use patcher_burn::{list_slots, BuildContext, Patchable, Patcher};
use patcher_models::bert::{
    BertConfig, BertInputError, BertIntermediate, BertIntermediateInterface, BertModel,
};
use patcher_models::common::EncoderIntermediate;
use patcher_models::prelude::*;
use patcher_models::replacements::Patch;
use patcher_models::ConfigError;

const TOLERANCE: f32 = 1e-4;

fn ints<B: Backend>(
    reference: &BTreeMap<String, HostF32>,
    name: &str,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let t = &reference[name];
    let data: Vec<i64> = t.data.iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(data, [t.shape[0], t.shape[1]]), device)
}

/// Loads fixture `dir` (fused QKV or not), checks its outputs against transformers', and, for
/// `save_back`, that saving writes the fixture's file byte for byte. Returns the max abs diff.
fn bert<B: Backend>(path: &Path, fused_qkv: bool, save_back: bool, device: &B::Device) -> f32 {
    let dir = path.file_name().unwrap().to_string_lossy();
    let config = BertConfig::from_file(path.join("config.json")).unwrap();
    let patch = if fused_qkv {
        Patch::fused_qkv()
    } else {
        Patch::NONE
    };
    let patcher = patch.patcher::<B, _>(&config).unwrap();
    let loaded = Pretrained::<B>::from_path(path)
        .patcher(&patcher)
        .load::<BertModel<B>>(device)
        .unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    // The legacy renamings (gamma/beta) are optional: unmatched, they are no warning.
    assert!(
        loaded.report.unused_transforms.is_empty(),
        "{}",
        loaded.report
    );
    assert!(
        !loaded.report.to_string().contains("Unused conversions"),
        "{}",
        loaded.report
    );
    let replaced: Vec<_> = list_slots(&loaded.model)
        .into_iter()
        .filter(|s| s.replaced)
        .collect();
    assert_eq!(
        replaced.len(),
        if fused_qkv {
            config.num_hidden_layers
        } else {
            0
        }
    );
    for slot in replaced {
        assert_eq!(
            (slot.class.as_str(), slot.original_class.as_str()),
            ("FusedQKVBertSelfAttention", "BertSelfAttention")
        );
    }

    let reference = read_file(&path.join("reference.safetensors"));
    let [ids, types, mask] =
        ["input_ids", "token_type_ids", "attention_mask"].map(|n| ints::<B>(&reference, n, device));
    let out = loaded
        .model
        .forward(ids, Some(types), Some(mask), true)
        .unwrap();
    let hidden_states = out.hidden_states.unwrap();
    assert_eq!(hidden_states.len(), config.num_hidden_layers + 1);
    let mut diffs = vec![
        max_abs_diff(&out.last_hidden_state, &reference["last_hidden_state"]),
        max_abs_diff(&out.pooler_output, &reference["pooler_output"]),
    ];
    diffs.extend(
        hidden_states
            .iter()
            .enumerate()
            .map(|(i, h)| max_abs_diff(h, &reference[&format!("hidden_states.{i}")])),
    );
    let label = format!("{dir} fused_qkv={fused_qkv} on {}", B::name(device));
    println!("{label}: last_hidden_state, pooler_output, hidden_states: {diffs:?}");
    let max = diffs.iter().copied().fold(0.0, f32::max);
    assert!(max <= TOLERANCE, "{label}: max abs diff {max}");

    if save_back {
        let name = format!("bert-{dir}-{fused_qkv}-{}", B::name(device));
        assert_saves_back_byte_for_byte(&loaded, path, &name, &label);
    }
    max
}

#[test]
fn config_parses_and_bad_configs_are_typed_errors() {
    let config = BertConfig::from_file(fixtures().join("bert/config.json")).unwrap();
    assert_eq!(
        (
            config.hidden_size,
            config.num_attention_heads,
            config.type_vocab_size
        ),
        (32, 4, 2)
    );
    assert_eq!(config.layer_norm_eps, 1e-5);
    assert_eq!(
        BertConfig::from_json_str("{}").unwrap(),
        BertConfig::default()
    );
    let unsupported = [
        r#"{"position_embedding_type": "relative_key"}"#,
        r#"{"is_decoder": true}"#,
        r#"{"add_cross_attention": true}"#,
        r#"{"hidden_act": "gelu_fast_and_loose"}"#,
    ];
    for json in unsupported {
        let err = BertConfig::from_json_str(json).unwrap_err();
        assert!(
            matches!(err, ConfigError::Unsupported(_)),
            "{json}: {err:?}"
        );
    }
    assert!(BertConfig::from_json_str(r#"{"position_embedding_type": "absolute"}"#).is_ok());
    let fields = [
        (r#"{"num_attention_heads": 0}"#, "num_attention_heads"),
        (
            r#"{"hidden_size": 30, "num_attention_heads": 4}"#,
            "num_attention_heads",
        ),
        (r#"{"type_vocab_size": 0}"#, "type_vocab_size"),
        (r#"{"layer_norm_eps": -1.0}"#, "layer_norm_eps"),
        (
            r#"{"hidden_size": 16777216, "num_attention_heads": 16}"#,
            "hidden_size",
        ),
    ];
    for (json, field) in fields {
        match BertConfig::from_json_str(json) {
            Err(ConfigError::Field { field: f, .. }) => assert_eq!(f, field, "{json}"),
            other => panic!("{json}: {other:?}"),
        }
    }
    assert!(matches!(
        BertConfig::from_json_str(r#"{"model_type": "llama"}"#),
        Err(ConfigError::Invalid(_))
    ));
    assert!(matches!(
        BertConfig::from_json_str(r#"{"vocab_size": -3}"#),
        Err(ConfigError::Json(_))
    ));
}

#[test]
fn bad_inputs_are_typed_errors() {
    type B = burn::backend::NdArray<f32>;
    let device = Default::default();
    let config = BertConfig::from_file(fixtures().join("bert/config.json")).unwrap();
    let model = BertModel::<B>::new(&config, &device);
    let ids = Tensor::<B, 2, Int>::zeros([1, 65], &device);
    assert_eq!(
        model.forward(ids, None, None, false).unwrap_err(),
        BertInputError::TooLong { seq: 65, max: 64 }
    );
    let ids = Tensor::<B, 2, Int>::zeros([2, 3], &device);
    let mask = Tensor::<B, 2, Int>::ones([2, 4], &device);
    let err = model.forward(ids, None, Some(mask), false).unwrap_err();
    assert_eq!(
        err,
        BertInputError::Shape { name: "attention_mask", found: [2, 4], expected: [2, 3] }
    );
}

/// `BertIntermediate` with GELU written out (`x * (1 + erf(x / sqrt 2)) / 2`), the checkpoint's
/// parameter names kept: a user's replacement of one of BERT's classes.
#[derive(burn::module::Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertIntermediateInterface))]
pub struct ErfGeluIntermediate<B: Backend> {
    pub dense: LinearSlot<B>,
}

impl<B: Backend> ErfGeluIntermediate<B> {
    pub fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let dense = LinearConfig::new(config.hidden_size, config.intermediate_size);
        Self { dense: dense.init_slot(ctx) }
    }
}

impl<B: Backend> EncoderIntermediate<B> for ErfGeluIntermediate<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.dense.forward(x);
        x.clone() * ((x / std::f64::consts::SQRT_2).erf() + 1.0) / 2.0
    }
}

/// Every class of `BertModel` is a slot, and a user's class replaces one and loads the stock
/// checkpoint to the same outputs.
#[test]
fn every_class_is_a_slot() {
    type B = burn::backend::NdArray<f32>;
    let device = Default::default();
    let config = BertConfig::from_file(fixtures().join("bert/config.json")).unwrap();
    let model = BertModel::<B>::new(&config, &device);
    let classes: BTreeSet<String> = list_slots(&model)
        .into_iter()
        .map(|s| s.original_class)
        .collect();
    let expected = [
        "BertAttention",
        "BertEmbeddings",
        "BertIntermediate",
        "BertLayer",
        "BertOutput",
        "BertPooler",
        "BertSelfAttention",
        "BertSelfOutput",
        "Embedding",
        "LayerNorm",
        "Linear",
    ];
    assert_eq!(classes, expected.into_iter().map(String::from).collect());

    let patcher = Patcher::<B>::new().replace::<BertIntermediate<B>, ErfGeluIntermediate<B>>();
    let path = fixtures().join("bert");
    let loaded = Pretrained::<B>::from_path(&path)
        .patcher(&patcher)
        .load::<BertModel<B>>(&device)
        .unwrap();
    let replaced = list_slots(&loaded.model)
        .into_iter()
        .filter(|s| s.replaced)
        .count();
    assert_eq!(replaced, config.num_hidden_layers);
    let reference = read_file(&path.join("reference.safetensors"));
    let [ids, types, mask] = ["input_ids", "token_type_ids", "attention_mask"]
        .map(|n| ints::<B>(&reference, n, &device));
    let out = loaded
        .model
        .forward(ids, Some(types), Some(mask), false)
        .unwrap();
    let diff = max_abs_diff(&out.last_hidden_state, &reference["last_hidden_state"]);
    assert!(diff <= TOLERANCE, "last_hidden_state: {diff}");
}

macro_rules! bert_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        type B = $backend;

        #[test]
        fn parity_and_save_back() {
            bert::<B>(&fixtures().join("bert"), false, true, &$device);
            bert::<B>(&fixtures().join("bert"), true, true, &$device);
        }

        #[test]
        fn legacy_layout_loads_alike() {
            bert::<B>(&fixtures().join("bert_legacy"), false, false, &$device);
            bert::<B>(&fixtures().join("bert_legacy"), true, false, &$device);
        }
    };
}

crate::common::on_every_backend!(bert_tests);
