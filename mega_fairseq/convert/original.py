"""Import a checkpoint of the original facebookresearch/mega fork (fairseq 0.9) as a checkpoint of ours.

    mega-import-original ORIGINAL_CHECKPOINT OUT_CHECKPOINT [--data DIR] [--arch ARCH] [--ema-variant v1|v2|v3]

The fork's checkpoint holds `{"args": argparse.Namespace, "model": state_dict, ...}`.  Its `args.arch`
picks our model (`mega_lm*` -> `mega_lm`, `mega`/`mega_wmt_en_de*` -> `mega`, `mega_lra_*` -> `lra`), its
options become ours (same names; the LRA model's `--z-dim`, `--norm-type`, `--encoder-normalize-before`,
`--act-dropout` ... become `--encoder-z-dim`, `--normalization-type`, `--normalize-before`,
`--hidden-dropout` ...), and every tensor is renamed (tables below) with every key accounted for.
OUT_CHECKPOINT works with `fairseq-train --restore-file`, `fairseq-generate`, `fairseq-eval-lm` and
`fairseq-validate`.  `--data` names the data directory the model was trained on (its dictionaries; required
for LRA); without it a language or translation model gets placeholder dictionaries of the right size,
written beside OUT_CHECKPOINT.  Nothing is written on failure.

EMA variants of the fork (a checkpoint does not record which code trained it), variant -> fork commit:
  v1 (default): the released code (commits 09f1a87, cfc14f2; the published checkpoints; transformers'
      converter): p = sigmoid(delta), q = 1 - p * sigmoid(alpha); both directions of a bidirectional EMA
      include the current token.  Identical to our EMA.
  v2: the later revision (06f2d0e): p = sigmoid(alpha), q = 1 - p * sigmoid(delta), and the backward
      direction of a bidirectional EMA starts at the next token (`shift=True`) with the kernel's second tap:
      y_t += sum_{l=1}^{K-1} k2[l] x[t+l].  Imported exactly (any truncation): the roles of alpha/delta
      swap, and the backward kernel's first tap k2[0] = sum_n gamma*sqrt(1/N)*p*beta (which our EMA applies
      to the current token) is subtracted from omega.
  v3: the fork's final revision (7d00ee4, "bug in shift FFTs"): as v2, but the whole backward kernel is
      shifted by one position: y_t += sum_{l=0}^{K-1} k2[l] x[t+l+1].  Imported exactly without truncation
      (the derivation is in `fold_shifted_backward_ema`); with `--truncation-length` in a model with a
      bidirectional EMA it is refused (see there why).  A causal EMA has no backward rows: v3 == v2.
(K = min(length, truncation) is the kernel length; k2 the backward rows' kernel k2[l] = sum_n c_n q_n^l,
c_n = gamma_n * sqrt(1/N) * p_n * beta_n.)
"""

import argparse
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from .. import plugin  # noqa: F401  registers our models and tasks with fairseq
from ..models.options import size_options
from ..modules.activations import ACTIVATIONS
from ..modules.ema import MultiHeadDampedEMA
from ..modules.relative_position import recenter_simple_bias
from .common import (
    KEY_FIELDS,
    ConversionError,
    build_dictionary,
    check_finite,
    match_key,
    refuse_to_replace,
    staging_dir,
    user_errors,
)
from .hf_import import checkpoint_dict, fairseq_setup, load_exactly
from .hf_names import SIMPLE_BIAS

EMA_VARIANTS = ("v1", "v2", "v3")  # the fork's commits: v1 09f1a87/cfc14f2, v2 06f2d0e, v3 7d00ee4

# ---------------------------------------------------------------- name tables (original <-> ours)
# Patterns: {i} a layer index, {blk} a sub-block of a layer, {rest} any suffix.  First match wins, in
# both directions.  Inside one Mega layer (`layers.{i}.` of a stack):
LAYER_KEYS = [
    ("{blk}.norm.norm.{rest}", "{blk}.norm.{rest}"),  # SequenceNorm wraps the norm module
    ("mega_layer.move.delta", "mega_layer.ema.damping_factor"),  # v1: p = sigmoid(delta)
    ("mega_layer.move.alpha", "mega_layer.ema.decay_factor"),
    ("mega_layer.move.beta", "mega_layer.ema.ema_expansion_matrix"),
    ("mega_layer.move.gamma", "mega_layer.ema.kernel_projection_matrix"),
    ("mega_layer.move.omega", "mega_layer.ema.residual_weight"),
    ("mega_layer.gamma", "mega_layer.qk_weight"),  # (2, z): query/key scales
    ("mega_layer.beta", "mega_layer.qk_bias"),  # (2, z): query/key offsets
    ("{blk}.rel_pos_bias.beta", "{blk}.rel_pos_bias.b_param"),  # rotary
    (
        "{rest}",
        "{rest}",
    ),  # v_proj, mx_proj, h_proj, rel_pos_bias.{alpha,rel_pos_bias}, cross_attn.{q,k,v,h}_proj, nffn.fc1/fc2
]
V2_SWAP = {"mega_layer.move.delta": "mega_layer.move.alpha", "mega_layer.move.alpha": "mega_layer.move.delta"}

# Inside a stack (the fork's decoder / encoder / MegaLRAEncoder; ours `MegaStack`):
STACK_KEYS = [
    ("embed_tokens.embed.weight", "embed_tokens.weight"),  # LRA's token Embedding wrapper
    ("embed_tokens.{rest}", "embed_tokens.{rest}"),  # nn.Embedding, AdaptiveInput, RealNumberEmbedding (weight, bias)
    ("embed_norm.norm.{rest}", "embed_norm.{rest}"),
    ("final_norm.norm.{rest}", "final_norm.{rest}"),
    ("layers.{i}.{layer}", "layers.{i}.{layer}"),
]

# model kind -> (heads: [(original, ours)], stacks: [(original prefix, our prefix)])
MODEL_KEYS = {
    "lm": (
        [
            ("decoder.output_projection.weight", "decoder.output_projection.weight"),
            ("decoder.adaptive_softmax.{rest}", "decoder.adaptive_softmax.{rest}"),
        ],
        [("decoder.", "decoder.stack.")],
    ),
    "translation": (
        [("decoder.output_projection.weight", "decoder.output_projection.weight")],
        [("encoder.", "encoder.stack."), ("decoder.", "decoder.stack.")],
    ),
    "lra": (
        [
            ("classifier.{i}.0.{rest}", "classifier.{i}.{rest}"),  # Sequential(Linear, Dropout)
            ("sentence_projection_layer.weight", "output_projection.weight"),
        ],
        [("encoder.encoder.", "encoder.stack.")],
    ),
}
# Buffers that carry no trained value: dropped from the original, taken from our freshly built model.
DERIVED = re.compile(r"(^|\.)(version|_float_tensor|dictionary_digest)$")

# original arch -> our model kind and our model name; our preset of the same name is used when it exists
ARCH_KINDS = [
    (re.compile(r"mega_lm.*$"), "lm", "mega_lm"),
    (re.compile(r"mega(_wmt_en_de.*)?$"), "translation", "mega"),
    (re.compile(r"mega_lra_.*$"), "lra", "lra"),
]
TASKS = {"lm": "language_modeling", "translation": "translation"}
# pattern fields of the tables above ({i} and {rest} as in common.KEY_FIELDS)
FIELDS = {**KEY_FIELDS, "blk": r"mega_layer|cross_attn|nffn", "layer": r".+"}


def _rename(key: str, table, reverse: bool, layer_table=None) -> Optional[str]:
    """`key` renamed by the first matching pair of `table`; a {layer} field is renamed by `layer_table`."""
    found = match_key(key, table, reverse, FIELDS)
    if found is None:
        return None
    target, fields = found
    if "layer" in fields:
        fields["layer"] = _rename(fields["layer"], layer_table, reverse)
        if fields["layer"] is None:
            return None
    return target.format(**fields)


def _layer_table(variant: str):
    if variant == "v1":
        return LAYER_KEYS
    return [(V2_SWAP.get(original, original), ours) for original, ours in LAYER_KEYS]


def translate_key(key: str, kind: str, variant: str = "v1", reverse: bool = False) -> Optional[str]:
    """An original state-dict key -> ours (or ours -> original with reverse=True); None if it has no counterpart."""
    heads, stacks = MODEL_KEYS[kind]
    found = _rename(key, heads, reverse)
    if found is not None:
        return found
    for original_prefix, our_prefix in stacks:
        source, target = (our_prefix, original_prefix) if reverse else (original_prefix, our_prefix)
        if key.startswith(source):
            inner = _rename(key[len(source) :], STACK_KEYS, reverse, _layer_table(variant))
            if inner is not None:
                return target + inner
    return None


# ---------------------------------------------------------------- options (original args -> ours)
def _get(args, name, default=None):
    value = getattr(args, name, default)
    return default if value is None else value


def model_kind(arch: str) -> Tuple[str, str]:
    for pattern, kind, model_name in ARCH_KINDS:
        if pattern.match(arch):
            return kind, model_name
    known = "mega_lm*, mega, mega_wmt_en_de*, mega_lra_*"
    raise ConversionError(
        f"unknown original architecture {arch!r} (this importer knows {known}); "
        "if it is a variant of one of them, pass --arch with our arch of that model (mega_lm, mega or lra)"
    )


def _layer_options(args, *, lra: bool) -> Dict[str, Any]:
    activation = _get(args, "activation_fn", "gelu" if lra else "silu")
    if activation not in ACTIVATIONS:
        raise ConversionError(f"--activation-fn {activation}: our Mega layers support {', '.join(ACTIVATIONS)}")
    truncation = _get(args, "truncation_length")
    hidden = _get(args, "act_dropout", 0.0) if lra else _get(args, "hidden_dropout", 0.0)
    return {
        "activation_fn": activation,
        "attention_activation_fn": _get(args, "attention_activation_fn", "relu2" if lra else "softmax"),
        "rel_pos_bias": _get(args, "rel_pos_bias", "simple"),
        "normalization_type": _get(args, "norm_type" if lra else "normalization_type", "layernorm"),
        "normalize_before": bool(_get(args, "encoder_normalize_before" if lra else "normalize_before", False)),
        "no_affine_norm": False,  # the fork's layers always have affine norms
        "truncation_length": truncation if truncation and truncation > 0 else None,
        "dropout": _get(args, "dropout", 0.1),
        "attention_dropout": _get(args, "attention_dropout", 0.0),
        "hidden_dropout": hidden,
        "activation_dropout": _get(args, "act_dropout" if lra else "activation_dropout", 0.0),
        "feature_dropout": bool(_get(args, "feature_dropout", False)),
    }


def _sizes(args, side: str, *, ffn_default, lra: bool = False) -> Dict[str, Any]:
    ffn = _get(args, f"{side}_ffn_embed_dim", ffn_default)
    return size_options(
        side,
        layers=_get(args, f"{side}_layers", 6),
        embed_dim=_get(args, f"{side}_embed_dim", 512),
        hidden_dim=_get(args, f"{side}_hidden_dim", 1024),
        ffn_embed_dim=ffn if ffn and ffn > 0 else 0,
        z_dim=_get(args, "z_dim" if lra else f"{side}_z_dim", 128),
        n_dim=_get(args, "n_dim" if lra else f"{side}_n_dim", 16),
        chunk_size=_get(args, "chunk_size" if lra else f"{side}_chunk_size", -1),
    )


def _check_input_dim(args, embed_default: int = 512):
    embed, given = _get(args, "decoder_embed_dim", embed_default), _get(args, "decoder_input_dim", None)
    if given is not None and given != embed:
        raise ConversionError(
            f"--decoder-input-dim {given} != --decoder-embed-dim {embed}: the fork's project_in_dim layer has no "
            "counterpart here"
        )


def lm_options(args) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    _check_input_dim(args)
    options = {
        **_layer_options(args, lra=False),
        **_sizes(args, "decoder", ffn_default=_get(args, "decoder_hidden_dim", 1664)),
    }
    options["decoder_hidden_dim"] = _get(args, "decoder_hidden_dim", 1664)
    tokens = _get(args, "tokens_per_sample", 1024)
    options.update(
        no_nffn=options["decoder_ffn_embed_dim"] <= 0,
        no_scale_embedding=bool(_get(args, "no_scale_embedding", False)),
        normalize_embedding=bool(_get(args, "normalize_embedding", False)),
        no_final_norm=False,
        no_affine_final_norm=bool(_get(args, "no_affine_final_norm", False)),
        share_decoder_input_output_embed=bool(_get(args, "share_decoder_input_output_embed", False)),
        output_bias=False,
        adaptive_input=bool(_get(args, "adaptive_input", False)),
        adaptive_input_factor=float(_get(args, "adaptive_input_factor", 4)),
        adaptive_input_cutoff=_get(args, "adaptive_input_cutoff"),
        adaptive_softmax_cutoff=_get(args, "adaptive_softmax_cutoff"),
        adaptive_softmax_dropout=float(_get(args, "adaptive_softmax_dropout", 0.0)),
        adaptive_softmax_factor=float(_get(args, "adaptive_softmax_factor", 4)),
        tie_adaptive_weights=bool(_get(args, "tie_adaptive_weights", False)),
        tie_adaptive_proj=bool(_get(args, "tie_adaptive_proj", False)),
        tokens_per_sample=tokens,
        max_target_positions=_get(args, "max_target_positions", tokens),
    )
    return options, {}


def translation_options(args) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    _check_input_dim(args, _get(args, "encoder_embed_dim", 512))
    if _get(args, "adaptive_softmax_cutoff") is not None:
        raise ConversionError(
            "--adaptive-softmax-cutoff in a translation model: our `mega` model has a plain output projection"
        )
    options = {
        **_layer_options(args, lra=False),
        **_sizes(args, "encoder", ffn_default=_get(args, "encoder_hidden_dim", 1024)),
    }
    defaults = {k.replace("encoder_", "decoder_", 1): v for k, v in options.items() if k.startswith("encoder_")}
    defaults["decoder_layers"] = 6  # the fork's base_architecture: decoder sizes follow the encoder's, depth 6
    decoder = {name: _get(args, name, default) for name, default in defaults.items()}
    decoder["decoder_ffn_embed_dim"] = max(decoder["decoder_ffn_embed_dim"], 0)
    options.update(decoder)
    if (options["encoder_ffn_embed_dim"] > 0) != (options["decoder_ffn_embed_dim"] > 0):
        raise ConversionError(
            "a normalized FFN on one side only (--encoder/decoder-ffn-embed-dim 0): our `mega` model has one --no-nffn "
            "switch"
        )
    options.update(
        no_nffn=options["encoder_ffn_embed_dim"] <= 0,
        no_scale_embedding=bool(_get(args, "no_scale_embedding", False)),
        normalize_embedding=bool(_get(args, "normalize_embedding", False)),
        no_final_norm=False,
        no_affine_final_norm=False,  # the fork's translation final norms are always affine
        share_all_embeddings=bool(_get(args, "share_all_embeddings", False)),
        share_decoder_input_output_embed=bool(
            _get(args, "share_decoder_input_output_embed", False) or _get(args, "share_all_embeddings", False)
        ),
        output_bias=False,
        max_source_positions=_get(args, "max_source_positions", 1024),
        max_target_positions=_get(args, "max_target_positions", 1024),
    )
    task = {"source_lang": _get(args, "source_lang"), "target_lang": _get(args, "target_lang")}
    if not task["source_lang"] or not task["target_lang"]:
        raise ConversionError("the checkpoint's args name no source_lang/target_lang, which the translation task needs")
    return options, task


def lra_options(args) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    if _get(args, "layer_type", "mega") != "mega":
        raise ConversionError(
            f"--layer-type {args.layer_type}: only the fork's Mega LRA models are imported (not its "
            "transformer/luna/lstm/flash baselines)"
        )
    if _get(args, "use_p", False):
        raise ConversionError("--use-p: the fork's luna-only sentence representation has no counterpart here")
    embed = _get(args, "encoder_embed_dim", 512)
    options = {
        **_layer_options(args, lra=True),
        **_sizes(args, "encoder", ffn_default=_get(args, "encoder_hidden_dim", 2048), lra=True),
    }
    options["encoder_hidden_dim"] = _get(args, "encoder_hidden_dim", 2048)
    options.update(
        no_nffn=options["encoder_ffn_embed_dim"] <= 0,
        layer_type="mega",
        normalize_embedding=bool(_get(args, "normalize_embedding", False)),
        max_positions=_get(args, "max_positions", _get(args, "tokens_per_sample", 1024)),
        sentence_class_num=_get(args, "sentence_class_num", 2),
        sen_rep_type=_get(args, "sen_rep_type", "mp"),
        classifier_layers=_get(args, "classifier_layers", 1),
        classifier_out_dim=_get(args, "classifier_out_dim", 2048),
        classifier_activation_fn=_get(args, "classifier_activation_fn", "gelu"),
        retrieval_interaction="concat",  # the fork's pair features are [v, u] (columns reordered on import)
    )
    in_dim = _get(args, "classifier_in_dim", embed)
    if in_dim not in (embed, 2 * embed):
        raise ConversionError(
            f"--classifier-in-dim {in_dim}: expected the model width {embed} (one input) or {2 * embed} (retrieval "
            "pairs)"
        )
    task = {}
    if _get(args, "pixel_normalization") is not None:
        task["pixel_normalization"] = [float(v) for v in args.pixel_normalization]
    return options, task


OPTIONS = {"lm": lm_options, "translation": translation_options, "lra": lra_options}


# ---------------------------------------------------------------- reading, converting, writing
def read_original(path: str) -> Tuple[argparse.Namespace, Dict[str, torch.Tensor]]:
    """(args, state dict) of a fork checkpoint, loaded with weights_only=True."""
    from ..fairseq_patches import allow_fairseq_checkpoint_globals

    allow_fairseq_checkpoint_globals()
    if not os.path.isfile(path):
        raise ConversionError(f"{path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise ConversionError(
            f"{path} could not be loaded safely (torch.load weights_only=True: {type(err).__name__}: {first}): it is "
            "empty, truncated, not a checkpoint, or pickles objects that could run code"
        ) from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise ConversionError(f"{path} is not a fairseq checkpoint (expected a dict with 'args' and 'model')")
    args = checkpoint.get("args")
    if not isinstance(args, argparse.Namespace):
        raise ConversionError(
            f"{path} has no argparse args: the original fork (fairseq 0.9) stores them; a checkpoint of "
            "this package or of fairseq >= 0.10 loads directly with --path / --restore-file"
        )
    return args, checkpoint["model"]


def _ema_first_backward_tap(state: Dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """k2[d, 0] = sum_n gamma * sqrt(1/N) * p * beta over the backward rows D..2D-1 of a bidirectional EMA
    (v2: p = sigmoid(alpha))."""
    p = torch.sigmoid(state[prefix + "damping_factor"].double())
    beta = state[prefix + "ema_expansion_matrix"].double()
    gamma = state[prefix + "kernel_projection_matrix"].double()
    tap = (gamma * math.sqrt(1.0 / gamma.size(1)) * (p * beta).squeeze(-1)).sum(-1)
    return tap[tap.numel() // 2 :]


def fold_shifted_backward_ema(state: Dict[str, torch.Tensor], prefix: str) -> None:
    """v3 (fork commit 7d00ee4): rewrites one bidirectional EMA's parameters (ours, named `prefix` + ..., after
    the v2 renaming) in place so that our EMA computes the fork's shifted backward direction exactly.

    The fork (backward rows, per channel; x = 0 past the end, no truncation, so K = length):

        y_t += sum_{l>=0} k2[l] x[t+l+1],   k2[l] = sum_n c_n q_n^l,   c_n = gamma_n sqrt(1/N) p_n beta_n,

    i.e. the input m >= 1 positions ahead gets the tap k2'[m] = k2[m-1] = sum_n (c_n / q_n) q_n^m: the same
    damped EMA with its input weights divided by q (0 < q = 1 - p sigmoid(delta) < 1, so 1/q is finite).  Our
    backward rows apply sum_{m>=0} k[m] x[t+m], k[m] = sum_n gamma_n sqrt(1/N) p_n beta_n q_n^m; so with

        beta'_n = beta_n / q_n                      (backward rows; p, q, gamma unchanged)
        omega'  = omega - sum_n gamma_n sqrt(1/N) p_n beta'_n     (= omega - k2'[0], the tap ours puts on x_t)

    our k'[m] = k2[m-1] for every m >= 1 and the current token's tap cancels against omega: the same output at
    every position and length.  The forward rows are untouched (v3's causal direction is v2's).

    With truncation T the fork's backward window is m = 1..T (k2[0..T-1]); ours, with the same
    --truncation-length for both directions, is m = 0..T-1, so the tap k2[T-1] on x[t+T] would be lost on
    inputs longer than T: moving a kernel window by one is not a change of parameters (and a truncation of T+1
    would give the forward rows one tap too many), so `convert_state` refuses that case."""
    p = torch.sigmoid(state[prefix + "damping_factor"].double())
    q = 1.0 - p * torch.sigmoid(state[prefix + "decay_factor"].double())
    beta = state[prefix + "ema_expansion_matrix"]
    rows = beta.size(0) // 2
    scaled = beta.double().clone()
    scaled[rows:] = scaled[rows:] / q[rows:]
    state[prefix + "ema_expansion_matrix"] = scaled.to(beta.dtype)


def convert_state(
    original: Dict[str, torch.Tensor], kind: str, model, variant: str, paired: bool, source: str
) -> Dict[str, torch.Tensor]:
    """The fork's state dict -> ours for `model`, naming original keys in every complaint."""
    if variant == "v3":
        truncated = sorted(
            {m.truncation for m in model.modules() if isinstance(m, MultiHeadDampedEMA) and m.bidirectional} - {None}
        )
        if truncated:
            raise ConversionError(
                f"--ema-variant v3: {source} has a bidirectional EMA truncated to {truncated[0]} positions (its "
                "args.truncation_length); the fork's 7d00ee4 reads its backward kernel one position later (taps on "
                "x[t+1..t+T] instead of x[t..t+T-1]), and moving a truncated kernel's window by one is not a change "
                "of parameters, so no import is exact on inputs longer than that.  If the model never sees longer "
                "inputs (the truncation then has no effect), set truncation_length to None in the checkpoint's args "
                "(ckpt['args'], torch.save) and import again; if 06f2d0e trained it, pass --ema-variant v2"
            )
    expected = model.state_dict()
    state, unexpected, shapes = {}, [], []
    for key, value in original.items():
        if DERIVED.search(key):
            continue
        ours = translate_key(key, kind, variant)
        if ours is None or ours not in expected:
            unexpected.append(key)
            continue
        if SIMPLE_BIAS.search(ours) and value.numel() != expected[ours].numel():
            value = recenter_simple_bias(value, expected[ours].numel())
        if value.shape != expected[ours].shape:
            shapes.append(
                f"{key}: {tuple(value.shape)}, but the model its args describe has {tuple(expected[ours].shape)} (as "
                f"{ours})"
            )
            continue
        state[ours] = value.to(expected[ours].dtype) if value.is_floating_point() else value
    missing = [
        translate_key(k, kind, variant, reverse=True) or k for k in expected if k not in state and not DERIVED.search(k)
    ]
    if missing or unexpected or shapes:
        lines = (
            [f"missing {sorted(missing)}"] * bool(missing)
            + [f"unexpected {sorted(unexpected)}"] * bool(unexpected)
            + shapes
        )
        raise ConversionError(
            f"the weights in {source} do not fit the model its args describe (original key names):\n  - "
            + "\n  - ".join(lines)
        )
    for key in expected:
        if DERIVED.search(key):
            state[key] = expected[key]
    if variant in ("v2", "v3"):  # fold the backward EMA's current-token tap into omega (our backward kernel has it)
        for key in list(state):
            if (
                key.endswith(".mega_layer.ema.residual_weight")
                and state[key.replace("residual_weight", "damping_factor")].size(0) == 2 * state[key].numel()
            ):
                prefix = key[: -len("residual_weight")]
                if variant == "v3":  # the backward kernel one position later: beta / q
                    fold_shifted_backward_ema(state, prefix)
                state[key] = (state[key].double() - _ema_first_backward_tap(state, prefix)).to(state[key].dtype)
    if kind == "lra" and paired:  # the fork concatenates [second document, first]; ours [first, second]
        weight = state["classifier.0.weight"]
        half = weight.size(1) // 2
        state["classifier.0.weight"] = torch.cat([weight[:, half:], weight[:, :half]], dim=1)
    return state


def _placeholder_dictionaries(
    kind: str, original: Dict[str, torch.Tensor], task_options: Dict[str, Any], folder: Path
) -> List[str]:
    """Writes placeholder dictionaries sized like the embeddings into `folder`; returns their file names."""
    if kind == "lm":
        rows = _embedding_rows(original, "decoder.")
        names = {"dict.txt": rows}
    else:
        src, tgt = task_options["source_lang"], task_options["target_lang"]
        names = {
            f"dict.{src}.txt": _embedding_rows(original, "encoder."),
            f"dict.{tgt}.txt": _embedding_rows(original, "decoder."),
        }
    for name, rows in names.items():
        build_dictionary(folder / "no-such-dir", rows).save(str(folder / name))
    return list(names)


def _embedding_rows(original: Dict[str, torch.Tensor], prefix: str) -> int:
    if prefix + "embed_tokens.weight" in original:
        return original[prefix + "embed_tokens.weight"].size(0)
    heads = [k for k in original if k.startswith(prefix + "embed_tokens.embeddings.") and k.endswith(".0.weight")]
    if not heads:
        raise ConversionError(
            f"the checkpoint has no {prefix}embed_tokens weights: cannot size its dictionary (pass --data)"
        )
    return sum(original[k].size(0) for k in heads)


def import_original(
    checkpoint: str,
    out_checkpoint: str,
    data: Optional[str] = None,
    arch: Optional[str] = None,
    ema_variant: str = "v1",
    overwrite: bool = True,
) -> str:
    """Writes OUT_CHECKPOINT (+ placeholder dictionaries when `data` is None); returns our arch.  With
    overwrite=False (the command line without --overwrite) existing files are refused, not replaced."""
    from fairseq import checkpoint_utils
    from fairseq.models import ARCH_MODEL_REGISTRY

    if ema_variant not in EMA_VARIANTS:
        raise ConversionError(f"unknown --ema-variant {ema_variant!r}; choose one of {', '.join(EMA_VARIANTS)}")
    args, original = read_original(checkpoint)
    original_arch = _get(args, "arch", "")
    if arch is None:
        kind, model_name = model_kind(original_arch)
        our_arch = (
            original_arch if ARCH_MODEL_REGISTRY.get(original_arch) is ARCH_MODEL_REGISTRY[model_name] else model_name
        )
    else:
        ours = {model_name: kind for _, kind, model_name in ARCH_KINDS}
        model_name = next((name for name in ours if ARCH_MODEL_REGISTRY.get(arch) is ARCH_MODEL_REGISTRY[name]), None)
        if model_name is None:
            raise ConversionError(f"--arch {arch} is not an arch of our mega_lm, mega or lra models")
        kind, our_arch = ours[model_name], arch
        if model_kind_or_none(original_arch) not in (None, kind):
            raise ConversionError(
                f"--arch {arch} belongs to our {model_name!r} model, but the checkpoint's arch {original_arch!r} is "
                "not one"
            )
    options, task_options = OPTIONS[kind](args)
    if kind == "lra":
        if data is None:
            raise ConversionError(
                "an LRA checkpoint needs --data: the LRA data directory it was trained on (src-bin/dict.txt, "
                "label-bin/)"
            )
        task_name = _get(args, "task", "lra-text" if _get(args, "input_type", "text") == "text" else "lra-image")
    else:
        task_name = TASKS[kind]
    source = Path(checkpoint)
    out = Path(out_checkpoint)
    with staging_dir(out) as tmp:
        placeholders = [] if data is not None else _placeholder_dictionaries(kind, original, task_options, tmp)
        data_dir = str(Path(data).resolve()) if data else str(tmp)
        try:
            cfg, task, model = fairseq_setup(our_arch, options, task_name, data_dir, task_options)
            if arch is None and our_arch != model_name and _truncations(model) != {options["truncation_length"]}:
                # the preset re-imposes a truncation the checkpoint does not have (a preset fills unset options,
                # and fairseq reads an explicit None as unset): the base model keeps the checkpoint's
                our_arch = model_name
                cfg, task, model = fairseq_setup(our_arch, options, task_name, data_dir, task_options)
        except (ValueError, AssertionError, FileNotFoundError) as err:
            raise ConversionError(f"cannot build our {model_name} model for {source}: {err}") from err
        if _truncations(model) != {options["truncation_length"]}:
            raise ConversionError(
                f"--arch {our_arch} truncates the EMA to {sorted(_truncations(model) - {None})} positions, but "
                f"{source} has truncation_length {options['truncation_length']}: pass --arch {model_name}"
            )
        for name, value in task_options.items():
            cfg.task[name] = value
        paired = bool(getattr(task, "paired", False))
        if kind == "lra" and paired != (
            _get(args, "classifier_in_dim", options["encoder_embed_dim"]) == 2 * options["encoder_embed_dim"]
        ):
            raise ConversionError(
                f"the checkpoint is {'a retrieval (pair)' if not paired else 'a single-input'} model but {data} is "
                f"{'not ' if not paired else ''}retrieval data (src1-bin/): pass the data directory it was trained on"
            )
        state = convert_state(original, kind, model, ema_variant, paired, str(source))
        load_exactly(model, state, source)
        cfg.task.data = str(Path(data).resolve()) if data else str(out.parent.resolve())
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        check_finite(weights, source)
        refuse_to_replace([out] + [out.parent / name for name in placeholders], overwrite, "mega-import-original", True)
        extra = {"original_source": {"path": str(source.resolve()), "arch": original_arch, "ema_variant": ema_variant}}
        checkpoint_utils.torch_persistent_save(checkpoint_dict(cfg, weights, **extra), str(tmp / out.name))
        os.replace(tmp / out.name, out)
        for name in placeholders:
            os.replace(tmp / name, out.parent / name)
    return our_arch


def _truncations(model) -> set:
    """The EMA truncations of `model`'s layers (one value for a model built from one set of options)."""
    return {m.truncation for m in model.modules() if isinstance(m, MultiHeadDampedEMA)}


def model_kind_or_none(arch: str) -> Optional[str]:
    try:
        return model_kind(arch)[0]
    except ConversionError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mega-import-original", description=__doc__.split("\n\n")[0])
    parser.add_argument("original_checkpoint", help="checkpoint of the facebookresearch/mega fork")
    parser.add_argument("out_checkpoint")
    parser.add_argument("--data", help="the data directory the model was trained on (dictionaries); required for LRA")
    parser.add_argument(
        "--arch",
        help="our arch to register the checkpoint under (default: the fork's arch name when we have that preset)",
    )
    parser.add_argument(
        "--ema-variant",
        default="v1",
        choices=EMA_VARIANTS,
        help="which revision of the fork's EMA trained the model (see the module doc)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing OUT_CHECKPOINT or dictionary beside it"
    )
    args = parser.parse_args(argv)
    try:
        if Path(args.out_checkpoint).is_dir():
            raise ConversionError(f"OUT_CHECKPOINT {args.out_checkpoint} is a directory: pass a file name (model.pt)")
        our_arch = import_original(
            args.original_checkpoint, args.out_checkpoint, args.data, args.arch, args.ema_variant, args.overwrite
        )
    except user_errors() as err:
        print(f"mega-import-original: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_checkpoint} (--arch {our_arch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
