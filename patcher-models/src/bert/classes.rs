//! BERT's classes and their slot interfaces, written by the kit's encoder macros with
//! transformers' names.

// transformers' parameter name `LayerNorm`.
#![allow(non_snake_case)]

use super::BertConfig;
use crate::common::{
    encoder_attention_class, encoder_embeddings_class, encoder_interfaces,
    encoder_intermediate_class, encoder_layer_class, encoder_model_class, encoder_pooler_class,
    encoder_self_attention_class, residual_norm_class,
};

encoder_interfaces! { BertConfig;
    BertEmbeddingsInterface: EncoderEmbeddings = "BertEmbeddings",
    BertSelfAttentionInterface: EncoderSelfAttention = "BertSelfAttention",
    BertSelfOutputInterface: ResidualNormForward = "BertSelfOutput",
    BertAttentionInterface: EncoderBlock = "BertAttention",
    BertIntermediateInterface: EncoderIntermediate = "BertIntermediate",
    BertOutputInterface: ResidualNormForward = "BertOutput",
    BertLayerInterface: EncoderBlock = "BertLayer",
    BertPoolerInterface: EncoderPooler = "BertPooler",
}

encoder_embeddings_class!(BertEmbeddings, BertConfig, BertEmbeddingsInterface);
encoder_self_attention_class!(BertSelfAttention, BertConfig, BertSelfAttentionInterface);
residual_norm_class!(
    BertSelfOutput,
    BertConfig,
    BertSelfOutputInterface,
    hidden_size
);
encoder_attention_class!(BertAttention, BertConfig, BertAttentionInterface,
    BertSelfAttention: BertSelfAttentionInterface, BertSelfOutput: BertSelfOutputInterface);
encoder_intermediate_class!(BertIntermediate, BertConfig, BertIntermediateInterface);
residual_norm_class!(
    BertOutput,
    BertConfig,
    BertOutputInterface,
    intermediate_size
);
encoder_layer_class!(BertLayer, BertConfig, BertLayerInterface,
    BertAttention: BertAttentionInterface, BertIntermediate: BertIntermediateInterface,
    BertOutput: BertOutputInterface);
encoder_pooler_class!(BertPooler, BertConfig, BertPoolerInterface);
encoder_model_class!(BertModel, BertEncoder, BertConfig, BertEmbeddings: BertEmbeddingsInterface,
    BertLayer: BertLayerInterface, BertPooler: BertPoolerInterface);
