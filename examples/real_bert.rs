//! A real BERT against transformers: AntiBERTy (8 layers, hidden 512, a transformers 4
//! checkpoint under `bert.` with `cls.` heads, `LayerNorm.gamma`/`.beta` and a `position_ids`
//! buffer), which PyPI's `antiberty==0.1.3` wheel ships. Too large to commit (100 MB), so:
//!
//! ```text
//! pip download antiberty==0.1.3 --no-deps -d /tmp/pkgs
//! python3 scripts/check_real_bert.py /tmp/pkgs/antiberty-0.1.3-py3-none-any.whl /tmp/antiberty
//! cargo run --release --example real_bert -- /tmp/antiberty
//! ```
//!
//! Loads it unpatched and with the fused-QKV patch, runs transformers' padded batch, and prints
//! the largest difference from transformers' last hidden state, pooler output and every hidden
//! state; exits with an error above 1e-4.

mod common;

use std::path::PathBuf;

use burn::prelude::*;
use burn_patcher::{Checkpoint, Patcher};
use common::Backend as B;
use patcher_models::bert::{BertConfig, BertModel};
use patcher_models::prelude::*;
use patcher_models::replacements::Patch;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: real_bert DIR")?);
    let device = Default::default();
    let reference = Checkpoint::open(dir.join("reference.safetensors"))?;
    let ints = |name: &str| -> Result<Tensor<B, 2, Int>, Error> {
        let t = reference.get(name)?;
        let shape = [t.shape()[0], t.shape()[1]];
        let data = TensorData::new(t.read()?.to_values::<i64>()?, shape);
        Ok(Tensor::from_data(data, &device))
    };
    let config = BertConfig::from_file(dir.join("config.json"))?;
    for (name, patcher) in [
        ("unpatched", Patcher::new()),
        ("fused QKV", Patch::fused_qkv().patcher::<B, _>(&config)?),
    ] {
        let loaded = Pretrained::<B>::from_path(&dir)
            .patcher(&patcher)
            .load::<BertModel<B>>(&device)?;
        if !loaded.report.missing.is_empty() || !loaded.report.unexpected.is_empty() {
            return Err(format!("{name}: the load was not clean:\n{}", loaded.report).into());
        }
        let (ids, types, mask) = (
            ints("input_ids")?,
            ints("token_type_ids")?,
            ints("attention_mask")?,
        );
        let out = loaded.model.forward(ids, Some(types), Some(mask), true)?;
        let hidden = out.hidden_states.unwrap_or_default();
        let mut outputs: Vec<(String, TensorData)> = vec![
            (
                "last_hidden_state".into(),
                out.last_hidden_state.into_data(),
            ),
            ("pooler_output".into(), out.pooler_output.into_data()),
        ];
        outputs.extend(
            hidden
                .into_iter()
                .enumerate()
                .map(|(i, h)| (format!("hidden_states.{i}"), h.into_data())),
        );
        let mut worst = 0f32;
        for (key, ours) in outputs {
            let theirs = reference.get(&key)?.read()?.to_f32_vec()?;
            let ours: Vec<f32> = ours
                .convert::<f32>()
                .to_vec()
                .map_err(|e| format!("{e:?}"))?;
            if ours.len() != theirs.len() {
                return Err(format!(
                    "{name}: {key} has {} values, transformers' {}",
                    ours.len(),
                    theirs.len()
                )
                .into());
            }
            worst = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(worst, f32::max);
        }
        println!("{name}: max |ours - transformers| over every output = {worst:.3e}");
        if worst > 1e-4 {
            return Err(format!("{name}: {worst} is above 1e-4").into());
        }
    }
    Ok(())
}
