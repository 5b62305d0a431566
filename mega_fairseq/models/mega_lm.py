"""`mega_lm`: a Mega causal language model for fairseq's `language_modeling` task.

Presets keep the original fork's names and hyperparameters (`mega_lm`, `mega_lm_big`,
`mega_lm_adaptive_big` = WikiText-103, `mega_lm_adaptive_base`, `mega_lm_enwik8_base`,
`mega_lm_enwik8_large`), plus `mega_lm_tiny` for CPU demos and `mega_lm_hf`, whose structure
is exactly HF's `MegaForCausalLM` (no embedding scale, no final norm, biased output layer)
so its checkpoints export to transformers.

The network is `decoder.MegaDecoder` (incremental decoding: a generated token costs O(chunk) however
long the context is).  Defaults: `options.MODEL_DEFAULTS["mega_lm"]` over the shared options.
"""

from dataclasses import field
from typing import Optional

from fairseq import options as fairseq_options
from fairseq.models import FairseqLanguageModel, register_model, register_model_architecture
from fairseq.modules import AdaptiveInput
from fairseq.utils import safe_getattr
from omegaconf import II

from .decoder import MegaDecoder
from .dictionary_fingerprint import DictionaryFingerprintMixin
from .options import (
    MegaDecoderSizes,
    MegaDecoderStructureOptions,
    MegaLayerOptions,
    decoder_structure,
    layer_config,
    model_config,
    resolve_model_config,
    scale_options,
    set_defaults,
)
from .pairing import check_task

__all__ = ["DEFAULT_MAX_TARGET_POSITIONS", "MegaDecoder", "MegaLMConfig", "MegaLanguageModel"]

DEFAULT_MAX_TARGET_POSITIONS = 1024


@model_config("mega_lm")
class MegaLMConfig(MegaLayerOptions, MegaDecoderSizes, MegaDecoderStructureOptions):
    adaptive_input: bool = field(default=False, metadata={"help": "adaptive input embeddings"})
    adaptive_input_factor: float = field(default=4, metadata={"help": "adaptive input factor"})
    adaptive_input_cutoff: Optional[str] = field(
        default=None, metadata={"help": "comma-separated adaptive input cutoffs"}
    )
    max_target_positions: Optional[int] = II(
        "oc.select:task.max_target_positions,null"
    )  # null: a task without it (see pairing.py)
    tokens_per_sample: Optional[int] = II("oc.select:task.tokens_per_sample,null")


@register_model("mega_lm", dataclass=MegaLMConfig)
class MegaLanguageModel(DictionaryFingerprintMixin, FairseqLanguageModel):
    @classmethod
    def build_model(cls, cfg, task):
        check_task(cfg, task, "mega_lm")
        cfg = resolve_model_config(cfg, MegaLMConfig)
        if safe_getattr(cfg, "max_target_positions", None) is None:
            tokens = safe_getattr(cfg, "tokens_per_sample", None)
            cfg.max_target_positions = DEFAULT_MAX_TARGET_POSITIONS if tokens is None else tokens
        if cfg.max_target_positions < 1:
            raise ValueError(
                f"--max-target-positions (or --tokens-per-sample) must be a positive number of tokens, got "
                f"{cfg.max_target_positions}"
            )
        dictionary = task.target_dictionary
        embed_tokens = None
        if cfg.adaptive_input:
            embed_tokens = AdaptiveInput(
                len(dictionary),
                dictionary.pad(),
                cfg.decoder_embed_dim,
                cfg.adaptive_input_factor,
                cfg.decoder_embed_dim,
                fairseq_options.eval_str_list(cfg.adaptive_input_cutoff, type=int),
            )
        if cfg.tie_adaptive_weights:
            if not cfg.adaptive_input or cfg.adaptive_softmax_cutoff != cfg.adaptive_input_cutoff:
                raise ValueError(
                    "--tie-adaptive-weights needs --adaptive-input with the same cutoffs as --adaptive-softmax-cutoff"
                )
        positions = cfg.max_target_positions
        layer_cfg = layer_config(
            cfg, "decoder", max_positions=max(positions, 1), max_positions_option="max_target_positions"
        )
        return cls(
            MegaDecoder(
                layer_cfg,
                cfg.decoder_layers,
                dictionary,
                embed_tokens,
                max_positions=positions,
                **decoder_structure(cfg),
                **scale_options(cfg),
            )
        )


@register_model_architecture("mega_lm", "mega_lm_big")
def mega_lm_big(args):
    set_defaults(
        args,
        decoder_layers=16,
        decoder_embed_dim=1024,
        decoder_hidden_dim=2048,
        decoder_ffn_embed_dim=2048,
        decoder_z_dim=256,
    )


def _adaptive(args, dropout):
    set_defaults(
        args,
        decoder_layers=16,
        dropout=dropout,
        attention_dropout=0.1,
        hidden_dropout=0.1,
        activation_dropout=0.1,
        adaptive_input=True,
        tie_adaptive_weights=True,
        tie_adaptive_proj=True,
        adaptive_input_cutoff="20000,60000",
        adaptive_softmax_cutoff="20000,60000",
        adaptive_softmax_dropout=0.2,
    )


@register_model_architecture("mega_lm", "mega_lm_adaptive_big")
def mega_lm_adaptive_big(args):
    """WikiText-103 (the paper: 252M parameters, test ppl 18.07); train with --criterion adaptive_loss."""
    _adaptive(args, dropout=0.3)
    mega_lm_big(args)


@register_model_architecture("mega_lm", "mega_lm_adaptive_base")
def mega_lm_adaptive_base(args):
    set_defaults(args, decoder_embed_dim=768, decoder_hidden_dim=1536, decoder_ffn_embed_dim=1536, decoder_z_dim=128)
    _adaptive(args, dropout=0.3)


@register_model_architecture("mega_lm", "mega_lm_enwik8_base")
def mega_lm_enwik8_base(args):
    """enwik8 (the paper: 39M parameters, 1.02 bpc with chunk 2048)."""
    set_defaults(
        args,
        decoder_layers=12,
        decoder_embed_dim=512,
        decoder_hidden_dim=1024,
        decoder_ffn_embed_dim=1024,
        decoder_z_dim=128,
        decoder_n_dim=16,
        dropout=0.1,
    )


@register_model_architecture("mega_lm", "mega_lm_enwik8_large")
def mega_lm_enwik8_large(args):
    set_defaults(
        args,
        decoder_layers=24,
        decoder_embed_dim=1024,
        decoder_hidden_dim=1536,
        decoder_ffn_embed_dim=1536,
        decoder_z_dim=128,
        decoder_n_dim=16,
        dropout=0.2,
        attention_dropout=0.1,
        hidden_dropout=0.1,
    )


@register_model_architecture("mega_lm", "mega_lm_hf")
def mega_lm_hf(args):
    """Exactly HF's MegaForCausalLM structure (defaults of transformers' MegaConfig): exportable."""
    set_defaults(
        args,
        decoder_layers=4,
        decoder_embed_dim=128,
        decoder_hidden_dim=256,
        decoder_ffn_embed_dim=256,
        decoder_z_dim=64,
        decoder_n_dim=16,
        rel_pos_bias="rotary",
        normalization_type="scalenorm",
        normalize_before=True,
        no_final_norm=True,
        no_scale_embedding=True,
        share_decoder_input_output_embed=True,
        output_bias=True,
        truncation_length=None,
    )


@register_model_architecture("mega_lm", "mega_lm_tiny")
def mega_lm_tiny(args):
    """A half-million-parameter model for CPU demos and tests (rotary, chunk 64, pre-norm)."""
    set_defaults(
        args,
        decoder_layers=2,
        decoder_embed_dim=64,
        decoder_hidden_dim=128,
        decoder_ffn_embed_dim=128,
        decoder_z_dim=32,
        decoder_n_dim=8,
        decoder_chunk_size=64,
        rel_pos_bias="rotary",
        normalize_before=True,
        share_decoder_input_output_embed=True,
        truncation_length=None,
        dropout=0.1,
    )
