"""Extractive QA inputs: question + context windows, and the best answer span across windows.

Each input is ``<s> question </s> </s> context[w : w + n] </s>`` (RoBERTa's pair layout) with
token types 0 for ``<s> question </s>`` and 1 for the rest.  A context longer than
``max_positions - len(question) - 4`` tokens is cut into windows of that length whose starts are
``doc_stride`` tokens apart (BERT's `doc_stride`: the step between window starts, so consecutive
windows overlap by ``window - doc_stride`` tokens); the last window ends at the end of the context.

Training targets: the answer's (start, end) positions in the input when the whole answer lies in
the window, else (0, 0), the `<s>` position (BERT's convention for windows without the answer).
Prediction: in every window the best (start, end) over context positions with start <= end and
end - start < max_answer_len by start logit + end logit; across windows the highest score wins.
"""

from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils
from torch import Tensor

Span = Tuple[int, int]


def plan_windows(context_len: int, window_len: int, doc_stride: int) -> List[Tuple[int, int]]:
    """[(start, length)] of the windows covering `context_len` tokens (one empty window if 0)."""
    if window_len < 1:
        raise ValueError(f"window length must be >= 1 token, got {window_len}")
    if doc_stride < 1:
        raise ValueError(f"--doc-stride must be >= 1, got {doc_stride}")
    stride = min(doc_stride, window_len)
    windows, start = [], 0
    while True:
        length = min(window_len, context_len - start)
        windows.append((start, length))
        if start + length >= context_len:
            return windows
        start += stride


def best_span_in_window(start_logits: Tensor, end_logits: Tensor, max_answer_len: int) -> Tuple[float, int, int]:
    """start/end_logits: (n,) over the window's context tokens -> (score, start, end), end inclusive."""
    n = start_logits.numel()
    if n == 0:
        return float("-inf"), -1, -1
    scores = start_logits.float()[:, None] + end_logits.float()[None, :]  # (n, n): [start, end]
    offset = torch.arange(n)[None, :] - torch.arange(n)[:, None]  # end - start
    scores = scores.masked_fill((offset < 0) | (offset >= max_answer_len), float("-inf"))
    flat = int(scores.argmax())
    return float(scores.view(-1)[flat]), flat // n, flat % n


def best_span(windows: Iterable[Tuple[int, Tensor, Tensor]], max_answer_len: int) -> Tuple[float, int, int]:
    """windows: (context start of the window, start logits, end logits over its context tokens).
    Returns (score, start, end) in context token positions; the first window wins ties."""
    best = (float("-inf"), -1, -1)
    for window_start, start_logits, end_logits in windows:
        score, s, e = best_span_in_window(start_logits, end_logits, max_answer_len)
        if score > best[0]:
            best = (score, window_start + s, window_start + e)
    return best


class QAWindowDataset(FairseqDataset):
    """Windows of (question, context) pairs.

    questions/contexts: token datasets (items end with eos, as fairseq-preprocess writes them);
    answers: per example the list of gold (start, end) context-token spans (may be empty at test
    time); meta: per example an optional dict with "answers" (gold texts), "context" (raw text) and
    "offsets" ([char start, char end] per context token) to turn predicted spans into text.
    `by_example=False` (training): one item per window.  `by_example=True` (validation): one item
    per example holding all its windows, so a batch always has every window of its examples.
    """

    def __init__(
        self,
        questions,
        contexts,
        answers: Sequence[Sequence[Span]],
        dictionary,
        max_positions: int,
        doc_stride: int,
        max_question_len: int,
        meta: Optional[Sequence[Optional[dict]]] = None,
        by_example: bool = False,
        shuffle: bool = False,
    ):
        super().__init__()
        if len(questions) != len(contexts) or len(questions) != len(answers):
            raise ValueError(
                f"questions ({len(questions)}), contexts ({len(contexts)}) and answer lines ({len(answers)}) differ in "
                "number"
            )
        self.questions, self.contexts, self.answers = questions, contexts, answers
        self.meta = meta
        self.bos, self.eos, self.pad = dictionary.bos(), dictionary.eos(), dictionary.pad()
        self.by_example, self.shuffle = by_example, shuffle
        self.windows = []  # (example, question length, window start, window length)
        first = []
        for i in range(len(questions)):
            q_len = min(int(questions.sizes[i]) - 1, max_question_len)
            c_len = int(contexts.sizes[i]) - 1
            window_len = max_positions - q_len - 4
            if window_len < 1:
                raise ValueError(
                    f"example {i + 1}: a question of {q_len} tokens leaves no room for context with "
                    f"--max-positions {max_positions}; raise --max-positions or lower --max-question-len"
                )
            for s, e in answers[i]:
                if not (0 <= s <= e < c_len):
                    raise ValueError(f"example {i + 1}: answer span ({s}, {e}) outside its context of {c_len} tokens")
            first.append(len(self.windows))
            for start, length in plan_windows(c_len, window_len, doc_stride):
                self.windows.append((i, q_len, start, length))
        self.first_window = np.array(first + [len(self.windows)], dtype=np.int64)
        window_sizes = np.array([q + n + 4 for _, q, _, n in self.windows], dtype=np.int64)
        if by_example:
            counts = np.diff(self.first_window)
            self.sizes = (
                np.maximum.reduceat(window_sizes, self.first_window[:-1]) if len(window_sizes) else window_sizes
            )
            self._num_tokens = (
                np.add.reduceat(window_sizes, self.first_window[:-1]) if len(window_sizes) else window_sizes
            )
            assert len(self.sizes) == len(counts)
        else:
            self.sizes = window_sizes
            self._num_tokens = window_sizes

    def _window(self, w: int) -> dict:
        example, q_len, start, length = self.windows[w]
        question = self.questions[example][:q_len]
        context = self.contexts[example][start : start + length]
        head = torch.cat([question.new_tensor([self.bos]), question, question.new_tensor([self.eos])])
        tail = torch.cat([question.new_tensor([self.eos]), context, question.new_tensor([self.eos])])
        offset = len(head) + 1  # input position of the window's first context token
        target = (0, 0)
        for s, e in self.answers[example][:1]:
            if start <= s and e < start + length:
                target = (s - start + offset, e - start + offset)
        return {
            "example": example,
            "source": torch.cat([head, tail]).long(),
            "token_types": torch.cat([torch.zeros(len(head)), torch.ones(len(tail))]).long(),
            "target": target,
            "window_start": start,
            "context_offset": offset,
            "context_len": length,
        }

    def __getitem__(self, index):
        if not self.by_example:
            return [self._window(index)]
        return [self._window(w) for w in range(self.first_window[index], self.first_window[index + 1])]

    def __len__(self):
        return len(self.sizes)

    def collater(self, samples):
        """samples: lists of windows -> a batch of windows; `qa` holds what span prediction needs."""
        windows = [w for item in samples for w in item]
        if not windows:
            return {}
        examples = []
        for w in windows:
            if not examples or examples[-1] != w["example"]:
                examples.append(w["example"])
        position = {ex: k for k, ex in enumerate(examples)}
        src = data_utils.collate_tokens([w["source"] for w in windows], self.pad)
        meta = [self.meta[ex] if self.meta is not None else None for ex in examples]
        return {
            "id": torch.tensor([w["example"] for w in windows]),
            "nsentences": len(examples),
            "ntokens": sum(len(w["source"]) for w in windows),
            "net_input": {"src_tokens": src, "src_lengths": torch.tensor([len(w["source"]) for w in windows])},
            "token_types": data_utils.collate_tokens([w["token_types"] for w in windows], 0),
            "target": torch.tensor([w["target"] for w in windows]),  # (windows, 2): start, end positions
            "qa": {
                "example": torch.tensor([position[w["example"]] for w in windows]),  # index into the lists below
                "window_start": torch.tensor([w["window_start"] for w in windows]),
                "context_offset": torch.tensor([w["context_offset"] for w in windows]),
                "context_len": torch.tensor([w["context_len"] for w in windows]),
                "gold_spans": [list(self.answers[ex]) for ex in examples],
                "meta": meta,
            },
        }

    def num_tokens(self, index):
        return int(self._num_tokens[index])

    def num_tokens_vec(self, indices):
        return self._num_tokens[indices]

    def size(self, index):
        return int(self.sizes[index])

    def ordered_indices(self):
        """By size; ties in random order when shuffling (fairseq seeds numpy per epoch around this call)."""
        indices = np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))
        return indices[np.argsort(self.sizes[indices], kind="mergesort")]

    @property
    def supports_prefetch(self):
        return False


def span_text(meta: Optional[dict], start: int, end: int) -> Optional[str]:
    """The context text under context tokens start..end, or None without "context"/"offsets"."""
    if not meta or "context" not in meta or "offsets" not in meta:
        return None
    return meta["context"][meta["offsets"][start][0] : meta["offsets"][end][1]]
