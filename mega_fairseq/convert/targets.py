"""What each HuggingFace Mega class corresponds to in fairseq, in both directions.

A `Target` pairs one transformers class (MegaForCausalLM, ...) with one fairseq model kind and
knows: why a fairseq model cannot be expressed by the class (`problems`), the extra config
fields, the state-dict conversion both ways (through the name table in `hf_names`), the fairseq
options that rebuild the model on import, and how to get comparable outputs from each side
for verification.  `mega-export-hf` and `mega-import-hf` only orchestrate these.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .hf_names import (
    ENCODER_HEAD_KEYS,
    encoder_hf_config_kwargs,
    encoder_state_dict_from_hf,
    encoder_state_dict_to_hf,
    lm_state_dict_from_hf,
    lm_state_dict_to_hf,
    stack_state_dict_from_hf,
    stack_state_dict_to_hf,
    to_hf_config_kwargs,
)
from ..modules import MegaStack

EXPORTABLE_LM_PRESET = "mega_lm_hf"


def stack_problems(stack: MegaStack, decoder: bool, preset: Optional[str]) -> List[str]:
    """Why transformers' MegaModel cannot hold this stack exactly (empty: it can)."""
    cfg, problems = stack.cfg, []
    fix = f"; the {preset} preset has the exportable structure" if preset else ""
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


def layer_options_from_hf(hf_config) -> Dict[str, Any]:
    """`MegaLayerOptions` values describing HF's layer settings; ValueError where there is none."""
    if hf_config.normalize_before_ffn != hf_config.normalize_before_mega:
        raise ValueError(
            f"normalize_before_ffn={hf_config.normalize_before_ffn} differs from normalize_before_mega={hf_config.normalize_before_mega}; "
            "fairseq Mega models use one --normalize-before for both"
        )
    if hf_config.normalization_type == "rmsnorm":
        raise ValueError("rmsnorm: transformers' MegaRMSNorm does not normalize (a known bug), so no fairseq model computes the same")
    return {
        "activation_fn": hf_config.activation,
        "attention_activation_fn": hf_config.attention_activation,
        "rel_pos_bias": hf_config.relative_positional_bias,
        "normalization_type": hf_config.normalization_type,
        "normalize_before": bool(hf_config.normalize_before_mega),
        "no_affine_norm": not hf_config.norm_affine,
        "truncation_length": hf_config.truncation,
        "dropout": hf_config.dropout_prob,
        "attention_dropout": hf_config.attention_probs_dropout_prob,
        "hidden_dropout": hf_config.hidden_dropout_prob,
        "activation_dropout": hf_config.nffn_activation_dropout_prob,
        "feature_dropout": bool(hf_config.use_feature_dropout),
        "no_nffn": not hf_config.use_normalized_ffn,
    }


def size_options_from_hf(hf_config, side: str) -> Dict[str, int]:
    """`{side}_layers`, `{side}_embed_dim`, ... from an HF config."""
    return {
        f"{side}_layers": hf_config.num_hidden_layers,
        f"{side}_embed_dim": hf_config.hidden_size,
        f"{side}_hidden_dim": hf_config.intermediate_size,
        f"{side}_ffn_embed_dim": hf_config.nffn_hidden_size,
        f"{side}_z_dim": hf_config.shared_representation_size,
        f"{side}_n_dim": hf_config.ema_projection_size,
        f"{side}_chunk_size": hf_config.chunk_size if hf_config.use_chunking else -1,
    }


@dataclass
class Target:
    hf_class: str  # transformers class name
    fairseq_task: str  # the task an import's checkpoint names
    problems: Callable  # (fairseq model) -> [reason, ...]
    config_kwargs: Optional[Callable]  # (fairseq model, dictionary) -> MegaConfig kwargs (or make_config)
    to_hf: Callable  # (fairseq model) -> HF state dict
    from_hf: Callable  # (HF state dict, hf_config, layer cfg, fairseq model) -> fairseq model state dict
    fairseq_options: Callable  # (hf_config) -> (arch, {option: value}) rebuilding the model (import)
    fairseq_outputs: Callable  # (fairseq model, tokens) -> tensor to compare
    hf_outputs: Callable  # (HF model, tokens) -> tensor to compare
    layer_cfg: Callable  # (fairseq model) -> MegaLayerConfig
    prepare_import: Optional[Callable] = None  # (fairseq model, hf_config): register the head an import fills
    make_config: Optional[Callable] = None  # (fairseq model, task) -> a transformers config other than MegaConfig(**config_kwargs)


# ---------------------------------------------------------------- causal LM (mega_lm <-> MegaForCausalLM)


def _lm_problems_of(decoder, preset: Optional[str], cross_attention_ok: bool = False) -> List[str]:
    problems = stack_problems(decoder.stack, decoder=True, preset=preset)
    if decoder.adaptive_softmax is not None:
        problems.append("adaptive softmax cannot be expressed by HF Mega")
    if decoder.stack.cfg.cross_attention and not cross_attention_ok:
        problems.append("a decoder with cross-attention is part of an encoder-decoder model; export the whole translation model")
    return problems


def _lm_config_of(decoder, dictionary) -> dict:
    kwargs = to_hf_config_kwargs(decoder.stack.cfg, len(decoder.stack.layers), len(dictionary), dictionary.pad())
    tied = decoder.output_projection.weight is decoder.stack.embed_tokens.weight
    kwargs.update(add_lm_hidden_dense_layer=False, tie_word_embeddings=tied, use_cache=True)
    return kwargs


def _lm_problems(model) -> List[str]:
    return _lm_problems_of(model.decoder, EXPORTABLE_LM_PRESET)


def _lm_config(model, dictionary) -> dict:
    return _lm_config_of(model.decoder, dictionary)


def _lm_options(hf_config) -> Tuple[str, Dict[str, Any]]:
    problems = []
    if hf_config.add_token_type_embeddings:
        problems.append("token-type embeddings: mega_lm has none (add_token_type_embeddings=False)")
    if getattr(hf_config, "add_lm_hidden_dense_layer", False):
        problems.append("add_lm_hidden_dense_layer=True (MegaConfig's default): mega_lm's output layer has no dense+tanh before the projection")
    if not hf_config.is_decoder or hf_config.bidirectional:
        problems.append("a MegaForCausalLM import needs is_decoder=True and bidirectional=False (a causal model)")
    if problems:
        raise ValueError("; ".join(problems))
    positions = hf_config.max_positions
    options = {**size_options_from_hf(hf_config, "decoder"), **layer_options_from_hf(hf_config)}
    options.update(
        no_final_norm=True, no_scale_embedding=True, normalize_embedding=False, output_bias=True,
        share_decoder_input_output_embed=bool(hf_config.tie_word_embeddings),
        max_target_positions=positions, tokens_per_sample=min(positions, 1024),
    )
    return EXPORTABLE_LM_PRESET, options


def _lm_logits(model, tokens):
    return model(tokens)[0]


def _hf_lm_logits(hf, tokens):
    return hf(tokens, use_cache=False).logits


CAUSAL_LM = Target(
    hf_class="MegaForCausalLM",
    fairseq_task="language_modeling",
    problems=_lm_problems,
    config_kwargs=_lm_config,
    to_hf=lambda model: lm_state_dict_to_hf(model.decoder.state_dict(), model.decoder.stack.cfg),
    from_hf=lambda state, hf_config, cfg, model=None: {"decoder." + k: v for k, v in lm_state_dict_from_hf(state, cfg).items()},
    fairseq_options=_lm_options,
    fairseq_outputs=_lm_logits,
    hf_outputs=_hf_lm_logits,
    layer_cfg=lambda model: model.decoder.stack.cfg,
)

# ---------------------------------------------------------------- encoder heads (mega_encoder <-> MegaForMaskedLM, ...)

EXPORTABLE_ENCODER_PRESET = "mega_base"
# head kind -> the head name an import gives it: the default --classification-head-name of the task that uses it
IMPORTED_HEAD_NAMES = {
    "classification": "sentence_classification_head",  # sentence_prediction
    "multiple_choice": "sentence_classification_head",  # sentence_ranking
    "token_classification": "token_classification_head",  # mega_token_classification
    "question_answering": "question_answering_head",  # mega_extractive_qa
    "pooler": "pooler",
}


def _encoder_problems(kind: str, head_name: Optional[str]):
    def problems(model) -> List[str]:
        found = stack_problems(model.encoder.stack, decoder=False, preset=EXPORTABLE_ENCODER_PRESET)
        if kind == "masked_lm":
            return found
        head = model.classification_heads[head_name]
        if kind in ("classification", "multiple_choice", "pooler") and str(model.cfg.pooler_activation_fn) != "tanh":
            found.append(f"--pooler-activation-fn {model.cfg.pooler_activation_fn}: HF's pooler and classification head use tanh")
        if kind == "classification" and head.dense.out_features != model.embed_dim:
            found.append(f"classification head inner dim {head.dense.out_features}: HF's classification head is D x D ({model.embed_dim})")
        return found

    return problems


def _encoder_config(kind: str, head_name: Optional[str]):
    def config_kwargs(model, dictionary) -> dict:
        stack = model.encoder.stack
        kwargs = to_hf_config_kwargs(stack.cfg, len(stack.layers), len(dictionary), dictionary.pad(), model.type_vocab_size)
        heads = model.classification_heads
        sizes = {}
        if kind == "classification":
            sizes["num_labels"] = heads[head_name].out_proj.out_features
        elif kind == "token_classification":
            sizes["num_labels"] = heads[head_name].classifier.out_features
        tied = model.lm_head.out_proj.weight is stack.embed_tokens.weight
        kwargs.update(encoder_hf_config_kwargs(kind, lm_hidden_dense=model.lm_head.dense is not None, tied=tied,
                                               classifier_dropout=model.cfg.pooler_dropout, **sizes))
        if kind == "classification" and sizes["num_labels"] == 1:
            kwargs["problem_type"] = "regression"
        return kwargs

    return config_kwargs


def _encoder_outputs(kind: str, head_name: Optional[str]):
    def fairseq_outputs(model, tokens):
        if kind == "masked_lm":
            return model(tokens)[0]
        return model(tokens, classification_head_name=head_name)[0]

    def hf_outputs(hf, tokens):
        types = hf_token_types_for_probe(hf, tokens)
        if kind == "multiple_choice":  # HF scores (B, choices, T); one choice per sequence here
            return hf(tokens.unsqueeze(1), token_type_ids=None if types is None else types.unsqueeze(1)).logits
        out = hf(tokens, token_type_ids=types)
        if kind == "question_answering":
            return torch.stack([out.start_logits, out.end_logits], dim=-1)
        if kind == "pooler":
            return out.pooler_output
        return out.logits

    return fairseq_outputs, hf_outputs


def hf_token_types_for_probe(hf, tokens):
    """Segment ids as fairseq's mega_encoder derives them (0 up to the first </s>, 1 after)."""
    if not hf.config.add_token_type_embeddings:
        return None
    from ..models.mega_encoder import segments_from_separator

    return segments_from_separator(tokens, hf.config.eos_token_id).clamp_(max=hf.config.type_vocab_size - 1)


def _encoder_options(kind: str):
    def fairseq_options(hf_config) -> Tuple[str, Dict[str, Any]]:
        if hf_config.is_decoder or not hf_config.bidirectional:
            raise ValueError("an encoder class needs is_decoder=False and bidirectional=True")
        options = {**size_options_from_hf(hf_config, "encoder"), **layer_options_from_hf(hf_config)}
        options.update(
            max_positions=hf_config.max_positions,
            add_token_type_embeddings=bool(hf_config.add_token_type_embeddings),
            type_vocab_size=hf_config.type_vocab_size,
            scale_embedding=False, normalize_embedding=False, final_norm=False,
            untie_weights_roberta=not hf_config.tie_word_embeddings,
            no_lm_hidden_dense=not hf_config.add_lm_hidden_dense_layer,
            pooler_dropout=hf_config.classifier_dropout if hf_config.classifier_dropout is not None else hf_config.hidden_dropout_prob,
            pooler_activation_fn="tanh",
            load_checkpoint_heads=True,  # the checkpoint's head is restored when it is loaded
        )
        return EXPORTABLE_ENCODER_PRESET, options

    return fairseq_options


def _register_imported_head(kind: str):
    def prepare(model, hf_config):
        name = IMPORTED_HEAD_NAMES[kind]
        if kind == "classification":
            model.register_classification_head(name, num_classes=hf_config.num_labels, head_type="classification")
        elif kind == "multiple_choice":
            model.register_classification_head(name, num_classes=1, head_type="multiple_choice")
        elif kind == "token_classification":
            model.register_token_classification_head(name, hf_config.num_labels)
        elif kind == "question_answering":
            if hf_config.num_labels != 2:
                raise ValueError(f"MegaForQuestionAnswering with num_labels={hf_config.num_labels}: a span head has 2 outputs (start, end)")
            model.register_question_answering_head(name)
        elif kind == "pooler":
            model.register_pooler_head(name)
        return name

    return prepare


def encoder_target(kind: str, head_name: Optional[str] = None) -> Target:
    """The Target of an encoder head kind (`hf_names.ENCODER_HEAD_KEYS`) for head `head_name`."""
    hf_class = ENCODER_HEAD_KEYS[kind][0]
    fairseq_outputs, hf_outputs = _encoder_outputs(kind, head_name)

    def from_hf(state, hf_config, cfg, model=None):
        ours = encoder_state_dict_from_hf(state, cfg, kind, head_name)
        if model is not None and kind != "masked_lm":  # HF's head classes have no LM head: keep the fresh one
            ours.update({k: v for k, v in model.state_dict().items() if k.startswith("lm_head.") and k not in ours})
        return ours

    return Target(
        hf_class=hf_class,
        fairseq_task="masked_lm",
        problems=_encoder_problems(kind, head_name),
        config_kwargs=_encoder_config(kind, head_name),
        to_hf=lambda model: encoder_state_dict_to_hf(model.state_dict(), model.encoder.stack.cfg, kind, head_name),
        from_hf=from_hf,
        fairseq_options=_encoder_options(kind),
        fairseq_outputs=fairseq_outputs,
        hf_outputs=hf_outputs,
        layer_cfg=lambda model: model.encoder.stack.cfg,
        prepare_import=None if kind == "masked_lm" else _register_imported_head(kind),
    )


# ---------------------------------------------------------------- translation (mega <-> EncoderDecoderModel)


def _translation_problems(model) -> List[str]:
    encoder_problems = stack_problems(model.encoder.stack, decoder=False, preset=None)
    decoder_problems = _lm_problems_of(model.decoder, preset=None, cross_attention_ok=True)
    return [f"encoder: {p}" for p in encoder_problems] + [f"decoder: {p}" for p in decoder_problems]


def _translation_config(model, task):
    from transformers import EncoderDecoderConfig, MegaConfig

    src, tgt = task.source_dictionary, task.target_dictionary
    encoder_stack = model.encoder.stack
    encoder = MegaConfig(**to_hf_config_kwargs(encoder_stack.cfg, len(encoder_stack.layers), len(src), src.pad()),
                         bos_token_id=src.bos(), eos_token_id=src.eos())
    decoder = MegaConfig(**_lm_config_of(model.decoder, tgt), bos_token_id=tgt.bos(), eos_token_id=tgt.eos())
    config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    # fairseq's decoder input starts with </s>: prev_output_tokens = [</s>, y_1, ..., y_{n-1}]
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = tgt.eos(), tgt.pad(), tgt.eos()
    config.vocab_size = len(tgt)
    config.tie_word_embeddings = False  # encoder and decoder weights are saved separately (shared ones as copies)
    return config


def _translation_to_hf(model) -> Dict[str, torch.Tensor]:
    stack = {k[len("encoder.stack."):]: v for k, v in model.state_dict().items() if k.startswith("encoder.stack.")}
    out = {"encoder." + k: v.clone() for k, v in stack_state_dict_to_hf(stack, model.encoder.stack.cfg, prefix="").items()}
    out.update({"decoder." + k: v.clone() for k, v in lm_state_dict_to_hf(model.decoder.state_dict(), model.decoder.stack.cfg).items()})
    width = model.encoder.stack.cfg.embed_dim  # EncoderDecoderModel builds MegaModel with a pooler it never uses
    out.update({"encoder.pooler.dense.weight": torch.zeros(width, width), "encoder.pooler.dense.bias": torch.zeros(width)})
    return out


def _translation_options(hf_config) -> Tuple[str, Dict[str, Any]]:
    encoder, decoder = hf_config.encoder, hf_config.decoder
    if encoder.is_decoder or not encoder.bidirectional:
        raise ValueError("the encoder must be bidirectional with is_decoder=False")
    if not (decoder.is_decoder and decoder.add_cross_attention) or decoder.bidirectional:
        raise ValueError("the decoder must be causal (is_decoder=True, bidirectional=False) with add_cross_attention=True")
    if getattr(decoder, "add_lm_hidden_dense_layer", False) or decoder.add_token_type_embeddings or encoder.add_token_type_embeddings:
        raise ValueError("token-type embeddings or an LM hidden dense layer: the mega translation model has neither")
    layer_options = layer_options_from_hf(encoder)
    differing = {k: (v, layer_options_from_hf(decoder)[k]) for k, v in layer_options.items() if layer_options_from_hf(decoder)[k] != v}
    if differing:
        raise ValueError(f"encoder and decoder layer settings differ ({differing}); the mega translation model shares them")
    if decoder.max_positions < encoder.max_positions:
        raise ValueError("the decoder's max_positions must cover the encoder's (its cross-attention bias spans both)")
    options = {**size_options_from_hf(encoder, "encoder"), **size_options_from_hf(decoder, "decoder"), **layer_options}
    options.update(
        no_scale_embedding=True, normalize_embedding=False, no_final_norm=True, output_bias=True,
        share_decoder_input_output_embed=bool(decoder.tie_word_embeddings), share_all_embeddings=False,
        max_source_positions=encoder.max_positions, max_target_positions=decoder.max_positions,
        source_lang="src", target_lang="tgt",
    )
    return "mega", options


def _translation_from_hf(state, hf_config, cfg, model=None) -> Dict[str, torch.Tensor]:
    out = {"encoder.stack." + k: v for k, v in stack_state_dict_from_hf(state, model.encoder.stack.cfg, prefix="encoder.").items()}
    decoder_state = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    out.update({"decoder." + k: v for k, v in lm_state_dict_from_hf(decoder_state, model.decoder.stack.cfg).items()})
    out["dictionary_digest"] = model.dictionary_digest  # fingerprints of the dictionaries the import writes
    return out


def decoder_inputs(tokens):
    """fairseq's prev_output_tokens for a probe: </s> followed by all but the last token."""
    prev = tokens.roll(1, dims=1)
    prev[:, 0] = 2
    return prev


TRANSLATION = Target(
    hf_class="EncoderDecoderModel",
    fairseq_task="translation",
    problems=_translation_problems,
    config_kwargs=None,
    to_hf=_translation_to_hf,
    from_hf=_translation_from_hf,
    fairseq_options=_translation_options,
    fairseq_outputs=lambda model, tokens: model(tokens, None, decoder_inputs(tokens))[0],
    hf_outputs=lambda hf, tokens: hf(input_ids=tokens, decoder_input_ids=decoder_inputs(tokens), use_cache=False).logits,
    layer_cfg=lambda model: model.encoder.stack.cfg,
    make_config=_translation_config,
)


HF_CLASS_TO_ENCODER_KIND = {hf_class: kind for kind, (hf_class, _, _) in ENCODER_HEAD_KEYS.items()}


def target_for_fairseq_model(model, head: Optional[str] = None) -> Target:
    """The HF class a fairseq model exports to.  `head` picks one where a model has several: for a
    mega_encoder, "masked_lm" or the name of a registered head (default: its only head, else masked_lm)."""
    from ..models.heads import head_spec
    from ..models.mega_encoder import MegaEncoderModel
    from ..models.mega_lm import MegaLanguageModel
    from ..models.mega_translation import MegaTranslationModel

    if isinstance(model, MegaLanguageModel):
        if head not in (None, "causal_lm", "MegaForCausalLM"):
            raise ValueError(f"a mega_lm model exports only as MegaForCausalLM, not {head!r}")
        return CAUSAL_LM
    if isinstance(model, MegaTranslationModel):
        if head not in (None, "EncoderDecoderModel"):
            raise ValueError(f"a mega translation model exports only as EncoderDecoderModel, not {head!r}")
        return TRANSLATION
    if isinstance(model, MegaEncoderModel):
        heads = list(model.classification_heads)
        if head is None:
            head = heads[0] if len(heads) == 1 else "masked_lm"
        if head in ("masked_lm", "MegaForMaskedLM"):
            return encoder_target("masked_lm")
        if head not in model.classification_heads:
            raise ValueError(f"the model has no head {head!r}; choose --head masked_lm" + "".join(f" or {h}" for h in heads))
        return encoder_target(head_spec(model.classification_heads[head])[0], head)
    raise ValueError(f"no HuggingFace export for {type(model).__name__} models yet")


def target_for_hf_class(name: str) -> Target:
    if name == CAUSAL_LM.hf_class:
        return CAUSAL_LM
    if name == TRANSLATION.hf_class:
        return TRANSLATION
    if name in HF_CLASS_TO_ENCODER_KIND:
        kind = HF_CLASS_TO_ENCODER_KIND[name]
        return encoder_target(kind, None if kind == "masked_lm" else IMPORTED_HEAD_NAMES[kind])
    importable = sorted([CAUSAL_LM.hf_class, TRANSLATION.hf_class, *HF_CLASS_TO_ENCODER_KIND])
    raise ValueError(f"no fairseq counterpart for transformers class {name!r}; importable: {', '.join(importable)}")
