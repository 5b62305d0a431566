"""`mega_encoder`: a bidirectional Mega encoder with a masked-LM head and fine-tuning heads.

It has RoBERTa's interface, so fairseq's own `masked_lm`, `sentence_prediction` (classification
and `--regression-target`) and `sentence_ranking` tasks and criterions drive it unchanged, and
every head has the exact structure of a transformers Mega class (see `heads.py`, whose
`HEAD_KINDS` registry also names their transformers parameters).

Presets: `mega_base` = transformers' `MegaConfig()` defaults (exportable structure: no embedding
scale, no embedding norm, no final norm, tied LM output with a dense + tanh layer),
`mega_large` (12 layers, D=512) and `mega_tiny` (tests, CPU experiments).

Token types (`--add-token-type-embeddings`): pass `token_types` (B, T), or let the model derive
them from the separator: tokens after the first `</s>` are type 1 (HF's sentence-pair ids for
fairseq's `<s> A </s> </s> B </s>` layout: 0 0 0 1 1 1).  `--zero-token-types` uses type 0
everywhere instead (HF's default when no ids are given).

Multiple choice: fairseq's `sentence_ranking` registers `register_classification_head(name,
num_classes=1)` and runs the model once per choice; a model built for that task makes such a
head a `MultipleChoiceHead` (HF `MegaForMultipleChoice`).  Elsewhere `num_classes=1` is a
regression `SequenceClassificationHead`; `head_type=` chooses explicitly.
"""

import logging
from dataclasses import field
from typing import Optional

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.models import FairseqEncoderModel, register_model, register_model_architecture
from fairseq.utils import safe_getattr
from torch import Tensor, nn

from ..modules.relative_position import recenter_simple_bias
from . import options
from .dictionary_fingerprint import DictionaryFingerprintMixin
from .encoder import MegaEncoder
from .heads import POOLER_ACTIVATIONS, MaskedLMHead, head_kind, head_spec, head_spec_from_state_dict
from .options import MegaEncoderSizes, MegaLayerOptions, layer_config, model_config, resolve_model_config, set_defaults
from .pairing import check_task

logger = logging.getLogger(__name__)


@model_config("mega_encoder")  # defaults: transformers' MegaConfig(), pre-norm and rotary bias in the presets
class MegaEncoderConfig(MegaLayerOptions, MegaEncoderSizes):
    max_positions: int = field(
        default=2048,
        metadata={"help": "longest input with a simple relative bias and no chunking (rotary or chunked: any length)"},
    )
    add_token_type_embeddings: bool = field(default=False, metadata={"help": "add segment (token type) embeddings"})
    type_vocab_size: int = field(default=2, metadata={"help": "number of token types with --add-token-type-embeddings"})
    zero_token_types: bool = field(
        default=False,
        metadata={"help": "when no token_types are given, use type 0 everywhere instead of 1 after the first </s>"},
    )
    scale_embedding: bool = field(default=False, metadata={"help": "scale token embeddings by sqrt(D) (not in HF)"})
    normalize_embedding: bool = field(default=False, metadata={"help": "normalize token embeddings (not in HF)"})
    final_norm: bool = field(default=False, metadata={"help": "normalize the last layer's output (not in HF)"})
    untie_weights_roberta: bool = field(
        default=False, metadata={"help": "untie the masked-LM output projection from the token embeddings"}
    )
    no_lm_hidden_dense: bool = field(
        default=False,
        metadata={"help": "masked-LM head without its dense + tanh layer (HF add_lm_hidden_dense_layer=False)"},
    )
    pooler_dropout: float = field(
        default=0.1, metadata={"help": "dropout in the classification heads (HF classifier_dropout)"}
    )
    pooler_activation_fn: ChoiceEnum(POOLER_ACTIVATIONS) = field(
        default="tanh", metadata={"help": "activation of the pooler and the classification head (HF: tanh)"}
    )
    load_checkpoint_heads: bool = field(
        default=False, metadata={"help": "(re-)register the heads found in a restored checkpoint"}
    )


class SymbolText:
    """The hub interface's "BPE" for text already in dictionary symbols: encode and decode are the identity."""

    def encode(self, text: str) -> str:
        return text

    def decode(self, text: str) -> str:
        return text


def segments_from_separator(tokens: Tensor, separator: int) -> Tensor:
    """(B, T) ids -> (B, T) token types: 0 up to and including the first `separator`, 1 after it."""
    is_sep = tokens.eq(separator).long()
    return ((is_sep.cumsum(dim=1) - is_sep) > 0).long()


@register_model("mega_encoder", dataclass=MegaEncoderConfig)
class MegaEncoderModel(DictionaryFingerprintMixin, FairseqEncoderModel):
    """`MegaEncoder` + masked-LM head (`lm_head`) + named heads (`classification_heads`)."""

    def __init__(self, cfg, encoder: MegaEncoder, multiple_choice_heads: bool = False):
        super().__init__(encoder)
        self.cfg = cfg
        self.embed_dim = encoder.stack.cfg.embed_dim
        self.type_vocab_size = cfg.type_vocab_size if cfg.add_token_type_embeddings else 0
        self.multiple_choice_heads = multiple_choice_heads
        tied = None if cfg.untie_weights_roberta else encoder.embed_tokens.weight
        self.lm_head = MaskedLMHead(
            self.embed_dim, len(encoder.dictionary), hidden_dense=not cfg.no_lm_hidden_dense, weight=tied
        )
        self.classification_heads = nn.ModuleDict()

    @classmethod
    def from_pretrained(cls, model_name_or_path, checkpoint_file="model.pt", data_name_or_path=".", bpe=None, **kwargs):
        """fairseq's RoBERTa hub interface on a Mega encoder checkpoint, as `RobertaModel.from_pretrained`:
        `encode`, `decode`, `extract_features` (B, T, D), `predict(head, tokens)`, `fill_mask` (a model
        trained with fairseq's masked_lm task), `register_classification_head`; `.model` is this model.
        `model_name_or_path`: the checkpoint's directory; `data_name_or_path`: the data directory with
        `dict.txt` ("." = the checkpoint's directory); `bpe`: how raw text becomes dictionary symbols, e.g.
        ``bpe="sentencepiece", sentencepiece_model="spm.model"``; None (the default) takes text that is
        already in dictionary symbols, separated by spaces.  Other keyword arguments override the
        checkpoint's options (e.g. ``user_dir=...``)."""
        from fairseq import hub_utils
        from fairseq.models.roberta.hub_interface import RobertaHubInterface

        loaded = hub_utils.from_pretrained(
            model_name_or_path,
            checkpoint_file,
            data_name_or_path,
            archive_map=cls.hub_models(),
            bpe=bpe,
            load_checkpoint_heads=True,
            **kwargs,
        )
        hub = RobertaHubInterface(loaded["args"], loaded["task"], loaded["models"][0])
        if hub.bpe is None:
            hub.bpe = SymbolText()
        return hub

    @classmethod
    def build_model(cls, cfg, task):
        from fairseq.tasks.sentence_ranking import SentenceRankingTask

        check_task(cfg, task, "mega_encoder")
        cfg = resolve_model_config(
            cfg, MegaEncoderConfig
        )  # legacy callers: what the preset left unset from the dataclass
        if cfg.add_token_type_embeddings and cfg.type_vocab_size < 1:
            raise ValueError(
                f"--type-vocab-size must be >= 1 with --add-token-type-embeddings, got {cfg.type_vocab_size}"
            )
        encoder = MegaEncoder(
            layer_config(cfg, "encoder", max_positions=max(cfg.max_positions, 1), max_positions_option="max_positions"),
            cfg.encoder_layers,
            task.source_dictionary,
            max_positions=cfg.max_positions,
            type_vocab_size=cfg.type_vocab_size if cfg.add_token_type_embeddings else 0,
            scale_embedding=cfg.scale_embedding,
            normalize_embedding=cfg.normalize_embedding,
            final_norm=cfg.final_norm,
            **options.scale_options(cfg),
        )
        return cls(cfg, encoder, multiple_choice_heads=isinstance(task, SentenceRankingTask))

    # ---- forward -------------------------------------------------------------------------
    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Optional[Tensor] = None,
        features_only: bool = False,
        return_all_hiddens: bool = False,
        classification_head_name: Optional[str] = None,
        masked_tokens: Optional[Tensor] = None,
        token_types: Optional[Tensor] = None,
        **kwargs,
    ):
        """src_tokens (B, T), padded anywhere with the dictionary's pad.  Returns (x, extra) with x:
        head output if `classification_head_name` is given ((B, C) sentence heads, (B, T, L) token heads),
        else LM logits (B, T, V) or (M, V) for `masked_tokens` (B, T) bool, or features (B, T, D) if
        `features_only`.  extra: {"inner_states": [T x B x D, ...], "padding_mask": (B, T) bool}."""
        head = None
        if classification_head_name is not None:
            if classification_head_name not in self.classification_heads:
                known = ", ".join(self.classification_heads) or "none registered"
                raise ValueError(f"unknown head {classification_head_name!r} (heads: {known}); register it first")
            head = self.classification_heads[classification_head_name]
        token_types = self._token_types(src_tokens, token_types)
        padding_mask = src_tokens.eq(self.encoder.dictionary.pad())
        out = self.encoder(src_tokens, src_lengths, token_types=token_types, return_all_hiddens=return_all_hiddens)
        x = out["encoder_out"][0]  # T x B x D
        states = out["encoder_states"] if return_all_hiddens else [x]
        x = x.transpose(0, 1)
        extra = {"inner_states": states, "padding_mask": padding_mask}
        if head is not None:
            return head(x, padding_mask if bool(padding_mask.any()) else None), extra
        if not features_only:
            x = self.lm_head(x, masked_tokens)
        return x, extra

    def _token_types(self, src_tokens: Tensor, token_types: Optional[Tensor]) -> Optional[Tensor]:
        if token_types is None:
            if self.type_vocab_size == 0 or self.cfg.zero_token_types:
                return None
            return segments_from_separator(src_tokens, self.encoder.dictionary.eos()).clamp_(
                max=self.type_vocab_size - 1
            )
        if self.type_vocab_size == 0:
            raise ValueError(
                "token_types given, but the model has no token-type embeddings: train with --add-token-type-embeddings"
            )
        if token_types.shape != src_tokens.shape:
            raise ValueError(
                f"token_types must have the shape of src_tokens {tuple(src_tokens.shape)}, got "
                f"{tuple(token_types.shape)}"
            )
        if token_types.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise ValueError(f"token_types must be integer ids, got {token_types.dtype}")
        if token_types.numel() and (int(token_types.min()) < 0 or int(token_types.max()) >= self.type_vocab_size):
            raise ValueError(
                f"token_types must lie in [0, {self.type_vocab_size}) (--type-vocab-size), got values in "
                f"[{int(token_types.min())}, {int(token_types.max())}]"
            )
        return token_types.long()

    def output_layer(self, features: Tensor, masked_tokens: Optional[Tensor] = None) -> Tensor:
        """LM logits for features (B, T, D) (or the `masked_tokens` positions only)."""
        return self.lm_head(features, masked_tokens)

    def get_normalized_probs(self, net_output, log_probs: bool, sample=None) -> Tensor:
        logits = net_output[0].float()
        return torch.log_softmax(logits, dim=-1) if log_probs else torch.softmax(logits, dim=-1)

    def max_positions(self) -> int:
        return self.encoder.max_positions()

    # ---- heads -----------------------------------------------------------------------------
    def register_classification_head(
        self,
        name: str,
        num_classes: Optional[int] = None,
        inner_dim: Optional[int] = None,
        head_type: Optional[str] = None,
        **kwargs,
    ):
        """Sentence head reading the first token -> (B, num_classes).  head_type: "classification"
        (HF MegaForSequenceClassification; num_classes=1 is regression) or "multiple_choice" (HF
        MegaForMultipleChoice, num_classes must be 1).  Default: multiple_choice for num_classes=1
        in a model built for fairseq's sentence_ranking task, classification otherwise."""
        if head_type is None:
            head_type = "multiple_choice" if (self.multiple_choice_heads and num_classes == 1) else "classification"
        if head_type == "multiple_choice":
            if num_classes not in (None, 1):
                raise ValueError(
                    f"a multiple-choice head scores one choice at a time (num_classes=1), got num_classes={num_classes}"
                )
            return self.register_head(name, "multiple_choice")
        if head_type != "classification":
            raise ValueError(
                f"unknown head_type {head_type!r} for a sentence head; choose 'classification' or 'multiple_choice'"
            )
        return self.register_head(
            name, "classification", num_classes=num_classes, inner_dim=inner_dim or self.embed_dim
        )

    def register_token_classification_head(self, name: str, num_labels: int):
        """Per-token labels -> (B, T, num_labels) (HF MegaForTokenClassification)."""
        return self.register_head(name, "token_classification", num_labels=num_labels)

    def register_question_answering_head(self, name: str):
        """Span start/end logits -> (B, T, 2) (HF MegaForQuestionAnswering)."""
        return self.register_head(name, "question_answering")

    def register_pooler_head(self, name: str):
        """Pooled first token dense + tanh -> (B, D) (HF MegaModel's pooler_output)."""
        return self.register_head(name, "pooler")

    def register_head(self, name: str, kind: str, **sizes) -> nn.Module:
        """Registers (or replaces) head `name` of registry kind `kind` (`heads.HEAD_KINDS`) built with
        `sizes` (e.g. num_labels=5) and this model's --pooler-dropout / --pooler-activation-fn."""
        act = str(self.cfg.pooler_activation_fn)
        head = head_kind(kind).build(self.embed_dim, self.cfg.pooler_dropout, act, **sizes).train(self.training)
        if name in self.classification_heads:
            old = head_spec(self.classification_heads[name])
            if old != head_spec(head):
                logger.warning(f're-registering head "{name}": {old} -> {head_spec(head)}')
        self.classification_heads[name] = head
        return head

    # ---- checkpoints -----------------------------------------------------------------------
    def upgrade_state_dict_named(self, state_dict, name):
        """Like RoBERTa: drop checkpoint heads this model lacks (or re-register them with
        --load-checkpoint-heads), drop heads of another shape, add this model's new heads with
        their fresh weights; re-centre a simple relative bias trained with another max_positions."""
        prefix = name + "." if name != "" else ""
        super().upgrade_state_dict_named(state_dict, name)
        self._resize_simple_bias(state_dict, prefix)
        head_prefix = prefix + "classification_heads."
        saved = {}
        for key in list(state_dict):
            if key.startswith(head_prefix):
                head_name, rest = key[len(head_prefix) :].split(".", 1)
                saved.setdefault(head_name, {})[rest] = state_dict[key]
        for head_name, params in saved.items():
            spec = head_spec_from_state_dict(params)
            current = self.classification_heads[head_name] if head_name in self.classification_heads else None
            if current is None and safe_getattr(self.cfg, "load_checkpoint_heads", False):
                self.register_head(head_name, spec[0], **spec[1])
                continue
            if current is None or head_spec(current) != spec:
                why = (
                    "not present in the current model"
                    if current is None
                    else f"of another shape ({spec} vs {head_spec(current)})"
                )
                logger.warning(f'deleting head "{head_name}" from the checkpoint: {why}')
                for rest in params:
                    del state_dict[head_prefix + head_name + "." + rest]
        self._add_fresh_token_types(state_dict, prefix)
        for key, value in self.classification_heads.state_dict().items():
            if head_prefix + key not in state_dict:
                logger.info(f"new head parameter {head_prefix + key}: keeping its fresh weights")
                state_dict[head_prefix + key] = value
        out_key = prefix + "lm_head.out_proj.weight"
        if self.cfg.untie_weights_roberta and out_key not in state_dict:  # tied checkpoint, untied model
            state_dict[out_key] = state_dict[prefix + "encoder.stack.embed_tokens.weight"].clone()

    def _add_fresh_token_types(self, state_dict, prefix: str):
        """Fine-tuning with --add-token-type-embeddings from a checkpoint trained without them (a masked LM):
        the token-type embeddings start from this model's fresh weights, as a new head does."""
        key = "encoder.stack.embed_token_types.weight"
        if self.encoder.stack.embed_token_types is not None and prefix + key not in state_dict:
            logger.info(
                f"the checkpoint has no token-type embeddings ({prefix + key}): --add-token-type-embeddings "
                f"starts them from fresh weights ({self.type_vocab_size} types)"
            )
            state_dict[prefix + key] = self.encoder.stack.embed_token_types.weight.detach().clone()

    def _resize_simple_bias(self, state_dict, prefix: str):
        own = self.state_dict()
        for key, value in list(state_dict.items()):
            if not key.endswith(".rel_pos_bias.rel_pos_bias") or not key.startswith(prefix):
                continue
            target = own.get(key[len(prefix) :])
            if target is None or target.shape == value.shape:
                continue
            logger.info(f"re-centring {key} from {value.numel()} to {target.numel()} offsets (max_positions changed)")
            state_dict[key] = recenter_simple_bias(value, target.numel()).view(target.shape)


@register_model_architecture("mega_encoder", "mega_base")
def mega_base(args):
    """transformers' MegaConfig() defaults: exactly HF's MegaForMaskedLM structure (exportable)."""
    set_defaults(
        args,
        encoder_layers=4,
        encoder_embed_dim=128,
        encoder_hidden_dim=256,
        encoder_ffn_embed_dim=256,
        encoder_z_dim=64,
        encoder_n_dim=16,
        encoder_chunk_size=-1,
        rel_pos_bias="rotary",
        normalization_type="scalenorm",
        normalize_before=True,
        truncation_length=None,
        max_positions=2048,
        dropout=0.1,
        attention_dropout=0.1,
        hidden_dropout=0.1,
        activation_dropout=0.1,
        pooler_dropout=0.1,
    )


@register_model_architecture("mega_encoder", "mega_large")
def mega_large(args):
    """12 layers, D=512, H=1024, z=128, FFN 1024 (the original fork's base encoder sizes), HF structure;
    full attention (add --encoder-chunk-size 1024 for long inputs)."""
    set_defaults(
        args,
        encoder_layers=12,
        encoder_embed_dim=512,
        encoder_hidden_dim=1024,
        encoder_ffn_embed_dim=1024,
        encoder_z_dim=128,
    )
    mega_base(args)


@register_model_architecture("mega_encoder", "mega_tiny")
def mega_tiny(args):
    """2 layers, D=32: tests and quick CPU experiments (HF structure)."""
    set_defaults(
        args,
        encoder_layers=2,
        encoder_embed_dim=32,
        encoder_hidden_dim=64,
        encoder_ffn_embed_dim=64,
        encoder_z_dim=16,
        encoder_n_dim=4,
    )
    mega_base(args)
