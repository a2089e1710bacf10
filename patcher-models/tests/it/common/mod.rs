//! Test-only helpers: read the committed fixtures with the `safetensors` crate and assign their
//! tensors to a model's parameters directly (PyTorch names, Linear weights transposed, experts
//! stacked, q/k/v concatenated for fused attention). This checks the forward math against
//! transformers independently of the real loader; it is not part of any public API.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};

pub mod parity;

/// A host tensor in f32.
#[derive(Debug, Clone)]
pub struct HostF32 {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Every patch of a mixture-of-experts family: none, each replacement alone, both (the seed's).
pub const MOE_PATCHES: [patcher_models::replacements::Patch; 4] = {
    use patcher_models::replacements::Patch;
    [
        Patch::NONE,
        Patch::fused_qkv(),
        Patch::sequential_experts(),
        Patch::seed(),
    ]
};

/// A family's tensor-parallel cases: 2 and 4 peers, each unpatched and with `patch`.
pub fn tensor_parallel_cases(
    patch: patcher_models::replacements::Patch,
) -> impl Iterator<Item = (usize, patcher_models::replacements::Patch)> {
    use patcher_models::replacements::Patch;
    [2, 4]
        .into_iter()
        .flat_map(move |world| [Patch::NONE, patch].map(|p| (world, p)))
}

/// The logits of a left-padded prefill of two prompts and of two cached decode steps after it,
/// flattened (the padded positions' left out).
pub fn prefill_and_decode_logits<Bk: Backend, M: patcher_models::prelude::CausalLm<Bk>>(
    model: &M,
    device: &Bk::Device,
) -> Vec<f32> {
    let prompt = Tensor::<Bk, 2, Int>::from_data([[0, 0, 5, 17, 3], [9, 40, 2, 77, 11]], device);
    let mut mask = Tensor::<Bk, 2, Int>::from_data([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], device);
    let mut cache = patcher_models::prelude::KvCache::new();
    let mut logits = vec![model
        .forward_cached(prompt, Some(mask.clone()), &mut cache)
        .unwrap()];
    for step in [[[23], [101]], [[64], [8]]] {
        let ones = Tensor::<Bk, 2, Int>::ones([2, 1], device);
        mask = Tensor::cat(vec![mask, ones], 1);
        let ids = Tensor::<Bk, 2, Int>::from_data(step, device);
        logits.push(
            model
                .forward_cached(ids, Some(mask.clone()), &mut cache)
                .unwrap(),
        );
    }
    // Padded positions' logits are not meaningful: sequence 0's first two are left out.
    let first = logits.remove(0);
    let mut kept = vec![
        first.clone().narrow(0, 0, 1).narrow(1, 2, 3),
        first.narrow(0, 1, 1),
    ];
    kept.extend(logits);
    kept.into_iter()
        .flat_map(|t| t.into_data().convert::<f32>().to_vec::<f32>().unwrap())
        .collect()
}

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("fixtures")
}

fn to_f32(view: &safetensors::tensor::TensorView<'_>) -> Vec<f32> {
    let bytes = view.data();
    match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        other => panic!("unexpected dtype {other:?}"),
    }
}

/// Every tensor of one safetensors file, as f32.
pub fn read_file(path: &Path) -> BTreeMap<String, HostF32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let t = HostF32 { shape: view.shape().to_vec(), data: to_f32(&view) };
            (name, t)
        })
        .collect()
}

/// Every weight of a checkpoint directory (one file or shards), as f32.
pub fn read_checkpoint(dir: &Path) -> BTreeMap<String, HostF32> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".safetensors") && name != "reference.safetensors" {
            all.extend(read_file(&path));
        }
    }
    all
}

/// A fresh scratch folder for this test process, named after `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("patcher-models-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves `loaded` back (in the layout it was loaded from) into a scratch folder named `name`
/// and checks the file is the fixture's at `original`, byte for byte.
pub fn assert_saves_back_byte_for_byte<B: Backend, M: Module<B>>(
    loaded: &patcher_burn::Loaded<M>,
    original: &Path,
    name: &str,
    label: &str,
) {
    let out_dir = scratch(name);
    patcher_burn::save_pretrained(loaded, &out_dir).unwrap();
    assert_same_weights_file(&out_dir, original, label);
}

/// Checks that the `model.safetensors` saved in `out_dir` is the fixture's in `original`, byte
/// for byte, then removes `out_dir`.
pub fn assert_same_weights_file(out_dir: &Path, original: &Path, label: &str) {
    let saved = std::fs::read(out_dir.join("model.safetensors")).unwrap();
    let original = std::fs::read(original.join("model.safetensors")).unwrap();
    assert!(
        saved == original,
        "{label}: the saved file differs from the fixture's"
    );
    std::fs::remove_dir_all(out_dir).ok();
}

/// transformers' reference outputs.
pub struct Reference {
    pub input_ids: Vec<i64>,
    pub input_shape: [usize; 2],
    pub logits: HostF32,
    pub hidden_states: Vec<HostF32>,
}

pub fn read_reference(dir: &Path) -> Reference {
    let path = dir.join("reference.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap();
    assert_eq!(ids.dtype(), Dtype::I64);
    let input_ids: Vec<i64> = ids
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let input_shape = [ids.shape()[0], ids.shape()[1]];
    let all = read_file(&path);
    let mut hidden_states = Vec::new();
    while let Some(h) = all.get(&format!("hidden_states.{}", hidden_states.len())) {
        hidden_states.push(h.clone());
    }
    Reference {
        input_ids,
        input_shape,
        logits: all["logits"].clone(),
        hidden_states,
    }
}

pub fn input_ids<B: Backend>(reference: &Reference, device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(
        TensorData::new(reference.input_ids.clone(), reference.input_shape),
        device,
    )
}

/// Max abs difference between a Burn tensor and a reference, shapes checked.
pub fn max_abs_diff<B: Backend, const D: usize>(actual: &Tensor<B, D>, expected: &HostF32) -> f32 {
    assert_eq!(actual.dims().to_vec(), expected.shape, "shape");
    let actual: Vec<f32> = actual.to_data().iter::<f32>().collect();
    max_abs_diff_of(&actual, &expected.data)
}

/// Max abs difference between two equally long value lists (lengths checked).
pub fn max_abs_diff_of(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "length");
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f32::max)
}

fn concat_rows(parts: &[&HostF32]) -> HostF32 {
    let cols: usize = parts[0].shape[1..].iter().product();
    let mut data = Vec::new();
    let mut rows = 0;
    for p in parts {
        assert_eq!(p.shape[1..].iter().product::<usize>(), cols);
        rows += p.shape[0];
        data.extend_from_slice(&p.data);
    }
    let mut shape = parts[0].shape.clone();
    shape[0] = rows;
    HostF32 { shape, data }
}

fn stack(parts: &[&HostF32]) -> HostF32 {
    let mut data = Vec::new();
    for p in parts {
        assert_eq!(p.shape, parts[0].shape);
        data.extend_from_slice(&p.data);
    }
    let mut shape = vec![parts.len()];
    shape.extend_from_slice(&parts[0].shape);
    HostF32 { shape, data }
}

fn transpose2(t: &HostF32) -> HostF32 {
    let [r, c] = [t.shape[0], t.shape[1]];
    let mut data = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            data[j * r + i] = t.data[i * c + j];
        }
    }
    HostF32 { shape: vec![c, r], data }
}

/// Where a visitor or mapper is in the module tree, named as the loader names parameters: the
/// names entered, without Burn's enum variants (`Enum:` containers; `mlp.Dense.gate_proj` is
/// `mlp.gate_proj`) and without empty names.
#[derive(Default)]
pub struct ModulePath(Vec<(String, String)>);

impl ModulePath {
    /// `enter_module(name, container_type)`.
    pub fn enter(&mut self, name: &str, container_type: &str) {
        self.0.push((name.to_string(), container_type.to_string()));
    }

    /// `exit_module`.
    pub fn exit(&mut self) {
        self.0.pop();
    }

    /// The dotted key: `model.layers.0.mlp.gate.weight`.
    pub fn key(&self) -> String {
        let named = self
            .0
            .iter()
            .filter(|(name, container)| !name.is_empty() && !container.starts_with("Enum:"));
        named
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The struct that holds the current parameter (`Linear` for `Struct:Linear`).
    pub fn owner(&self) -> &str {
        let container = self.0.last().map(|(_, c)| c.as_str()).unwrap_or_default();
        container.strip_prefix("Struct:").unwrap_or_default()
    }
}

/// The loader's names of `module`'s float parameters, in visiting order.
pub fn param_paths<B: Backend, M: Module<B>>(module: &M) -> Vec<String> {
    struct Paths(ModulePath, Vec<String>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Paths {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.0.enter(name, container_type);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<B, D>>) {
            self.1.push(self.0.key());
        }
    }
    let mut paths = Paths(ModulePath::default(), Vec::new());
    module.visit(&mut paths);
    paths.1
}

/// Assigns checkpoint tensors to every float parameter of `module`, looking keys up as
/// `prefix + burn path` (PyTorch naming), and returns the set of checkpoint keys it used.
pub struct Assigner<'a, B: Backend> {
    weights: &'a BTreeMap<String, HostF32>,
    prefix: String,
    device: B::Device,
    path: ModulePath,
    pub used: BTreeSet<String>,
    pub assigned: Vec<String>,
}

impl<'a, B: Backend> Assigner<'a, B> {
    fn get(&mut self, key: &str) -> &'a HostF32 {
        self.used.insert(key.to_string());
        self.weights
            .get(key)
            .unwrap_or_else(|| panic!("no checkpoint key {key}"))
    }

    /// The PyTorch-layout tensor for parameter `name` (full key) of a `owner` struct.
    fn lookup(&mut self, name: &str, owner: &str) -> HostF32 {
        if self.weights.contains_key(name) {
            let t = self.get(name).clone();
            return if owner == "Linear" && name.ends_with(".weight") && t.shape.len() == 2 {
                transpose2(&t)
            } else {
                t
            };
        }
        if let Some(base) = name.strip_suffix("experts.gate_up_proj") {
            let mut parts = Vec::new();
            for e in 0.. {
                let gate = format!("{base}experts.{e}.gate_proj.weight");
                if !self.weights.contains_key(&gate) {
                    break;
                }
                let g = self.get(&gate);
                let u = self.get(&format!("{base}experts.{e}.up_proj.weight"));
                parts.push(concat_rows(&[g, u]));
            }
            return stack(&parts.iter().collect::<Vec<_>>());
        }
        if let Some(base) = name.strip_suffix("experts.down_proj") {
            let mut parts = Vec::new();
            for e in 0.. {
                let key = format!("{base}experts.{e}.down_proj.weight");
                if !self.weights.contains_key(&key) {
                    break;
                }
                parts.push(self.get(&key));
            }
            return stack(&parts);
        }
        for leaf in ["weight", "bias"] {
            if let Some(base) = name.strip_suffix(&format!("qkv_proj.{leaf}")) {
                let q = self.get(&format!("{base}q_proj.{leaf}"));
                let k = self.get(&format!("{base}k_proj.{leaf}"));
                let v = self.get(&format!("{base}v_proj.{leaf}"));
                let fused = concat_rows(&[q, k, v]);
                return if leaf == "weight" {
                    transpose2(&fused)
                } else {
                    fused
                };
            }
        }
        panic!("no checkpoint source for parameter {name}");
    }
}

impl<B: Backend> ModuleMapper<B> for Assigner<'_, B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name = format!("{}{}", self.prefix, self.path.key());
        let owner = self.path.owner().to_string();
        let t = self.lookup(&name, &owner);
        let expected = param.lazy_shape().to_vec();
        assert_eq!(t.shape, expected, "shape of {name}");
        let shape: [usize; D] = t.shape.clone().try_into().unwrap();
        let tensor = Tensor::<B, D>::from_data(TensorData::new(t.data, shape), &self.device);
        self.assigned.push(name);
        let (id, _, mapper) = param.consume();
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Loads `module`'s parameters from `weights` under `prefix`; returns it and the keys used.
pub fn assign<B: Backend, M: Module<B>>(
    module: M,
    weights: &BTreeMap<String, HostF32>,
    prefix: &str,
    device: &B::Device,
) -> (M, BTreeSet<String>) {
    let mut assigner = Assigner::<B> {
        weights,
        prefix: prefix.to_string(),
        device: device.clone(),
        path: ModulePath::default(),
        used: BTreeSet::new(),
        assigned: Vec::new(),
    };
    let module = module.map(&mut assigner);
    (module, assigner.used)
}

/// Loads a whole model and checks every checkpoint key was used.
pub fn assign_all<B: Backend, M: Module<B>>(module: M, dir: &Path, device: &B::Device) -> M {
    let weights = read_checkpoint(dir);
    let (module, used) = assign(module, &weights, "", device);
    let unused: Vec<&String> = weights.keys().filter(|k| !used.contains(*k)).collect();
    assert!(unused.is_empty(), "unused checkpoint keys: {unused:?}");
    module
}

/// Random `[d0, d1, d2]` input from a fixed seed (a tiny LCG, so no extra dependency).
pub fn seeded_input<B: Backend>(shape: [usize; 3], seed: u64, device: &B::Device) -> Tensor<B, 3> {
    let mut state = seed;
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// `mod ndarray`, `mod flex` and `mod wgpu` (each with its cargo feature), each invoking the
/// calling file's `$tests!(backend, device)` macro: a file's backend-generic tests, on every
/// backend.
macro_rules! on_every_backend {
    ($tests:ident) => {
        mod ndarray {
            $tests!(burn::backend::NdArray<f32>, Default::default());
        }

        #[cfg(feature = "flex")]
        mod flex {
            $tests!(burn::backend::Flex, Default::default());
        }

        #[cfg(feature = "wgpu")]
        mod wgpu {
            $tests!(
                burn::backend::Wgpu,
                burn::backend::wgpu::WgpuDevice::default()
            );
        }
    };
}
pub(crate) use on_every_backend;
