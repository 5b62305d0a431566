"""Output heads of the Mega encoder, each with the exact structure of one transformers Mega class.

| head | HF class | output |
|---|---|---|
| `MaskedLMHead` | `MegaForMaskedLM` ([`dense` + tanh] -> `mlm_head`) | (B, T, V), or (M, V) for M masked tokens |
| `MegaPooler` | `MegaModel` pooler (dense + tanh on the first token) | (B, D) |
| `SequenceClassificationHead` | `MegaForSequenceClassification` (`MegaClassificationHead`) | (B, num_classes) |
| `MultipleChoiceHead` | `MegaForMultipleChoice` (pooler -> dropout -> Linear(D, 1)) | (B, 1): one choice's score |
| `TokenClassificationHead` | `MegaForTokenClassification` (dropout -> Linear(D, L)) | (B, T, L) |
| `QuestionAnsweringHead` | `MegaForQuestionAnswering` (`qa_outputs` Linear(D, 2)) | (B, T, 2): start, end |

Every head but the LM head is called as ``head(features, padding_mask)`` with features
(B, T, D) and padding_mask (B, T) bool (True at padding) or None.  Sentence-level heads read
the first non-padding token (token 0, i.e. ``<s>``, with right padding, as HF does), so left
padding does not change their output.  Token-level heads give values at padding positions
too; callers ignore them.

`HEAD_KINDS` is the one registry of head kinds (all but the LM head): each `HeadKind` names its
module, how to build it, its sizes, its transformers class and parameter names there, and the head
name its task uses.  The model, the HF exporter and the HF importer read it; a new head kind is a
module class plus one entry.  The kind is recoverable from parameter names alone
(`head_spec_from_state_dict`), which is how checkpoints restore their heads.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, Union

import torch
from torch import Tensor, nn

from ..modules.masking import first_token

POOLER_ACTIVATIONS = ("tanh", "relu", "gelu", "silu", "linear")


def _activation(name: str):
    if name not in POOLER_ACTIVATIONS:
        raise ValueError(f"unknown pooler activation {name!r}; choose one of {', '.join(POOLER_ACTIVATIONS)}")
    return {
        "tanh": torch.tanh,
        "relu": torch.relu,
        "gelu": nn.functional.gelu,
        "silu": nn.functional.silu,
        "linear": lambda x: x,
    }[name]


class MaskedLMHead(nn.Module):
    """[dense -> tanh] -> out_proj (Linear(D, V) with bias); `weight` ties out_proj to the token embeddings."""

    def __init__(
        self, embed_dim: int, vocab_size: int, hidden_dense: bool = True, weight: Optional[nn.Parameter] = None
    ):
        super().__init__()
        self.dense = nn.Linear(embed_dim, embed_dim) if hidden_dense else None
        self.out_proj = nn.Linear(embed_dim, vocab_size)
        if weight is not None:
            if tuple(weight.shape) != (vocab_size, embed_dim):
                raise ValueError(f"tied LM weight must be ({vocab_size}, {embed_dim}), got {tuple(weight.shape)}")
            self.out_proj.weight = weight
        else:
            nn.init.normal_(self.out_proj.weight, 0.0, embed_dim**-0.5)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, features: Tensor, masked_tokens: Optional[Tensor] = None) -> Tensor:
        """features (B, T, D); masked_tokens (B, T) bool selects the M positions to predict -> (M, V)."""
        if masked_tokens is not None:
            features = features[masked_tokens]
        if self.dense is not None:
            features = torch.tanh(self.dense(features))
        return self.out_proj(features)


class MegaPooler(nn.Module):
    """dense + activation (tanh in HF) on the first token: (B, T, D) -> (B, D)."""

    def __init__(self, embed_dim: int, activation_fn: str = "tanh"):
        super().__init__()
        self.dense = nn.Linear(embed_dim, embed_dim)
        self.activation_fn = activation_fn
        self.activation = _activation(activation_fn)

    def forward(self, features: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        return self.activation(self.dense(first_token(features, padding_mask)))


class SequenceClassificationHead(nn.Module):
    """dropout -> dense -> activation -> dropout -> out_proj on the first token: (B, T, D) -> (B, num_classes)."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        inner_dim: Optional[int] = None,
        dropout: float = 0.0,
        activation_fn: str = "tanh",
    ):
        super().__init__()
        inner_dim = inner_dim or embed_dim
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(embed_dim, inner_dim)
        self.activation_fn = activation_fn
        self.activation = _activation(activation_fn)
        self.out_proj = nn.Linear(inner_dim, num_classes)

    def forward(self, features: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        x = self.dropout(first_token(features, padding_mask))
        x = self.dropout(self.activation(self.dense(x)))
        return self.out_proj(x)


class MultipleChoiceHead(nn.Module):
    """pooler -> dropout -> classifier Linear(D, 1): one score per (context, choice) sequence, (B, T, D) -> (B, 1).

    fairseq's sentence_ranking runs the model once per choice and concatenates the scores into
    (B, num_choices), which is what HF's MegaForMultipleChoice computes on its flattened (B * C, T) batch."""

    def __init__(self, embed_dim: int, dropout: float = 0.0, activation_fn: str = "tanh"):
        super().__init__()
        self.pooler = MegaPooler(embed_dim, activation_fn)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, 1)

    def forward(self, features: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        return self.classifier(self.dropout(self.pooler(features, padding_mask)))


class TokenClassificationHead(nn.Module):
    """dropout -> classifier Linear(D, num_labels) at every position: (B, T, D) -> (B, T, num_labels)."""

    def __init__(self, embed_dim: int, num_labels: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, num_labels)

    def forward(self, features: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        return self.classifier(self.dropout(features))


class QuestionAnsweringHead(nn.Module):
    """qa_outputs Linear(D, 2) at every position: (B, T, D) -> (B, T, 2); [..., 0] = start, [..., 1] = end logits."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.qa_outputs = nn.Linear(embed_dim, 2)

    def forward(self, features: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        return self.qa_outputs(features)


# ---------------------------------------------------------------- the head registry
def _positive(value, what: str, hint: str = "") -> int:
    if not value or value < 1:
        raise ValueError(f"{what} must be a positive number of {hint or what.split('_')[-1]}, got {value}")
    return value


def _logits(out) -> Tensor:
    return out.logits


@dataclass(frozen=True)
class HeadKind:
    """One kind of encoder head (every head but the masked-LM head), declared once.

    The model builds and recognises heads through it (`MegaEncoderModel.register_head`, checkpoint
    restore), the HF exporter and importer (`convert/`) map it to and from its transformers class.

    Fields:
      name: the kind, e.g. "classification".
      module: the head's class (its forward is ``head(features (B, T, D), padding_mask (B, T) or None)``).
      build: ``(embed_dim, dropout, activation_fn, **sizes) -> module``; ValueError for bad sizes.
      sizes: ``module -> {size kwarg: int}``, what `build` needs to rebuild the head (its spec).
      sizes_from_params: ``{parameter name inside the head: tensor} -> sizes``, the same read from a state dict.
      hf_class: the transformers class holding the Mega body plus this head.
      hf_keys: ``(parameter name inside the head, HF key)`` for every parameter of the head; the set of
        parameter names also identifies the kind in a checkpoint (`head_spec_from_state_dict`).
      default_name: the head's name under the task that uses it (that task's default
        --classification-head-name); an imported head is registered under it.
      hf_body_prefix: where `hf_class` keeps its `MegaModel` ("mega.", or "" when it is MegaModel).
      num_labels: transformers' `num_labels` for this head: the size kwarg that holds it, a fixed count,
        or None (not used by `hf_class`).
      hf_output: transformers' output object -> the tensor this head returns.
      hf_choices: `hf_class` takes (B, C, T) choices; one (B, T) sequence is passed as (B, 1, T).
      hf_tanh: the head uses --pooler-activation-fn, which transformers fixes to tanh.
      hf_config_extra: sizes -> further `MegaConfig` kwargs (e.g. problem_type="regression").
      hf_problems: (head, embed_dim) -> why `hf_class` cannot hold this head exactly (empty: it can).
    """

    name: str
    module: Type[nn.Module]
    build: Callable[..., nn.Module]
    sizes: Callable[[nn.Module], Dict[str, int]]
    sizes_from_params: Callable[[Dict[str, Tensor]], Dict[str, int]]
    hf_class: str
    hf_keys: Tuple[Tuple[str, str], ...]
    default_name: str
    hf_body_prefix: str = "mega."
    num_labels: Union[None, int, str] = None
    hf_output: Callable[[Any], Tensor] = _logits
    hf_choices: bool = False
    hf_tanh: bool = False
    hf_config_extra: Callable[[Dict[str, int]], Dict[str, Any]] = lambda sizes: {}
    hf_problems: Callable[[nn.Module, int], List[str]] = lambda head, embed_dim: []

    @property
    def param_names(self) -> frozenset:
        """Names of the head's parameters (relative to the head)."""
        return frozenset(ours for ours, _ in self.hf_keys)


def _classification_problems(head: SequenceClassificationHead, embed_dim: int) -> List[str]:
    inner = head.dense.out_features
    if inner == embed_dim:
        return []
    return [f"classification head inner dim {inner}: HF's classification head is D x D ({embed_dim})"]


_HEAD_KINDS = [
    HeadKind(
        name="classification",  # num_classes=1: regression (fairseq's --regression-target)
        module=SequenceClassificationHead,
        build=lambda D, dropout, act, num_classes=None, inner_dim=None: SequenceClassificationHead(
            D, _positive(num_classes, "num_classes", "classes (1 for regression)"), inner_dim or D, dropout, act
        ),
        sizes=lambda head: {"num_classes": head.out_proj.out_features, "inner_dim": head.dense.out_features},
        sizes_from_params=lambda p: {
            "num_classes": p["out_proj.weight"].size(0),
            "inner_dim": p["dense.weight"].size(0),
        },
        hf_class="MegaForSequenceClassification",
        hf_keys=(
            ("dense.weight", "classifier.dense.weight"),
            ("dense.bias", "classifier.dense.bias"),
            ("out_proj.weight", "classifier.out_proj.weight"),
            ("out_proj.bias", "classifier.out_proj.bias"),
        ),
        default_name="sentence_classification_head",  # sentence_prediction
        num_labels="num_classes",
        hf_tanh=True,
        hf_config_extra=lambda sizes: {"problem_type": "regression"} if sizes["num_classes"] == 1 else {},
        hf_problems=_classification_problems,
    ),
    HeadKind(
        name="multiple_choice",
        module=MultipleChoiceHead,
        build=lambda D, dropout, act: MultipleChoiceHead(D, dropout, act),
        sizes=lambda head: {},
        sizes_from_params=lambda p: {},
        hf_class="MegaForMultipleChoice",
        hf_keys=(
            ("pooler.dense.weight", "mega.pooler.dense.weight"),
            ("pooler.dense.bias", "mega.pooler.dense.bias"),
            ("classifier.weight", "classifier.weight"),
            ("classifier.bias", "classifier.bias"),
        ),
        default_name="sentence_classification_head",  # sentence_ranking
        hf_choices=True,
        hf_tanh=True,
    ),
    HeadKind(
        name="token_classification",
        module=TokenClassificationHead,
        build=lambda D, dropout, act, num_labels=None: TokenClassificationHead(
            D, _positive(num_labels, "num_labels"), dropout
        ),
        sizes=lambda head: {"num_labels": head.classifier.out_features},
        sizes_from_params=lambda p: {"num_labels": p["classifier.weight"].size(0)},
        hf_class="MegaForTokenClassification",
        hf_keys=(("classifier.weight", "classifier.weight"), ("classifier.bias", "classifier.bias")),
        default_name="token_classification_head",  # mega_token_classification
        num_labels="num_labels",
    ),
    HeadKind(
        name="question_answering",
        module=QuestionAnsweringHead,
        build=lambda D, dropout, act: QuestionAnsweringHead(D),
        sizes=lambda head: {},
        sizes_from_params=lambda p: {},
        hf_class="MegaForQuestionAnswering",
        hf_keys=(("qa_outputs.weight", "qa_outputs.weight"), ("qa_outputs.bias", "qa_outputs.bias")),
        default_name="question_answering_head",  # mega_extractive_qa
        num_labels=2,  # start, end
        hf_output=lambda out: torch.stack([out.start_logits, out.end_logits], dim=-1),
    ),
    HeadKind(
        name="pooler",
        module=MegaPooler,
        build=lambda D, dropout, act: MegaPooler(D, act),
        sizes=lambda head: {},
        sizes_from_params=lambda p: {},
        hf_class="MegaModel",
        hf_keys=(("dense.weight", "pooler.dense.weight"), ("dense.bias", "pooler.dense.bias")),
        default_name="pooler",
        hf_body_prefix="",
        hf_output=lambda out: out.pooler_output,
        hf_tanh=True,
    ),
]
# The registry: kind name -> HeadKind.  A new head kind = its module class above + one entry here.
HEAD_KINDS: Dict[str, HeadKind] = {kind.name: kind for kind in _HEAD_KINDS}


def head_kind(name: str) -> HeadKind:
    """The registry entry of head kind `name`; ValueError naming the known kinds otherwise."""
    if name not in HEAD_KINDS:
        raise ValueError(f"unknown head kind {name!r}; choose one of {', '.join(HEAD_KINDS)}")
    return HEAD_KINDS[name]


def head_spec(head: nn.Module) -> Tuple[str, Dict[str, int]]:
    """(kind, size kwargs) of a head module; equal specs mean interchangeable state dicts."""
    for kind in HEAD_KINDS.values():
        if type(head) is kind.module:
            return kind.name, kind.sizes(head)
    raise TypeError(f"not a Mega encoder head: {type(head).__name__}")


def head_spec_from_state_dict(params: Dict[str, Tensor]) -> Tuple[str, Dict[str, int]]:
    """(kind, size kwargs) of a head from its parameters (keys relative to the head, e.g. "out_proj.weight"):
    the kind whose parameter names are exactly these."""
    keys = frozenset(params)
    for kind in HEAD_KINDS.values():
        if kind.param_names == keys:
            return kind.name, kind.sizes_from_params(params)
    raise ValueError(f"cannot tell which Mega encoder head has the parameters {sorted(keys)}")
