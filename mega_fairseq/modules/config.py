"""One options object for every Mega building block, and its one validation.

`MegaLayerConfig` covers the per-layer surface of HuggingFace's ``MegaConfig`` plus the
original fork's extras.  Models (fairseq dataclass configs) and the HF converter both build
one of these, so every module reads its sizes and switches from a single validated place.

The name vocabularies come from the registries of the modules that implement them
(`activations.ACTIVATIONS`, `attention_kernel.ATTENTION_ACTIVATIONS`, `norms.NORM_TYPES`,
`relative_position.REL_POS_BIASES`).  A bad value raises `MegaConfigError` (a ValueError) whose
message names the `MegaLayerConfig` fields involved; `error.renamed({field: name})` words the
same message with the names the caller's user knows (the fairseq models: their CLI flags).
"""

import string
from dataclasses import dataclass, fields, replace
from typing import Mapping, Optional, Sequence

from .activations import ACTIVATIONS
from .attention_kernel import ATTENTION_ACTIVATIONS
from .norms import NORM_TYPES
from .relative_position import REL_POS_BIASES

__all__ = [
    "ACTIVATIONS",
    "ATTENTION_ACTIVATIONS",
    "NORM_TYPES",
    "REL_POS_BIASES",
    "MegaConfigError",
    "MegaLayerConfig",
    "check_choice",
]


class MegaConfigError(ValueError):
    """A `MegaLayerConfig` value that cannot work.

    `template` is a `str.format` template: placeholders that are `MegaLayerConfig` field names stand for
    those fields (rendered as the field name, or as `names[field]` in `renamed`), the others for `values`.
    `fields` lists the fields the message is about, in order of appearance."""

    def __init__(self, template: str, names: Optional[Mapping[str, str]] = None, **values):
        self.template, self.values, self.names = template, values, dict(names or {})
        known = {f.name for f in fields(MegaLayerConfig)}
        placeholders = [name for _, name, _, _ in string.Formatter().parse(template) if name]
        self.fields = tuple(dict.fromkeys(name for name in placeholders if name in known and name not in values))
        super().__init__(template.format(**{f: self.names.get(f, f) for f in self.fields}, **values))

    def renamed(self, names: Mapping[str, str]) -> "MegaConfigError":
        """The same error, worded with `names[field]` (e.g. "--decoder-chunk-size") for the fields it has."""
        return MegaConfigError(self.template, {**self.names, **names}, **self.values)


def check_choice(field: str, value, allowed: Sequence[str]):
    """Raises `MegaConfigError` unless `value` is one of `allowed` (the vocabulary of `field`)."""
    if value not in allowed:
        raise MegaConfigError(
            "unknown {%s} {value!r}; choose one of {allowed}" % field, value=value, allowed=", ".join(allowed)
        )


# (MegaLayerConfig field, transformers MegaConfig field): the one table both the converters (convert/hf_names.py)
# and the model code an HF export carries (this file is copied into it) read
HF_CONFIG_FIELDS = [
    ("embed_dim", "hidden_size"),
    ("z_dim", "shared_representation_size"),
    ("hidden_dim", "intermediate_size"),
    ("ffn_dim", "nffn_hidden_size"),
    ("n_dim", "ema_projection_size"),
    ("bidirectional", "bidirectional"),
    ("truncation", "truncation"),
    ("attention_activation", "attention_activation"),
    ("rel_pos_bias", "relative_positional_bias"),
    ("max_positions", "max_positions"),
    ("normalization_type", "normalization_type"),
    ("norm_affine", "norm_affine"),
    ("normalize_before", "normalize_before_mega"),
    ("use_nffn", "use_normalized_ffn"),
    ("activation", "activation"),
    ("dropout", "dropout_prob"),
    ("hidden_dropout", "hidden_dropout_prob"),
    ("attention_dropout", "attention_probs_dropout_prob"),
    ("ffn_hidden_dropout", "nffn_activation_dropout_prob"),
    ("feature_dropout", "use_feature_dropout"),
    ("causal", "is_decoder"),
    ("cross_attention", "add_cross_attention"),
]


@dataclass
class MegaLayerConfig:
    embed_dim: int = 128  # model width D (HF hidden_size)
    z_dim: int = 64  # shared query/key width (HF shared_representation_size)
    hidden_dim: int = 256  # value / gate width H (HF intermediate_size)
    ffn_dim: int = 256  # normalized FFN width (HF nffn_hidden_size)
    n_dim: int = 16  # EMA expansion dimension N (HF ema_projection_size)
    bidirectional: bool = True  # EMA looks both ways (encoders); False for causal EMA
    causal: bool = False  # causal self-attention mask (decoders); needs bidirectional=False
    truncation: Optional[int] = None  # EMA kernel length cap; None = full length
    chunk_size: int = -1  # Mega-chunk attention window; -1 = full sequence
    attention_activation: str = "softmax"
    rel_pos_bias: str = "rotary"
    max_positions: int = 2048  # longest span of the simple relative bias (and cross-attention)
    normalization_type: str = "scalenorm"
    norm_affine: bool = True
    norm_eps: float = 1e-5
    normalize_before: bool = True  # pre-norm for the gated attention (HF normalize_before_mega)
    normalize_before_ffn: Optional[bool] = None  # None = same as normalize_before
    use_nffn: bool = True
    activation: str = "silu"
    dropout: float = 0.0  # on block outputs and the EMA output
    hidden_dropout: float = 0.0  # on attention values and the gate
    attention_dropout: float = 0.0  # on attention weights
    ffn_hidden_dropout: float = 0.0  # inside the normalized FFN
    feature_dropout: bool = False  # drop whole features instead of elements
    cross_attention: bool = False  # add gated cross-attention (encoder-decoder decoders)

    def __post_init__(self):
        self.validate()

    @property
    def ffn_prenorm(self) -> bool:
        return self.normalize_before if self.normalize_before_ffn is None else self.normalize_before_ffn

    @property
    def chunked(self) -> bool:
        return self.chunk_size is not None and self.chunk_size > 0

    @property
    def max_length(self) -> int:
        """Longest sequence these layers accept: only a simple bias without chunking has a limit."""
        return self.max_positions if (self.rel_pos_bias == "simple" and not self.chunked) else int(1e6)

    def replace(self, **changes) -> "MegaLayerConfig":
        return replace(self, **changes)

    def validate(self):
        """Raises `MegaConfigError` naming the first field (or combination) that cannot work."""
        check_choice("attention_activation", self.attention_activation, ATTENTION_ACTIVATIONS)
        check_choice("rel_pos_bias", self.rel_pos_bias, REL_POS_BIASES)
        check_choice("normalization_type", self.normalization_type, NORM_TYPES)
        check_choice("activation", self.activation, ACTIVATIONS)
        for name in ("embed_dim", "z_dim", "hidden_dim", "n_dim", "max_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise MegaConfigError("{%s} must be a positive integer, got {value!r}" % name, value=value)
        if self.use_nffn and (not isinstance(self.ffn_dim, int) or self.ffn_dim <= 0):
            raise MegaConfigError(
                "{ffn_dim} must be a positive integer when the normalized FFN is on, got {value!r}", value=self.ffn_dim
            )
        if self.rel_pos_bias == "rotary" and self.z_dim % 2 != 0:
            raise MegaConfigError(
                "rotary relative bias needs an even {z_dim}, got {value}; use an even {z_dim} or {rel_pos_bias} "
                "'simple'",
                value=self.z_dim,
            )
        if self.chunk_size is not None and self.chunk_size != -1 and self.chunk_size <= 0:
            raise MegaConfigError(
                "{chunk_size} must be a positive number of tokens (or -1 for no chunking), got {value}",
                value=self.chunk_size,
            )
        if self.truncation is not None and self.truncation <= 0:
            raise MegaConfigError(
                "{truncation} must be a positive kernel length or None, got {value}", value=self.truncation
            )
        if self.causal and self.bidirectional:
            raise MegaConfigError("a causal (decoder) layer cannot use a bidirectional EMA: set {bidirectional}=False")
        if self.cross_attention and not self.causal:
            raise MegaConfigError("gated cross-attention belongs to decoder layers: set {causal}=True")
        if self.rel_pos_bias == "simple" and self.chunked and self.chunk_size > self.max_positions:
            raise MegaConfigError(
                "{chunk_size} {chunk} exceeds {max_positions} {limit} of the simple relative bias; "
                "raise {max_positions} or use a smaller chunk",
                chunk=self.chunk_size,
                limit=self.max_positions,
            )
        for name in ("dropout", "hidden_dropout", "attention_dropout", "ffn_hidden_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise MegaConfigError("{%s} must be in [0, 1), got {value}" % name, value=value)
