"""SQuAD v1.1 exact match and F1 (on normalized answer text), and their token-span versions.

Text normalization follows the SQuAD definition: lower case, drop punctuation, drop the articles
"a", "an", "the", collapse whitespace.  F1 is over the bag of normalized words.  Scores against
several gold answers take the maximum.  When answer text is not available, `span_exact_match` /
`span_f1` score token spans instead: exact match of (start, end), and F1 of the overlap of the
token positions.
"""

import re
import string
from collections import Counter
from typing import Sequence, Tuple

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(prediction: str, gold: str) -> float:
    pred_words, gold_words = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred_words) & Counter(gold_words)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_words), common / len(gold_words)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals any normalized gold answer, else 0.0."""
    return max(float(normalize_answer(prediction) == normalize_answer(g)) for g in golds)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Max over gold answers of the word-bag F1 (0-1) after normalization."""
    return max(_f1(prediction, g) for g in golds)


Span = Tuple[int, int]  # (first token, last token), inclusive


def span_exact_match(prediction: Span, golds: Sequence[Span]) -> float:
    return max(float(tuple(prediction) == tuple(g)) for g in golds)


def span_f1(prediction: Span, golds: Sequence[Span]) -> float:
    """Max over gold spans of the F1 of overlapping token positions (0-1)."""
    best = 0.0
    for start, end in golds:
        overlap = min(end, prediction[1]) - max(start, prediction[0]) + 1
        if overlap > 0:
            precision = overlap / (prediction[1] - prediction[0] + 1)
            recall = overlap / (end - start + 1)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best
