"""Configuration of a Mega model exported by mega_fairseq (``mega-export-hf``); imports only transformers.

`MegaFairseqConfig` takes transformers' ``MegaConfig`` fields with the same names and defaults (so a
``config.json`` written for transformers' native Mega classes reads the same here), plus ``norm_eps``.
`MegaFairseqSeq2SeqConfig` holds an encoder and a decoder `MegaFairseqConfig` (translation), laid out
like transformers' ``EncoderDecoderConfig``.
"""

from transformers import PretrainedConfig

MODEL_TYPE = "mega"  # mega-export-hf writes "mega_fairseq" here for exports native Mega cannot load


class MegaFairseqConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size=30522,
        hidden_size=128,
        num_hidden_layers=4,
        intermediate_size=256,
        ema_projection_size=16,
        bidirectional=True,
        shared_representation_size=64,
        use_chunking=False,
        chunk_size=-1,
        truncation=None,
        normalize_before_mega=True,
        normalization_type="scalenorm",
        norm_affine=True,
        activation="silu",
        attention_activation="softmax",
        dropout_prob=0.1,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        use_feature_dropout=False,
        use_normalized_ffn=True,
        nffn_hidden_size=256,
        normalize_before_ffn=True,
        nffn_activation_dropout_prob=0.1,
        max_positions=2048,
        add_token_type_embeddings=False,
        type_vocab_size=2,
        initializer_range=0.02,
        ema_delta_alpha_range=0.2,
        ema_beta_range=0.02,
        ema_gamma_omega_range=1.0,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        relative_positional_bias="rotary",
        classifier_dropout=None,
        use_cache=True,
        add_lm_hidden_dense_layer=True,
        norm_eps=1e-5,
        is_decoder=False,
        add_cross_attention=False,
        tie_word_embeddings=True,
        **kwargs,
    ):
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)
        self.is_decoder = is_decoder  # transformers 5.x's PretrainedConfig no longer keeps these two
        self.add_cross_attention = add_cross_attention
        self.tie_word_embeddings = tie_word_embeddings  # 4.x's default (config.json leaves it out when True)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.intermediate_size = intermediate_size
        self.ema_projection_size = ema_projection_size
        self.bidirectional = bidirectional
        self.shared_representation_size = shared_representation_size
        self.use_chunking = use_chunking
        self.chunk_size = chunk_size
        self.truncation = truncation
        self.normalize_before_mega = normalize_before_mega
        self.normalization_type = normalization_type
        self.norm_affine = norm_affine
        self.activation = activation
        self.attention_activation = attention_activation
        self.dropout_prob = dropout_prob
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.use_feature_dropout = use_feature_dropout
        self.use_normalized_ffn = use_normalized_ffn
        self.nffn_hidden_size = nffn_hidden_size
        self.normalize_before_ffn = normalize_before_ffn
        self.nffn_activation_dropout_prob = nffn_activation_dropout_prob
        self.max_positions = max_positions
        self.add_token_type_embeddings = add_token_type_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.ema_delta_alpha_range = ema_delta_alpha_range
        self.ema_beta_range = ema_beta_range
        self.ema_gamma_omega_range = ema_gamma_omega_range
        self.relative_positional_bias = relative_positional_bias
        self.classifier_dropout = classifier_dropout
        self.use_cache = use_cache
        self.add_lm_hidden_dense_layer = add_lm_hidden_dense_layer
        self.norm_eps = norm_eps
        self.num_attention_heads = 1  # single-head attention (read by some transformers utilities)


class MegaFairseqSeq2SeqConfig(PretrainedConfig):
    """An encoder and a decoder `MegaFairseqConfig`, stored as ``encoder`` / ``decoder`` dicts."""

    model_type = "encoder-decoder" if MODEL_TYPE == "mega" else MODEL_TYPE + "_seq2seq"
    is_composition = True
    has_no_defaults_at_init = True

    def __init__(self, encoder=None, decoder=None, **kwargs):
        # set first: transformers 5.x validates (and so calls to_dict) inside PretrainedConfig.__init__
        self.encoder = encoder if isinstance(encoder, MegaFairseqConfig) else MegaFairseqConfig(**(encoder or {}))
        self.decoder = decoder if isinstance(decoder, MegaFairseqConfig) else MegaFairseqConfig(**(decoder or {}))
        kwargs["is_encoder_decoder"] = True
        super().__init__(**kwargs)

    def to_dict(self):
        out = super().to_dict()
        for side in ("encoder", "decoder"):
            if isinstance(getattr(self, side, None), MegaFairseqConfig):
                out[side] = getattr(self, side).to_dict()
        out["model_type"] = self.model_type
        return out
