"""The options of every Mega fairseq model, declared once, named as in the original fork.

- `MegaLayerOptions`: the layer options every model shares (`--activation-fn`, `--rel-pos-bias`, ...).
- `MegaEncoderSizes` / `MegaDecoderSizes`: the sizes of one side (`--encoder-layers`, `--decoder-z-dim`, ...),
  the names `SIZE_NAMES` prefixed with the side.  `size_options` / `size_fields` give them to converters.
- `MegaDecoderStructureOptions`: embedding, final-norm and output-layer switches of decoders.
- `MODEL_DEFAULTS`: each model's defaults where they differ from the shared ones, applied by the
  `model_config(name)` class decorator on the model's config dataclass.
- `LAYER_CONFIG_OPTIONS`: which option each `MegaLayerConfig` field comes from.  `layer_config` builds the
  layer config with it, and words `MegaLayerConfig`'s validation errors with the CLI flags it names
  (``--decoder-chunk-size must be a positive number of tokens ...``).

fairseq caveat: a bool option whose default is True becomes a ``store_false`` flag named like the option, so
``--normalize-before`` would *switch pre-norm off*.  Bool options therefore default to False everywhere
(`model_config` refuses a True one) and presets turn them on.
"""

import argparse
import operator
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.options import eval_str_list

from ..modules.config import (
    ACTIVATIONS,
    ATTENTION_ACTIVATIONS,
    NORM_TYPES,
    REL_POS_BIASES,
    MegaConfigError,
    MegaLayerConfig,
)

DEFAULT_MIN_PARAMS_TO_WRAP = int(1e8)  # fairseq's transformer default (transformer_config.DEFAULT_MIN_PARAMS_TO_WRAP)


@dataclass
class MegaLayerOptions(FairseqDataclass):
    activation_fn: ChoiceEnum(ACTIVATIONS) = field(
        default="silu", metadata={"help": "activation of values, gates and the FFN"}
    )
    attention_activation_fn: ChoiceEnum(ATTENTION_ACTIVATIONS) = field(
        default="softmax", metadata={"help": "attention weights: softmax, laplace or relu2"}
    )
    rel_pos_bias: ChoiceEnum(REL_POS_BIASES) = field(
        default="rotary", metadata={"help": "relative position bias: simple or rotary"}
    )
    normalization_type: ChoiceEnum(NORM_TYPES) = field(default="layernorm", metadata={"help": "normalization layer"})
    normalize_before: bool = field(
        default=False,
        metadata={
            "help": "pre-norm (normalize each block's input) instead of post-norm; "
            "mega_lm, mega and lra then add a final norm"
        },
    )
    no_affine_norm: bool = field(default=False, metadata={"help": "normalization layers without learned scale/shift"})
    truncation_length: Optional[int] = field(
        default=None, metadata={"help": "truncate the EMA kernel to this many positions"}
    )
    dropout: float = field(default=0.1, metadata={"help": "dropout on block outputs and the EMA output"})
    attention_dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights"})
    hidden_dropout: float = field(default=0.0, metadata={"help": "dropout on attention values"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout inside the normalized FFN"})
    feature_dropout: bool = field(default=False, metadata={"help": "drop whole features instead of single elements"})
    no_nffn: bool = field(default=False, metadata={"help": "leave out the normalized feed-forward network"})
    # scale: fairseq's transformer names and meanings (see scale_options)
    checkpoint_activations: bool = field(
        default=False,
        metadata={
            "help": "checkpoint activations at each Mega layer: keep only layer inputs, recompute in backward "
            "(less memory, about one more forward of compute)"
        },
    )
    offload_activations: bool = field(
        default=False,
        metadata={
            "help": "checkpoint activations and keep the saved layer inputs in CPU memory (GPU training); "
            "sets --checkpoint-activations"
        },
    )
    min_params_to_wrap: int = field(
        default=DEFAULT_MIN_PARAMS_TO_WRAP,
        metadata={
            "help": "with --ddp-backend fully_sharded, a Mega layer with at least this many parameters is its own "
            "FSDP unit (every layer when checkpointing)"
        },
    )


# The size options of one side are `{side}_{name}` for these names; defaults: the original fork's base sizes
# (mega_lm / mega_wmt_en_de), replaced per model by MODEL_DEFAULTS and per preset.
SIZE_NAMES = ("layers", "embed_dim", "hidden_dim", "ffn_embed_dim", "z_dim", "n_dim", "chunk_size")


@dataclass
class MegaEncoderSizes(FairseqDataclass):
    """Sizes of a Mega encoder: `--encoder-layers`, `--encoder-embed-dim`, ... `--encoder-chunk-size`."""

    encoder_layers: int = field(default=6, metadata={"help": "number of encoder Mega layers"})
    encoder_embed_dim: int = field(default=512, metadata={"help": "encoder model width D"})
    encoder_hidden_dim: int = field(default=1024, metadata={"help": "encoder value/gate width H"})
    encoder_ffn_embed_dim: int = field(default=1024, metadata={"help": "encoder normalized FFN width"})
    encoder_z_dim: int = field(default=128, metadata={"help": "encoder shared query/key width z"})
    encoder_n_dim: int = field(default=16, metadata={"help": "encoder EMA expansion dimension N"})
    encoder_chunk_size: int = field(
        default=-1, metadata={"help": "encoder Mega-chunk attention window (-1: whole sequence)"}
    )


@dataclass
class MegaDecoderSizes(FairseqDataclass):
    """Sizes of a Mega decoder: `--decoder-layers`, `--decoder-embed-dim`, ... `--decoder-chunk-size`."""

    decoder_layers: int = field(default=6, metadata={"help": "number of decoder Mega layers"})
    decoder_embed_dim: int = field(default=512, metadata={"help": "decoder model width D"})
    decoder_hidden_dim: int = field(default=1024, metadata={"help": "decoder value/gate width H"})
    decoder_ffn_embed_dim: int = field(default=1024, metadata={"help": "decoder normalized FFN width"})
    decoder_z_dim: int = field(default=128, metadata={"help": "decoder shared query/key width z"})
    decoder_n_dim: int = field(default=16, metadata={"help": "decoder EMA expansion dimension N"})
    decoder_chunk_size: int = field(
        default=-1, metadata={"help": "decoder Mega-chunk attention window (-1: whole sequence)"}
    )


@dataclass
class MegaDecoderStructureOptions(FairseqDataclass):
    """Embedding, final-norm and output-layer switches of a `MegaDecoder` (the LM and the translation model share
    them; the translation encoder follows the same embedding/final-norm ones)."""

    no_scale_embedding: bool = field(default=False, metadata={"help": "do not scale token embeddings by sqrt(D)"})
    normalize_embedding: bool = field(default=False, metadata={"help": "normalize token embeddings"})
    no_final_norm: bool = field(
        default=False, metadata={"help": "no norm after the last layer even with --normalize-before (HF Mega has none)"}
    )
    no_affine_final_norm: bool = field(default=False, metadata={"help": "final norm without learned scale/shift"})
    share_decoder_input_output_embed: bool = field(default=False, metadata={"help": "tie input and output embeddings"})
    output_bias: bool = field(
        default=False, metadata={"help": "add a bias to the output projection (HF's lm_head has one)"}
    )
    adaptive_softmax_cutoff: Optional[str] = field(
        default=None, metadata={"help": "comma-separated adaptive softmax cutoffs (use --criterion adaptive_loss)"}
    )
    adaptive_softmax_dropout: float = field(
        default=0.0, metadata={"help": "dropout of the adaptive softmax tail projections"}
    )
    adaptive_softmax_factor: float = field(default=4, metadata={"help": "adaptive softmax factor"})
    tie_adaptive_weights: bool = field(default=False, metadata={"help": "tie adaptive input and softmax weights"})
    tie_adaptive_proj: bool = field(default=False, metadata={"help": "tie adaptive input and softmax projections"})


def decoder_structure(cfg) -> Dict[str, object]:
    """`MegaDecoder` keyword arguments from a config holding `MegaDecoderStructureOptions` (the final norm also
    needs `normalize_before`); its first four (embedding and final norm) fit `MegaEncoder` too."""
    cutoff = cfg.adaptive_softmax_cutoff
    return dict(
        scale_embedding=not cfg.no_scale_embedding,
        normalize_embedding=cfg.normalize_embedding,
        final_norm=cfg.normalize_before and not cfg.no_final_norm,
        final_norm_affine=not cfg.no_affine_final_norm,
        share_input_output_embed=cfg.share_decoder_input_output_embed,
        output_bias=cfg.output_bias,
        adaptive_softmax_cutoff=None if cutoff is None else eval_str_list(cutoff, type=int),
        adaptive_softmax_dropout=cfg.adaptive_softmax_dropout,
        adaptive_softmax_factor=cfg.adaptive_softmax_factor,
        tie_adaptive_weights=cfg.tie_adaptive_weights,
        tie_adaptive_proj=cfg.tie_adaptive_proj,
    )


def scale_options(cfg) -> Dict[str, object]:
    """`MegaEncoder` / `MegaDecoder` keyword arguments of a config holding `MegaLayerOptions`: activation
    checkpointing (`--checkpoint-activations`, `--offload-activations`) and FSDP wrapping (`--min-params-to-wrap`);
    configs saved before these options existed read as off."""
    return dict(
        checkpoint_activations=bool(getattr(cfg, "checkpoint_activations", False)),
        offload_activations=bool(getattr(cfg, "offload_activations", False)),
        min_params_to_wrap=getattr(cfg, "min_params_to_wrap", DEFAULT_MIN_PARAMS_TO_WRAP),
    )


# Each model's defaults where they differ from the declarations above (its `--arch <model>` and the base of its
# presets).  Keys: the fairseq model names.
MODEL_DEFAULTS: Dict[str, Dict[str, object]] = {
    # the original fork's `mega_lm` (base_lm_architecture)
    "mega_lm": dict(decoder_hidden_dim=1664, decoder_ffn_embed_dim=1664, rel_pos_bias="simple", truncation_length=2048),
    # transformers' MegaConfig() (= the mega_base preset, which adds pre-norm and the rotary bias)
    "mega_encoder": dict(
        encoder_layers=4,
        encoder_embed_dim=128,
        encoder_hidden_dim=256,
        encoder_ffn_embed_dim=256,
        encoder_z_dim=64,
        encoder_n_dim=16,
        normalization_type="scalenorm",
        attention_dropout=0.1,
        hidden_dropout=0.1,
        activation_dropout=0.1,
    ),
    # the original fork's `lra` model
    "lra": dict(rel_pos_bias="simple", normalization_type="scalenorm", truncation_length=1024),
    # the original fork's `mega` base_architecture (post-norm, layernorm, simple bias, truncation 1024)
    "mega": dict(rel_pos_bias="simple", truncation_length=1024),
}


def model_config(name: str) -> Callable[[type], type]:
    """Class decorator making a model's config dataclass: the inherited options take `MODEL_DEFAULTS[name]` as
    defaults (same type and help as declared), the class body adds the model's own options."""

    def decorate(cls: type) -> type:
        inherited = {}
        for base in reversed(cls.__mro__[1:]):
            inherited.update(getattr(base, "__dataclass_fields__", {}))
        annotations = dict(cls.__dict__.get("__annotations__", {}))
        for option, default in MODEL_DEFAULTS[name].items():
            if option in annotations:
                raise TypeError(f"{cls.__name__}.{option}: declared in the class body and in MODEL_DEFAULTS[{name!r}]")
            if option not in inherited:
                raise TypeError(f"MODEL_DEFAULTS[{name!r}] sets {option!r}, which {cls.__name__} does not inherit")
            if default is True:
                raise TypeError(
                    f"MODEL_DEFAULTS[{name!r}][{option!r}] = True would make fairseq's flag store_false; set it in a "
                    "preset"
                )
            annotations[option] = inherited[option].type
            setattr(cls, option, field(default=default, metadata=inherited[option].metadata))
        cls.__annotations__ = annotations
        return dataclass(cls)

    return decorate


def resolve_model_config(cfg, config_class: type):
    """`build_model`'s cfg as fairseq passes it: a config (dataclass or OmegaConf, hydra path) as is; an argparse
    Namespace (legacy path) as `config_class`, options the namespace lacks at their defaults (interpolated ones,
    e.g. ``${task.max_target_positions}``, at None)."""
    if not isinstance(cfg, argparse.Namespace):
        return cfg
    resolved = config_class.from_namespace(cfg)
    for name in config_class.__dataclass_fields__:
        value = getattr(resolved, name, None)
        if not hasattr(cfg, name) and isinstance(value, str) and value.startswith("${"):
            setattr(resolved, name, None)
    return resolved


def set_defaults(args, **values):
    """Preset helper: sets each option that is still unset (missing or None) on `args` (a namespace or
    an OmegaConf config), so a value given on the command line, or by a more specific preset called
    first, wins."""
    for name, value in values.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


# ---------------------------------------------------------------------------------- sizes, for converters
def size_fields(side: str) -> Tuple[str, ...]:
    """The size option names of a side: ("encoder_layers", "encoder_embed_dim", ... "encoder_chunk_size")."""
    if side not in ("encoder", "decoder"):
        raise ValueError(f"side must be 'encoder' or 'decoder', got {side!r}")
    return tuple(f"{side}_{name}" for name in SIZE_NAMES)


def size_options(side: str, **sizes: int) -> Dict[str, int]:
    """A model's size options for one side from the generic names: size_options("decoder", layers=4, embed_dim=128,
    hidden_dim=256, ffn_embed_dim=256, z_dim=64, n_dim=16, chunk_size=-1) -> {"decoder_layers": 4, ...}.
    Every name of `SIZE_NAMES` is required (chunk_size defaults to -1, no chunking)."""
    sizes.setdefault("chunk_size", -1)
    unknown, missing = sorted(set(sizes) - set(SIZE_NAMES)), [n for n in SIZE_NAMES if n not in sizes]
    if unknown or missing:
        raise TypeError(
            f"size_options: unknown sizes {unknown}, missing sizes {missing}; the names are {', '.join(SIZE_NAMES)}"
        )
    return {option: sizes[name] for option, name in zip(size_fields(side), SIZE_NAMES)}


# ---------------------------------------------------------------------------------- options -> MegaLayerConfig
def flag(option: str) -> str:
    """The command-line flag of a dataclass option, as fairseq makes it: "decoder_z_dim" -> "--decoder-z-dim"."""
    return "--" + option.replace("_", "-")


# MegaLayerConfig field <- (model option, conversion or None); `{side}` is "encoder" or "decoder".  The fields missing
# here
# are structural (bidirectional, causal, cross_attention: the side and the model decide) or max_positions (the
# model passes it, with the option it comes from).
LAYER_CONFIG_OPTIONS: Dict[str, Tuple[str, Optional[Callable]]] = {
    "embed_dim": ("{side}_embed_dim", None),
    "z_dim": ("{side}_z_dim", None),
    "hidden_dim": ("{side}_hidden_dim", None),
    "ffn_dim": ("{side}_ffn_embed_dim", None),
    "n_dim": ("{side}_n_dim", None),
    "chunk_size": ("{side}_chunk_size", None),
    "truncation": ("truncation_length", None),
    "attention_activation": ("attention_activation_fn", str),
    "rel_pos_bias": ("rel_pos_bias", str),
    "normalization_type": ("normalization_type", str),
    "norm_affine": ("no_affine_norm", operator.not_),
    "normalize_before": ("normalize_before", None),
    "use_nffn": ("no_nffn", operator.not_),
    "activation": ("activation_fn", str),
    "dropout": ("dropout", None),
    "hidden_dropout": ("hidden_dropout", None),
    "attention_dropout": ("attention_dropout", None),
    "ffn_hidden_dropout": ("activation_dropout", None),
    "feature_dropout": ("feature_dropout", None),
}


def layer_flags(side: str, max_positions_option: Optional[str] = None) -> Dict[str, str]:
    """MegaLayerConfig field -> the CLI flag it comes from, for one side (errors use these names)."""
    flags = {name: flag(option.format(side=side)) for name, (option, _) in LAYER_CONFIG_OPTIONS.items()}
    if max_positions_option is not None:
        flags["max_positions"] = flag(max_positions_option)
    return flags


def layer_config(
    cfg, side: str, *, max_positions: int, max_positions_option: str, cross_attention: bool = False
) -> MegaLayerConfig:
    """The `MegaLayerConfig` of one side of a model config holding `MegaLayerOptions` and that side's sizes.

    Encoders get a bidirectional EMA, decoders a causal EMA and causal attention (plus gated cross-attention with
    `cross_attention`).  `max_positions` is the longest span of the simple relative bias; `max_positions_option`
    the option it comes from.  A value that cannot work raises `MegaConfigError` naming the flags
    (``--decoder-chunk-size must be a positive number of tokens (or -1 for no chunking), got 0``)."""
    layers = getattr(cfg, f"{side}_layers", None)
    if isinstance(layers, int) and layers < 1:
        raise MegaConfigError(f"--{side}-layers must be at least 1, got {layers}")
    values = {}
    for name, (option, convert) in LAYER_CONFIG_OPTIONS.items():
        value = getattr(cfg, option.format(side=side))
        values[name] = value if convert is None else convert(value)
    try:
        return MegaLayerConfig(
            **values,
            bidirectional=side == "encoder",
            causal=side == "decoder",
            cross_attention=cross_attention,
            max_positions=max_positions,
        )
    except MegaConfigError as error:
        raise error.renamed(layer_flags(side, max_positions_option)) from None
