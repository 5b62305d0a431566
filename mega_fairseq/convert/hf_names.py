"""The one table between this package's Mega names and HuggingFace transformers' Mega names.

Covers (1) `MegaLayerConfig` fields <-> `transformers.MegaConfig` fields, (2) `MegaStack`
state-dict keys <-> `MegaModel` keys (under a prefix such as "mega.") and (3) the heads: the
causal and masked LM heads here, every other encoder head through its entry in the head registry
(`models.heads.HEAD_KINDS`).  Export, import and the equivalence tests all go through here, so a
name is mapped in exactly one place.
"""

import re
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import torch

from ..modules.config import HF_CONFIG_FIELDS as CONFIG_FIELDS
from ..modules.config import MegaLayerConfig
from ..modules.relative_position import recenter_simple_bias
from .common import rename_key

# (our key pattern, HF key pattern); {i} is a layer index, {rest} any suffix.  First match wins.
STATE_DICT_KEYS = [
    ("embed_tokens.weight", "embedding_layer.word_embeddings.weight"),
    ("embed_token_types.weight", "embedding_layer.token_type_embeddings.weight"),
    ("layers.{i}.mega_layer.norm.{rest}", "layers.{i}.mega_layer.norm.norm.{rest}"),
    ("layers.{i}.cross_attn.norm.{rest}", "layers.{i}.cross_attn.norm.norm.{rest}"),
    ("layers.{i}.nffn.norm.{rest}", "layers.{i}.nffn.norm.norm.{rest}"),
    ("layers.{i}.mega_layer.ema.{rest}", "layers.{i}.mega_layer.ema_gate.{rest}"),
    ("layers.{i}.{rest}", "layers.{i}.{rest}"),
]

SIMPLE_BIAS = re.compile(r"layers\.\d+\.(mega_layer|cross_attn)\.rel_pos_bias\.rel_pos_bias$")
ROTARY_ALPHA = re.compile(r"(layers\.\d+\.(mega_layer|cross_attn)\.rel_pos_bias\.)alpha$")


def _translate(key: str, to_hf: bool) -> Optional[str]:
    return rename_key(key, STATE_DICT_KEYS, reverse=not to_hf)


def to_hf_config_kwargs(
    cfg: MegaLayerConfig, num_layers: int, vocab_size: int, pad_token_id: int, type_vocab_size: int = 0
) -> dict:
    """kwargs for `transformers.MegaConfig` describing the same layers as `cfg`."""
    kwargs = {theirs: getattr(cfg, ours) for ours, theirs in CONFIG_FIELDS}
    kwargs.update(
        num_hidden_layers=num_layers,
        vocab_size=vocab_size,
        pad_token_id=pad_token_id,
        use_chunking=cfg.chunked,
        chunk_size=cfg.chunk_size if cfg.chunked else -1,
        normalize_before_ffn=cfg.ffn_prenorm,
        add_token_type_embeddings=type_vocab_size > 0,
        type_vocab_size=max(type_vocab_size, 2),
        bidirectional=cfg.bidirectional,
    )
    return kwargs


def _hf_simple_bias_center(cfg: MegaLayerConfig) -> int:
    """HF indexes its (2*max_positions-1) simple-bias vector around chunk_size-1 whenever chunk_size > 0."""
    return (cfg.chunk_size if cfg.chunked else cfg.max_positions) - 1


def stack_state_dict_to_hf(
    state_dict: Dict[str, torch.Tensor], cfg: MegaLayerConfig, prefix: str = "mega."
) -> Dict[str, torch.Tensor]:
    """`MegaStack.state_dict()` -> `MegaModel` keys (under `prefix`)."""
    hf_center = _hf_simple_bias_center(cfg)
    out = {}
    for key, value in state_dict.items():
        hf_key = _translate(key, to_hf=True)
        if hf_key is None:
            raise KeyError(f"no HuggingFace name for parameter {key!r}")
        if SIMPLE_BIAS.search(key):
            value = recenter_simple_bias(value, 2 * cfg.max_positions - 1, new_center=hf_center)
        out[prefix + hf_key] = value
        alpha = ROTARY_ALPHA.search(key)
        if alpha:  # HF keeps a persistent dtype marker buffer next to the rotary parameters
            out[prefix + _translate(alpha.group(1) + "_float_tensor", to_hf=True)] = torch.zeros(1, dtype=value.dtype)
    return out


def stack_state_dict_from_hf(
    hf_state_dict: Dict[str, torch.Tensor], cfg: MegaLayerConfig, prefix: str = "mega."
) -> Dict[str, torch.Tensor]:
    """`MegaModel` keys (under `prefix`) -> `MegaStack` keys; other keys (heads) are ignored."""
    hf_center = _hf_simple_bias_center(cfg)
    out = {}
    for hf_key, value in hf_state_dict.items():
        if not hf_key.startswith(prefix) or hf_key.endswith("_float_tensor") or hf_key.startswith(prefix + "pooler."):
            continue
        key = _translate(hf_key[len(prefix) :], to_hf=False)
        if key is None:
            raise KeyError(f"unknown HuggingFace Mega parameter {hf_key!r}")
        if SIMPLE_BIAS.search(key):
            span = cfg.chunk_size if (cfg.chunked and ".mega_layer." in key) else cfg.max_positions
            value = recenter_simple_bias(value, 2 * span - 1, center=hf_center)
        out[key] = value
    return out


# Heads: (our key under the fairseq decoder, HF key)
LM_HEAD_KEYS = [("output_projection.weight", "lm_head.weight"), ("output_projection.bias", "lm_head.bias")]


def lm_state_dict_to_hf(
    decoder_state_dict: Dict[str, torch.Tensor], cfg: MegaLayerConfig, stack_prefix: str = "stack."
) -> Dict[str, torch.Tensor]:
    """`MegaDecoder.state_dict()` (stack + output projection) -> `MegaForCausalLM` keys.
    A projection without bias is exported with a zero bias (HF's lm_head always has one)."""
    stack = {k[len(stack_prefix) :]: v for k, v in decoder_state_dict.items() if k.startswith(stack_prefix)}
    out = stack_state_dict_to_hf(stack, cfg, prefix="mega.")
    for ours, theirs in LM_HEAD_KEYS:
        if ours in decoder_state_dict:
            out[theirs] = decoder_state_dict[ours]
    if "lm_head.bias" not in out:
        out["lm_head.bias"] = torch.zeros(out["lm_head.weight"].size(0), dtype=out["lm_head.weight"].dtype)
    return out


def lm_state_dict_from_hf(
    hf_state_dict: Dict[str, torch.Tensor], cfg: MegaLayerConfig, stack_prefix: str = "stack."
) -> Dict[str, torch.Tensor]:
    """`MegaForCausalLM` keys -> `MegaDecoder` keys (a tied lm_head.weight falls back to the word embeddings)."""
    out = {stack_prefix + k: v for k, v in stack_state_dict_from_hf(hf_state_dict, cfg, prefix="mega.").items()}
    for ours, theirs in LM_HEAD_KEYS:
        if theirs in hf_state_dict:
            out[ours] = hf_state_dict[theirs]
    if "output_projection.weight" not in out:
        out["output_projection.weight"] = out[stack_prefix + "embed_tokens.weight"]
    return out


# ---- Encoder heads (mega_encoder) -----------------------------------------------------------
# head kind -> (HF class, prefix of HF's MegaModel inside it, [(our key in the fairseq model's state dict, HF key)]).
# {head} is the head's name in `classification_heads`.  The masked LM head is declared here, every other
# kind once in the head registry (models.heads.HEAD_KINDS); this dict is the view of both.
ENCODER_STACK_PREFIX = "encoder.stack."
MASKED_LM_KEYS = (
    "MegaForMaskedLM",
    "mega.",
    [
        ("lm_head.dense.weight", "dense.weight"),
        ("lm_head.dense.bias", "dense.bias"),  # only with the hidden dense layer
        ("lm_head.out_proj.weight", "mlm_head.weight"),
        ("lm_head.out_proj.bias", "mlm_head.bias"),
    ],
)


@lru_cache(maxsize=None)
def encoder_head_keys() -> Dict[str, Tuple[str, str, List[Tuple[str, str]]]]:
    """ENCODER_HEAD_KEYS: the masked LM head's entry plus one per registry head kind."""
    from ..models.heads import HEAD_KINDS  # here, not at the top: the stack tables above need torch only (bench_layers)

    return {
        "masked_lm": MASKED_LM_KEYS,
        **{
            name: (
                kind.hf_class,
                kind.hf_body_prefix,
                [(f"classification_heads.{{head}}.{ours}", theirs) for ours, theirs in kind.hf_keys],
            )
            for name, kind in HEAD_KINDS.items()
        },
    }


def __getattr__(name: str):
    if name == "ENCODER_HEAD_KEYS":  # built on first use (see encoder_head_keys)
        return encoder_head_keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _encoder_head_table(kind: str, head_name: Optional[str]):
    table = encoder_head_keys()
    if kind not in table:
        raise ValueError(f"unknown encoder head kind {kind!r}; choose one of {', '.join(table)}")
    hf_class, body_prefix, keys = table[kind]
    if kind != "masked_lm" and not head_name:
        raise ValueError(f"a {kind} head needs head_name (its name in the model's classification_heads)")
    return hf_class, body_prefix, [(ours.format(head=head_name), theirs) for ours, theirs in keys]


def encoder_hf_config_kwargs(
    kind: str,
    num_labels: Optional[int] = None,
    lm_hidden_dense: bool = True,
    tied: bool = True,
    classifier_dropout: Optional[float] = None,
) -> dict:
    """Head-specific `transformers.MegaConfig` kwargs (add them to `to_hf_config_kwargs(...)`)."""
    kwargs = {
        "add_lm_hidden_dense_layer": lm_hidden_dense,
        "tie_word_embeddings": tied,
        "classifier_dropout": classifier_dropout,
    }
    from ..models.heads import HEAD_KINDS

    labels = None if kind == "masked_lm" else HEAD_KINDS[kind].num_labels
    if isinstance(labels, int):  # a fixed count (question answering: start, end)
        kwargs["num_labels"] = labels
    elif labels is not None:
        if not num_labels:
            raise ValueError(f"a {kind} head needs num_labels")
        kwargs["num_labels"] = num_labels
    return kwargs


def encoder_state_dict_to_hf(
    state_dict: Dict[str, torch.Tensor], cfg: MegaLayerConfig, kind: str = "masked_lm", head_name: Optional[str] = None
) -> Dict[str, torch.Tensor]:
    """`MegaEncoderModel.state_dict()` -> the keys of the HF class of `kind` (ENCODER_HEAD_KEYS) for
    head `head_name`: the Mega body plus that one head (other heads and, for heads, the LM head are left out)."""
    hf_class, body_prefix, keys = _encoder_head_table(kind, head_name)
    stack = {k[len(ENCODER_STACK_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(ENCODER_STACK_PREFIX)}
    out = stack_state_dict_to_hf(stack, cfg, prefix=body_prefix)
    for ours, theirs in keys:
        if ours in state_dict:
            out[theirs] = state_dict[ours]
        elif not ours.startswith("lm_head.dense."):
            raise KeyError(
                f"{hf_class} needs {theirs!r}, but the model has no {ours!r} (is {head_name!r} a {kind} head?)"
            )
    return out


def encoder_state_dict_from_hf(
    hf_state_dict: Dict[str, torch.Tensor],
    cfg: MegaLayerConfig,
    kind: str = "masked_lm",
    head_name: Optional[str] = None,
) -> Dict[str, torch.Tensor]:
    """Keys of the HF class of `kind` -> `MegaEncoderModel` keys (body + that head; a tied mlm_head.weight
    falls back to the word embeddings).  For the other kinds the result has no `lm_head.*`: load it with
    strict=False into a model that keeps its own LM head."""
    _, body_prefix, keys = _encoder_head_table(kind, head_name)
    out = {
        ENCODER_STACK_PREFIX + k: v for k, v in stack_state_dict_from_hf(hf_state_dict, cfg, prefix=body_prefix).items()
    }
    for ours, theirs in keys:
        if theirs in hf_state_dict:
            out[ours] = hf_state_dict[theirs]
    if kind == "masked_lm" and "lm_head.out_proj.weight" not in out:
        out["lm_head.out_proj.weight"] = out[ENCODER_STACK_PREFIX + "embed_tokens.weight"]
    return out
