"""Entity-level scores of BIO (and IOBES) tag sequences, with conlleval's chunk semantics.

A chunk (entity) is a maximal run of tags of one type: it starts at ``B-X`` or ``S-X``, or at
``I-X``/``E-X`` when the previous tag is ``O`` or of another type (conlleval accepts an ``I``
without its ``B``); it ends before ``O``, ``B-*``, ``S-*``, a tag of another type, or after
``E-X``/``S-X``.  A predicted chunk is correct when the gold sequence has a chunk of the same
type over exactly the same positions.  Tags without a ``B-``/``I-``/``E-``/``S-`` prefix (other
than ``O``) are treated as ``I-`` tags of that type, as conlleval does.
"""

from typing import List, Sequence, Set, Tuple

Chunk = Tuple[str, int, int]  # (type, first position, last position), inclusive


def _split(tag: str) -> Tuple[str, str]:
    if tag == "O":
        return "O", ""
    if len(tag) > 1 and tag[1] in "-_" and tag[0] in "BIES":
        return tag[0], tag[2:]
    return "I", tag


def extract_chunks(tags: Sequence[str]) -> List[Chunk]:
    """Chunks of one tag sequence: [(type, start, end)] in order, `end` inclusive."""
    chunks: List[Chunk] = []
    start, kind = None, ""
    prev_prefix, prev_kind = "O", ""
    for i, tag in enumerate(tags):
        prefix, kind_i = _split(tag)
        ends = start is not None and (prefix in ("O", "B", "S") or kind_i != prev_kind or prev_prefix in ("E", "S"))
        if ends:
            chunks.append((kind, start, i - 1))
            start = None
        if prefix != "O" and start is None:
            start, kind = i, kind_i
        prev_prefix, prev_kind = prefix, kind_i
    if start is not None:
        chunks.append((kind, start, len(tags) - 1))
    return chunks


def chunk_counts(gold: Sequence[str], pred: Sequence[str]) -> Tuple[int, int, int]:
    """(correct, gold, predicted) chunk counts of one sentence; `gold` and `pred` have equal length."""
    if len(gold) != len(pred):
        raise ValueError(f"gold and predicted tag sequences differ in length: {len(gold)} != {len(pred)}")
    gold_chunks: Set[Chunk] = set(extract_chunks(gold))
    pred_chunks: Set[Chunk] = set(extract_chunks(pred))
    return len(gold_chunks & pred_chunks), len(gold_chunks), len(pred_chunks)


def precision_recall_f1(correct: float, gold: float, predicted: float) -> Tuple[float, float, float]:
    """Percentages (0-100); precision (recall) is 0 without predicted (gold) chunks, F1 is 0 when both are 0."""
    precision = 100.0 * correct / predicted if predicted > 0 else 0.0
    recall = 100.0 * correct / gold if gold > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1
