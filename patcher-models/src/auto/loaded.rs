//! A loaded model of any family, as the Auto classes return it.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use patcher_burn::{list_slots, save_pretrained_with, Loaded, SaveError, SaveOptions, SlotInfo};
use patcher_core::LoadReport;

use super::family::FamilyModel;
use crate::common::CausalLm;
use crate::replacements::PatchTarget;

/// A model loaded by [`AutoModel`](super::AutoModel): what every family offers once loaded.
pub trait LoadedModel<B: Backend> {
    /// transformers' `model_type` of the family that was loaded.
    fn model_type(&self) -> &'static str;

    /// What the load found ([`Loaded::report`]).
    fn report(&self) -> &LoadReport;

    /// The model's substitutable slots, with the class each holds ([`list_slots`]).
    fn slots(&self) -> Vec<SlotInfo>;

    /// Saves the model in the layout it was loaded from
    /// ([`save_pretrained_with`](patcher_burn::save_pretrained_with)).
    fn save_pretrained(
        &self,
        path: &Path,
        options: &SaveOptions,
    ) -> Result<Vec<PathBuf>, SaveError>;
}

/// A causal LM loaded by [`AutoModelForCausalLm`](super::AutoModelForCausalLm).
pub trait LoadedCausalLm<B: Backend>: LoadedModel<B> {
    /// `input_ids [batch, seq]` to logits `[batch, seq, vocab]`.
    fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3>;

    /// The model as a [`CausalLm`]: its cached forward, `generate` and the rest.
    fn causal_lm(&self) -> &dyn CausalLm<B>;
}

impl<B: Backend, M: FamilyModel<B>> LoadedModel<B> for Loaded<M> {
    fn model_type(&self) -> &'static str {
        <M::Config as PatchTarget>::MODEL_TYPE
    }

    fn report(&self) -> &LoadReport {
        &self.report
    }

    fn slots(&self) -> Vec<SlotInfo> {
        list_slots(&self.model)
    }

    fn save_pretrained(
        &self,
        path: &Path,
        options: &SaveOptions,
    ) -> Result<Vec<PathBuf>, SaveError> {
        save_pretrained_with(self, path, options)
    }
}

impl<B: Backend, M: FamilyModel<B> + CausalLm<B>> LoadedCausalLm<B> for Loaded<M> {
    fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.model.forward(input_ids)
    }

    fn causal_lm(&self) -> &dyn CausalLm<B> {
        &self.model
    }
}
