//! A sharded index of arbitrary bytes next to two valid shards: open it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patcher_core::{save_safetensors, Checkpoint, HostTensor};

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    static INDEX: OnceLock<std::path::PathBuf> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let dir = scratch::dir();
        for (shard, key) in [("a.safetensors", "x"), ("b.safetensors", "y")] {
            let tensor = HostTensor::from_f32([2], &[1.0, 2.0]);
            save_safetensors(dir.join(shard), [(key.to_string(), tensor)], None)
                .expect("write a shard");
        }
        dir.join("model.safetensors.index.json")
    });
    std::fs::write(index, data).expect("write the input");
    if let Ok(checkpoint) = Checkpoint::open(index) {
        for tensor in checkpoint.iter() {
            let _ = tensor.read().map(|host| host.to_f32_vec());
        }
    }
});
