//! Quantizing while loading (`LoadOptions::quantize`): the same bits as Burn's
//! `quantize_weights` after a full-precision load, logits close to transformers', Linear weights
//! only by default (experts included through `SequentialExperts`), patterns otherwise, and a
//! quantized model refusing to be saved.

use std::collections::HashSet;

use crate::common::{fixtures, input_ids, max_abs_diff, read_reference, ModulePath};
use burn::module::{Module, ModuleMapper, Param, Quantizer};
use burn::prelude::*;
use burn::tensor::quantization::{Calibration, QuantScheme, QuantStore};
use burn::tensor::DType as BurnDType;
use patcher_burn::{
    model_params, save_pretrained, Layout, LoadError, LoadOptions, Quantization, QuantizeTargets,
};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::Patch;

/// Largest logit difference from transformers' full-precision reference allowed for 8-bit
/// per-tensor symmetric Linear weights on the tiny fixture (0.11 measured; the test prints it).
const QUANTIZED_TOLERANCE: f32 = 0.2;

/// 8-bit, symmetric, per tensor, one value per byte (`QuantStore::Native`: the store every CPU
/// backend supports; NdArray refuses the default packed store).
fn scheme() -> QuantScheme {
    QuantScheme::default().with_store(QuantStore::Native)
}

/// Applies Burn's `Quantizer` (what `Module::quantize_weights` maps with) to the parameters at
/// `paths` only.
struct QuantizeSome {
    quantizer: Quantizer,
    paths: HashSet<String>,
    path: ModulePath,
}

impl<B: Backend> ModuleMapper<B> for QuantizeSome {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.paths.contains(&self.path.key()) {
            <Quantizer as ModuleMapper<B>>::map_float(&mut self.quantizer, param)
        } else {
            param
        }
    }
}

/// Burn paths and dtypes of every float parameter.
fn dtypes<B: Backend, M: Module<B>>(model: &M) -> Vec<(String, BurnDType)> {
    struct Dtypes(ModulePath, Vec<(String, BurnDType)>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Dtypes {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.0.enter(name, container_type);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.1.push((self.0.key(), param.val().dtype()));
        }
    }
    let mut visitor = Dtypes(ModulePath::default(), Vec::new());
    model.visit(&mut visitor);
    visitor.1
}

fn load<B: Backend>(
    patch: Patch,
    options: &LoadOptions,
    device: &B::Device,
) -> Qwen2MoeForCausalLm<B> {
    let path = fixtures().join("qwen2_moe");
    let config = Qwen2MoeConfig::from_file(path.join("config.json")).unwrap();
    let patcher = patch.patcher::<B, _>(&config).unwrap();
    Pretrained::<B>::from_path(&path)
        .patcher(&patcher)
        .options(options.clone())
        .load::<Qwen2MoeForCausalLm<B>>(device)
        .unwrap()
        .model
}

fn quantized_load_matches_quantize_weights<B: Backend>(device: &B::Device) {
    let scheme = scheme();
    let reference = read_reference(&fixtures().join("qwen2_moe"));
    let ids = input_ids::<B>(&reference, device);
    for patch in [Patch::fused_qkv(), Patch::seed()] {
        let quantized = load::<B>(patch, &LoadOptions::default().quantize(scheme), device);
        // Linear weights only: experts too when they are Linears, never norms or embeddings.
        let linear: HashSet<String> = model_params(&quantized)
            .into_iter()
            .filter(|p| p.layout == Layout::Transposed)
            .map(|p| p.burn_path)
            .collect();
        assert!(linear.iter().any(|p| p.contains("qkv_proj")));
        assert_eq!(
            linear.iter().any(|p| p.contains(".experts.")),
            patch.has_sequential_experts()
        );
        for (path, dtype) in dtypes(&quantized) {
            let is_quantized = matches!(dtype, BurnDType::QFloat(_));
            assert_eq!(is_quantized, linear.contains(&path), "{path}: {dtype:?}");
        }

        let full = load::<B>(patch, &LoadOptions::default(), device);
        let after = full.map(&mut QuantizeSome {
            quantizer: Quantizer { calibration: Calibration::MinMax, scheme },
            paths: linear,
            path: ModulePath::default(),
        });
        let ours = quantized.forward(ids.clone());
        let theirs = after.forward(ids.clone());
        // Bit for bit.
        assert_eq!(
            ours.to_data().as_slice::<f32>().unwrap(),
            theirs.to_data().as_slice::<f32>().unwrap(),
            "patch={patch}"
        );
        let diff = max_abs_diff(&ours, &reference.logits);
        println!(
            "qwen2_moe 8-bit (patch={patch}): logits within {diff:.3e} \
             of transformers' full precision"
        );
        assert!(diff <= QUANTIZED_TOLERANCE, "{diff}");
    }
}

fn patterns_select_parameters<B: Backend>(device: &B::Device) {
    let quantization = Quantization {
        scheme: scheme(),
        targets: QuantizeTargets::Matching(vec![r"mlp\.experts\.".into()]),
    };
    let model = load::<B>(
        Patch::seed(),
        &LoadOptions::default().quantization(quantization),
        device,
    );
    for (path, dtype) in dtypes(&model) {
        let expected = path.contains(".experts.");
        assert_eq!(matches!(dtype, BurnDType::QFloat(_)), expected, "{path}");
    }
    let bad = Quantization {
        scheme: scheme(),
        targets: QuantizeTargets::Matching(vec!["(".into()]),
    };
    let path = fixtures().join("qwen2_moe");
    let err = Pretrained::<B>::from_path(&path)
        .options(LoadOptions::default().quantization(bad))
        .load::<Qwen2MoeForCausalLm<B>>(device)
        .unwrap_err();
    assert!(matches!(err, LoadError::Pattern(_)), "{err}");
}

fn unsupported_schemes_are_an_error<B: Backend>(device: &B::Device) {
    // NdArray implements only the native store; the packed default is refused before loading.
    let packed = QuantScheme::default();
    let path = fixtures().join("qwen2_moe");
    let result = Pretrained::<B>::from_path(&path)
        .options(LoadOptions::default().quantize(packed))
        .load::<Qwen2MoeForCausalLm<B>>(device);
    // Flex packs, but the shared expert gate's width (1) does not fill a u32 word.
    let Err(err) = result else {
        panic!("the packed default scheme loaded");
    };
    let message = err.to_string();
    assert!(message.contains("QuantStore::Native"), "{message}");
}

fn saving_a_quantized_model_is_refused<B: Backend>(device: &B::Device) {
    let path = fixtures().join("qwen2_moe");
    let loaded = Pretrained::<B>::from_path(&path)
        .options(LoadOptions::default().quantize(scheme()))
        .load::<Qwen2MoeForCausalLm<B>>(device)
        .unwrap();
    let out = std::env::temp_dir().join(format!("patcher-quantized-{}", std::process::id()));
    let err = save_pretrained(&loaded, &out).unwrap_err();
    assert!(err.to_string().contains("quantized"), "{err}");
    assert!(!out.join("model.safetensors").exists());
    std::fs::remove_dir_all(out).ok();
}

macro_rules! quantized_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        type B = $backend;

        #[test]
        fn quantized_load_is_quantize_weights_after_a_full_load() {
            quantized_load_matches_quantize_weights::<B>(&$device);
        }

        #[test]
        fn patterns_choose_what_is_quantized() {
            patterns_select_parameters::<B>(&$device);
        }

        #[test]
        fn unsupported_scheme_is_an_error_not_a_panic() {
            unsupported_schemes_are_an_error::<B>(&$device);
        }

        #[test]
        fn a_quantized_model_is_not_saved() {
            saving_a_quantized_model_is_refused::<B>(&$device);
        }
    };
}

mod ndarray {
    quantized_tests!(burn::backend::NdArray<f32>, Default::default());
}

#[cfg(feature = "flex")]
mod flex {
    quantized_tests!(burn::backend::Flex, Default::default());
}
