//! `burn-patcher inspect CKPT`: shards, dtypes, bytes and keys of a checkpoint, from its
//! headers alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use patcher_core::pattern::natural_key_cmp;
use patcher_core::plan::{collapse_keys, elide, MAX_LINE_BYTES};
use patcher_core::{Checkpoint, TensorMeta};

use crate::error::CliError;

/// Widest key column before the dtype and shape (longer keys push them right).
const KEY_COLUMN: usize = 72;

/// Tensors and bytes of one group (a shard, a dtype).
#[derive(Default)]
struct Tally {
    tensors: usize,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, meta: &TensorMeta) {
        self.tensors += 1;
        self.bytes += meta.num_bytes() as u64;
    }
}

/// The `inspect` text of the checkpoint at `path`.
pub(crate) fn inspect(path: &Path) -> Result<String, CliError> {
    let checkpoint = Checkpoint::open(path)?;
    let mut shards: BTreeMap<&Path, Tally> = checkpoint
        .files()
        .map(|file| (file, Tally::default()))
        .collect();
    let mut dtypes: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    // Float tensors are parameters; integer and bool ones are buffers (BERT's position_ids).
    let mut parameters = 0u64;
    let (mut buffers, mut buffer_elements) = (0usize, 0u64);
    let mut keys: Vec<(String, String)> = Vec::with_capacity(checkpoint.len());
    for tensor in checkpoint.iter() {
        let meta = tensor.meta();
        shards.entry(tensor.file()).or_default().add(&meta);
        dtypes.entry(meta.dtype.as_str()).or_default().add(&meta);
        total.add(&meta);
        if meta.dtype.is_float() {
            parameters += meta.num_elements() as u64;
        } else {
            buffers += 1;
            buffer_elements += meta.num_elements() as u64;
        }
        keys.push((
            tensor.name().to_string(),
            format!("{} {:?}", meta.dtype.as_str(), meta.shape),
        ));
    }
    keys.sort_by(|a, b| natural_key_cmp(&a.0, &b.0));

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "checkpoint {}", checkpoint.path().display());
    if let Some(metadata) = checkpoint.metadata().filter(|m| !m.is_empty()) {
        let mut pairs: Vec<String> = metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        let pairs = pairs.join(", ");
        let _ = writeln!(out, "metadata   {}", elide(&pairs, MAX_LINE_BYTES));
    }
    let _ = writeln!(out, "shards     {}", shards.len());
    for file in checkpoint.files() {
        let tally = &shards[file];
        let name = file
            .file_name()
            .unwrap_or(file.as_os_str())
            .to_string_lossy();
        let _ = writeln!(
            out,
            "  {name}  {} tensors, {}",
            tally.tensors,
            bytes(tally.bytes)
        );
    }
    let _ = write!(out, "tensors    {} ({parameters} parameters", total.tensors);
    let _ = match buffers {
        0 => writeln!(out, ")"),
        1 => writeln!(
            out,
            "; {buffer_elements} elements in 1 integer/bool buffer)"
        ),
        n => writeln!(
            out,
            "; {buffer_elements} elements in {n} integer/bool buffers)"
        ),
    };
    let _ = writeln!(out, "bytes      {}", bytes(total.bytes));
    let _ = writeln!(out, "dtypes");
    for (dtype, tally) in &dtypes {
        let _ = writeln!(
            out,
            "  {dtype}  {} tensors, {}",
            tally.tensors,
            bytes(tally.bytes)
        );
    }
    let lines = collapse_keys(&keys);
    let _ = writeln!(
        out,
        "keys       {} lines for {} tensors (numbered parts with equal dtype and shape collapsed)",
        lines.len(),
        keys.len()
    );
    let width = lines
        .iter()
        .map(|(k, _)| k.len())
        .filter(|&l| l <= KEY_COLUMN)
        .max()
        .unwrap_or(0);
    for (key, meta) in &lines {
        let _ = writeln!(out, "  {:<width$}  {meta}", elide(key, MAX_LINE_BYTES));
    }
    Ok(out)
}

/// `1234567 bytes (1.18 MiB)`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{n} bytes ({value:.2} {})", UNITS[unit])
}
