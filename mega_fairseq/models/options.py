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
