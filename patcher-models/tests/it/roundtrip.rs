//! Saves that give back the checkpoint that was loaded, with no option: a checkpoint without
//! its base model prefix (the load adds it, the save removes it), BERT's legacy layout (prefix,
//! `gamma`/`beta`), and half-precision checkpoints (each tensor written in its loaded dtype).

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::fixtures;
use burn::backend::NdArray;
use half::f16;
use patcher_burn::{save_pretrained, LoadOptions};
use patcher_models::bert::BertModel;
use patcher_models::llama::LlamaForCausalLm;
use patcher_models::prelude::*;
use safetensors::{Dtype, SafeTensors};

type B = NdArray<f32>;

/// Every tensor of a safetensors file: dtype, shape and bytes, by key.
pub type Raw = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

pub fn raw(path: &Path) -> Raw {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(key, view)| {
            let tensor = (view.dtype(), view.shape().to_vec(), view.data().to_vec());
            (key, tensor)
        })
        .collect()
}

fn write(tensors: &Raw, path: &Path) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(key, (dtype, shape, data))| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
            (key.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// `fixture`'s config with `tensors` as its checkpoint, in a fresh folder.
fn variant(fixture: &str, tensors: &Raw) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = fixtures().join(fixture).join("config.json");
    std::fs::copy(config, dir.path().join("config.json")).unwrap();
    write(tensors, &dir.path().join("model.safetensors"));
    dir
}

/// Runs `save` into a fresh folder and checks that its `model.safetensors` holds `expected`,
/// key for key, dtype for dtype, byte for byte.
pub fn assert_round_trip(expected: &Raw, save: impl FnOnce(&Path)) {
    let out = tempfile::tempdir().unwrap();
    save(out.path());
    let saved = raw(&out.path().join("model.safetensors"));
    assert_eq!(
        saved.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, (dtype, shape, data)) in expected {
        let (saved_dtype, saved_shape, saved_data) = &saved[key];
        assert_eq!((saved_dtype, saved_shape), (dtype, shape), "{key}");
        assert!(saved_data == data, "{key}: the bytes differ");
    }
}

fn llama(dir: &Path) -> patcher_burn::Loaded<LlamaForCausalLm<B>> {
    let options = LoadOptions::default();
    Pretrained::<B>::from_path(dir)
        .options(options.clone())
        .load::<LlamaForCausalLm<B>>(&Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_checkpoint_without_the_base_prefix_saves_without_it() {
    let stock = raw(&fixtures().join("llama/model.safetensors"));
    let prefixless: Raw = stock
        .into_iter()
        .map(|(key, t)| (key.strip_prefix("model.").unwrap_or(&key).to_string(), t))
        .collect();
    assert!(prefixless.contains_key("layers.0.self_attn.q_proj.weight"));
    let dir = variant("llama", &prefixless);
    let loaded = llama(dir.path());
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    assert_round_trip(&prefixless, |out| {
        save_pretrained(&loaded, out).unwrap();
    });
}

#[test]
fn the_bert_legacy_layout_saves_back_as_it_was() {
    let path = fixtures().join("bert_legacy");
    let options = LoadOptions::default();
    let loaded = Pretrained::<B>::from_path(&path)
        .options(options.clone())
        .load::<BertModel<B>>(&Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    // What the load read: the ignored buffer and head tensor are not the model's.
    let mut expected = raw(&path.join("model.safetensors"));
    for ignored in &loaded.report.ignored {
        expected.remove(ignored);
    }
    assert_eq!(expected.len(), loaded.source_layout.len());
    assert!(expected.contains_key("bert.embeddings.LayerNorm.gamma"));
    assert_round_trip(&expected, |out| {
        save_pretrained(&loaded, out).unwrap();
    });
}

#[test]
fn an_f16_checkpoint_saves_back_in_f16() {
    let half: Raw = raw(&fixtures().join("llama/model.safetensors"))
        .into_iter()
        .map(|(key, (dtype, shape, data))| {
            assert_eq!(dtype, Dtype::F32, "{key}");
            let data = data
                .chunks_exact(4)
                .flat_map(|b| {
                    f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes()
                })
                .collect();
            (key, (Dtype::F16, shape, data))
        })
        .collect();
    let dir = variant("llama", &half);
    let loaded = llama(dir.path());
    assert_round_trip(&half, |out| {
        save_pretrained(&loaded, out).unwrap();
    });
}

#[test]
fn a_bf16_checkpoint_saves_back_in_bf16_and_float_dtype_overrides() {
    let path = fixtures().join("qwen2_moe_bf16");
    let options = LoadOptions::default();
    let loaded = Pretrained::<B>::from_path(&path)
        .options(options.clone())
        .load::<patcher_models::qwen2_moe::Qwen2MoeForCausalLm<B>>(&Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let stock = raw(&path.join("model.safetensors"));
    assert!(stock.values().any(|(dtype, _, _)| *dtype == Dtype::BF16));
    assert_round_trip(&stock, |out| {
        save_pretrained(&loaded, out).unwrap();
    });

    // The override writes every float tensor in the dtype asked for, the same values.
    let out = tempfile::tempdir().unwrap();
    let full = patcher_burn::SaveOptions::default().float_dtype(patcher_core::DType::F32);
    patcher_burn::save_pretrained_with(&loaded, out.path(), &full).unwrap();
    let saved = raw(&out.path().join("model.safetensors"));
    for (key, (dtype, _, data)) in &stock {
        let (saved_dtype, _, saved_data) = &saved[key];
        if *dtype != Dtype::BF16 {
            assert_eq!(saved_dtype, dtype, "{key}");
            continue;
        }
        assert_eq!(*saved_dtype, Dtype::F32, "{key}");
        let upcast: Vec<u8> = data
            .chunks_exact(2)
            .flat_map(|b| {
                half::bf16::from_le_bytes([b[0], b[1]])
                    .to_f32()
                    .to_le_bytes()
            })
            .collect();
        assert!(*saved_data == upcast, "{key}");
    }
}
