//! What the model examples share: the backend picked by cargo features, the committed fixtures,
//! transformers' reference outputs and how a loaded build is printed.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_patcher::{list_slots, Checkpoint, Loaded};

/// The backend chosen by cargo features: CUDA, else wgpu, else ndarray.
#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Cuda;
/// The backend chosen by cargo features: CUDA, else wgpu, else ndarray.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Backend = burn::backend::Wgpu;
/// The backend chosen by cargo features: CUDA, else wgpu, else ndarray.
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
pub type Backend = burn::backend::NdArray;

/// A committed fixture folder (`tests/fixtures/<name>`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// transformers' inputs and logits saved next to a fixture checkpoint.
pub struct Reference {
    /// Token ids, `[batch, seq]`.
    pub input_ids: Vec<i64>,
    /// Shape of `input_ids`.
    pub input_shape: [usize; 2],
    /// Logits, `[batch, seq, vocab]`, flattened.
    pub logits: Vec<f32>,
}

impl Reference {
    /// Reads `reference.safetensors` from a fixture folder.
    pub fn read(dir: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let file = Checkpoint::open(dir.join("reference.safetensors"))?;
        let ids = file.get("input_ids")?;
        let input_shape = [ids.shape()[0], ids.shape()[1]];
        Ok(Self {
            input_ids: ids.read()?.to_values::<i64>()?,
            input_shape,
            logits: file.get("logits")?.read()?.to_f32_vec()?,
        })
    }

    /// The token ids as a Burn tensor.
    pub fn input_ids<B: burn::tensor::backend::Backend>(
        &self,
        device: &B::Device,
    ) -> Tensor<B, 2, Int> {
        let data = TensorData::new(self.input_ids.clone(), self.input_shape);
        Tensor::from_data(data, device)
    }

    /// Largest absolute difference between `logits` and transformers' logits.
    pub fn max_abs_diff<B: burn::tensor::backend::Backend>(&self, logits: Tensor<B, 3>) -> f32 {
        let ours: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        assert_eq!(ours.len(), self.logits.len(), "logits of another shape");
        ours.iter()
            .zip(&self.logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
}

/// Prints what a build holds (its replaced slots with their paths, the conversions the load
/// used, the load report, the parameter count) and how far its `logits` are from transformers'.
pub fn print_build<B: burn::tensor::backend::Backend, M: Module<B>>(
    title: &str,
    loaded: &Loaded<M>,
    logits: Tensor<B, 3>,
    reference: &Reference,
) {
    println!("== {title}");
    let slots = list_slots(&loaded.model);
    let replaced: Vec<_> = slots.iter().filter(|s| s.replaced).collect();
    if replaced.is_empty() {
        println!(
            "  patched classes: none ({} slots hold their original class)",
            slots.len()
        );
    } else {
        println!("  patched classes:");
        for slot in replaced {
            println!(
                "    {:<28} {} -> {}",
                slot.path, slot.original_class, slot.class
            );
        }
    }
    if loaded.conversions.is_empty() {
        println!("  conversions used: none (every checkpoint key is a parameter name)");
    } else {
        println!("  conversions used:");
    }
    for conversion in &loaded.conversions {
        println!("    {conversion}");
    }
    println!("  load report:");
    for line in loaded.report.to_string().lines() {
        println!("    {line}");
    }
    println!("  parameters: {}", loaded.model.num_params());
    let diff = reference.max_abs_diff(logits);
    println!("  max |logits - transformers| = {diff:.3e}\n");
}
