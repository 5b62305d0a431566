"""`mega`: the Mega encoder-decoder for fairseq's `translation` task (the paper's WMT'16 en-de setting).

Encoder: `MegaEncoder` (bidirectional EMA, full or chunked attention).  Decoder: `MegaDecoder`
(causal EMA and attention) with gated cross-attention in every layer.  Defaults:
`options.MODEL_DEFAULTS["mega"]` over the shared options.  Presets keep the original
fork's names and hyperparameters: `mega` (the config defaults = its `base_architecture`), `mega_wmt_en_de`,
`mega_wmt_en_de_big`; `mega_translation_tiny` is for tests and CPU demos.

Decoding is incremental: per decoder layer the state holds the EMA state (B, D, N), the
keys/values of the current chunk and the cross-attention keys/values of the encoder output,
projected once per sentence (B, S, z) / (B, S, D) and reordered with the beam.

Sources are right-aligned before encoding (fairseq's `translation` task left-pads them), so the
cross-attention's relative position bias and the encoder's chunk boundaries see every source
token at its true position whatever padding the batch has: a sentence translates the same alone
or in any batch.
"""

from dataclasses import field
from typing import Optional

from fairseq.models import FairseqEncoderDecoderModel, register_model, register_model_architecture
from fairseq.utils import safe_getattr
from omegaconf import II
from torch import Tensor

from ..modules.masking import right_align_order
from .decoder import MegaDecoder
from .dictionary_fingerprint import DictionaryFingerprintMixin
from .encoder import MegaEncoder, build_embedding
from .options import (
    MegaDecoderSizes,
    MegaDecoderStructureOptions,
    MegaEncoderSizes,
    MegaLayerOptions,
    decoder_structure,
    layer_config,
    model_config,
    resolve_model_config,
    scale_options,
    set_defaults,
)
from .pairing import check_task

DEFAULT_MAX_POSITIONS = 1024


@model_config("mega")
class MegaTranslationConfig(MegaLayerOptions, MegaEncoderSizes, MegaDecoderSizes, MegaDecoderStructureOptions):
    share_all_embeddings: bool = field(
        default=False,
        metadata={
            "help": "share encoder, decoder and output embeddings (needs a joined dictionary and equal embed dims)"
        },
    )
    max_source_positions: Optional[int] = II("oc.select:task.max_source_positions,null")
    max_target_positions: Optional[int] = II(
        "oc.select:task.max_target_positions,null"
    )  # null: a task without it (see pairing.py)


class MegaTranslationEncoder(MegaEncoder):
    """`MegaEncoder` that right-aligns its (B, S) source and refuses sources longer than `--max-source-positions`."""

    def forward(
        self, src_tokens: Tensor, src_lengths: Optional[Tensor] = None, return_all_hiddens: bool = False, **unused
    ):
        if src_tokens.dim() != 2:
            raise ValueError(f"src_tokens must be (batch, length) token ids, got shape {tuple(src_tokens.shape)}")
        if src_tokens.size(1) > self.max_source_positions:
            raise ValueError(
                f"source of {src_tokens.size(1)} tokens is longer than this model supports (--max-source-positions "
                f"{self.max_source_positions}); split the sentence, skip it (--skip-invalid-size-inputs-valid-test), "
                "or "
                "train with a larger --max-source-positions"
            )
        order = right_align_order(src_tokens.eq(self.dictionary.pad()))
        if order is not None:  # the decoder sees the right-aligned encoder output
            src_tokens = src_tokens.gather(1, order)
        return super().forward(src_tokens, src_lengths, return_all_hiddens=return_all_hiddens)


@register_model("mega", dataclass=MegaTranslationConfig)
class MegaTranslationModel(DictionaryFingerprintMixin, FairseqEncoderDecoderModel):
    """forward(src_tokens (B, S), src_lengths (B,), prev_output_tokens (B, T)) -> (logits (B, T, V), extra).

    The ``dictionary_digest`` buffer (source, target) refuses weights trained with other dictionaries
    (`dictionary_fingerprint`)."""

    def __init__(self, cfg, encoder, decoder):
        super().__init__(encoder, decoder)
        self.args = cfg

    @classmethod
    def build_model(cls, cfg, task):
        check_task(cfg, task, "mega")
        cfg = resolve_model_config(cfg, MegaTranslationConfig)
        for name in ("max_source_positions", "max_target_positions"):
            if safe_getattr(cfg, name, None) is None:
                setattr(cfg, name, DEFAULT_MAX_POSITIONS)
        if cfg.tie_adaptive_weights:
            raise ValueError(
                "--tie-adaptive-weights needs adaptive input embeddings, which the translation model does not have"
            )
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        encoder_embed = build_embedding(len(src_dict), cfg.encoder_embed_dim, src_dict.pad())
        if cfg.share_all_embeddings:
            if src_dict != tgt_dict:
                raise ValueError(
                    "--share-all-embeddings needs one dictionary for both languages: binarize with "
                    "fairseq-preprocess --joined-dictionary (or drop the option)"
                )
            if cfg.encoder_embed_dim != cfg.decoder_embed_dim:
                raise ValueError(
                    f"--share-all-embeddings needs --encoder-embed-dim ({cfg.encoder_embed_dim}) == "
                    f"--decoder-embed-dim ({cfg.decoder_embed_dim})"
                )
            decoder_embed = encoder_embed
            cfg.share_decoder_input_output_embed = True
        else:
            decoder_embed = build_embedding(len(tgt_dict), cfg.decoder_embed_dim, tgt_dict.pad())
        source_positions, target_positions = cfg.max_source_positions, cfg.max_target_positions
        structure = decoder_structure(cfg)
        encoder = MegaTranslationEncoder(
            layer_config(
                cfg, "encoder", max_positions=max(source_positions, 1), max_positions_option="max_source_positions"
            ),
            cfg.encoder_layers,
            src_dict,
            encoder_embed,
            max_positions=source_positions,
            **{
                name: structure[name]
                for name in ("scale_embedding", "normalize_embedding", "final_norm", "final_norm_affine")
            },
            **scale_options(cfg),
        )
        # as in the original, the decoder's simple bias spans max(source, target) positions: cross-attention
        # relates target position i to source position j
        span, span_option = max((target_positions, "max_target_positions"), (source_positions, "max_source_positions"))
        decoder = MegaDecoder(
            layer_config(
                cfg, "decoder", max_positions=max(span, 1), max_positions_option=span_option, cross_attention=True
            ),
            cfg.decoder_layers,
            tgt_dict,
            decoder_embed,
            max_positions=target_positions,
            **structure,
            **scale_options(cfg),
        )
        return cls(cfg, encoder, decoder)

    def max_positions(self):
        return (self.encoder.max_source_positions, self.decoder.max_target_positions)

    def fingerprinted_dictionaries(self):
        return [
            ("source", self.encoder.dictionary, "encoder.stack.embed_tokens.weight"),
            ("target", self.decoder.dictionary, "decoder.stack.embed_tokens.weight"),
        ]


def mega_base(args):
    """The original fork's `base_architecture`: 6+6 layers, D=512, H=FFN=1024, z=128, N=16; decoder sizes follow
    the encoder's.

    (`--arch mega` itself takes the dataclass defaults, which are these sizes, without the following.)"""
    set_defaults(
        args,
        encoder_layers=6,
        encoder_embed_dim=512,
        encoder_hidden_dim=1024,
        encoder_z_dim=128,
        encoder_n_dim=16,
        encoder_chunk_size=-1,
    )
    set_defaults(args, encoder_ffn_embed_dim=args.encoder_hidden_dim)
    set_defaults(
        args,
        decoder_layers=6,
        decoder_embed_dim=args.encoder_embed_dim,
        decoder_hidden_dim=args.encoder_hidden_dim,
        decoder_ffn_embed_dim=args.encoder_ffn_embed_dim,
        decoder_z_dim=args.encoder_z_dim,
        decoder_n_dim=args.encoder_n_dim,
        decoder_chunk_size=args.encoder_chunk_size,
        dropout=0.1,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        activation_dropout=0.0,
        rel_pos_bias="simple",
        normalization_type="layernorm",
        normalize_before=False,
        # truncation_length: the dataclass default (1024).  Not set here: fairseq calls presets a second time on
        # the OmegaConf config, where a preset's explicit None (mega_translation_tiny) reads as unset
        activation_fn="silu",
        attention_activation_fn="softmax",
    )


@register_model_architecture("mega", "mega_wmt_en_de")
def mega_wmt_en_de(args):
    """WMT'16 en-de (the paper: 67M parameters with a 32k joined vocabulary and shared embeddings)."""
    set_defaults(args, dropout=0.1, attention_dropout=0.1, hidden_dropout=0.1, activation_dropout=0.1)
    mega_base(args)


@register_model_architecture("mega", "mega_wmt_en_de_big")
def mega_wmt_en_de_big(args):
    """The original fork's big variant: D=1024, H=FFN=2048, z=256, dropout 0.3."""
    set_defaults(args, encoder_embed_dim=1024, encoder_hidden_dim=2048, encoder_z_dim=256)
    set_defaults(args, dropout=0.3, attention_dropout=0.1, hidden_dropout=0.1, activation_dropout=0.1)
    mega_base(args)


@register_model_architecture("mega", "mega_translation_tiny")
def mega_translation_tiny(args):
    """A small pre-norm model for tests and CPU demos (2+2 layers, D=64, rotary bias, shared embeddings)."""
    set_defaults(
        args,
        encoder_layers=2,
        encoder_embed_dim=64,
        encoder_hidden_dim=128,
        encoder_ffn_embed_dim=128,
        encoder_z_dim=32,
        encoder_n_dim=8,
        decoder_layers=2,
        rel_pos_bias="rotary",
        normalize_before=True,
        truncation_length=None,
        share_all_embeddings=True,
    )
    mega_base(args)
