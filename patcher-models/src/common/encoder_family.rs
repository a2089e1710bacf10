//! Macros that write the classes of a BERT-style encoder family with the family's own names, as
//! [`family`](super::family) does for the decoders: each class keeps transformers' class and
//! parameter names (`query`, `LayerNorm`, `attention.self`), is a slot, and builds its leaf
//! layers as slots; the code lives once. A family invokes them with its names
//! (`encoder_layer_class!(BertLayer, BertConfig, ...)`); its config derefs to
//! [`EncoderConfig`](crate::common::EncoderConfig).
//!
//! The field `LayerNorm` is transformers' name: the invoking module allows `non_snake_case`.

/// The slot interfaces of an encoder family: `$interface` (filled by `$class` and its
/// replacements) adds the constructor `new(config, ctx)` to the kit's forward trait `$forward`.
macro_rules! encoder_interfaces {
    ($config:ty; $($interface:ident: $forward:ident = $class:literal),* $(,)?) => {$(
        #[doc = concat!("Classes that fill `", $class, "` slots: it and its replacements.")]
        #[patcher_derive::slot_interface(crate = "patcher_burn")]
        pub trait $interface<B: burn::prelude::Backend>: $crate::common::$forward<B> {
            /// `Class::new(config, ctx)`.
            fn new(config: &$config, ctx: &patcher_burn::BuildContext<'_, B>) -> Self;
        }
    )*};
}

/// The struct of a class whose fields are all built by `new(config, ctx)` from the closures
/// given (`field: Type = |config, ctx| ..`), with the derive and its `implements`.
macro_rules! encoder_class {
    (
        $(#[$doc:meta])* $name:ident, $config:ty, $interface:ident {
            $($(#[$attr:meta])* $vis:vis $field:ident: $ty:ty = $build:expr),* $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(burn::module::Module, patcher_derive::Patchable, Debug)]
        #[patchable(crate = "patcher_burn", implements($interface))]
        pub struct $name<B: burn::prelude::Backend> {
            $($(#[$attr])* $vis $field: $ty,)*
        }

        impl<B: burn::prelude::Backend> $name<B> {
            #[doc = concat!("`", stringify!($name), "(config)`, its slots built through `ctx`.")]
            pub fn new(config: &$config, ctx: &patcher_burn::BuildContext<'_, B>) -> Self {
                Self {
                    $($field: ($build)(config, ctx),)*
                }
            }
        }
    };
}

/// `XxxEmbeddings`: word, position and token type embeddings, summed in transformers' order
/// (words + types + positions), then `LayerNorm`.
macro_rules! encoder_embeddings_class {
    ($name:ident, $config:ty, $interface:ident) => {
        $crate::common::encoder_class!(
            #[doc = concat!("transformers' `", stringify!($name), "`.")]
            $name, $config, $interface {
                /// `[vocab, hidden]`.
                pub word_embeddings: patcher_burn::layers::EmbeddingSlot<B> =
                    |c: &$config, ctx| $crate::common::embedding_slot(c, c.vocab_size, ctx),
                /// `[max_position_embeddings, hidden]`, absolute positions.
                pub position_embeddings: patcher_burn::layers::EmbeddingSlot<B> =
                    |c: &$config, ctx| $crate::common::embedding_slot(c, c.max_position_embeddings, ctx),
                /// `[type_vocab_size, hidden]`.
                pub token_type_embeddings: patcher_burn::layers::EmbeddingSlot<B> =
                    |c: &$config, ctx| $crate::common::embedding_slot(c, c.type_vocab_size, ctx),
                /// The norm of the sum.
                pub LayerNorm: patcher_burn::layers::LayerNormSlot<B> = $crate::common::layer_norm_slot,
            }
        );

        impl<B: burn::prelude::Backend> $crate::common::EncoderEmbeddings<B> for $name<B> {
            fn forward(
                &self,
                input_ids: burn::prelude::Tensor<B, 2, burn::prelude::Int>,
                token_type_ids: burn::prelude::Tensor<B, 2, burn::prelude::Int>,
            ) -> burn::prelude::Tensor<B, 3> {
                let seq = input_ids.dims()[1];
                let device = input_ids.device();
                let positions = burn::prelude::Tensor::arange(0..seq as i64, &device).unsqueeze();
                let embeddings = self.word_embeddings.forward(input_ids)
                    + self.token_type_embeddings.forward(token_type_ids)
                    + self.position_embeddings.forward(positions);
                self.LayerNorm.forward(embeddings)
            }
        }
    };
}

/// `XxxSelfAttention`: `query`, `key`, `value` (with biases) and eager attention without RoPE.
macro_rules! encoder_self_attention_class {
    ($name:ident, $config:ty, $interface:ident) => {
        $crate::common::encoder_class!(
            #[doc = concat!("transformers' `", stringify!($name), "`.")]
            $name, $config, $interface {
                /// `hidden -> hidden`.
                pub query: patcher_burn::layers::LinearSlot<B> = $crate::common::square_linear_slot,
                /// `hidden -> hidden`.
                pub key: patcher_burn::layers::LinearSlot<B> = $crate::common::square_linear_slot,
                /// `hidden -> hidden`.
                pub value: patcher_burn::layers::LinearSlot<B> = $crate::common::square_linear_slot,
                #[module(skip)]
                spec: $crate::common::AttentionSpec = |c: &$config, _| c.attention_spec(),
            }
        );

        impl<B: burn::prelude::Backend> $crate::common::EncoderSelfAttention<B> for $name<B> {
            fn forward(
                &self,
                x: burn::prelude::Tensor<B, 3>,
                mask: Option<&$crate::common::EncoderMask<B>>,
            ) -> burn::prelude::Tensor<B, 3> {
                let [q, k, v] = [&self.query, &self.key, &self.value].map(|p| p.forward(x.clone()));
                $crate::common::eager_attention_without_rope(&self.spec, q, k, v, mask)
            }
        }
    };
}

/// `XxxSelfOutput` / `XxxOutput`: a `dense` from the config's `$d_in` to `hidden_size`, and
/// `LayerNorm(dense(x) + residual)`.
macro_rules! residual_norm_class {
    ($name:ident, $config:ty, $interface:ident, $d_in:ident) => {
        $crate::common::encoder_class!(
            #[doc = concat!("transformers' `", stringify!($name), "`.")]
            $name, $config, $interface {
                #[doc = concat!("`", stringify!($d_in), " -> hidden`.")]
                pub dense: patcher_burn::layers::LinearSlot<B> =
                    |c: &$config, ctx| $crate::common::linear_slot(c, c.$d_in, c.hidden_size, ctx),
                /// The norm of the sum with the residual.
                pub LayerNorm: patcher_burn::layers::LayerNormSlot<B> = $crate::common::layer_norm_slot,
            }
        );

        impl<B: burn::prelude::Backend> $crate::common::ResidualNormForward<B> for $name<B> {
            fn forward(
                &self,
                x: burn::prelude::Tensor<B, 3>,
                input_tensor: burn::prelude::Tensor<B, 3>,
            ) -> burn::prelude::Tensor<B, 3> {
                self.LayerNorm.forward(self.dense.forward(x) + input_tensor)
            }
        }
    };
}

/// `XxxIntermediate`: `act(dense(x))`, `hidden -> intermediate`.
macro_rules! encoder_intermediate_class {
    ($name:ident, $config:ty, $interface:ident) => {
        $crate::common::encoder_class!(
            #[doc = concat!("transformers' `", stringify!($name), "`.")]
            $name, $config, $interface {
                /// `hidden -> intermediate`.
                pub dense: patcher_burn::layers::LinearSlot<B> = |c: &$config, ctx| {
                    $crate::common::linear_slot(c, c.hidden_size, c.intermediate_size, ctx)
                },
                #[module(skip)]
                act: $crate::common::Activation = |c: &$config, _| c.hidden_act,
            }
        );

        impl<B: burn::prelude::Backend> $crate::common::EncoderIntermediate<B> for $name<B> {
            fn forward(&self, x: burn::prelude::Tensor<B, 3>) -> burn::prelude::Tensor<B, 3> {
                self.act.forward(self.dense.forward(x))
            }
        }
    };
}

/// `XxxPooler`: `tanh(dense(x[:, 0]))`.
macro_rules! encoder_pooler_class {
    ($name:ident, $config:ty, $interface:ident) => {
        $crate::common::encoder_class!(
            #[doc = concat!("transformers' `", stringify!($name), "`.")]
            $name, $config, $interface {
                /// `hidden -> hidden`.
                pub dense: patcher_burn::layers::LinearSlot<B> = $crate::common::square_linear_slot,
            }
        );

        impl<B: burn::prelude::Backend> $crate::common::EncoderPooler<B> for $name<B> {
            fn forward(&self, x: burn::prelude::Tensor<B, 3>) -> burn::prelude::Tensor<B, 2> {
                let first_token = x.narrow(1, 0, 1).squeeze_dim(1);
                self.dense.forward(first_token).tanh()
            }
        }
    };
}

/// `XxxAttention`: `self` (`self_`, a slot of `$self_interface`, `$self_class` by default) and
/// `output` (`$output_class`), `output(self(x), x)`.
macro_rules! encoder_attention_class {
    (
        $name:ident, $config:ty, $interface:ident,
        $self_class:ident: $self_interface:ident, $output_class:ident: $output_interface:ident
    ) => {
        $crate::common::encoder_class!(
            #[doc = concat!("transformers' `", stringify!($name), "` (its `self` is `self_`).")]
            $name, $config, $interface {
                #[doc = concat!("`", stringify!($self_class), "` or its replacement (checkpoint name `self`).")]
                pub self_: patcher_burn::Slot<B, dyn $self_interface<B>> =
                    |c, ctx| patcher_burn::Slot::build::<$self_class<B>>(ctx, c),
                #[doc = concat!("`", stringify!($output_class), "` or its replacement.")]
                pub output: patcher_burn::Slot<B, dyn $output_interface<B>> =
                    |c, ctx| patcher_burn::Slot::build::<$output_class<B>>(ctx, c),
            }
        );

        impl<B: burn::prelude::Backend> $crate::common::EncoderBlock<B> for $name<B> {
            fn forward(
                &self,
                x: burn::prelude::Tensor<B, 3>,
                mask: Option<&$crate::common::EncoderMask<B>>,
            ) -> burn::prelude::Tensor<B, 3> {
                self.output.forward(self.self_.forward(x.clone(), mask), x)
            }
        }
    };
}

/// `XxxLayer` (an encoder layer, no cross-attention): `attention`, `intermediate`, `output`,
/// `output(intermediate(a), a)` with `a = attention(x)`.
macro_rules! encoder_layer_class {
    (
        $name:ident, $config:ty, $interface:ident, $attention:ident: $attention_interface:ident,
        $intermediate:ident: $intermediate_interface:ident, $output:ident: $output_interface:ident
    ) => {
        $crate::common::encoder_class!(
            #[doc = concat!("transformers' `", stringify!($name), "`.")]
            $name, $config, $interface {
                #[doc = concat!("`", stringify!($attention), "` or its replacement.")]
                pub attention: patcher_burn::Slot<B, dyn $attention_interface<B>> =
                    |c, ctx| patcher_burn::Slot::build::<$attention<B>>(ctx, c),
                #[doc = concat!("`", stringify!($intermediate), "` or its replacement.")]
                pub intermediate: patcher_burn::Slot<B, dyn $intermediate_interface<B>> =
                    |c, ctx| patcher_burn::Slot::build::<$intermediate<B>>(ctx, c),
                #[doc = concat!("`", stringify!($output), "` or its replacement.")]
                pub output: patcher_burn::Slot<B, dyn $output_interface<B>> =
                    |c, ctx| patcher_burn::Slot::build::<$output<B>>(ctx, c),
            }
        );

        impl<B: burn::prelude::Backend> $crate::common::EncoderBlock<B> for $name<B> {
            fn forward(
                &self,
                x: burn::prelude::Tensor<B, 3>,
                mask: Option<&$crate::common::EncoderMask<B>>,
            ) -> burn::prelude::Tensor<B, 3> {
                let attention = self.attention.forward(x, mask);
                let intermediate = self.intermediate.forward(attention.clone());
                self.output.forward(intermediate, attention)
            }
        }
    };
}

/// `XxxModel` with its `XxxEncoder` (`layer`, a list of `$layer` slots): `embeddings`,
/// `encoder`, `pooler`, the constructors and `forward`.
macro_rules! encoder_model_class {
    (
        $name:ident, $encoder:ident, $config:ty, $embeddings:ident: $embeddings_interface:ident,
        $layer:ident: $layer_interface:ident, $pooler:ident: $pooler_interface:ident
    ) => {
        #[doc = concat!("transformers' `", stringify!($encoder), "`.")]
        #[derive(burn::module::Module, Debug)]
        pub struct $encoder<B: burn::prelude::Backend> {
            #[doc = concat!("The layers: `", stringify!($layer), "` or its replacement.")]
            pub layer: Vec<patcher_burn::Slot<B, dyn $layer_interface<B>>>,
        }

        #[doc = concat!("transformers' `", stringify!($name), "` (with its pooler).")]
        #[derive(burn::module::Module, Debug)]
        pub struct $name<B: burn::prelude::Backend> {
            #[doc = concat!("`", stringify!($embeddings), "` or its replacement.")]
            pub embeddings: patcher_burn::Slot<B, dyn $embeddings_interface<B>>,
            /// The layers.
            pub encoder: $encoder<B>,
            #[doc = concat!("`", stringify!($pooler), "` or its replacement.")]
            pub pooler: patcher_burn::Slot<B, dyn $pooler_interface<B>>,
            #[module(skip)]
            max_position_embeddings: usize,
        }

        impl<B: burn::prelude::Backend> $name<B> {
            $crate::common::root_model_constructors!($name, $config);

            /// The model built through `ctx` (what [`Self::new`] and [`Self::with_patcher`]
            /// call).
            pub fn build(config: &$config, ctx: &patcher_burn::BuildContext<'_, B>) -> Self {
                use patcher_burn::Slot;
                let layers =
                    (0..config.num_hidden_layers).map(|_| Slot::build::<$layer<B>>(ctx, config));
                Self {
                    embeddings: Slot::build::<$embeddings<B>>(ctx, config),
                    encoder: $encoder {
                        layer: layers.collect(),
                    },
                    pooler: Slot::build::<$pooler<B>>(ctx, config),
                    max_position_embeddings: config.max_position_embeddings,
                }
            }

            /// `input_ids [batch, seq]`, `token_type_ids` (zeros if `None`) and `attention_mask`
            /// (`1` keep, `0` padding; all kept if `None`), positions `0..seq`, to the last
            /// hidden state, the pooled output and, when asked, every hidden state. A padded
            /// position still gets an output (it attends the kept keys), as in transformers; a
            /// row padded throughout does not match transformers' (uniform attention there, no
            /// attention here). Ids must be below `vocab_size` and `type_vocab_size`, as for the
            /// decoders' `input_ids` (checking would read them back from the device).
            pub fn forward(
                &self,
                input_ids: burn::prelude::Tensor<B, 2, burn::prelude::Int>,
                token_type_ids: Option<burn::prelude::Tensor<B, 2, burn::prelude::Int>>,
                attention_mask: Option<burn::prelude::Tensor<B, 2, burn::prelude::Int>>,
                output_hidden_states: bool,
            ) -> Result<$crate::common::EncoderOutput<B>, $crate::common::EncoderInputError> {
                let max = self.max_position_embeddings;
                let inputs = $crate::common::encoder_inputs(
                    &input_ids,
                    token_type_ids,
                    attention_mask,
                    max,
                )?;
                Ok($crate::common::encoder_stack_forward(
                    self.embeddings.forward(input_ids, inputs.token_type_ids),
                    self.encoder.layer.iter().map(|layer| &**layer),
                    |hidden| self.pooler.forward(hidden),
                    inputs.mask.as_ref(),
                    output_hidden_states,
                ))
            }
        }
    };
}

pub(crate) use {
    encoder_attention_class, encoder_class, encoder_embeddings_class, encoder_interfaces,
    encoder_intermediate_class, encoder_layer_class, encoder_model_class, encoder_pooler_class,
    encoder_self_attention_class, residual_norm_class,
};
