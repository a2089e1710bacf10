//! Llama's default weight conversions: transformers 5.23's `conversion_mapping.py` declares none
//! for `llama` (checkpoint keys are the module's parameter names).

use patcher_core::WeightTransform;

/// The conversions transformers applies when loading a Llama checkpoint: none.
pub fn default_weight_conversions() -> Vec<WeightTransform> {
    Vec::new()
}
