//! The decoder-only forward every family shares: a layer's two pre-norm residual branches, the
//! stack of layers between the embedding and the final norm, and the LM head (untied or tied to
//! the embedding). The model classes hold the parts as their own fields and pass them in.

use burn::nn::LinearConfig;
use burn::prelude::*;
use patcher_burn::layers::{EmbeddingForward, LinearLayer};
use patcher_burn::{module_device, to_device_via_host, InterfaceKey, PeerSum, Slot, SlotInterface};

use super::attention::AttentionInputs;
use super::cache::KvCache;
use super::config::DecoderConfig;
use super::init::linear_config;
use super::layout::AttentionLayout;
use super::output::CausalLmOutput;
use super::rope::RotaryEmbedding;

/// The checkpoint keys a decoder family ignores when loading: older checkpoints kept RoPE's
/// inverse frequencies as a buffer; the kit computes them from the config.
pub const DECODER_KEYS_TO_IGNORE: [&str; 1] = [r"rotary_emb\.inv_freq$"];

/// `true` where a query may not attend a key.
type Mask<B> = Tensor<B, 4, Bool>;

/// A decoder layer (`LlamaDecoderLayer`, `Qwen2MoeDecoderLayer`), as
/// [`decoder_stack_forward`] runs it.
pub trait DecoderLayer<B: Backend> {
    /// `hidden_states [batch, seq, hidden]` to `[batch, seq, hidden]`, its attention taking
    /// `inputs`.
    fn forward(&self, hidden_states: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3>;
}

/// A slot of decoder layers runs as the layer inside it.
impl<B: Backend, I: ?Sized + SlotInterface> DecoderLayer<B> for Slot<B, I>
where
    <I::Key as InterfaceKey>::Dyn<B>: DecoderLayer<B>,
{
    fn forward(&self, hidden_states: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3> {
        (**self).forward(hidden_states, inputs)
    }
}

/// A decoder layer's body: `h = x + attention(x)`, then `h + mlp(h)`. Each branch applies its own
/// pre-norm (`input_layernorm`, `post_attention_layernorm`) first.
///
/// On a tensor-parallel peer (`peer_sum` built by a context with one,
/// [`BuildContext::tensor_parallel`](patcher_burn::BuildContext::tensor_parallel)) each branch
/// ends in a rowwise projection (`o_proj`, `down_proj`, the experts' `down_proj`), so it gives
/// this peer's partial sum: `peer_sum` adds the peers' together before the residual (Megatron's
/// two all-reduces per layer). On one device it passes the branch through.
pub fn pre_norm_residuals<B: Backend>(
    hidden_states: Tensor<B, 3>,
    peer_sum: &PeerSum<B>,
    attention: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
    mlp: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
) -> Tensor<B, 3> {
    let residual = hidden_states.clone();
    let x = residual + peer_sum.forward(attention(hidden_states));
    let residual = x.clone();
    residual + peer_sum.forward(mlp(x))
}

/// `XxxModel.forward` after the embedding: the embedded tokens through `layers` and
/// `final_norm`, to the final-normed hidden states, and all hidden states when asked (see
/// [`CausalLmOutput::hidden_states`]).
///
/// The tokens sit where `layout` says (after the cached positions, padding masked), RoPE at
/// their positions when the model has a `rotary_emb`; each layer takes its share of `cache`
/// when given. `sliding_windows` gives
/// each layer's window in order (`None`: full causal attention); the layers run as far as it
/// goes, so a model without sliding attention passes `repeat(None)`.
///
/// Layers on other devices than the embedding (a [`DeviceMap`](patcher_burn::DeviceMap)) get
/// the hidden states moved to them once at each boundary, with RoPE and the masks made there;
/// the hidden states come back to the embedding's device for `final_norm`.
pub fn decoder_stack_forward<B: Backend, L: DecoderLayer<B> + Module<B>>(
    embedded: Tensor<B, 3>,
    rotary_emb: Option<&RotaryEmbedding>,
    layers: &[L],
    sliding_windows: impl IntoIterator<Item = Option<usize>>,
    final_norm: impl Fn(Tensor<B, 3>) -> Tensor<B, 3>,
    (layout, cache): (&AttentionLayout, Option<&mut KvCache<B>>),
    output_hidden_states: bool,
) -> (Tensor<B, 3>, Option<Vec<Tensor<B, 3>>>) {
    let home = embedded.device();
    let mut device = home.clone();
    let mut hidden = embedded;
    let rope = |device: &B::Device| rotary_emb.map(|rope| rope.forward_layout::<B>(layout, device));
    let mut position_embeddings = rope(&device);
    // One mask per distinct window, built when a layer first needs it.
    let mut masks: Vec<(Option<usize>, Option<Mask<B>>)> = Vec::new();
    let mut caches = cache.map(|c| c.layers_mut(layers.len()).iter_mut());
    let mut all = output_hidden_states.then(Vec::new);
    for (layer, window) in layers.iter().zip(sliding_windows) {
        if let Some(all) = all.as_mut() {
            all.push(to_device_via_host(hidden.clone(), &home));
        }
        if let Some(layer_device) = module_device(layer).filter(|d| *d != device) {
            hidden = to_device_via_host(hidden, &layer_device);
            position_embeddings = rope(&layer_device);
            masks.clear();
            device = layer_device;
        }
        let index = match masks.iter().position(|(w, _)| *w == window) {
            Some(index) => index,
            None => {
                masks.push((window, layout.mask::<B>(window, &device)));
                masks.len() - 1
            }
        };
        let inputs = AttentionInputs {
            position_embeddings: position_embeddings.as_ref(),
            attention_mask: masks[index].1.as_ref(),
            cache: caches.as_mut().and_then(Iterator::next),
        };
        hidden = layer.forward(hidden, inputs);
    }
    let hidden = final_norm(to_device_via_host(hidden, &home));
    if let Some(all) = all.as_mut() {
        // transformers replaces the last layer's raw output with the normed one.
        all.push(hidden.clone());
    }
    (hidden, all)
}

/// The config of `lm_head`: `hidden -> vocab`, no bias; `None` when `tie_word_embeddings` (the
/// logits then use the embedding matrix, and a checkpoint has no `lm_head.weight` to load).
pub fn lm_head(config: &DecoderConfig) -> Option<LinearConfig> {
    let c = config;
    (!c.tie_word_embeddings)
        .then(|| linear_config(c.hidden_size, c.vocab_size, false, c.initializer_range))
}

/// `XxxForCausalLM.forward` after its model: the logits of the final hidden states (of the last
/// `logits_to_keep` positions when given) through `lm_head`, or through `embed_tokens.weight`
/// when tied, with the model's hidden states.
pub fn causal_lm_output<B: Backend>(
    lm_head: Option<&dyn LinearLayer<B>>,
    embed_tokens: &dyn EmbeddingForward<B>,
    (hidden, hidden_states): (Tensor<B, 3>, Option<Vec<Tensor<B, 3>>>),
    logits_to_keep: Option<usize>,
) -> CausalLmOutput<B> {
    let seq = hidden.dims()[1];
    let hidden = match logits_to_keep {
        Some(keep) if keep < seq => hidden.narrow(1, seq - keep, keep),
        _ => hidden,
    };
    let logits = match lm_head {
        Some(lm_head) => lm_head.forward(hidden),
        None => embed_tokens.attend(hidden),
    };
    CausalLmOutput { logits, hidden_states }
}
