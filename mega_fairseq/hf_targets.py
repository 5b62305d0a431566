"""What each HuggingFace Mega class corresponds to in fairseq, in both directions.

A `Target` pairs one transformers class (MegaForCausalLM, ...) with one fairseq model kind and
knows: why a fairseq model cannot be expressed by the class (`problems`), the extra config
fields, the state-dict conversion both ways (through the name table in `hf_names`), the fairseq
options that rebuild the model on import, and how to get comparable outputs from each side
for verification.  `mega-export-hf` and `mega-import-hf` only orchestrate these.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from .hf_names import lm_state_dict_from_hf, lm_state_dict_to_hf, to_hf_config_kwargs
from .modules import MegaStack

EXPORTABLE_LM_PRESET = "mega_lm_hf"


def stack_problems(stack: MegaStack, decoder: bool, preset: str) -> List[str]:
    """Why transformers' MegaModel cannot hold this stack exactly (empty: it can)."""
    cfg, problems = stack.cfg, []
    fix = f"; the {preset} preset has the exportable structure"
    if stack.embed_scale != 1.0:
        problems.append("embeddings are scaled by sqrt(D): train with --no-scale-embedding" + fix)
    if stack.embed_norm is not None:
        problems.append("--normalize-embedding adds a norm HF Mega does not have" + fix)
    if stack.final_norm is not None:
        problems.append("a final norm after the last layer (from --normalize-before): add --no-final-norm" + fix)
    if not isinstance(stack.embed_tokens, torch.nn.Embedding):
        problems.append("adaptive input embeddings cannot be expressed by HF Mega")
    if cfg.normalization_type == "rmsnorm":
        problems.append("HF's MegaRMSNorm does not normalize (a known transformers bug), so an rmsnorm model would compute differently")
    if cfg.norm_eps != 1e-5:
        problems.append(f"norm epsilon {cfg.norm_eps} (HF Mega fixes 1e-5)")
    if decoder and cfg.truncation is not None:
        problems.append("--truncation-length: HF's decoder ignores truncation when use_cache=True (its default); train without truncation")
    return problems


def layer_options_from_hf(hf_config) -> List[str]:
    """fairseq options (`MegaLayerOptions`) describing HF's layer settings; ValueError where there is none."""
    if hf_config.normalize_before_ffn != hf_config.normalize_before_mega:
        raise ValueError(
            f"normalize_before_ffn={hf_config.normalize_before_ffn} differs from normalize_before_mega={hf_config.normalize_before_mega}; "
            "fairseq Mega models use one --normalize-before for both"
        )
    if hf_config.normalization_type == "rmsnorm":
        raise ValueError("rmsnorm: transformers' MegaRMSNorm does not normalize (a known bug), so no fairseq model computes the same")
    args = [
        "--activation-fn", hf_config.activation,
        "--attention-activation-fn", hf_config.attention_activation,
        "--rel-pos-bias", hf_config.relative_positional_bias,
        "--normalization-type", hf_config.normalization_type,
        "--dropout", hf_config.dropout_prob,
        "--attention-dropout", hf_config.attention_probs_dropout_prob,
        "--hidden-dropout", hf_config.hidden_dropout_prob,
        "--activation-dropout", hf_config.nffn_activation_dropout_prob,
    ]
    args += ["--normalize-before"] if hf_config.normalize_before_mega else []
    args += [] if hf_config.norm_affine else ["--no-affine-norm"]
    args += ["--feature-dropout"] if hf_config.use_feature_dropout else []
    args += [] if hf_config.use_normalized_ffn else ["--no-nffn"]
    if hf_config.truncation is not None:
        args += ["--truncation-length", hf_config.truncation]
    return [str(a) for a in args]


def size_options_from_hf(hf_config, side: str) -> List[str]:
    """`--{side}-layers`, `--{side}-embed-dim`, ... from an HF config."""
    values = {
        "layers": hf_config.num_hidden_layers,
        "embed-dim": hf_config.hidden_size,
        "hidden-dim": hf_config.intermediate_size,
        "ffn-embed-dim": hf_config.nffn_hidden_size,
        "z-dim": hf_config.shared_representation_size,
        "n-dim": hf_config.ema_projection_size,
        "chunk-size": hf_config.chunk_size if hf_config.use_chunking else -1,
    }
    return [str(a) for name, value in values.items() for a in (f"--{side}-{name}", value)]


@dataclass
class Target:
    hf_class: str  # transformers class name
    fairseq_arch: str  # the arch an import rebuilds
    fairseq_task: str  # the task an import's checkpoint names
    problems: Callable  # (fairseq model) -> [reason, ...]
    config_kwargs: Callable  # (fairseq model, dictionary) -> MegaConfig kwargs
    to_hf: Callable  # (fairseq model) -> HF state dict
    from_hf: Callable  # (HF state dict, hf_config, layer cfg) -> fairseq model state dict
    fairseq_options: Callable  # (hf_config) -> fairseq-train options rebuilding the model
    fairseq_outputs: Callable  # (fairseq model, tokens) -> tensor to compare
    hf_outputs: Callable  # (HF model, tokens) -> tensor to compare
    layer_cfg: Callable  # (fairseq model) -> MegaLayerConfig


# ---------------------------------------------------------------- causal LM (mega_lm <-> MegaForCausalLM)


def _lm_problems(model) -> List[str]:
    decoder = model.decoder
    problems = stack_problems(decoder.stack, decoder=True, preset=EXPORTABLE_LM_PRESET)
    if decoder.adaptive_softmax is not None:
        problems.append("adaptive softmax cannot be expressed by HF Mega")
    if decoder.stack.cfg.cross_attention:
        problems.append("a decoder with cross-attention is part of an encoder-decoder model; export the whole translation model")
    return problems


def _lm_config(model, dictionary) -> dict:
    decoder = model.decoder
    kwargs = to_hf_config_kwargs(decoder.stack.cfg, len(decoder.stack.layers), len(dictionary), dictionary.pad())
    tied = decoder.output_projection.weight is decoder.stack.embed_tokens.weight
    kwargs.update(add_lm_hidden_dense_layer=False, tie_word_embeddings=tied, use_cache=True)
    return kwargs


def _lm_options(hf_config) -> List[str]:
    if hf_config.add_token_type_embeddings:
        raise ValueError("token-type embeddings in a causal LM: mega_lm has none (export would fold them; import refuses)")
    if getattr(hf_config, "add_lm_hidden_dense_layer", False):
        raise ValueError("add_lm_hidden_dense_layer=True: mega_lm's output layer has no dense+tanh before the projection")
    if not hf_config.is_decoder or hf_config.bidirectional:
        raise ValueError("a MegaForCausalLM import needs is_decoder=True and bidirectional=False (a causal model)")
    positions = hf_config.max_positions
    options = ["--arch", EXPORTABLE_LM_PRESET, *size_options_from_hf(hf_config, "decoder"), *layer_options_from_hf(hf_config)]
    options += ["--no-final-norm", "--no-scale-embedding", "--output-bias", "--max-target-positions", str(positions), "--tokens-per-sample", str(min(positions, 1024))]
    options += ["--share-decoder-input-output-embed"] if hf_config.tie_word_embeddings else []
    return options


def _lm_logits(model, tokens):
    return model(tokens)[0]


def _hf_lm_logits(hf, tokens):
    return hf(tokens, use_cache=False).logits


CAUSAL_LM = Target(
    hf_class="MegaForCausalLM",
    fairseq_arch=EXPORTABLE_LM_PRESET,
    fairseq_task="language_modeling",
    problems=_lm_problems,
    config_kwargs=_lm_config,
    to_hf=lambda model: lm_state_dict_to_hf(model.decoder.state_dict(), model.decoder.stack.cfg),
    from_hf=lambda state, hf_config, cfg: {"decoder." + k: v for k, v in lm_state_dict_from_hf(state, cfg).items()},
    fairseq_options=_lm_options,
    fairseq_outputs=_lm_logits,
    hf_outputs=_hf_lm_logits,
    layer_cfg=lambda model: model.decoder.stack.cfg,
)

TARGETS: Dict[str, Target] = {t.hf_class: t for t in (CAUSAL_LM,)}


def target_for_fairseq_model(model, head: Optional[str] = None) -> Target:
    """The HF class a fairseq model exports to (`head` picks one where a model has several)."""
    from .models.mega_lm import MegaLanguageModel

    if isinstance(model, MegaLanguageModel):
        if head not in (None, "causal_lm", "MegaForCausalLM"):
            raise ValueError(f"a mega_lm model exports only as MegaForCausalLM, not {head!r}")
        return CAUSAL_LM
    raise ValueError(f"no HuggingFace export for {type(model).__name__} models yet")


def target_for_hf_class(name: str) -> Target:
    if name not in TARGETS:
        raise ValueError(f"no fairseq counterpart for transformers class {name!r}; importable: {', '.join(sorted(TARGETS))}")
    return TARGETS[name]
