//! The models through burn-patcher's real loader (`LoadFamily::load`): parity with transformers
//! for the original and every patched variant, saving a patched model back in the checkpoint's
//! layout and reloading it unpatched, and a wrong patch failing with the report.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use crate::common::parity::assert_parity;
use crate::common::{fixtures, input_ids, read_reference, scratch, MOE_PATCHES};
use burn::module::Module;
use burn::prelude::Backend;
use patcher_burn::{list_slots, save_pretrained, LoadError, LoadOptions, Loaded, Patcher};
use patcher_core::{Checkpoint, LoadReport};
use patcher_models::llama::{LlamaAttention, LlamaConfig, LlamaForCausalLm};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeAttention, Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::{FusedQkvAttention, Patch};

const TOLERANCE: f32 = 1e-4;

fn qwen2_moe<B: Backend>(dir: &str, patch: Patch, device: &B::Device) {
    let path = fixtures().join(dir);
    let config = Qwen2MoeConfig::from_file(path.join("config.json")).unwrap();
    let patcher = patch.patcher::<B, _>(&config).unwrap();
    let (fused_qkv, sequential_experts) = (patch.has_fused_qkv(), patch.has_sequential_experts());
    let loaded = Pretrained::<B>::from_path(&path)
        .patcher(&patcher)
        .load::<Qwen2MoeForCausalLm<B>>(device)
        .unwrap();
    assert!(loaded.report.missing.is_empty() && loaded.report.unexpected.is_empty());
    // transformers 5's fused expert layout into per-expert linears: the model's default expert
    // converters run backwards (the seed patcher filtered them out of the forward list).
    let backwards = dir.ends_with("_fused") && sequential_experts;
    assert_eq!(
        loaded.report.reversed.len(),
        if backwards { 2 } else { 0 },
        "{}",
        loaded.report
    );
    let replaced = list_slots(&loaded.model)
        .iter()
        .filter(|s| s.replaced)
        .count();
    let expected = config.core.num_hidden_layers * fused_qkv as usize
        + config.sparse_layers() * sequential_experts as usize;
    assert_eq!(replaced, expected);

    let reference = read_reference(&path);
    let out = loaded
        .model
        .forward_with_hidden_states(input_ids::<B>(&reference, device));
    let label = format!("loader {dir} patch={patch}");
    assert_parity(&label, &out, &reference, TOLERANCE);

    // Save the (patched) model back in the checkpoint's layout; it reloads unpatched.
    let out_dir = save_and_compare(&loaded, &path, &format!("{dir}-{patch}"));
    std::fs::copy(path.join("config.json"), out_dir.join("config.json")).unwrap();
    let reloaded = Pretrained::<B>::from_path(&out_dir)
        .load::<Qwen2MoeForCausalLm<B>>(device)
        .unwrap();
    let again = reloaded.model.forward(input_ids::<B>(&reference, device));
    let diff = crate::common::max_abs_diff(
        &again,
        &crate::common::HostF32 {
            shape: out.logits.dims().to_vec(),
            data: out.logits.to_data().iter::<f32>().collect(),
        },
    );
    println!("  saved and reloaded unpatched: logits differ by {diff:.3e}");
    // Rounding only: the reloaded model is unpatched, and a fused projection's matmul sums in
    // another order than three separate ones on some backends (Flex's gemm blocks by width:
    // 1.4e-6 measured).
    assert!(diff <= 1e-5, "reloaded logits differ by {diff}");
    std::fs::remove_dir_all(out_dir).ok();
}

/// Saves `loaded.model` back in the checkpoint's layout (through the conversions it was loaded
/// with) into a scratch folder named after `name`, checks it against the `original` checkpoint
/// with [`assert_same_tensors`], and returns the folder.
fn save_and_compare<B: Backend, M: Module<B>>(
    loaded: &Loaded<M>,
    original: &Path,
    name: &str,
) -> PathBuf {
    let out_dir = scratch(name);
    save_pretrained(loaded, &out_dir).unwrap();
    assert_same_tensors(original, &out_dir);
    out_dir
}

/// Every tensor of the checkpoint in `saved` equals the one in `original` bit for bit: same
/// keys, dtypes, shapes and bytes (a save writes each tensor in the dtype it was loaded in, so
/// a bf16 original comes back in bf16).
fn assert_same_tensors(original: &Path, saved: &Path) {
    let original = Checkpoint::open(original).unwrap();
    let saved = Checkpoint::open(saved).unwrap();
    let keys: Vec<&str> = saved.keys().collect();
    assert_eq!(keys, original.keys().collect::<Vec<_>>());
    for key in keys {
        let (a, b) = (original.get(key).unwrap(), saved.get(key).unwrap());
        assert_eq!((a.dtype(), a.shape()), (b.dtype(), b.shape()), "{key}");
        assert!(
            a.read().unwrap().bytes == b.read().unwrap().bytes,
            "{key} differs from the original checkpoint"
        );
    }
}

fn llama<B: Backend>(dir: &str, fused_qkv: bool, device: &B::Device) {
    let path = fixtures().join(dir);
    let config = LlamaConfig::from_file(path.join("config.json")).unwrap();
    let patch = if fused_qkv {
        Patch::fused_qkv()
    } else {
        Patch::NONE
    };
    let patcher = patch.patcher::<B, _>(&config).unwrap();
    let loaded = Pretrained::<B>::from_path(&path)
        .patcher(&patcher)
        .load::<LlamaForCausalLm<B>>(device)
        .unwrap();
    let reference = read_reference(&path);
    let out = loaded
        .model
        .forward_with_hidden_states(input_ids::<B>(&reference, device));
    assert_parity(
        &format!("loader {dir} fused_qkv={fused_qkv}"),
        &out,
        &reference,
        TOLERANCE,
    );

    // Saved back in the checkpoint's layout: the same tensors, bit for bit.
    let out_dir = save_and_compare(&loaded, &path, &format!("{dir}-{fused_qkv}"));
    std::fs::remove_dir_all(out_dir).ok();
}

/// `Qwen2MoeForCausalLm` loaded from the `qwen2_moe` fixture with `patcher`.
fn load_qwen2_moe_fixture<B: Backend>(
    patcher: &Patcher<B>,
    device: &B::Device,
) -> Result<Loaded<Qwen2MoeForCausalLm<B>>, LoadError> {
    let path = fixtures().join("qwen2_moe");
    Pretrained::<B>::from_path(path)
        .patcher(patcher)
        .load::<Qwen2MoeForCausalLm<B>>(device)
}

/// The report and message of a load that must fail for keys that do not line up.
fn incomplete_load<M: Debug>(result: Result<M, LoadError>) -> (Box<LoadReport>, String) {
    let err = result.unwrap_err();
    let message = err.to_string();
    println!("{message}");
    match err {
        LoadError::Incomplete { report } => (report, message),
        other => panic!("expected an incomplete load, got {other}"),
    }
}

/// Whether some key of `keys` ends with `suffix`.
fn ends_with_any(keys: &[String], suffix: &str) -> bool {
    keys.iter().any(|key| key.ends_with(suffix))
}

fn wrong_patch_fails<B: Backend>(device: &B::Device) {
    // Fused QKV attention without the q/k/v concatenations: `qkv_proj` has no source, and the
    // checkpoint's q/k/v keys have no parameter.
    let patcher = Patcher::<B>::new().replace::<Qwen2MoeAttention<B>, FusedQkvAttention<B>>();
    let (report, _) = incomplete_load(load_qwen2_moe_fixture(&patcher, device));
    assert!(ends_with_any(&report.missing, "self_attn.qkv_proj.weight"));
    assert!(ends_with_any(&report.unexpected, "self_attn.q_proj.weight"));
    // A converter whose target does not exist (a typo): the load fails with the report, and the
    // report suggests the parameter that was meant.
    let typo = patcher_core::WeightConverter::new(
        ["q_proj.weight", "k_proj.weight", "v_proj.weight"],
        "qkv_projj.weight",
    )
    .op(patcher_core::ops::Concatenate::new(0));
    let patcher = patcher.extra_weight_conversions([typo]);
    let (report, message) = incomplete_load(load_qwen2_moe_fixture(&patcher, device));
    // The checkpoint does not hold `qkv_projj`: the report names the converter that made it.
    let outputs: Vec<String> = report
        .unexpected_outputs
        .iter()
        .map(|o| o.key.clone())
        .collect();
    assert!(ends_with_any(&outputs, "self_attn.qkv_projj.weight"));
    assert!(
        message.contains("did you mean `model.layers.{0,1}.self_attn.qkv_projj.weight`"),
        "{message}"
    );
    assert!(ends_with_any(&report.missing, "self_attn.qkv_proj.weight"));
    assert!(message.contains("qkv_projj"), "{message}");
    assert!(message.contains("did you mean"), "{message}");

    // The same for Llama.
    let patcher = Patcher::<B>::new().replace::<LlamaAttention<B>, FusedQkvAttention<B>>();
    let err = Pretrained::<B>::from_path(fixtures().join("llama"))
        .patcher(&patcher)
        .load::<LlamaForCausalLm<B>>(device);
    assert!(matches!(err, Err(LoadError::Incomplete { .. })));
}

/// The `qwen2_moe` fixture with one more expert key, whose index does not fit in u64, in a
/// temporary folder.
fn fixture_with_an_overlong_expert_index(key: &str) -> tempfile::TempDir {
    let fixture = fixtures().join("qwen2_moe");
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "reference.safetensors"] {
        std::fs::copy(fixture.join(name), dir.path().join(name)).unwrap();
    }
    let bytes = std::fs::read(fixture.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = file.tensors();
    let expert = file
        .tensor("model.layers.0.mlp.experts.0.gate_proj.weight")
        .unwrap();
    tensors.push((key.to_string(), expert));
    safetensors::serialize_to_file(tensors, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

/// Issue 19: an expert index longer than u64 is an unexpected key, and never costs the other
/// experts their stacked parameter: a strict load fails naming it (and only it), a partial load
/// lists it and loads every parameter, with transformers' logits. (The plan decides: one
/// backend is enough.)
#[test]
fn an_overlong_expert_index_is_unexpected() {
    type B = burn::backend::NdArray<f32>;
    let device = &Default::default();
    let key = "model.layers.0.mlp.experts.99999999999999999999999.gate_proj.weight";
    let dir = fixture_with_an_overlong_expert_index(key);
    let path = dir.path();
    let config = Qwen2MoeConfig::from_file(path.join("config.json")).unwrap();
    let patcher = Patch::NONE.patcher::<B, _>(&config).unwrap();
    let strict = Pretrained::<B>::from_path(path)
        .patcher(&patcher)
        .load::<Qwen2MoeForCausalLm<B>>(device);
    let (report, message) = incomplete_load(strict);
    assert_eq!(report.unexpected, [key], "{message}");
    assert!(
        report.missing.is_empty() && report.mismatched.is_empty(),
        "{message}"
    );

    let partial = LoadOptions::default().partial();
    let loaded = Pretrained::<B>::from_path(path)
        .patcher(&patcher)
        .options(partial.clone())
        .load::<Qwen2MoeForCausalLm<B>>(device)
        .unwrap();
    assert_eq!(loaded.report.unexpected, [key]);
    assert!(loaded.report.missing.is_empty(), "{}", loaded.report);
    assert!(loaded.report.mismatched.is_empty(), "{}", loaded.report);
    assert!(loaded.report.to_string().contains(key), "{}", loaded.report);
    let reference = read_reference(path);
    let out = loaded
        .model
        .forward_with_hidden_states(input_ids::<B>(&reference, device));
    assert_parity("overlong expert index", &out, &reference, TOLERANCE);
}

macro_rules! loader_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        type B = $backend;

        #[test]
        fn qwen2_moe_variants() {
            for patch in MOE_PATCHES {
                qwen2_moe::<B>("qwen2_moe", patch, &$device);
            }
        }

        #[test]
        fn qwen2_moe_fused_layout_variants() {
            for patch in MOE_PATCHES {
                qwen2_moe::<B>("qwen2_moe_fused", patch, &$device);
            }
        }

        #[test]
        fn qwen2_moe_sharded_and_bf16() {
            qwen2_moe::<B>("qwen2_moe_sharded", Patch::seed(), &$device);
            qwen2_moe::<B>("qwen2_moe_bf16", Patch::seed(), &$device);
        }

        #[test]
        fn qwen2_moe_dense_layers() {
            qwen2_moe::<B>("qwen2_moe_dense", Patch::NONE, &$device);
            qwen2_moe::<B>("qwen2_moe_dense", Patch::seed(), &$device);
        }

        #[test]
        fn llama_variants() {
            llama::<B>("llama", false, &$device);
            llama::<B>("llama", true, &$device);
            llama::<B>("llama_sharded", true, &$device);
        }

        #[test]
        fn wrong_patch_is_refused_with_the_report() {
            wrong_patch_fails::<B>(&$device);
        }
    };
}

crate::common::on_every_backend!(loader_tests);

/// `LoadOptions::threads` is clamped to `MAX_LOAD_THREADS`: 10,000 threads asked load the
/// sharded fixture on 64, to the same weights as the default 4.
#[test]
fn ten_thousand_threads_are_clamped_and_load_the_same_weights() {
    use burn::backend::NdArray;
    use patcher_burn::MAX_LOAD_THREADS;

    let options = LoadOptions::default().threads(10_000);
    assert_eq!(options.thread_count(), MAX_LOAD_THREADS);
    let path = fixtures().join("qwen2_moe_sharded");
    let device = Default::default();
    let load = |options: &LoadOptions| {
        Pretrained::<NdArray>::from_path(&path)
            .options(options.clone())
            .load::<Qwen2MoeForCausalLm<NdArray>>(&device)
            .unwrap()
            .model
    };
    // Every float parameter's values, in visiting order (NdArray's threaded matmuls are not
    // reproducible to the bit, so weights are compared, not logits).
    struct Weights(Vec<burn::tensor::TensorData>);
    impl burn::module::ModuleVisitor<NdArray> for Weights {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<NdArray, D>>,
        ) {
            self.0.push(param.val().into_data());
        }
    }
    let weights = |model: &Qwen2MoeForCausalLm<NdArray>| {
        let mut visitor = Weights(Vec::new());
        model.visit(&mut visitor);
        visitor.0
    };
    let (many, default) = (load(&options), load(&LoadOptions::default()));
    let (many, default) = (weights(&many), weights(&default));
    assert!(!many.is_empty());
    assert_eq!(many, default);
}
