"""`mega_extractive_qa`: SQuAD-style extractive question answering with a span (start/end) head.

Data (fairseq-preprocess output, written by `scripts/prepare_extractive_qa.py`)::

    DATA/input0/{dict.txt, train.bin/.idx, ...}   question tokens, one question a line
    DATA/input1/{dict.txt, train.bin/.idx, ...}   its context's tokens (same dictionary), same line
    DATA/label/{train,valid,...}.jsonl           per line {"id", "spans": [[start, end], ...] (context
                                                 token positions, inclusive), and optionally "answers"
                                                 (gold texts), "context" (raw text), "offsets" ([char start,
                                                 char end) per context token)}

Inputs are ``<s> question </s> </s> context-window </s>`` (token types 0 / 1 when the model has
token-type embeddings).  Contexts longer than the window (``--max-positions`` minus the question)
are split into overlapping windows ``--doc-stride`` tokens apart (`mega_fairseq.data.qa_windows`).
Training iterates over windows (target: the first gold span, or `<s>` when the window lacks it);
validation batches whole examples, and the criterion `mega_extractive_qa` picks the best span across
each example's windows (every example: `_eval_batches`) and scores exact match and F1 (SQuAD, on the answer
text when "answers", "context" and "offsets" are given, else on token spans).
"""

import json
import logging
import os
from dataclasses import dataclass, field

from fairseq.data import data_utils
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import register_task
from omegaconf import II, MISSING

from ..data.qa_windows import QAWindowDataset
from .encoder_head_task import EncoderHeadTask
from .token_classification import load_input_dictionary

logger = logging.getLogger(__name__)


@dataclass
class ExtractiveQAConfig(FairseqDataclass):
    data: str = field(
        default=MISSING, metadata={"help": "data-bin directory with input0/ (questions), input1/ (contexts), label/"}
    )
    max_positions: int = field(default=512, metadata={"help": "tokens per input window, specials included"})
    doc_stride: int = field(
        default=128, metadata={"help": "step between the starts of consecutive context windows (tokens)"}
    )
    max_question_len: int = field(default=64, metadata={"help": "questions are cut to this many tokens"})
    max_answer_len: int = field(default=30, metadata={"help": "longest predicted answer (tokens)"})
    classification_head_name: str = field(
        default="question_answering_head", metadata={"help": "name of the model's span head"}
    )
    no_shuffle: bool = field(default=False, metadata={"help": "keep the training windows in file order (within sizes)"})
    train_subset: str = II("dataset.train_subset")
    seed: int = II("common.seed")


def read_labels(path: str, count: int):
    """(spans, meta) from a label jsonl file with `count` lines; ValueError naming the line on bad input."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} missing: the answer spans of this split (scripts/prepare_extractive_qa.py writes it)"
        )
    spans, meta = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line)
                spans.append([(int(s), int(e)) for s, e in record.get("spans", [])])
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"{path}:{number}: not a JSON object with 'spans': [[start, end], ...] ({error})"
                ) from None
            meta.append(record)
    if len(spans) != count:
        raise ValueError(
            f"{path}: {len(spans)} lines but {count} questions; the label file needs one line per question"
        )
    return spans, meta


@register_task("mega_extractive_qa", dataclass=ExtractiveQAConfig)
class ExtractiveQATask(EncoderHeadTask):
    def __init__(self, cfg, dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        dictionary = load_input_dictionary(os.path.join(cfg.data, "input0", "dict.txt"))
        logger.info(f"[input] dictionary: {len(dictionary)} types")
        return cls(cfg, dictionary)

    def load_dataset(self, split, combine=False, **kwargs):
        def load(key):
            path = os.path.join(self.cfg.data, key, split)
            dataset = data_utils.load_indexed_dataset(path, self.dictionary, combine=combine)
            if dataset is None:
                raise FileNotFoundError(f"no binarized split '{split}' at {path}.bin/.idx")
            return dataset

        questions, contexts = load("input0"), load("input1")
        if len(questions) != len(contexts):
            raise ValueError(
                f"{self.cfg.data}: {len(questions)} questions but {len(contexts)} contexts in split '{split}'"
            )
        spans, meta = read_labels(os.path.join(self.cfg.data, "label", f"{split}.jsonl"), len(questions))
        training = split in str(self.cfg.train_subset).split(",")
        dataset = QAWindowDataset(
            questions,
            contexts,
            spans,
            self.dictionary,
            max_positions=self.cfg.max_positions,
            doc_stride=self.cfg.doc_stride,
            max_question_len=self.cfg.max_question_len,
            meta=None if training else meta,
            by_example=not training,
            shuffle=training and not self.cfg.no_shuffle,
        )
        logger.info(f"loaded {split}: {len(questions)} questions, {len(dataset.windows)} windows")
        self.datasets[split] = dataset
        return dataset

    def register_head(self, model):
        model.register_question_answering_head(self.cfg.classification_head_name)
