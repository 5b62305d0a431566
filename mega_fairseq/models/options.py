"""Layer options shared by every Mega fairseq model, named as in the original fork.

Model configs (``FairseqDataclass``) inherit `MegaLayerOptions` and turn it into a
`MegaLayerConfig` with `layer_config(...)`; encoder/decoder-specific sizes
(``--decoder-z-dim`` ...) live in each model's own config.
"""
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from ..modules import MegaLayerConfig
from ..modules.config import ACTIVATIONS, ATTENTION_ACTIVATIONS, NORM_TYPES, REL_POS_BIASES


@dataclass
class MegaLayerOptions(FairseqDataclass):
    activation_fn: ChoiceEnum(ACTIVATIONS) = field(default="silu", metadata={"help": "activation of values, gates and the FFN"})
    attention_activation_fn: ChoiceEnum(ATTENTION_ACTIVATIONS) = field(default="softmax", metadata={"help": "attention weights: softmax, laplace or relu2"})
    rel_pos_bias: ChoiceEnum(REL_POS_BIASES) = field(default="rotary", metadata={"help": "relative position bias: simple or rotary"})
    normalization_type: ChoiceEnum(NORM_TYPES) = field(default="layernorm", metadata={"help": "normalization layer"})
    normalize_before: bool = field(default=True, metadata={"help": "pre-norm (normalize each block's input) instead of post-norm"})
    no_affine_norm: bool = field(default=False, metadata={"help": "normalization layers without learned scale/shift"})
    truncation_length: Optional[int] = field(default=None, metadata={"help": "truncate the EMA kernel to this many positions"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on block outputs and the EMA output"})
    attention_dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights"})
    hidden_dropout: float = field(default=0.0, metadata={"help": "dropout on attention values"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout inside the normalized FFN"})
    feature_dropout: bool = field(default=False, metadata={"help": "drop whole features instead of single elements"})
    no_nffn: bool = field(default=False, metadata={"help": "leave out the normalized feed-forward network"})


@dataclass
class MegaDecoderStructureOptions(FairseqDataclass):
    """Embedding, final-norm and output-layer switches that `MegaDecoder` reads (the LM and the
    translation model share them; the translation encoder follows the same embedding/final-norm ones)."""

    no_scale_embedding: bool = field(default=False, metadata={"help": "do not scale token embeddings by sqrt(D)"})
    normalize_embedding: bool = field(default=False, metadata={"help": "normalize token embeddings"})
    no_final_norm: bool = field(default=False, metadata={"help": "no norm after the last layer even with --normalize-before (HF Mega has none)"})
    no_affine_final_norm: bool = field(default=False, metadata={"help": "final norm without learned scale/shift"})
    share_decoder_input_output_embed: bool = field(default=False, metadata={"help": "tie input and output embeddings"})
    output_bias: bool = field(default=False, metadata={"help": "add a bias to the output projection (HF's lm_head has one)"})
    adaptive_softmax_cutoff: Optional[str] = field(default=None, metadata={"help": "comma-separated adaptive softmax cutoffs (use --criterion adaptive_loss)"})
    adaptive_softmax_dropout: float = field(default=0.0, metadata={"help": "dropout of the adaptive softmax tail projections"})
    adaptive_softmax_factor: float = field(default=4, metadata={"help": "adaptive softmax factor"})
    tie_adaptive_weights: bool = field(default=False, metadata={"help": "tie adaptive input and softmax weights"})
    tie_adaptive_proj: bool = field(default=False, metadata={"help": "tie adaptive input and softmax projections"})


def _size_options(side: str, layers: int, embed: int, hidden: int, ffn: int, z: int, n: int):
    """Dataclass fields `{side}_layers`, `{side}_embed_dim`, ... (the original fork's option names)."""
    return {
        f"{side}_layers": (int, field(default=layers, metadata={"help": f"number of {side} Mega layers"})),
        f"{side}_embed_dim": (int, field(default=embed, metadata={"help": f"{side} model width D"})),
        f"{side}_hidden_dim": (int, field(default=hidden, metadata={"help": f"{side} value/gate width H"})),
        f"{side}_ffn_embed_dim": (int, field(default=ffn, metadata={"help": f"{side} normalized FFN width"})),
        f"{side}_z_dim": (int, field(default=z, metadata={"help": f"{side} shared query/key width z"})),
        f"{side}_n_dim": (int, field(default=n, metadata={"help": f"{side} EMA expansion dimension N"})),
        f"{side}_chunk_size": (int, field(default=-1, metadata={"help": f"{side} Mega-chunk attention window (-1: whole sequence)"})),
    }


def _sizes_dataclass(name: str, side: str, **defaults):
    fields = _size_options(side, **defaults)
    cls = type(name, (FairseqDataclass,), {"__annotations__": {k: t for k, (t, _) in fields.items()}, **{k: f for k, (_, f) in fields.items()}})
    cls.__module__ = __name__
    cls.__doc__ = f"Sizes of a Mega {side}: `--{side}-layers`, `--{side}-embed-dim`, `--{side}-hidden-dim`, ... `--{side}-chunk-size`."
    return dataclass(cls)


# Defaults: the original fork's base sizes (mega_lm / mega_wmt_en_de); presets override them.
MegaEncoderSizes = _sizes_dataclass("MegaEncoderSizes", "encoder", layers=6, embed=512, hidden=1024, ffn=1024, z=128, n=16)
MegaDecoderSizes = _sizes_dataclass("MegaDecoderSizes", "decoder", layers=6, embed=512, hidden=1024, ffn=1024, z=128, n=16)


def set_defaults(args, **values):
    """Preset helper: sets each option that is still unset (missing or None) on `args` (a namespace or
    an OmegaConf config), so a value given on the command line, or by a more specific preset called
    first, wins."""
    for name, value in values.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def layer_config(cfg, side: str, *, bidirectional: bool, causal: bool, cross_attention: bool = False, max_positions: int) -> MegaLayerConfig:
    """`MegaLayerConfig` from a model config holding `MegaLayerOptions` plus `{side}_embed_dim`, `{side}_z_dim`, ..."""

    def get(name):
        return getattr(cfg, f"{side}_{name}")

    return MegaLayerConfig(
        embed_dim=get("embed_dim"),
        z_dim=get("z_dim"),
        hidden_dim=get("hidden_dim"),
        ffn_dim=get("ffn_embed_dim"),
        n_dim=get("n_dim"),
        chunk_size=get("chunk_size"),
        bidirectional=bidirectional,
        causal=causal,
        cross_attention=cross_attention,
        truncation=cfg.truncation_length,
        attention_activation=str(cfg.attention_activation_fn),
        rel_pos_bias=str(cfg.rel_pos_bias),
        max_positions=max_positions,
        normalization_type=str(cfg.normalization_type),
        norm_affine=not cfg.no_affine_norm,
        normalize_before=cfg.normalize_before,
        use_nffn=not cfg.no_nffn,
        activation=str(cfg.activation_fn),
        dropout=cfg.dropout,
        hidden_dropout=cfg.hidden_dropout,
        attention_dropout=cfg.attention_dropout,
        ffn_hidden_dropout=cfg.activation_dropout,
        feature_dropout=cfg.feature_dropout,
    )
