//! Every quantization scheme Burn 0.21 can express (value x store x level, and the scale
//! precisions), loaded into every decoder and BERT fixture on every backend: each load either
//! quantizes and then computes what the same scheme computed on the host gives (the model's
//! Linear weights quantized and dequantized in f32, then a full-precision forward), or fails
//! with `LoadError::Quantize` before anything is uploaded, leaving the model untouched. No
//! scheme panics.

use std::collections::HashSet;
use std::path::Path;

use crate::common::{fixtures, input_ids, read_file, read_reference, ModulePath};
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::quantization::{
    compute_q_params, compute_range, Calibration, QuantLevel, QuantParam, QuantScheme, QuantStore,
    QuantValue,
};
use burn::tensor::DType as BurnDType;
use patcher_burn::{
    backend_quant_scheme, load_with, model_params, LoadError, LoadOptions, LoadSpec, Loaded,
    Patcher, PretrainedModel, QuantizeError,
};
use patcher_core::Checkpoint;
use patcher_models::bert::BertModel;
use patcher_models::llama::LlamaForCausalLm;
use patcher_models::mixtral::MixtralForCausalLm;
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::Qwen2MoeForCausalLm;

const VALUES: [QuantValue; 9] = [
    QuantValue::Q8F,
    QuantValue::Q8S,
    QuantValue::Q4F,
    QuantValue::Q4S,
    QuantValue::Q2F,
    QuantValue::Q2S,
    QuantValue::E4M3,
    QuantValue::E5M2,
    QuantValue::E2M1,
];

const STORES: [QuantStore; 5] = [
    QuantStore::Native,
    QuantStore::PackedNative(0),
    QuantStore::PackedNative(1),
    QuantStore::PackedU32(0),
    QuantStore::PackedU32(1),
];

const PARAMS: [QuantParam; 5] = [
    QuantParam::F32,
    QuantParam::F16,
    QuantParam::BF16,
    QuantParam::UE8M0,
    QuantParam::UE4M3,
];

/// Per tensor, blocks that divide some widths and not others (the fixtures' widths are 1, 4,
/// 32, 48, 64, 80, 96, 112 and 128), a block too small for a vector or a word, tiles, and
/// malformed blocks.
fn levels() -> Vec<QuantLevel> {
    vec![
        QuantLevel::Tensor,
        QuantLevel::block([16]),
        QuantLevel::block([32]),
        QuantLevel::block([1, 16]),
        QuantLevel::block([2]),
        QuantLevel::block([2, 16]),
        QuantLevel::block([1, 1, 16]),
        QuantLevel::block([0]),
        QuantLevel::block([]),
    ]
}

/// Every value x store x level with f32 scales, and every scale precision with every value x
/// store per tensor (where the precision is what decides).
fn schemes() -> Vec<QuantScheme> {
    let base = |value, store| QuantScheme::default().with_value(value).with_store(store);
    let mut schemes = Vec::new();
    for value in VALUES {
        for store in STORES {
            for level in levels() {
                schemes.push(base(value, store).with_level(level));
            }
            for param in &PARAMS[1..] {
                schemes.push(base(value, store).with_param(*param));
            }
        }
    }
    schemes
}

/// The largest logit difference allowed, relative to the largest logit (at least 1), between
/// the quantized model and the same scheme computed on the host with the backend's rounding:
/// float rounding, and a value that lands on the other side of a rounding boundary moving by
/// one quantum (NdArray and Flex agree to 1e-4, wgpu's 8-bit blocks to 2e-4).
const TOLERANCE: f32 = 1e-3;

/// How a backend computes `x / scale` before rounding. The full-range values (Q8F, Q4F, Q2F)
/// put the largest |x| of every tensor or block exactly on a tie (`alpha / scale` is 127.5,
/// 7.5 or 1.5), so the two ways round it to neighbouring quanta (-128 or -127): both are
/// within half a quantum of `x`, but at 2 bits a quantum is two thirds of the largest |x|,
/// so the host reference must round as the backend does to be comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Division {
    /// `x / scale` (NdArray, CubeCL).
    Exact,
    /// `x * (1 / scale)` (Flex).
    Reciprocal,
}

impl Division {
    fn quotient(self, x: f32, scale: f32) -> f32 {
        match self {
            Division::Exact => x / scale,
            Division::Reciprocal => x * (1.0 / scale),
        }
    }

    /// The backend's way, probed with Q8F per tensor (in the backend's own store) on
    /// `[-alpha, alpha / 3, alpha / 5, alpha / 7]` (a u32 word of 8-bit values), for the first
    /// `alpha` whose tie the two ways round apart.
    fn of<B: Backend>(device: &B::Device) -> Division {
        let scheme = backend_quant_scheme::<B>()
            .with_value(QuantValue::Q8F)
            .with_level(QuantLevel::Tensor);
        let host = |values: &[f32], division| fake_quantize_with(values, &scheme, division);
        let values = (1..1000)
            .map(|i| {
                let alpha = 1.0 + i as f32 / 64.0;
                [-alpha, alpha / 3.0, alpha / 5.0, alpha / 7.0]
            })
            .find(|v| host(v, Division::Exact) != host(v, Division::Reciprocal))
            .expect("a tie that the two ways round apart");
        let tensor = Tensor::<B, 1>::from_data(TensorData::new(values.to_vec(), [4]), device);
        let range = compute_range(&scheme, &tensor, &Calibration::MinMax);
        let on_backend = tensor
            .quantize(&scheme, compute_q_params(&scheme, range))
            .dequantize()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let (exact, reciprocal) = (
            host(&values, Division::Exact),
            host(&values, Division::Reciprocal),
        );
        match on_backend {
            v if v == exact => Division::Exact,
            v if v == reciprocal => Division::Reciprocal,
            v => panic!(
                "{}: Q8F of {values:?} gave {v:?}, neither {exact:?} (x / scale) nor \
                 {reciprocal:?} (x * (1 / scale))",
                B::name(device)
            ),
        }
    }
}

/// `values` (row-major, the last dimension contiguous) quantized with `scheme` and dequantized,
/// on the host: Burn's symmetric quantization (scale `2 max|x| / (b - a)` per tensor or per
/// block of the last dimension, values `clamp(round(x / scale), a, b)`, the quotient computed
/// as `division` says).
fn fake_quantize_with(values: &[f32], scheme: &QuantScheme, division: Division) -> Vec<f32> {
    let (a, b) = scheme.value.range();
    let block = match scheme.level {
        QuantLevel::Tensor => values.len(),
        QuantLevel::Block(block) => usize::from(*block.as_slice().last().unwrap()),
    };
    values
        .chunks(block)
        .flat_map(|chunk| {
            let alpha = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = 2.0 * alpha / (b - a);
            chunk
                .iter()
                .map(move |&v| division.quotient(v, scale).round().clamp(a, b) * scale)
        })
        .collect()
}

/// Replaces the parameters at `paths` by their [`fake_quantize`]d values.
struct FakeQuantize {
    scheme: QuantScheme,
    division: Division,
    paths: HashSet<String>,
    path: ModulePath,
}

impl<B: Backend> ModuleMapper<B> for FakeQuantize {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if !self.paths.contains(&self.path.key()) {
            return param;
        }
        let (scheme, division) = (self.scheme, self.division);
        param.map(|tensor| {
            let (dims, device) = (tensor.dims(), tensor.device());
            let values = tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap();
            let quantized = fake_quantize_with(&values, &scheme, division);
            Tensor::from_data(TensorData::new(quantized, dims), &device)
        })
    }
}

/// Burn paths of the quantized parameters of `model`.
fn quantized_paths<B: Backend, M: Module<B>>(model: &M) -> HashSet<String> {
    struct Quantized(ModulePath, HashSet<String>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Quantized {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.0.enter(name, container_type);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if matches!(param.val().dtype(), BurnDType::QFloat(_)) {
                self.1.insert(self.0.key());
            }
        }
    }
    let mut visitor = Quantized(ModulePath::default(), HashSet::new());
    model.visit(&mut visitor);
    visitor.1
}

fn values<B: Backend>(tensor: Tensor<B, 3>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// What the schemes did on one fixture.
#[derive(Default)]
struct Tally {
    loaded: usize,
    refused: Vec<(QuantScheme, QuantizeError)>,
}

/// Loads fixture `dir` (already loaded in full precision as `full`) with every scheme; `run`
/// is the model's forward on the fixture's inputs.
fn sweep<B: Backend, M: PretrainedModel<B>>(
    dir: &str,
    full: Loaded<M>,
    run: impl Fn(&M) -> Tensor<B, 3>,
) -> Tally {
    let checkpoint = Checkpoint::open(fixtures().join(dir)).unwrap();
    let spec = LoadSpec::for_model::<B, M>(&Patcher::new());
    let device = full.model.devices()[0].clone();
    let division = Division::of::<B>(&device);
    let before = values(run(&full.model));
    let names: HashSet<String> = model_params(&full.model)
        .into_iter()
        .map(|p| p.torch_name)
        .collect();
    let mut tally = Tally::default();
    for scheme in schemes() {
        let options = LoadOptions::default().quantize(scheme);
        match load_with(&full.model, &checkpoint, &spec, &options) {
            Ok(quantized) => {
                let paths = quantized_paths(&quantized.model);
                assert!(!paths.is_empty(), "{dir} {scheme:?}: nothing quantized");
                let reference = full.model.clone().map(&mut FakeQuantize {
                    scheme,
                    division,
                    paths,
                    path: ModulePath::default(),
                });
                let (actual, expected) = (values(run(&quantized.model)), values(run(&reference)));
                let largest = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
                let diff = actual
                    .iter()
                    .zip(&expected)
                    .fold(0f32, |m, (a, e)| m.max((a - e).abs()));
                assert!(diff.is_finite(), "{dir} {scheme:?}: logits {diff:e}");
                assert!(
                    diff <= TOLERANCE * largest,
                    "{dir} {scheme:?}: logits {diff:e} from the host's quantization ({division:?} \
                     division; largest logit {largest})"
                );
                tally.loaded += 1;
            }
            Err(err @ LoadError::Quantize { .. }) => {
                let message = err.to_string();
                let LoadError::Quantize { key, source } = err else {
                    unreachable!()
                };
                assert!(
                    names.contains(&key),
                    "{dir} {scheme:?}: {key} is no parameter"
                );
                assert!(message.contains(&key), "{message}");
                tally.refused.push((scheme, source));
            }
            Err(other) => panic!("{dir} {scheme:?}: not a quantization error: {other}"),
        }
    }
    // A refused scheme changed nothing (and a load works on a copy).
    assert_eq!(values(run(&full.model)), before, "{dir}");
    tally
}

/// Checks what every backend must refuse and what it must load, whatever else it implements.
fn check_tally<B: Backend>(dir: &str, tally: &Tally, device: &B::Device) {
    let refused = |scheme: &QuantScheme| {
        tally
            .refused
            .iter()
            .find(|(s, _)| s == scheme)
            .map(|(_, e)| e)
    };
    // The backend's own 8-bit scheme loads per tensor, unless it packs words and a Linear is
    // narrower than a word (Qwen2-MoE's shared expert gate, of width 1).
    let own = backend_quant_scheme::<B>();
    match refused(&own) {
        None | Some(QuantizeError::PackedWidth { width: 1, .. }) => {}
        Some(err) => panic!("{dir}: {own:?}: {err}"),
    }
    // Float formats, malformed blocks, packing on another dimension and 16-bit scales: refused
    // everywhere.
    let q8 = QuantScheme::default().with_store(QuantStore::Native);
    for (scheme, expected) in [
        (
            q8.with_value(QuantValue::E4M3),
            QuantizeError::FloatValue { value: QuantValue::E4M3 },
        ),
        (
            q8.with_level(QuantLevel::block([])),
            QuantizeError::EmptyBlock,
        ),
        (
            q8.with_level(QuantLevel::block([2, 16])),
            QuantizeError::BlockShape { block: vec![2, 16], last: 16 },
        ),
        (
            QuantScheme::default().with_store(QuantStore::PackedU32(1)),
            QuantizeError::PackingDim { dim: 1 },
        ),
        (
            q8.with_param(QuantParam::F16),
            QuantizeError::ScaleParam { param: QuantParam::F16 },
        ),
    ] {
        assert_eq!(refused(&scheme), Some(&expected), "{dir}");
    }
    println!(
        "{dir} on {}: {} schemes loaded, {} refused",
        B::name(device),
        tally.loaded,
        tally.refused.len()
    );
    assert!(!tally.refused.is_empty(), "{dir}: nothing refused");
    // A backend that only packs words loads nothing where a Linear is one value wide.
    let narrow = matches!(
        refused(&own),
        Some(QuantizeError::PackedWidth { width: 1, .. })
    );
    assert!(tally.loaded > 0 || narrow, "{dir}: nothing loaded");
}

fn decoder_ids<B: Backend>(dir: &str, device: &B::Device) -> Tensor<B, 2, Int> {
    input_ids::<B>(&read_reference(&fixtures().join(dir)), device)
}

/// Every scheme over the decoder fixtures `dirs`, each loaded in full precision by `load` and
/// run by `forward` on its reference input ids, each tally checked; the tallies, by fixture.
fn decoders<'a, B: Backend, M: PretrainedModel<B>>(
    dirs: &[&'a str],
    device: &B::Device,
    load: impl Fn(&Path) -> Result<Loaded<M>, LoadError>,
    forward: impl Fn(&M, Tensor<B, 2, Int>) -> Tensor<B, 3>,
) -> Vec<(&'a str, Tally)> {
    dirs.iter()
        .map(|&dir| {
            let full = load(&fixtures().join(dir)).unwrap();
            let ids = decoder_ids::<B>(dir, device);
            let tally = sweep(dir, full, |m: &M| forward(m, ids.clone()));
            check_tally::<B>(dir, &tally, device);
            (dir, tally)
        })
        .collect()
}

fn llama<B: Backend>(device: &B::Device) {
    let dirs = ["llama", "llama_sharded", "llama_tied"];
    let load = |path: &Path| Pretrained::from_path(path).load::<LlamaForCausalLm<B>>(device);
    let forward = |m: &LlamaForCausalLm<B>, ids| m.forward(ids);
    for (dir, tally) in decoders(&dirs, device, load, forward) {
        // A block of 32 does not divide the attention's and MLP's widths (48, 96, 112).
        let q8_32 = backend_quant_scheme::<B>().with_level(QuantLevel::block([32]));
        let (_, err) = tally.refused.iter().find(|(s, _)| *s == q8_32).unwrap();
        assert!(
            matches!(err, QuantizeError::BlockWidth { block: 32, width, .. } if width % 32 != 0),
            "{dir}: {err}"
        );
    }
}

fn qwen2_moe<B: Backend>(device: &B::Device) {
    let dirs = [
        "qwen2_moe",
        "qwen2_moe_bf16",
        "qwen2_moe_dense",
        "qwen2_moe_fused",
        "qwen2_moe_sharded",
    ];
    let load = |path: &Path| Pretrained::from_path(path).load::<Qwen2MoeForCausalLm<B>>(device);
    let forward = |m: &Qwen2MoeForCausalLm<B>, ids| m.forward(ids);
    decoders(&dirs, device, load, forward);
}

fn mixtral<B: Backend>(device: &B::Device) {
    let dirs = ["mixtral", "mixtral_fused"];
    let load = |path: &Path| Pretrained::from_path(path).load::<MixtralForCausalLm<B>>(device);
    let forward = |m: &MixtralForCausalLm<B>, ids| m.forward(ids);
    decoders(&dirs, device, load, forward);
}

fn bert<B: Backend>(device: &B::Device) {
    for dir in ["bert", "bert_legacy"] {
        let path = fixtures().join(dir);
        let full = Pretrained::<B>::from_path(&path)
            .load::<BertModel<B>>(device)
            .unwrap();
        let reference = read_file(&path.join("reference.safetensors"));
        let [ids, types, mask] = ["input_ids", "token_type_ids", "attention_mask"].map(|name| {
            let t = &reference[name];
            let data: Vec<i64> = t.data.iter().map(|&x| x as i64).collect();
            Tensor::<B, 2, Int>::from_data(TensorData::new(data, [t.shape[0], t.shape[1]]), device)
        });
        let tally = sweep(dir, full, |m: &BertModel<B>| {
            m.forward(ids.clone(), Some(types.clone()), Some(mask.clone()), false)
                .unwrap()
                .last_hidden_state
        });
        check_tally::<B>(dir, &tally, device);
    }
}

macro_rules! scheme_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        type B = $backend;

        #[test]
        fn every_scheme_loads_llama_or_is_a_typed_error() {
            llama::<B>(&$device);
        }

        #[test]
        fn every_scheme_loads_qwen2_moe_or_is_a_typed_error() {
            qwen2_moe::<B>(&$device);
        }

        #[test]
        fn every_scheme_loads_mixtral_or_is_a_typed_error() {
            mixtral::<B>(&$device);
        }

        #[test]
        fn every_scheme_loads_bert_or_is_a_typed_error() {
            bert::<B>(&$device);
        }
    };
}

crate::common::on_every_backend!(scheme_tests);
