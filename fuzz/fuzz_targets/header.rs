//! A safetensors file of arbitrary bytes: open it, read and cast every tensor.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patcher_core::{Checkpoint, DType};

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    static FILE: OnceLock<std::path::PathBuf> = OnceLock::new();
    let file = FILE.get_or_init(|| scratch::dir().join("model.safetensors"));
    std::fs::write(file, data).expect("write the input");
    if let Ok(checkpoint) = Checkpoint::open(file) {
        for tensor in checkpoint.iter() {
            // Nothing else writes the file while it is open: every tensor of an opened
            // checkpoint reads.
            let host = tensor.read().expect("an opened tensor reads");
            assert_eq!(host.bytes.len(), tensor.meta().num_bytes());
            if host.dtype.is_float() {
                let cast = host.cast(DType::F32).expect("floats cast");
                assert_eq!(cast.bytes.len(), tensor.meta().num_elements() * 4);
            }
        }
        let _ = checkpoint.metas();
    }
});
