//! What a causal language model computes, written once on the one forward each family
//! implements: the logits of a prompt, its hidden states, a padded batch, and the cached
//! forward of decoding.

use burn::prelude::*;

use super::cache::KvCache;
use super::generation::{self, GenerateError, Generated, GenerationConfig};
use super::layout::{AttentionLayout, DecoderInputError};
use super::output::{CausalLmOutput, Outputs};

/// A causal language model (`LlamaForCausalLM`, a user's): token ids to next-token logits.
///
/// A family implements [`forward_layout`](Self::forward_layout); the other methods are written
/// once on it, so a user's family gets them (and the cache and padding) too.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::prelude::*;
/// use patcher_models::llama::{LlamaConfig, LlamaForCausalLm};
/// use patcher_models::prelude::*;
///
/// type B = NdArray;
/// let config = LlamaConfig::from_json_str(
///     r#"{"vocab_size": 32, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
///         "num_attention_heads": 2}"#,
/// )?;
/// let device = Default::default();
/// let model = LlamaForCausalLm::<B>::new(&config, &device);
/// let prompt = Tensor::<B, 2, Int>::from_data([[1, 5, 7]], &device);
/// // Prefill, then one cached step: the same logits as a forward over all four tokens.
/// let mut cache = KvCache::new();
/// model.forward_cached(prompt.clone(), None, &mut cache)?;
/// let next = Tensor::<B, 2, Int>::from_data([[9]], &device);
/// let step = model.forward_cached(next.clone(), None, &mut cache)?;
/// let full = model.forward(Tensor::cat(vec![prompt, next], 1));
/// let last = full.narrow(1, 3, 1);
/// assert!((step - last).abs().max().into_scalar() < 1e-5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait CausalLm<B: Backend> {
    /// The logits of `input_ids [batch, seq]` placed as `layout` says (after the positions in
    /// `cache`, padding masked), appending their keys and values to `cache` when given; the
    /// hidden states too, and logits of the last positions only, as `outputs` asks.
    fn forward_layout(
        &self,
        input_ids: Tensor<B, 2, Int>,
        layout: &AttentionLayout,
        cache: Option<&mut KvCache<B>>,
        outputs: Outputs,
    ) -> CausalLmOutput<B>;

    /// The longest sequence the model's positions allow (a learned position table's rows);
    /// `None` when unbounded (RoPE). The fallible forwards check it.
    fn max_positions(&self) -> Option<usize> {
        None
    }

    /// `input_ids [batch, seq]` (positions `0..seq`) to logits `[batch, seq, vocab]`. Token ids
    /// must be below the vocabulary size and `seq` within [`max_positions`](Self::max_positions)
    /// (as in transformers; checking would read the ids back from the device).
    fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [batch, seq] = input_ids.dims();
        let layout = AttentionLayout::contiguous(batch, seq, 0);
        self.forward_layout(input_ids, &layout, None, Outputs::logits())
            .logits
    }

    /// Logits and every hidden state (transformers' `output_hidden_states=True`).
    fn forward_with_hidden_states(&self, input_ids: Tensor<B, 2, Int>) -> CausalLmOutput<B> {
        let [batch, seq] = input_ids.dims();
        let layout = AttentionLayout::contiguous(batch, seq, 0);
        self.forward_layout(
            input_ids,
            &layout,
            None,
            Outputs::logits().with_hidden_states(),
        )
    }

    /// The logits of a padded batch: `attention_mask [batch, seq]` is `1` at tokens and `0` at
    /// padding (left padding, as `generate` wants it), positions count the tokens. The logits
    /// at padding are not meaningful.
    fn forward_masked(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
    ) -> Result<Tensor<B, 3>, DecoderInputError> {
        let layout = AttentionLayout::new(input_ids.dims(), 0, Some(&attention_mask))?;
        layout.check_positions(self.max_positions())?;
        Ok(self
            .forward_layout(input_ids, &layout, None, Outputs::logits())
            .logits)
    }

    /// The logits of `input_ids [batch, new]` after the positions in `cache`, whose keys and
    /// values are appended to it (transformers' `model(input_ids, past_key_values=cache)`): the
    /// prompt first, then each decoded token. `attention_mask`, when the batch is padded, covers
    /// the cached positions and the new ones, `[batch, cached + new]`.
    fn forward_cached(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>, DecoderInputError> {
        let outputs = Outputs::logits();
        Ok(cached_forward(self, input_ids, attention_mask, cache, outputs)?.logits)
    }

    /// transformers' `generate(input_ids, attention_mask=..., generation_config=config)`: the
    /// prompt `input_ids [batch, seq]` (left-padded, with its `attention_mask`, when the prompts
    /// differ in length) decoded through a [`KvCache`] until each sequence reaches an EOS token,
    /// a stop sequence or the length limit, tokens chosen as `config` says (greedy, or sampling
    /// with its seed: the same seed gives the same tokens).
    fn generate(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        config: &GenerationConfig,
    ) -> Result<Generated, GenerateError> {
        self.generate_streaming(input_ids, attention_mask, config, &mut |_, _| {})
    }

    /// [`generate`](Self::generate), calling `on_token(sequence, token)` with each token as it is
    /// chosen (to stream it).
    fn generate_streaming(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        config: &GenerationConfig,
        on_token: &mut dyn FnMut(usize, i64),
    ) -> Result<Generated, GenerateError> {
        let mut step = |ids, mask, cache: &mut KvCache<B>, outputs| {
            Ok(cached_forward(self, ids, mask, cache, outputs)?.logits)
        };
        let model = (
            self.max_positions(),
            &mut step as &mut generation::Step<'_, B>,
        );
        generation::generate(model, input_ids, attention_mask, config, on_token)
    }
}

/// [`CausalLm::forward_cached`] with `outputs` chosen (`generate` keeps the last logits only).
fn cached_forward<B: Backend, M: CausalLm<B> + ?Sized>(
    model: &M,
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Option<Tensor<B, 2, Int>>,
    cache: &mut KvCache<B>,
    outputs: Outputs,
) -> Result<CausalLmOutput<B>, DecoderInputError> {
    let dims @ [batch, _] = input_ids.dims();
    let cached = cache.batch_size();
    if cached != 0 && cached != batch {
        return Err(DecoderInputError::CacheBatch { cached, batch });
    }
    let layout = AttentionLayout::new(dims, cache.seq_len(), attention_mask.as_ref())?;
    layout.check_positions(model.max_positions())?;
    Ok(model.forward_layout(input_ids, &layout, Some(cache), outputs))
}
