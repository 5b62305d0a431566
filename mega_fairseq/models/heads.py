"""Output heads of the Mega encoder, each with the exact structure of one transformers Mega class.

| head | HF class | output |
|---|---|---|
| `MaskedLMHead` | `MegaForMaskedLM` ([`dense` + tanh] -> `mlm_head`) | (B, T, V), or (M, V) for M masked tokens |
| `MegaPooler` | `MegaModel` pooler (dense + tanh on the first token) | (B, D) |
| `SequenceClassificationHead` | `MegaForSequenceClassification` (`MegaClassificationHead`) | (B, num_classes) |
| `MultipleChoiceHead` | `MegaForMultipleChoice` (pooler -> dropout -> Linear(D, 1)) | (B, 1): one choice's score |
| `TokenClassificationHead` | `MegaForTokenClassification` (dropout -> Linear(D, L)) | (B, T, L) |
| `QuestionAnsweringHead` | `MegaForQuestionAnswering` (`qa_outputs` Linear(D, 2)) | (B, T, 2): [..., 0] start, [..., 1] end |

Every head but the LM head is called as ``head(features, padding_mask)`` with features
(B, T, D) and padding_mask (B, T) bool (True at padding) or None.  Sentence-level heads read
the first non-padding token (token 0, i.e. ``<s>``, with right padding, as HF does), so left
padding does not change their output.  Token-level heads give values at padding positions
too; callers ignore them.

The head kind is recoverable from parameter names alone (`head_spec_from_state_dict`), which
is how checkpoints restore their heads.
"""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

POOLER_ACTIVATIONS = ("tanh", "relu", "gelu", "silu", "linear")


def _activation(name: str):
    if name not in POOLER_ACTIVATIONS:
        raise ValueError(f"unknown pooler activation {name!r}; choose one of {', '.join(POOLER_ACTIVATIONS)}")
    return {"tanh": torch.tanh, "relu": torch.relu, "gelu": nn.functional.gelu, "silu": nn.functional.silu, "linear": lambda x: x}[name]


def first_token(features: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
    """(B, T, D) -> (B, D): each sample's first non-padding position (position 0 without padding)."""
    if padding_mask is None:
        return features[:, 0]
    first = (~padding_mask).long().argmax(dim=1)
    return features[torch.arange(features.size(0), device=features.device), first]


class MaskedLMHead(nn.Module):
    """[dense -> tanh] -> out_proj (Linear(D, V) with bias); `weight` ties out_proj to the token embeddings."""

    def __init__(self, embed_dim: int, vocab_size: int, hidden_dense: bool = True, weight: Optional[nn.Parameter] = None):
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

    def __init__(self, embed_dim: int, num_classes: int, inner_dim: Optional[int] = None, dropout: float = 0.0, activation_fn: str = "tanh"):
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


# kind -> head class; the kinds are also the keys of hf_names.ENCODER_HEAD_KEYS
HEAD_KINDS = {
    "classification": SequenceClassificationHead,
    "multiple_choice": MultipleChoiceHead,
    "token_classification": TokenClassificationHead,
    "question_answering": QuestionAnsweringHead,
    "pooler": MegaPooler,
}


def head_spec(head: nn.Module) -> Tuple[str, Dict[str, int]]:
    """(kind, size kwargs) of a head module; equal specs mean interchangeable state dicts."""
    if isinstance(head, SequenceClassificationHead):
        return "classification", {"num_classes": head.out_proj.out_features, "inner_dim": head.dense.out_features}
    if isinstance(head, TokenClassificationHead):
        return "token_classification", {"num_labels": head.classifier.out_features}
    for kind, cls in HEAD_KINDS.items():
        if type(head) is cls:
            return kind, {}
    raise TypeError(f"not a Mega encoder head: {type(head).__name__}")


def head_spec_from_state_dict(params: Dict[str, Tensor]) -> Tuple[str, Dict[str, int]]:
    """(kind, size kwargs) of a head from its parameters (keys relative to the head, e.g. "out_proj.weight")."""
    keys = set(params)
    if "out_proj.weight" in keys and "dense.weight" in keys:
        return "classification", {"num_classes": params["out_proj.weight"].size(0), "inner_dim": params["dense.weight"].size(0)}
    if "pooler.dense.weight" in keys and "classifier.weight" in keys:
        return "multiple_choice", {}
    if "classifier.weight" in keys:
        return "token_classification", {"num_labels": params["classifier.weight"].size(0)}
    if "qa_outputs.weight" in keys:
        return "question_answering", {}
    if keys == {"dense.weight", "dense.bias"}:
        return "pooler", {}
    raise ValueError(f"cannot tell which Mega encoder head has the parameters {sorted(keys)}")
