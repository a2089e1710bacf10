//! Saving a LoRA-patched model as PEFT does: the base checkpoint as it was loaded, and the
//! adapters as `adapter_model.safetensors` with `adapter_config.json`; or the adapters merged
//! into the base.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use patcher_burn::{
    load_with, model_params_with, save_model, save_pretrained_with, LoadOptions, LoadSpec, Loaded,
    SaveOptions,
};
use patcher_core::pattern::PatternSet;
use patcher_core::{Checkpoint, WeightRenaming, WeightTransform};
use serde_json::{json, Value};

use super::{merge_lora, PeftAdapterError, LORA_PARAMETERS};

/// PEFT's adapter weights file name.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// PEFT's adapter config file name.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// What `adapter_config.json` says beyond what the model tells (rank, targets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeftAdapterConfig {
    /// The base model's hub id or folder (`base_model_name_or_path`), if known.
    pub base_model_name_or_path: Option<String>,
    /// PEFT's task type, e.g. `CAUSAL_LM` for a `ForCausalLM` model (`None`: a plain
    /// `PeftModel`). The adapter's key names do not depend on it.
    ///
    /// ```
    /// use patcher_models::replacements::PeftAdapterConfig;
    /// let config = PeftAdapterConfig {
    ///     base_model_name_or_path: Some("meta-llama/Llama-3.2-1B".into()),
    ///     task_type: Some("CAUSAL_LM".into()),
    /// };
    /// assert_eq!(config.task_type.as_deref(), Some("CAUSAL_LM"));
    /// ```
    pub task_type: Option<String>,
}

/// Saves the adapters of a LoRA-patched model (see [`lora_patcher`](super::lora_patcher)) as
/// PEFT's `save_pretrained` does, in the folder `dir` (created if needed):
///
/// - `adapter_model.safetensors`: each adapter under PEFT's name, the model's PyTorch name
///   behind `base_model.model.` with `lora_A`/`lora_B`
///   (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), in PyTorch's layout
///   (`lora_A` is `[r, in_features]`) and the model's float type;
/// - `adapter_config.json`: `peft_type` `LORA`, `r`, `lora_alpha` (= `r`: the kit scales the
///   update by 1), `target_modules` (the adapted layers' names, sorted), `bias` `none`, no
///   dropout, and `config`'s fields.
///
/// `PeftModel.from_pretrained(base, dir)` loads it on top of the base checkpoint; save that
/// with [`save_lora_base`]. Returns the files written. Errors if the model has no adapter,
/// or adapters of several ranks (PEFT's `rank_pattern` is not written).
pub fn save_lora_adapter<B: Backend, M: Module<B>>(
    loaded: &Loaded<M>,
    dir: impl AsRef<Path>,
    config: &PeftAdapterConfig,
) -> Result<Vec<PathBuf>, PeftAdapterError> {
    let dir = dir.as_ref();
    let (rank, targets) = adapter_shape(loaded)?;
    std::fs::create_dir_all(dir)
        .map_err(|source| PeftAdapterError::Io { path: dir.to_path_buf(), source })?;
    let options = SaveOptions::default()
        .only_params([LORA_PARAMETERS])
        .torch_layouts(loaded.layouts.clone());
    let mut written = save_model(
        &loaded.model,
        dir.join(ADAPTER_WEIGHTS),
        &peft_names(),
        None,
        &options,
    )?;
    let config = json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": config.base_model_name_or_path,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": rank,
        "lora_dropout": 0.0,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": rank,
        "rank_pattern": {},
        "revision": null,
        "target_modules": targets,
        "task_type": config.task_type,
        "use_dora": false,
        "use_rslora": false,
    });
    let path = dir.join(ADAPTER_CONFIG);
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| PeftAdapterError::Io { path: path.clone(), source: e.into() })?;
    std::fs::write(&path, text)
        .map_err(|source| PeftAdapterError::Io { path: path.clone(), source })?;
    written.push(path);
    Ok(written)
}

/// Saves the base of a LoRA-patched model without its adapters, in the layout it was loaded
/// from ([`save_pretrained_with`] leaving out [`LORA_PARAMETERS`]): the base layers are frozen,
/// so the file holds the loaded checkpoint's tensors, byte for byte in their dtypes.
pub fn save_lora_base<B: Backend, M: Module<B>>(
    loaded: &Loaded<M>,
    path: impl AsRef<Path>,
    options: &SaveOptions,
) -> Result<Vec<PathBuf>, PeftAdapterError> {
    let options = options.clone().skip_params([LORA_PARAMETERS]);
    Ok(save_pretrained_with(loaded, path, &options)?)
}

/// Saves a LoRA-patched model with its adapters merged into the base ([`merge_lora`]), in the
/// layout it was loaded from and without the adapters: a stock checkpoint that computes what
/// the LoRA model computes (PEFT's `merge_and_unload` then `save_pretrained`).
pub fn save_lora_merged<B: Backend, M: Module<B>>(
    loaded: &Loaded<M>,
    path: impl AsRef<Path>,
    options: &SaveOptions,
) -> Result<Vec<PathBuf>, PeftAdapterError> {
    let merged = Loaded {
        model: merge_lora(loaded.model.clone()),
        report: loaded.report.clone(),
        conversions: loaded.conversions.clone(),
        base_model_prefix: loaded.base_model_prefix.clone(),
        source_layout: loaded.source_layout.clone(),
        non_finite: loaded.non_finite.clone(),
        layouts: loaded.layouts.clone(),
        bytes_read: loaded.bytes_read,
        tensor_parallel: loaded.tensor_parallel.clone(),
    };
    save_lora_base(&merged, path, options)
}

/// A copy of `model` (LoRA-patched, see [`lora_patcher`](super::lora_patcher)) with the
/// adapters of the PEFT adapter folder `dir` (`adapter_model.safetensors`, as
/// [`save_lora_adapter`] or PEFT's `save_pretrained` writes it); the base layers are kept.
///
/// Errors if the config's `lora_alpha` differs from `r` (the kit's `LoraLinear` scales its
/// update by 1), if it asks for DoRA or rsLoRA, or if the file's adapters and the model's do
/// not match one to one with the same shapes.
pub fn load_lora_adapter<B: Backend, M: Module<B>>(
    model: &M,
    dir: impl AsRef<Path>,
) -> Result<M, PeftAdapterError> {
    let dir = dir.as_ref();
    check_config(&dir.join(ADAPTER_CONFIG))?;
    let checkpoint =
        Checkpoint::open(dir.join(ADAPTER_WEIGHTS)).map_err(patcher_burn::LoadError::from)?;
    let options = LoadOptions::default().partial();
    let loaded = load_with(
        model,
        &checkpoint,
        &LoadSpec::of_transforms(peft_names()),
        &options,
    )?;
    let mut report = loaded.report;
    // The base layers are not in an adapter file: only a missing adapter counts.
    let adapters = PatternSet::new(LORA_PARAMETERS).expect("a valid pattern");
    report.missing.retain(|name| adapters.is_match(name));
    if !report.is_clean() {
        return Err(PeftAdapterError::Mismatch { report: Box::new(report) });
    }
    Ok(loaded.model)
}

/// Checks that `adapter_config.json` asks for what `LoraLinear` computes.
fn check_config(path: &Path) -> Result<(), PeftAdapterError> {
    let unsupported =
        |message: String| PeftAdapterError::UnsupportedConfig { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path)
        .map_err(|source| PeftAdapterError::Io { path: path.to_path_buf(), source })?;
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| unsupported(format!("not a JSON adapter config ({e})")))?;
    if config["peft_type"] != "LORA" {
        return Err(unsupported(format!(
            "`peft_type` is {}, not \"LORA\"",
            config["peft_type"]
        )));
    }
    for flag in ["use_dora", "use_rslora"] {
        if config[flag] == true {
            return Err(unsupported(format!(
                "`{flag}` is true; LoraLinear computes plain LoRA"
            )));
        }
    }
    if config["lora_alpha"].as_f64() != config["r"].as_f64() {
        return Err(unsupported(format!(
            "`lora_alpha` ({}) differs from `r` ({}); LoraLinear scales its update by 1 \
             (lora_alpha = r)",
            config["lora_alpha"], config["r"]
        )));
    }
    Ok(())
}

/// The renamings from PEFT's adapter names to the model's (a save runs them in reverse): the
/// wrapper's prefix goes, `lora_A`/`lora_B` become the fields' names. A base layer's weight
/// (PEFT saves the head's with `save_embedding_layers`) keeps its `base_layer` name.
fn peft_names() -> Vec<WeightTransform> {
    let renaming = |from: &str, to: &str| -> WeightTransform {
        WeightRenaming::new(from, to)
            .expect("a valid pattern")
            .into()
    };
    vec![
        renaming(r"^base_model\.model\.", ""),
        renaming(r"\.lora_A\.weight$", ".lora_a.weight"),
        renaming(r"\.lora_B\.weight$", ".lora_b.weight"),
    ]
}

/// The adapters' rank and the names of the layers they adapt (`q_proj`, ..., sorted).
fn adapter_shape<B: Backend, M: Module<B>>(
    loaded: &Loaded<M>,
) -> Result<(usize, Vec<String>), PeftAdapterError> {
    let mut ranks = BTreeSet::new();
    let mut targets = BTreeSet::new();
    for param in model_params_with(&loaded.model, &loaded.layouts) {
        let Some(layer) = param.torch_name.strip_suffix(".lora_a.weight") else {
            continue;
        };
        // PyTorch's `lora_A` is `[r, in_features]`.
        ranks.insert(param.torch_shape[0]);
        targets.insert(layer.rsplit('.').next().unwrap_or(layer).to_string());
    }
    let ranks: Vec<usize> = ranks.into_iter().collect();
    match ranks.as_slice() {
        [] => Err(PeftAdapterError::NoAdapter),
        &[rank] => Ok((rank, targets.into_iter().collect())),
        _ => Err(PeftAdapterError::MixedRanks { ranks }),
    }
}
