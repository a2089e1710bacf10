//! `--conversions FILE`: renamings and converters in JSON, for checkpoints of a model the kit
//! does not have (a user's GPT-2), planned and converted with no family.
//!
//! ```json
//! {
//!   "conversions": [
//!     { "rename": { "from": "^h\\.", "to": "transformer.h." } },
//!     { "convert": {
//!         "sources": ["attn.c_attn.weight"],
//!         "targets": ["attn.q_proj.weight", "attn.k_proj.weight", "attn.v_proj.weight"],
//!         "ops": [{ "chunk": { "dim": 1 } }] } }
//!   ]
//! }
//! ```
//!
//! A renaming is transformers' `WeightRenaming` (a regex, searched in the key, and its
//! replacement, `\1` standing for its first group); a converter is its `WeightConverter` (source and target
//! patterns, then ops in order). The ops and their fields are patcher-core's: `concatenate`
//! (`dim`, optional `split_sizes`), `chunk` (`dim`), `split` (`dim`, `sizes`),
//! `merge_modulelist` and `split_modulelist` (`dim`), `transpose` (`dim0`, `dim1`), `reshape`
//! (`to`, -1 for one inferred dimension), `interleave` (`dim`, optional `inverse`) and
//! `permute_for_rope` (optional `default_heads`, `heads` by pattern name, `inverse`).

use std::collections::BTreeMap;
use std::path::Path;

use patcher_core::ops::{
    Chunk, Concatenate, Interleave, MergeModulelist, PermuteForRope, Reshape, Split,
    SplitModulelist, Transpose,
};
use patcher_core::{WeightConverter, WeightRenaming, WeightTransform};
use serde::Deserialize;

use crate::error::CliError;

/// The largest conversions file read (a list of patterns, not weights).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A conversions file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    conversions: Vec<Conversion>,
}

/// One transform.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Conversion {
    Rename {
        from: String,
        to: String,
    },
    Convert {
        sources: Vec<String>,
        targets: Vec<String>,
        ops: Vec<Op>,
    },
}

/// One op of a converter.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Op {
    Concatenate {
        dim: usize,
        split_sizes: Option<Vec<usize>>,
    },
    Chunk {
        dim: usize,
    },
    Split {
        dim: usize,
        sizes: Vec<usize>,
    },
    MergeModulelist {
        dim: usize,
    },
    SplitModulelist {
        dim: usize,
    },
    Transpose {
        dim0: usize,
        dim1: usize,
    },
    Reshape {
        to: Vec<isize>,
    },
    Interleave {
        dim: usize,
        inverse: Option<bool>,
    },
    PermuteForRope {
        default_heads: Option<usize>,
        #[serde(default)]
        heads: BTreeMap<String, usize>,
        inverse: Option<bool>,
    },
}

impl Op {
    fn add_to(self, converter: WeightConverter) -> WeightConverter {
        match self {
            Self::Concatenate { dim, split_sizes } => match split_sizes {
                Some(sizes) => converter.op(Concatenate::new(dim).with_split_sizes(sizes)),
                None => converter.op(Concatenate::new(dim)),
            },
            Self::Chunk { dim } => converter.op(Chunk::new(dim)),
            Self::Split { dim, sizes } => converter.op(Split::new(dim, sizes)),
            Self::MergeModulelist { dim } => converter.op(MergeModulelist::new(dim)),
            Self::SplitModulelist { dim } => converter.op(SplitModulelist::new(dim)),
            Self::Transpose { dim0, dim1 } => converter.op(Transpose::new(dim0, dim1)),
            Self::Reshape { to } => converter.op(Reshape::new(to)),
            Self::Interleave { dim, inverse } => {
                converter.op(Interleave::new(dim).with_inverse(inverse.unwrap_or(false)))
            }
            Self::PermuteForRope { default_heads, heads, inverse } => {
                let mut op = PermuteForRope::new();
                if let Some(n) = default_heads {
                    op = op.default_heads(n);
                }
                for (name, n) in heads {
                    op = op.heads(name, n);
                }
                converter.op(op.with_inverse(inverse.unwrap_or(false)))
            }
        }
    }
}

/// Reads the conversions file at `path`: the transforms in order, each checked (patterns
/// compile, converters can run). Errors are usage errors naming the file and, for a transform,
/// its position.
pub(crate) fn read(path: &Path) -> Result<Vec<WeightTransform>, CliError> {
    let bad = |message: String| CliError::Usage(format!("{}: {message}", path.display()));
    let size = std::fs::metadata(path)
        .map_err(|e| bad(format!("cannot read the conversions file: {e}")))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(bad(format!(
            "{size} bytes; a conversions file holds patterns and ops, at most {MAX_FILE_BYTES} \
             bytes"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read the conversions file: {e}")))?;
    let file: File = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "not a conversions file ({e}); it is JSON: {{\"conversions\": [{{\"rename\": \
             {{\"from\": ..., \"to\": ...}}}}, {{\"convert\": {{\"sources\": [...], \
             \"targets\": [...], \"ops\": [...]}}}}]}}"
        ))
    })?;
    file.conversions
        .into_iter()
        .enumerate()
        .map(|(i, conversion)| {
            let transform: WeightTransform = match conversion {
                Conversion::Rename { from, to } => WeightRenaming::new(from, to)
                    .map_err(|e| bad(format!("conversion {}: {e}", i + 1)))?
                    .into(),
                Conversion::Convert { sources, targets, ops } => ops
                    .into_iter()
                    .fold(WeightConverter::new(sources, targets), |c, op| op.add_to(c))
                    .into(),
            };
            transform
                .validate()
                .map_err(|e| bad(format!("conversion {}: {e}", i + 1)))?;
            Ok(transform)
        })
        .collect()
}
