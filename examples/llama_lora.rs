//! LoRA on every `Linear` of Llama, through leaf slots: the stock checkpoint loads into the
//! frozen base layers, the adapters start at zero (so the logits are transformers'), and a few
//! SGD steps on `Autodiff<NdArray>` train the adapters only; the trained adapter is then saved
//! as PEFT's `adapter_model.safetensors` + `adapter_config.json` (loadable by
//! `PeftModel.from_pretrained`), next to the base checkpoint as it was loaded.
//!
//! ```sh
//! cargo run --release --example llama_lora
//! ```

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn_patcher::SaveOptions;
use burn_patcher::{list_slots, LoadOptions};
use common::{fixture, Reference};
use patcher_models::llama::{LlamaForCausalLm, LINEAR_NAMES};
use patcher_models::prelude::*;
use patcher_models::replacements::{
    lora_patcher, save_lora_adapter, save_lora_base, OnlyLoraTrainable, PeftAdapterConfig,
    LORA_PARAMETERS,
};

type B = Autodiff<NdArray>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = fixture("llama");
    let device = Default::default();
    let reference = Reference::read(&dir)?;
    let patcher = lora_patcher::<B, 8>(&LINEAR_NAMES)?;
    let options = LoadOptions::default().ignore_missing([LORA_PARAMETERS]);
    let loaded = Pretrained::<B>::from_path(&dir)
        .patcher(&patcher)
        .options(options.clone())
        .load::<LlamaForCausalLm<B>>(&device)?;

    let slots = list_slots(&loaded.model);
    let lora = slots.iter().filter(|s| s.class == "LoraLinear").count();
    println!("{lora} of {} slots hold a LoraLinear (rank 8)", slots.len());
    println!("{}", loaded.report);
    let ids = reference.input_ids(&device);
    let diff = reference.max_abs_diff(loaded.model.forward(ids.clone()));
    println!("before training: max |logits - transformers| = {diff:.3e}");

    let mut model = loaded.model.map(&mut OnlyLoraTrainable::default());
    let mut optimizer = SgdConfig::new().init();
    for step in 1..=3 {
        let loss = model.forward(ids.clone()).powi_scalar(2).mean();
        println!(
            "step {step}: mean squared logit {:.6}",
            loss.clone().into_scalar()
        );
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.5, model, grads);
    }
    println!(
        "{} parameters in all; the frozen ones did not move (patcher-models/tests/it/lora.rs checks it)",
        model.num_params()
    );

    let trained = burn_patcher::Loaded { model, ..loaded };
    let out = std::env::temp_dir().join("burn-patcher-llama-lora");
    let config = PeftAdapterConfig {
        base_model_name_or_path: Some(dir.display().to_string()),
        task_type: Some("CAUSAL_LM".into()),
    };
    let mut files = save_lora_adapter(&trained, out.join("adapter"), &config)?;
    files.extend(save_lora_base(
        &trained,
        out.join("base"),
        &SaveOptions::default(),
    )?);
    for file in files {
        println!("wrote {}", file.display());
    }
    Ok(())
}
