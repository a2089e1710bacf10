//! The seed's example in Burn: Qwen2-MoE loaded from a stock (per-expert) transformers
//! checkpoint, once as written and once patched with fused QKV attention and sequential experts,
//! with the logits compared to transformers' own; then the same weights saved in transformers 5's
//! fused expert layout (`save_pretrained(save_original_format=False)`) loaded into the patched
//! model (the model's expert converters run backwards) and saved back in that layout.
//!
//! ```sh
//! cargo run --release --example qwen2_moe_patching                   # ndarray
//! cargo run --release --example qwen2_moe_patching --features wgpu    # wgpu
//! ```
//!
//! The patcher is the seed's `Patcher(class_mapping={"Qwen2MoeExperts": SequentialExperts,
//! "Qwen2MoeAttention": FusedQKVAttention}, filtered_weight_conversion_patterns=[".gate_up_proj",
//! ".down_proj"], extra_weight_conversions=[q/k/v weight and bias concatenations])`, defined
//! once for every family as `patcher_models::replacements::Patch::seed()`.

mod common;

use burn_patcher::Patcher;
use common::{fixture, print_build, Backend, Reference};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::Patch;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = fixture("qwen2_moe");
    let device = Default::default();
    let config = Qwen2MoeConfig::from_file(dir.join("config.json"))?;
    let reference = Reference::read(&dir)?;
    println!(
        "Qwen2-MoE checkpoint {} ({} layers, {} experts top-{}, {} heads / {} KV heads)\n",
        dir.display(),
        config.core.num_hidden_layers,
        config.num_experts,
        config.num_experts_per_tok,
        config.core.num_attention_heads,
        config.core.num_key_value_heads,
    );

    let builds = [
        ("unpatched (transformers' classes)", Patcher::new()),
        (
            "patched (FusedQKVAttention + SequentialExperts)",
            Patch::seed().patcher(&config)?,
        ),
    ];
    for (title, patcher) in builds {
        let loaded = Pretrained::<Backend>::from_path(&dir)
            .patcher(&patcher)
            .load::<Qwen2MoeForCausalLm<Backend>>(&device)?;
        let logits = loaded.model.forward(reference.input_ids(&device));
        print_build(title, &loaded, logits, &reference);
    }

    // Any on-disk layout into any patched class: the fused checkpoint into sequential experts.
    let fused = fixture("qwen2_moe_fused");
    let loaded = Pretrained::<Backend>::from_path(&fused)
        .patcher(&Patch::seed().patcher(&config)?)
        .load::<Qwen2MoeForCausalLm<Backend>>(&device)?;
    let logits = loaded.model.forward(reference.input_ids(&device));
    print_build(
        "patched, from the fused-experts layout (tests/fixtures/qwen2_moe_fused)",
        &loaded,
        logits,
        &reference,
    );
    let out = std::env::temp_dir().join(format!("qwen2-moe-fused-{}", std::process::id()));
    let written = burn_patcher::save_pretrained(&loaded, &out)?;
    let same = std::fs::read(fused.join("model.safetensors"))? == std::fs::read(&written[0])?;
    println!(
        "  saved back to {} in the layout it was loaded from: {}",
        written[0].display(),
        if same {
            "byte-identical to the fused checkpoint"
        } else {
            "DIFFERS from the fused checkpoint"
        }
    );
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
