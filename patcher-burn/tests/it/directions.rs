//! Conversions in both directions through the real loader and saver: a checkpoint in the fused
//! layout loaded into per-expert linears and saved back; saves that would write a wrong file
//! (a plain `Concatenate` under grouped-query attention, renamings whose pattern matches their
//! own output) made right or refused with nothing written; sharded saves; ignored keys; partial
//! loads with a dtype mismatch; mixed float dtypes among a converter's sources.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::common::*;
use burn::backend::NdArray;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use patcher_burn::{
    load_with, save_model, save_pretrained, save_pretrained_with, BuildError, LoadError,
    LoadOptions, LoadSpec, Patcher, Pretrained, SaveError, SaveOptions,
};
use patcher_core::ops::{Chunk, Concatenate, SplitModulelist};
use patcher_core::{
    Checkpoint, DType, HostTensor, WeightConverter, WeightRenaming, WeightTransform,
};

type B = NdArray;

/// Every tensor of `saved` equals `original`'s: same keys, shapes, dtypes and bytes.
fn assert_same_file(original: &Path, saved: &Path) {
    let (a, b) = (
        Checkpoint::open(original).unwrap(),
        Checkpoint::open(saved).unwrap(),
    );
    let mut keys: Vec<&str> = b.keys().collect();
    keys.sort_unstable();
    let mut expected: Vec<&str> = a.keys().collect();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    for key in keys {
        let (x, y) = (a.get(key).unwrap(), b.get(key).unwrap());
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{key}");
        assert!(
            x.read().unwrap().bytes == y.read().unwrap().bytes,
            "{key} differs"
        );
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn values_of(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((seed * 13 + i * 7) % 29) as f32 / 8.0 - 1.5)
        .collect()
}

/// `Tiny` checkpoint in its fused layout: what `Tiny`'s own converters produce.
fn fused_tiny_checkpoint() -> HashMap<String, HostTensor<'static>> {
    let mut tensors = tiny_checkpoint(DType::F32);
    for l in 0..LAYERS {
        let mut gate_up = Vec::new();
        let mut down = Vec::new();
        for e in 0..EXPERTS {
            gate_up.extend(tensor_values(
                &tensors.remove(&expert_key(l, e, "gate")).unwrap(),
            ));
            gate_up.extend(tensor_values(
                &tensors.remove(&expert_key(l, e, "up")).unwrap(),
            ));
            down.extend(tensor_values(
                &tensors.remove(&expert_key(l, e, "down")).unwrap(),
            ));
        }
        tensors.insert(
            format!("layers.{l}.experts.gate_up_proj"),
            HostTensor::from_f32([EXPERTS, 2 * INTER, HIDDEN], &gate_up),
        );
        tensors.insert(
            format!("layers.{l}.experts.down_proj"),
            HostTensor::from_f32([EXPERTS, HIDDEN, INTER], &down),
        );
    }
    tensors
}

#[derive(Module, Debug)]
struct Expert<B: Backend> {
    gate_proj: Linear<B>,
    up_proj: Linear<B>,
    down_proj: Linear<B>,
}

#[derive(Module, Debug)]
struct PerExpertLayer<B: Backend> {
    experts: Vec<Expert<B>>,
}

/// `Tiny`'s experts as one Linear per expert and projection (no norm, no q_proj).
#[derive(Module, Debug)]
struct PerExpert<B: Backend> {
    layers: Vec<PerExpertLayer<B>>,
}

fn per_expert_model() -> PerExpert<B> {
    let device = Default::default();
    let linear = |i, o| LinearConfig::new(i, o).with_bias(false).init::<B>(&device);
    PerExpert {
        layers: (0..LAYERS)
            .map(|_| PerExpertLayer {
                experts: (0..EXPERTS)
                    .map(|_| Expert {
                        gate_proj: linear(HIDDEN, INTER),
                        up_proj: linear(HIDDEN, INTER),
                        down_proj: linear(INTER, HIDDEN),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The fused experts of `Tiny`'s checkpoint, written to `dir/model.safetensors`.
fn write_fused_experts(
    dir: &TempDir,
) -> (std::path::PathBuf, HashMap<String, HostTensor<'static>>) {
    let mut tensors = fused_tiny_checkpoint();
    tensors.retain(|k, _| k.contains("experts"));
    let original = dir.path().join("model.safetensors");
    write_checkpoint(&original, &tensors);
    (original, tensors)
}

/// Expert 2's up projection of layer 1 loaded as `up` (Burn layout `[in, out]`) equals the
/// fused checkpoint's rows.
fn assert_up_rows(up: &[f32], tensors: &HashMap<String, HostTensor<'static>>) {
    let fused = tensor_values(&tensors["layers.1.experts.gate_up_proj"]);
    for o in 0..INTER {
        for i in 0..HIDDEN {
            let row = 2 * (2 * INTER * HIDDEN) + (INTER + o) * HIDDEN + i;
            assert_eq!(up[i * INTER + o], fused[row]);
        }
    }
}

#[test]
fn wildcard_targets_load_a_fused_checkpoint_per_expert_and_save_it_back() {
    // A user's converter with `*` in its targets, as transformers writes one-to-many.
    let model = per_expert_model();
    let transforms: Vec<WeightTransform> = vec![
        WeightConverter::try_new(
            "experts.gate_up_proj",
            ["experts.*.gate_proj.weight", "experts.*.up_proj.weight"],
            vec![Arc::new(Chunk::new(1)), Arc::new(SplitModulelist::new(0))],
        )
        .unwrap()
        .into(),
        WeightConverter::try_new(
            "experts.down_proj",
            "experts.*.down_proj.weight",
            vec![Arc::new(SplitModulelist::new(0))],
        )
        .unwrap()
        .into(),
    ];
    let dir = TempDir::new("wildcard");
    let (original, tensors) = write_fused_experts(&dir);
    let checkpoint = Checkpoint::open(&original).unwrap();
    let spec = LoadSpec::of_transforms(transforms);
    let loaded = load_with(&model, &checkpoint, &spec, &LoadOptions::default()).unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    assert_eq!(loaded.report.loaded, LAYERS * EXPERTS * 3);
    assert_up_rows(
        &values(loaded.model.layers[1].experts[2].up_proj.weight.val()),
        &tensors,
    );
    let saved = dir.path().join("saved");
    save_pretrained(&loaded, &saved).unwrap();
    assert_same_file(&original, &saved);
}

#[test]
fn a_fused_checkpoint_runs_the_models_converters_backwards() {
    // The per-expert model has no conversions of its own; the fused model's defaults (per-expert
    // keys -> fused) are declared reversible, as `Pretrained` does with a model's defaults.
    let dir = TempDir::new("backwards");
    let (original, tensors) = write_fused_experts(&dir);
    let checkpoint = Checkpoint::open(&original).unwrap();
    let spec = LoadSpec {
        reversible: <Tiny<B> as patcher_burn::PretrainedModel<B>>::weight_conversions(),
        ..LoadSpec::default()
    };
    let loaded = load_with(
        &per_expert_model(),
        &checkpoint,
        &spec,
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    assert_eq!(loaded.report.reversed.len(), 2);
    assert!(loaded.report.to_string().contains("run in reverse"));
    assert_up_rows(
        &values(loaded.model.layers[1].experts[2].up_proj.weight.val()),
        &tensors,
    );
    // Saving writes the fused layout that was loaded, bit for bit.
    let saved = dir.path().join("saved");
    save_pretrained(&loaded, &saved).unwrap();
    assert_same_file(&original, &saved);

    // Without the reversible conversions, the fused keys are unexpected.
    let err = load_with(
        &per_expert_model(),
        &checkpoint,
        &LoadSpec::default(),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Incomplete { ref report } if report.unexpected.len() == 4));
}

/// q, k, v projections fused into one Linear (grouped-query: q has 4 rows, k and v 2 each).
#[derive(Module, Debug)]
struct Attention<B: Backend> {
    qkv_proj: Linear<B>,
}

#[derive(Module, Debug)]
struct Gqa<B: Backend> {
    layers: Vec<Attention<B>>,
}

fn gqa_model() -> Gqa<B> {
    let device = Default::default();
    Gqa {
        layers: (0..2)
            .map(|_| Attention {
                qkv_proj: LinearConfig::new(HIDDEN, 8).with_bias(false).init(&device),
            })
            .collect(),
    }
}

fn plain_qkv() -> Vec<WeightTransform> {
    vec![WeightConverter::try_new(
        ["q_proj.weight", "k_proj.weight", "v_proj.weight"],
        "qkv_proj.weight",
        vec![Arc::new(Concatenate::new(0))],
    )
    .unwrap()
    .into()]
}

fn write_qkv(path: &Path, rows: [[usize; 3]; 2]) {
    let mut tensors = HashMap::new();
    for (l, sizes) in rows.iter().enumerate() {
        for (i, (name, rows)) in ["q", "k", "v"].iter().zip(sizes).enumerate() {
            let data = values_of(rows * HIDDEN, l * 3 + i);
            tensors.insert(
                format!("layers.{l}.{name}_proj.weight"),
                HostTensor::from_f32([*rows, HIDDEN], &data),
            );
        }
    }
    write_checkpoint(path, &tensors);
}

/// Writes q/k/v of `rows` per layer to `dir/model.safetensors` and loads them through a plain
/// `Concatenate`.
fn load_qkv(
    dir: &TempDir,
    rows: [[usize; 3]; 2],
) -> (std::path::PathBuf, patcher_burn::Loaded<Gqa<B>>) {
    let original = dir.path().join("model.safetensors");
    write_qkv(&original, rows);
    let checkpoint = Checkpoint::open(&original).unwrap();
    let options = LoadOptions::default();
    let spec = LoadSpec::of_transforms(plain_qkv());
    let loaded = load_with(&gqa_model(), &checkpoint, &spec, &options);
    (original, loaded.unwrap())
}

#[test]
fn a_plain_concatenate_under_gqa_saves_q_k_v_back_at_their_sizes() {
    let dir = TempDir::new("gqa");
    let (original, loaded) = load_qkv(&dir, [[4, 2, 2], [4, 2, 2]]);
    assert_eq!(
        loaded.conversions[0].ops()[0].name(),
        "Concatenate(dim=0, sizes=[4, 2, 2])"
    );
    let saved = dir.path().join("saved.safetensors");
    save_pretrained(&loaded, &saved).unwrap();
    assert_same_file(&original, &saved);
}

#[test]
fn a_save_that_would_split_q_k_v_evenly_is_refused_and_writes_nothing() {
    // The layers disagree on the sizes (4/2/2 and 2/4/2), so no sizes can be pinned: the plain
    // reverse would write even chunks, which the save refuses.
    let dir = TempDir::new("gqa-refused");
    let (_, loaded) = load_qkv(&dir, [[4, 2, 2], [2, 4, 2]]);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let err = save_pretrained(&loaded, &out).unwrap_err();
    let SaveError::Mismatch { keys, conversion, .. } = &err else {
        panic!("expected SaveError::Mismatch, got {err}");
    };
    assert!(keys.iter().any(|k| k == "layers.0.q_proj.weight"), "{err}");
    assert!(
        conversion
            .as_deref()
            .unwrap_or_default()
            .contains("Concatenate"),
        "{err}"
    );
    assert!(err.to_string().contains("with_split_sizes"), "{err}");
    // torch.chunk of 8 rows into 3: 3, 3, 2 rows where q has 4.
    assert!(
        err.to_string()
            .contains("layers.0.q_proj.weight (loaded [4, 4], would write [3, 4])"),
        "{err}"
    );
    assert!(files_in(&out).is_empty(), "{:?}", files_in(&out));
}

#[derive(Module, Debug)]
struct Experts<B: Backend> {
    experts: Vec<Linear<B>>,
}

#[derive(Module, Debug)]
struct Mlp<B: Backend> {
    mlp: Experts<B>,
}

#[derive(Module, Debug)]
struct SelfAttention<B: Backend> {
    self_attn: Linear<B>,
}

#[derive(Module, Debug)]
struct Bert<B: Backend> {
    attention: SelfAttention<B>,
}

#[test]
fn renamings_that_match_their_own_output_save_back_the_loaded_names() {
    let device = Default::default();
    let linear = || {
        LinearConfig::new(HIDDEN, 2)
            .with_bias(false)
            .init::<B>(&device)
    };
    let dir = TempDir::new("renames");
    let mut cases = 0;
    let mut check = |model: &dyn Fn() -> Result<(), Box<dyn std::error::Error>>| {
        model().unwrap();
        cases += 1;
    };

    // `.experts.N.` -> `.experts.experts.N.`: the forward pattern matches the renamed key.
    check(&|| {
        let model = Mlp { mlp: Experts { experts: vec![linear(), linear()] } };
        let renaming: Vec<WeightTransform> =
            vec![
                WeightRenaming::new(r"\.experts\.(\d+)\.", r".experts.experts.\1.")
                    .unwrap()
                    .into(),
            ];
        round_trip(
            &model,
            &renaming,
            &["mlp.experts.0.weight", "mlp.experts.1.weight"],
            &dir,
        )
    });
    // An unescaped `attention.self.` (`.` matches `_`) -> `attention.self_attn.`.
    check(&|| {
        let model = Bert { attention: SelfAttention { self_attn: linear() } };
        let renaming: Vec<WeightTransform> =
            vec![
                WeightRenaming::new("attention.self.", "attention.self_attn.")
                    .unwrap()
                    .into(),
            ];
        round_trip(&model, &renaming, &["attention.self.weight"], &dir)
    });
    assert_eq!(cases, 2);
}

/// Loads `keys` through `renaming`, saves with the loaded layout (right names, bit for bit),
/// and without it (`save_model`: refused, nothing written).
fn round_trip<M: Module<B>>(
    model: &M,
    renaming: &[WeightTransform],
    keys: &[&str],
    dir: &TempDir,
) -> Result<(), Box<dyn std::error::Error>> {
    let original = dir.path().join("model.safetensors");
    let tensors: HashMap<String, HostTensor<'static>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                k.to_string(),
                HostTensor::from_f32([2, HIDDEN], &values_of(8, i)),
            )
        })
        .collect();
    write_checkpoint(&original, &tensors);
    let checkpoint = Checkpoint::open(&original)?;
    let spec = LoadSpec::of_transforms(renaming.to_vec());
    let loaded = load_with(model, &checkpoint, &spec, &LoadOptions::default())?;
    let saved = dir.path().join("saved.safetensors");
    save_pretrained(&loaded, &saved)?;
    assert_same_file(&original, &saved);

    let blind = dir.path().join("blind.safetensors");
    let err = save_model(
        &loaded.model,
        &blind,
        renaming,
        None,
        &SaveOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, SaveError::Mismatch { .. }), "{err}");
    assert!(!blind.exists());
    Ok(())
}

#[test]
fn sharded_save_writes_an_index_and_cleans_up_the_previous_layout() {
    let dir = TempDir::new("shards");
    let original = dir.path().join("model.safetensors");
    write_checkpoint(&original, &tiny_checkpoint(DType::F32));
    let loaded = Pretrained::from_path(&original)
        .load_into(&Tiny::<B>::new(&Default::default()))
        .unwrap();
    let out = dir.path().join("out");
    let written =
        save_pretrained_with(&loaded, &out, &SaveOptions::default().max_shard_size(200)).unwrap();
    let names = files_in(&out);
    assert!(names.len() > 2, "{names:?}");
    assert!(names.contains(&"model.safetensors.index.json".to_string()));
    assert!(names.contains(&format!(
        "model-00001-of-{:05}.safetensors",
        names.len() - 1
    )));
    assert_eq!(written.len(), names.len());
    assert_same_file(&original, &out);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    let total: u64 = Checkpoint::open(&original)
        .unwrap()
        .iter()
        .map(|t| t.num_bytes() as u64)
        .sum();
    assert_eq!(index["metadata"]["total_size"], total);
    let elements: usize = Checkpoint::open(&original)
        .unwrap()
        .iter()
        .map(|t| t.shape().iter().product::<usize>())
        .sum();
    assert_eq!(index["metadata"]["total_parameters"], elements);
    let keys = Checkpoint::open(&original).unwrap().len();
    assert_eq!(index["weight_map"].as_object().unwrap().len(), keys);

    // One file into the same folder: the shards and the index go, so the folder opens as the
    // new file.
    save_pretrained(&loaded, &out).unwrap();
    assert_eq!(files_in(&out), ["model.safetensors"]);
    assert_same_file(&original, &out);
}

#[test]
fn ignored_keys_keep_the_load_strict_for_everything_else() {
    let dir = TempDir::new("ignore");
    let mut tensors = tiny_checkpoint(DType::F32);
    tensors.insert("layers.0.rotary_emb.inv_freq".into(), f32_tensor(&[2], 1.0));
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);
    let model = Tiny::<B>::new(&Default::default());

    let err = Pretrained::from_path(dir.path())
        .load_into(&model)
        .unwrap_err();
    let LoadError::Incomplete { report } = &err else {
        panic!("{err}");
    };
    assert_eq!(report.unexpected, ["layers.0.rotary_emb.inv_freq"]);

    let options = LoadOptions::default().ignore_unexpected([r"rotary_emb\.inv_freq$"]);
    let loaded = Pretrained::from_path(dir.path())
        .options(options.clone())
        .load_into(&model)
        .unwrap();
    assert_eq!(loaded.report.ignored, ["layers.0.rotary_emb.inv_freq"]);
    assert!(loaded.report.unexpected.is_empty());

    // Another unexpected key still fails the load.
    tensors.insert("layers.0.extra".into(), f32_tensor(&[2], 1.0));
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);
    let err = Pretrained::from_path(dir.path())
        .options(options.clone())
        .load_into(&model)
        .unwrap_err();
    assert!(
        matches!(err, LoadError::Incomplete { ref report } if report.unexpected == ["layers.0.extra"])
    );

    let bad = LoadOptions::default().ignore_unexpected(["("]);
    let err = Pretrained::from_path(dir.path())
        .options(bad.clone())
        .load_into(&model)
        .unwrap_err();
    assert!(matches!(err, LoadError::Pattern(_)), "{err}");
}

#[test]
fn a_patcher_with_mistakes_fails_the_load_into_a_built_model() {
    let dir = TempDir::new("patcher-errors");
    write_checkpoint(
        &dir.path().join("model.safetensors"),
        &tiny_checkpoint(DType::F32),
    );
    let model = Tiny::<B>::new(&Default::default());
    // Both mistakes are reported; nothing is loaded.
    let patcher = Patcher::new()
        .filtered_weight_conversion_patterns(["[unclosed"])
        .extra_weight_conversions([WeightConverter::new("a", "b")]);
    let err = Pretrained::from_path(dir.path())
        .patcher(&patcher)
        .load_into(&model)
        .unwrap_err();
    let LoadError::Build(BuildError::Patcher(errors)) = &err else {
        panic!("{err}");
    };
    assert_eq!(errors.0.len(), 2, "{err}");
    assert!(err.to_string().contains("[unclosed"), "{err}");
}

#[test]
fn a_partial_load_skips_a_tensor_of_the_wrong_dtype() {
    let dir = TempDir::new("partial-dtype");
    let mut tensors = tiny_checkpoint(DType::F32);
    tensors.insert("position_ids".into(), f32_tensor(&[POSITIONS], 1.0));
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);
    let model = Tiny::<B>::new(&Default::default());
    let before: Vec<i64> = model.position_ids.val().into_data().iter::<i64>().collect();

    let err = Pretrained::from_path(dir.path())
        .load_into(&model)
        .unwrap_err();
    assert!(
        matches!(err, LoadError::Incomplete { ref report } if report.dtype_mismatches.len() == 1)
    );

    let options = LoadOptions::default().partial();
    let loaded = Pretrained::from_path(dir.path())
        .options(options.clone())
        .load_into(&model)
        .unwrap();
    let mismatch = &loaded.report.dtype_mismatches[0];
    assert_eq!(mismatch.name, "position_ids");
    assert_eq!(
        (mismatch.checkpoint_dtype, mismatch.model_dtype),
        (DType::F32, DType::I64)
    );
    let after: Vec<i64> = loaded
        .model
        .position_ids
        .val()
        .into_data()
        .iter::<i64>()
        .collect();
    assert_eq!(after, before);
    let norm = tensor_values(&tensors["layers.1.norm.weight"]);
    assert_eq!(values(loaded.model.layers[1].norm.gamma.val()), norm);
}

#[test]
fn mixed_float_experts_are_cast_like_every_other_tensor() {
    let dir = TempDir::new("mixed");
    let mut tensors = tiny_checkpoint(DType::F32);
    let key = expert_key(1, 2, "up");
    let f16 = tiny_checkpoint(DType::F16).remove(&key).unwrap();
    let expected = tensor_values(&tensors[&key]);
    tensors.insert(key, f16);
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);
    let model = Tiny::<B>::new(&Default::default());
    let loaded = Pretrained::from_path(dir.path()).load_into(&model).unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    let gate_up = values(loaded.model.layers[1].experts.gate_up_proj.val());
    let per_expert = 2 * INTER * HIDDEN;
    let up = &gate_up[2 * per_expert + INTER * HIDDEN..3 * per_expert];
    assert_eq!(up, expected.as_slice());
}
