"""Answer spans from a question answering head, shared by training (the `mega_extractive_qa` criterion)
and inference (`mega_fairseq.qa_inference`).

`span_logits` runs the model over a batch of W windows and returns (start, end) logits (W, T) with
padding at -inf; `predict_spans` picks, for every example, the best span over all its windows
(`qa_windows.best_span`, at most ``max_answer_len`` tokens) in context-token coordinates;
`score_prediction` scores one predicted span against the gold answers (SQuAD text exact match / F1
when the label record has the answer text, else token-span exact match / F1).
"""

from typing import Optional, Tuple

from ..metrics.squad import exact_match, span_exact_match, span_f1, token_f1
from .qa_windows import best_span, span_text


def uses_token_types(model) -> bool:
    return getattr(model, "type_vocab_size", 0) > 0


def span_logits(model, sample, head_name: str, pad: int):
    """(start, end) logits (W, T) with padding (token id `pad`) at -inf."""
    net_input = dict(sample["net_input"])
    if uses_token_types(model) and "token_types" in sample:
        net_input["token_types"] = sample["token_types"]
    logits, _ = model(**net_input, features_only=True, classification_head_name=head_name)
    padding = sample["net_input"]["src_tokens"].eq(pad)
    logits = logits.float().masked_fill(padding.unsqueeze(-1), float("-inf"))
    return logits[..., 0], logits[..., 1]


def predict_spans(start, end, qa, max_answer_len: int):
    """Best (score, start, end) in context tokens for every example of the batch, over its windows."""
    windows = {}
    for k, example in enumerate(qa["example"].tolist()):
        off, n = int(qa["context_offset"][k]), int(qa["context_len"][k])
        window = (int(qa["window_start"][k]), start[k, off : off + n], end[k, off : off + n])
        windows.setdefault(example, []).append(window)
    return [best_span(windows.get(i, []), max_answer_len) for i in range(len(qa["gold_spans"]))]


def score_prediction(span, gold_spans, meta) -> Optional[Tuple[float, float]]:
    """(exact match, F1) in [0, 1] of a predicted (start, end), or None without a gold answer."""
    text = span_text(meta, span[0], span[1]) if span[0] >= 0 else ""
    answers = (meta or {}).get("answers")
    if text is not None and answers:
        return exact_match(text, answers), token_f1(text, answers)
    if gold_spans:
        return span_exact_match(span, gold_spans), span_f1(span, gold_spans)
    return None
