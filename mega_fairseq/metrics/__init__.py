"""Evaluation metrics of the fine-tuning tasks: entity-level BIO scores and SQuAD exact match / F1."""

from .bio import chunk_counts, extract_chunks, precision_recall_f1
from .squad import exact_match, normalize_answer, span_exact_match, span_f1, token_f1

__all__ = [
    "chunk_counts",
    "extract_chunks",
    "precision_recall_f1",
    "exact_match",
    "normalize_answer",
    "span_exact_match",
    "span_f1",
    "token_f1",
]
