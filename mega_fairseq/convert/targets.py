"""What each HuggingFace Mega class corresponds to in fairseq, in both directions.

A `Target` pairs one transformers class (MegaForCausalLM, ...) with one fairseq model kind and
knows: why a fairseq model cannot be expressed by the class (`problems`), its transformers config
(`make_config`), the state-dict conversion both ways (`to_hf`, `from_hf`, through the name table
in `hf_names`), the fairseq options that rebuild the model on import (`fairseq_options`,
`prepare_import`), and how to get comparable outputs from each side for verification
(`fairseq_outputs`, `hf_outputs`).  `mega-export-hf` and `mega-import-hf` only orchestrate these.

| target | fairseq model | transformers class |
|---|---|---|
| `CausalLMTarget` | `mega_lm` | `MegaForCausalLM` |
| `MaskedLMTarget` | `mega_encoder` (its LM head) | `MegaForMaskedLM` |
| `EncoderHeadTarget` | `mega_encoder` (one named head; kinds from `models.heads.HEAD_KINDS`) | the kind's `hf_class` |
| `TranslationTarget` | `mega` (translation) | `EncoderDecoderModel` of two `MegaModel`s |
"""

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..models.heads import HEAD_KINDS, HeadKind, head_spec
from ..models.options import size_options
from ..modules import MegaLayerConfig, MegaStack
from .common import decoder_inputs, hf_token_types_for_probe, task_dictionary
from .hf_names import (
    encoder_hf_config_kwargs,
    encoder_state_dict_from_hf,
    encoder_state_dict_to_hf,
    lm_state_dict_from_hf,
    lm_state_dict_to_hf,
    stack_state_dict_from_hf,
    stack_state_dict_to_hf,
    to_hf_config_kwargs,
)

EXPORTABLE_LM_PRESET = "mega_lm_hf"
EXPORTABLE_ENCODER_PRESET = "mega_base"
StateDict = Dict[str, Tensor]


def stack_problems(stack: MegaStack, decoder: bool, preset: Optional[str], native: bool = True) -> List[str]:
    """Why transformers' MegaModel cannot hold this stack exactly (empty: it can).  native=False: why the
    exported model code (`remote_code`, which runs this package's modules) cannot: rmsnorm, another norm
    epsilon and a truncated decoder EMA are then fine."""
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
    if native and cfg.normalization_type == "rmsnorm":
        problems.append(
            "HF's MegaRMSNorm does not normalize (a known transformers bug), so an rmsnorm model would compute "
            "differently"
        )
    if native and cfg.norm_eps != 1e-5:
        problems.append(f"norm epsilon {cfg.norm_eps} (HF Mega fixes 1e-5)")
    if native and decoder and cfg.truncation is not None:
        problems.append(
            "--truncation-length: HF's decoder ignores truncation when use_cache=True (its default); train without "
            "truncation"
        )
    return problems


def layer_options_from_hf(hf_config, native: bool = True) -> Dict[str, Any]:
    """`MegaLayerOptions` values describing HF's layer settings; ValueError where there is none.  native=False:
    the config of a model-code export (rmsnorm is then a real RMS norm, computed by this package's modules)."""
    if hf_config.normalize_before_ffn != hf_config.normalize_before_mega:
        raise ValueError(
            f"normalize_before_ffn={hf_config.normalize_before_ffn} differs from "
            f"normalize_before_mega={hf_config.normalize_before_mega}; "
            "fairseq Mega models use one --normalize-before for both"
        )
    if native and hf_config.normalization_type == "rmsnorm":
        raise ValueError(
            "rmsnorm: transformers' MegaRMSNorm does not normalize (a known bug), so no fairseq model computes the same"
        )
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
    return size_options(
        side,
        layers=hf_config.num_hidden_layers,
        embed_dim=hf_config.hidden_size,
        hidden_dim=hf_config.intermediate_size,
        ffn_embed_dim=hf_config.nffn_hidden_size,
        z_dim=hf_config.shared_representation_size,
        n_dim=hf_config.ema_projection_size,
        chunk_size=hf_config.chunk_size if hf_config.use_chunking else -1,
    )


class Target:
    """One transformers class <-> one fairseq model kind (subclasses fill in every method)."""

    hf_class: str  # transformers class name
    fairseq_task: str  # the task an import's checkpoint names

    def problems(self, model: nn.Module, native: bool = True) -> List[str]:
        """Why `hf_class` cannot hold the fairseq `model` exactly (empty: it can); native=False: why the exported
        model code cannot (see `stack_problems`)."""
        raise NotImplementedError

    def make_config(self, model: nn.Module, task):
        """The transformers config of `hf_class` describing `model` (trained on `task`'s dictionaries)."""
        from transformers import MegaConfig

        dictionary = task_dictionary(task)
        return MegaConfig(
            **self.config_kwargs(model, dictionary), bos_token_id=dictionary.bos(), eos_token_id=dictionary.eos()
        )

    def config_kwargs(self, model: nn.Module, dictionary) -> dict:
        """`MegaConfig` kwargs describing `model` with `dictionary` (targets whose config is a MegaConfig)."""
        raise NotImplementedError

    def to_hf(self, model: nn.Module) -> StateDict:
        """The fairseq model's weights under `hf_class`'s keys."""
        raise NotImplementedError

    def from_hf(self, hf_state: StateDict, model: nn.Module) -> StateDict:
        """`hf_class` weights -> a state dict that `model` (built by `fairseq_options`) loads strictly."""
        raise NotImplementedError

    def fairseq_options(self, hf_config, native: bool = True) -> Tuple[str, Dict[str, Any]]:
        """(arch, {option: value}) rebuilding the model of `hf_config` (import); ValueError where there is none.
        native=False: `hf_config` is a model-code export's (see `layer_options_from_hf`)."""
        raise NotImplementedError

    def prepare_import(self, model: nn.Module, hf_config) -> None:
        """Adds to a freshly built `model` what `from_hf` fills beyond the options (e.g. the imported head)."""

    def generation_defaults(self, model: nn.Module, task) -> Optional[Dict[str, Any]]:
        """`generation_config.json` values making transformers' generate() decode as fairseq does by default
        (None: the class does not generate, or transformers' defaults stand)."""
        return None

    def fairseq_outputs(self, model: nn.Module, tokens: Tensor) -> Tensor:
        """The fairseq model's output on probe `tokens` (B, T), comparable with `hf_outputs`."""
        raise NotImplementedError

    def hf_outputs(self, hf: nn.Module, tokens: Tensor) -> Tensor:
        """The transformers model's output on probe `tokens` (B, T), comparable with `fairseq_outputs`."""
        raise NotImplementedError

    def layer_cfg(self, model: nn.Module) -> MegaLayerConfig:
        """The layer configuration the probe inputs and the model card describe."""
        raise NotImplementedError


# ---------------------------------------------------------------- causal LM (mega_lm <-> MegaForCausalLM)


def lm_problems(decoder, preset: Optional[str], cross_attention_ok: bool = False, native: bool = True) -> List[str]:
    """Why a `MegaDecoder` is not a `MegaForCausalLM` (empty: it is)."""
    problems = stack_problems(decoder.stack, decoder=True, preset=preset, native=native)
    if decoder.adaptive_softmax is not None:
        problems.append("adaptive softmax cannot be expressed by HF Mega")
    if decoder.stack.cfg.cross_attention and not cross_attention_ok:
        problems.append(
            "a decoder with cross-attention is part of an encoder-decoder model; export the whole translation model"
        )
    return problems


def lm_config_kwargs(decoder, dictionary) -> dict:
    """`MegaConfig` kwargs of a `MegaDecoder` as a causal LM."""
    kwargs = to_hf_config_kwargs(decoder.stack.cfg, len(decoder.stack.layers), len(dictionary), dictionary.pad())
    tied = decoder.output_projection.weight is decoder.stack.embed_tokens.weight
    kwargs.update(add_lm_hidden_dense_layer=False, tie_word_embeddings=tied, use_cache=True)
    return kwargs


class CausalLMTarget(Target):
    """`mega_lm` <-> `MegaForCausalLM`."""

    hf_class = "MegaForCausalLM"
    fairseq_task = "language_modeling"

    def problems(self, model, native: bool = True) -> List[str]:
        return lm_problems(model.decoder, EXPORTABLE_LM_PRESET, native=native)

    def config_kwargs(self, model, dictionary) -> dict:
        return lm_config_kwargs(model.decoder, dictionary)

    def to_hf(self, model) -> StateDict:
        return lm_state_dict_to_hf(model.decoder.state_dict(), model.decoder.stack.cfg)

    def from_hf(self, hf_state, model) -> StateDict:
        return {"decoder." + k: v for k, v in lm_state_dict_from_hf(hf_state, self.layer_cfg(model)).items()}

    def fairseq_options(self, hf_config, native: bool = True) -> Tuple[str, Dict[str, Any]]:
        problems = []
        if hf_config.add_token_type_embeddings:
            problems.append("token-type embeddings: mega_lm has none (add_token_type_embeddings=False)")
        if getattr(hf_config, "add_lm_hidden_dense_layer", False):
            problems.append(
                "add_lm_hidden_dense_layer=True (MegaConfig's default): mega_lm's output layer has no dense+tanh "
                "before the projection"
            )
        if not hf_config.is_decoder or hf_config.bidirectional:
            problems.append("a MegaForCausalLM import needs is_decoder=True and bidirectional=False (a causal model)")
        if problems:
            raise ValueError("; ".join(problems))
        positions = hf_config.max_positions
        options = {**size_options_from_hf(hf_config, "decoder"), **layer_options_from_hf(hf_config, native)}
        options.update(
            no_final_norm=True,
            no_scale_embedding=True,
            normalize_embedding=False,
            output_bias=True,
            share_decoder_input_output_embed=bool(hf_config.tie_word_embeddings),
            max_target_positions=positions,
            tokens_per_sample=min(positions, 1024),
        )
        return EXPORTABLE_LM_PRESET, options

    def fairseq_outputs(self, model, tokens) -> Tensor:
        return model(tokens)[0]

    def hf_outputs(self, hf, tokens) -> Tensor:
        return hf(tokens, use_cache=False).logits

    def layer_cfg(self, model) -> MegaLayerConfig:
        return model.decoder.stack.cfg


# ---------------------------------------------------------------- encoder heads (mega_encoder <-> MegaForMaskedLM, ...)


class MaskedLMTarget(Target):
    """`mega_encoder`'s body and masked-LM head <-> `MegaForMaskedLM`."""

    hf_class = "MegaForMaskedLM"
    fairseq_task = "masked_lm"
    kind = "masked_lm"  # the kind name in `hf_names.ENCODER_HEAD_KEYS`
    head_name: Optional[str] = None

    def problems(self, model, native: bool = True) -> List[str]:
        return stack_problems(model.encoder.stack, decoder=False, preset=EXPORTABLE_ENCODER_PRESET, native=native)

    def head_sizes(self, model) -> Dict[str, int]:
        """HF config kwargs that size the head (num_labels)."""
        return {}

    def config_kwargs(self, model, dictionary) -> dict:
        stack = model.encoder.stack
        kwargs = to_hf_config_kwargs(
            stack.cfg, len(stack.layers), len(dictionary), dictionary.pad(), model.type_vocab_size
        )
        tied = model.lm_head.out_proj.weight is stack.embed_tokens.weight
        kwargs.update(
            encoder_hf_config_kwargs(
                self.kind,
                lm_hidden_dense=model.lm_head.dense is not None,
                tied=tied,
                classifier_dropout=model.cfg.pooler_dropout,
                **self.head_sizes(model),
            )
        )
        return kwargs

    def to_hf(self, model) -> StateDict:
        return encoder_state_dict_to_hf(model.state_dict(), model.encoder.stack.cfg, self.kind, self.head_name)

    def from_hf(self, hf_state, model) -> StateDict:
        return encoder_state_dict_from_hf(hf_state, self.layer_cfg(model), self.kind, self.head_name)

    def fairseq_options(self, hf_config, native: bool = True) -> Tuple[str, Dict[str, Any]]:
        if hf_config.is_decoder or not hf_config.bidirectional:
            raise ValueError("an encoder class needs is_decoder=False and bidirectional=True")
        options = {**size_options_from_hf(hf_config, "encoder"), **layer_options_from_hf(hf_config, native)}
        options.update(
            max_positions=hf_config.max_positions,
            add_token_type_embeddings=bool(hf_config.add_token_type_embeddings),
            type_vocab_size=hf_config.type_vocab_size,
            scale_embedding=False,
            normalize_embedding=False,
            final_norm=False,
            untie_weights_roberta=not hf_config.tie_word_embeddings,
            no_lm_hidden_dense=not hf_config.add_lm_hidden_dense_layer,
            pooler_dropout=hf_config.classifier_dropout
            if hf_config.classifier_dropout is not None
            else hf_config.hidden_dropout_prob,
            pooler_activation_fn="tanh",
            load_checkpoint_heads=True,  # the checkpoint's head is restored when it is loaded
        )
        return EXPORTABLE_ENCODER_PRESET, options

    def fairseq_outputs(self, model, tokens) -> Tensor:
        return model(tokens)[0]

    def hf_outputs(self, hf, tokens) -> Tensor:
        return hf(tokens, token_type_ids=hf_token_types_for_probe(hf, tokens)).logits

    def layer_cfg(self, model) -> MegaLayerConfig:
        return model.encoder.stack.cfg


class EncoderHeadTarget(MaskedLMTarget):
    """`mega_encoder`'s body and its head `head_name` of registry kind `head` <-> `head.hf_class`
    (the other heads and the masked-LM head are left out of the export; an import keeps a fresh LM head)."""

    def __init__(self, head: HeadKind, head_name: str):
        self.head, self.kind, self.head_name = head, head.name, head_name
        self.hf_class = head.hf_class

    def problems(self, model, native: bool = True) -> List[str]:
        found = super().problems(model, native)
        module = model.classification_heads[self.head_name]
        if self.head.hf_tanh and str(model.cfg.pooler_activation_fn) != "tanh":
            found.append(
                f"--pooler-activation-fn {model.cfg.pooler_activation_fn}: HF's pooler and classification head use tanh"
            )
        return found + self.head.hf_problems(module, model.embed_dim)

    def head_sizes(self, model) -> Dict[str, int]:
        if not isinstance(self.head.num_labels, str):
            return {}
        return {"num_labels": self.head.sizes(model.classification_heads[self.head_name])[self.head.num_labels]}

    def config_kwargs(self, model, dictionary) -> dict:
        kwargs = super().config_kwargs(model, dictionary)
        kwargs.update(self.head.hf_config_extra(self.head.sizes(model.classification_heads[self.head_name])))
        return kwargs

    def from_hf(self, hf_state, model) -> StateDict:
        ours = super().from_hf(hf_state, model)  # HF's head classes have no LM head: keep the fresh one
        ours.update({k: v for k, v in model.state_dict().items() if k.startswith("lm_head.") and k not in ours})
        return ours

    def prepare_import(self, model, hf_config) -> None:
        """Registers the head under its task's default name, sized from `hf_config.num_labels`."""
        labels, sizes = self.head.num_labels, {}
        if isinstance(labels, str):
            sizes[labels] = hf_config.num_labels
        elif labels is not None and hf_config.num_labels != labels:
            raise ValueError(
                f"{self.hf_class} with num_labels={hf_config.num_labels}: a {self.kind} head has {labels} outputs"
            )
        model.register_head(self.head_name, self.kind, **sizes)

    def fairseq_outputs(self, model, tokens) -> Tensor:
        return model(tokens, classification_head_name=self.head_name)[0]

    def hf_outputs(self, hf, tokens) -> Tensor:
        types = hf_token_types_for_probe(hf, tokens)
        if self.head.hf_choices:  # HF scores (B, choices, T); one choice per sequence here
            tokens, types = tokens.unsqueeze(1), None if types is None else types.unsqueeze(1)
        return self.head.hf_output(hf(tokens, token_type_ids=types))


# ---------------------------------------------------------------- translation (mega <-> EncoderDecoderModel)


class TranslationTarget(Target):
    """`mega` (translation) <-> `EncoderDecoderModel` of a Mega encoder and a Mega causal decoder with
    cross-attention."""

    hf_class = "EncoderDecoderModel"
    fairseq_task = "translation"

    def problems(self, model, native: bool = True) -> List[str]:
        encoder_problems = stack_problems(model.encoder.stack, decoder=False, preset=None, native=native)
        decoder_problems = lm_problems(model.decoder, preset=None, cross_attention_ok=True, native=native)
        return [f"encoder: {p}" for p in encoder_problems] + [f"decoder: {p}" for p in decoder_problems]

    def make_config(self, model, task):
        from transformers import EncoderDecoderConfig, MegaConfig

        src, tgt = task.source_dictionary, task.target_dictionary
        encoder_stack = model.encoder.stack
        encoder = MegaConfig(
            **to_hf_config_kwargs(encoder_stack.cfg, len(encoder_stack.layers), len(src), src.pad()),
            bos_token_id=src.bos(),
            eos_token_id=src.eos(),
        )
        decoder = MegaConfig(**lm_config_kwargs(model.decoder, tgt), bos_token_id=tgt.bos(), eos_token_id=tgt.eos())
        config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
        # fairseq's decoder input starts with </s>: prev_output_tokens = [</s>, y_1, ..., y_{n-1}]
        config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = tgt.eos(), tgt.pad(), tgt.eos()
        config.vocab_size = len(tgt)
        config.tie_word_embeddings = False  # encoder and decoder weights are saved separately (shared ones as copies)
        return config

    def to_hf(self, model) -> StateDict:
        stack = {k[len("encoder.stack.") :]: v for k, v in model.state_dict().items() if k.startswith("encoder.stack.")}
        out = {
            "encoder." + k: v.clone()
            for k, v in stack_state_dict_to_hf(stack, model.encoder.stack.cfg, prefix="").items()
        }
        out.update(
            {
                "decoder." + k: v.clone()
                for k, v in lm_state_dict_to_hf(model.decoder.state_dict(), model.decoder.stack.cfg).items()
            }
        )
        width = model.encoder.stack.cfg.embed_dim  # EncoderDecoderModel builds MegaModel with a pooler it never uses
        out.update(
            {"encoder.pooler.dense.weight": torch.zeros(width, width), "encoder.pooler.dense.bias": torch.zeros(width)}
        )
        return out

    def from_hf(self, hf_state, model) -> StateDict:
        out = {
            "encoder.stack." + k: v
            for k, v in stack_state_dict_from_hf(hf_state, model.encoder.stack.cfg, prefix="encoder.").items()
        }
        decoder_state = {k[len("decoder.") :]: v for k, v in hf_state.items() if k.startswith("decoder.")}
        out.update(
            {"decoder." + k: v for k, v in lm_state_dict_from_hf(decoder_state, model.decoder.stack.cfg).items()}
        )
        out["dictionary_digest"] = model.dictionary_digest  # fingerprints of the dictionaries the import writes
        return out

    def fairseq_options(self, hf_config, native: bool = True) -> Tuple[str, Dict[str, Any]]:
        encoder, decoder = hf_config.encoder, hf_config.decoder
        if encoder.is_decoder or not encoder.bidirectional:
            raise ValueError("the encoder must be bidirectional with is_decoder=False")
        if not (decoder.is_decoder and decoder.add_cross_attention) or decoder.bidirectional:
            raise ValueError(
                "the decoder must be causal (is_decoder=True, bidirectional=False) with add_cross_attention=True"
            )
        if (
            getattr(decoder, "add_lm_hidden_dense_layer", False)
            or decoder.add_token_type_embeddings
            or encoder.add_token_type_embeddings
        ):
            raise ValueError(
                "token-type embeddings or an LM hidden dense layer: the mega translation model has neither"
            )
        layer_options = layer_options_from_hf(encoder, native)
        differing = {
            k: (v, layer_options_from_hf(decoder, native)[k])
            for k, v in layer_options.items()
            if layer_options_from_hf(decoder, native)[k] != v
        }
        if differing:
            raise ValueError(
                f"encoder and decoder layer settings differ ({differing}); the mega translation model shares them"
            )
        if decoder.max_positions < encoder.max_positions:
            raise ValueError(
                "the decoder's max_positions must cover the encoder's (its cross-attention bias spans both)"
            )
        options = {
            **size_options_from_hf(encoder, "encoder"),
            **size_options_from_hf(decoder, "decoder"),
            **layer_options,
        }
        options.update(
            no_scale_embedding=True,
            normalize_embedding=False,
            no_final_norm=True,
            output_bias=True,
            share_decoder_input_output_embed=bool(decoder.tie_word_embeddings),
            share_all_embeddings=False,
            max_source_positions=encoder.max_positions,
            max_target_positions=decoder.max_positions,
            source_lang="src",
            target_lang="tgt",
        )
        return "mega", options

    def generation_defaults(self, model, task) -> Dict[str, Any]:
        """fairseq-generate's defaults: beam 5, --lenpen 1, --min-len 1 (no empty translation), at most
        --max-len-b 200 tokens (and the decoder's max positions - 1); a finished beam search stops (fairseq
        finalises `beam` hypotheses).  Decoding starts with </s> (fairseq's prev_output_tokens)."""
        from fairseq.dataclass.configs import GenerationConfig  # fairseq-generate's option defaults

        fairseq_defaults = GenerationConfig()
        tgt = task.target_dictionary
        return dict(
            decoder_start_token_id=tgt.eos(),
            bos_token_id=tgt.bos(),
            eos_token_id=tgt.eos(),
            pad_token_id=tgt.pad(),
            num_beams=fairseq_defaults.beam,
            length_penalty=fairseq_defaults.lenpen,
            min_new_tokens=fairseq_defaults.min_len,
            max_new_tokens=min(fairseq_defaults.max_len_b, model.max_decoder_positions() - 1),
            early_stopping=True,
        )

    def fairseq_outputs(self, model, tokens) -> Tensor:
        return model(tokens, None, decoder_inputs(tokens))[0]

    def hf_outputs(self, hf, tokens) -> Tensor:
        return hf(input_ids=tokens, decoder_input_ids=decoder_inputs(tokens), use_cache=False).logits

    def layer_cfg(self, model) -> MegaLayerConfig:
        return model.encoder.stack.cfg


# ---------------------------------------------------------------- choosing a target

HF_CLASS_TO_HEAD_KIND = {kind.hf_class: kind for kind in HEAD_KINDS.values()}


def target_for_fairseq_model(model, head: Optional[str] = None) -> Target:
    """The HF class a fairseq model exports to.  `head` picks one where a model has several: for a
    mega_encoder, "masked_lm" or the name of a registered head (default: its only head, else masked_lm)."""
    from ..models.mega_encoder import MegaEncoderModel
    from ..models.mega_lm import MegaLanguageModel
    from ..models.mega_translation import MegaTranslationModel

    if isinstance(model, MegaLanguageModel):
        if head not in (None, "causal_lm", "MegaForCausalLM"):
            raise ValueError(f"a mega_lm model exports only as MegaForCausalLM, not {head!r}")
        return CausalLMTarget()
    if isinstance(model, MegaTranslationModel):
        if head not in (None, "EncoderDecoderModel"):
            raise ValueError(f"a mega translation model exports only as EncoderDecoderModel, not {head!r}")
        return TranslationTarget()
    if isinstance(model, MegaEncoderModel):
        heads = list(model.classification_heads)
        if head is None:
            head = heads[0] if len(heads) == 1 else "masked_lm"
        if head in ("masked_lm", "MegaForMaskedLM"):
            return MaskedLMTarget()
        if head not in model.classification_heads:
            raise ValueError(
                f"the model has no head {head!r}; choose --head masked_lm" + "".join(f" or {h}" for h in heads)
            )
        return EncoderHeadTarget(HEAD_KINDS[head_spec(model.classification_heads[head])[0]], head)
    raise ValueError(f"no HuggingFace export for {type(model).__name__} models yet")


def target_for_hf_class(name: str) -> Target:
    """The target importing transformers class `name`; a head class's head gets its task's default name."""
    if name == CausalLMTarget.hf_class:
        return CausalLMTarget()
    if name == TranslationTarget.hf_class:
        return TranslationTarget()
    if name == MaskedLMTarget.hf_class:
        return MaskedLMTarget()
    if name in HF_CLASS_TO_HEAD_KIND:
        kind = HF_CLASS_TO_HEAD_KIND[name]
        return EncoderHeadTarget(kind, kind.default_name)
    importable = sorted(
        [CausalLMTarget.hf_class, TranslationTarget.hf_class, MaskedLMTarget.hf_class, *HF_CLASS_TO_HEAD_KIND]
    )
    raise ValueError(f"no fairseq counterpart for transformers class {name!r}; importable: {', '.join(importable)}")
