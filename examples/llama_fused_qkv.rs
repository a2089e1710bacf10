//! Llama loaded from a stock transformers checkpoint, once as written and once with fused QKV
//! attention (one `qkv_proj` sized `(heads + 2 * kv_heads) * head_dim` under grouped-query
//! attention), with the logits compared to transformers' own.
//!
//! ```sh
//! cargo run --release --example llama_fused_qkv                      # ndarray
//! cargo run --release --example llama_fused_qkv --features wgpu       # wgpu
//! ```

mod common;

use burn_patcher::Patcher;
use common::{fixture, print_build, Backend, Reference};
use patcher_models::llama::{LlamaConfig, LlamaForCausalLm};
use patcher_models::prelude::*;
use patcher_models::replacements::Patch;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = fixture("llama");
    let device = Default::default();
    let config = LlamaConfig::from_file(dir.join("config.json"))?;
    let reference = Reference::read(&dir)?;
    println!(
        "Llama checkpoint {} ({} layers, {} heads / {} KV heads, head_dim {})\n",
        dir.display(),
        config.core.num_hidden_layers,
        config.core.num_attention_heads,
        config.core.num_key_value_heads,
        config.attention_spec(0).head_dim,
    );

    let builds = [
        ("unpatched (transformers' classes)", Patcher::new()),
        (
            "patched (FusedQKVAttention)",
            Patch::fused_qkv().patcher(&config)?,
        ),
    ];
    for (title, patcher) in builds {
        let loaded = Pretrained::<Backend>::from_path(&dir)
            .patcher(&patcher)
            .load::<LlamaForCausalLm<Backend>>(&device)?;
        let logits = loaded.model.forward(reference.input_ids(&device));
        print_build(title, &loaded, logits, &reference);
    }
    Ok(())
}
