"""Answer questions with a checkpoint fine-tuned by `mega_extractive_qa`.

    from mega_fairseq.qa_inference import QAPredictor
    qa = QAPredictor.from_checkpoint("checkpoints/squad/checkpoint_best.pt", spm="spm.model")  # spm: as in preparation
    text, score = qa.answer("Who wrote it?", "It was written by Ada in 1843.")

    python -m mega_fairseq.qa_inference CHECKPOINT --question Q --context C [--spm MODEL]

The context is tokenized like `scripts/prepare_extractive_qa.py` does, windowed with the task's
`--max-positions`/`--doc-stride`, and the best span across windows is returned as context text.
"""

import argparse
from typing import Optional, Tuple

import numpy as np
import torch
from fairseq.data import ListDataset

from . import plugin  # noqa: F401  registers the models and tasks checkpoints are built with
from .data.qa_spans import predict_spans, span_logits
from .data.qa_windows import QAWindowDataset, span_text
from .data.subword import SubwordTokenizer


class QAPredictor:
    def __init__(self, model, task, tokenizer: Optional[SubwordTokenizer] = None):
        self.model, self.task = model.eval(), task
        self.tokenizer = tokenizer or SubwordTokenizer()

    @classmethod
    def from_checkpoint(cls, path: str, spm: Optional[str] = None, data: Optional[str] = None) -> "QAPredictor":
        """`data`: the data-bin directory when it moved since training (its input0/dict.txt is read)."""
        from fairseq import checkpoint_utils

        overrides = {"data": data} if data else None
        models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(path)], arg_overrides=overrides)
        if type(task).__name__ != "ExtractiveQATask":  # (the task class, registered by the plugin)
            raise ValueError(
                f"{path} is a {type(task).__name__} checkpoint, not an extractive QA model: pass a checkpoint "
                "fine-tuned with --task mega_extractive_qa"
            )
        return cls(models[0], task, SubwordTokenizer(spm))

    def _encode(self, tokens):
        return self.task.dictionary.encode_line(" ".join(tokens), add_if_not_exist=False, append_eos=True).long()

    @torch.no_grad()
    def answer(self, question: str, context: str) -> Tuple[str, float]:
        """(answer text, start + end logit score) of the best span over the context's windows."""
        cfg = self.task.cfg
        q_tokens = self.tokenizer.tokenize_with_offsets(question)[0]
        c_tokens, offsets = self.tokenizer.tokenize_with_offsets(context)
        if not q_tokens or not c_tokens:
            raise ValueError("question and context must each hold at least one token")
        q, c = self._encode(q_tokens), self._encode(c_tokens)
        dataset = QAWindowDataset(
            ListDataset([q], np.array([len(q)])),
            ListDataset([c], np.array([len(c)])),
            [[]],
            self.task.dictionary,
            max_positions=cfg.max_positions,
            doc_stride=cfg.doc_stride,
            max_question_len=cfg.max_question_len,
            meta=[{"context": context, "offsets": offsets}],
            by_example=True,
        )
        sample = dataset.collater([dataset[0]])
        device = next(self.model.parameters()).device
        sample = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in sample.items()}
        sample["net_input"] = {k: v.to(device) for k, v in sample["net_input"].items()}
        start, end = span_logits(self.model, sample, cfg.classification_head_name, self.task.dictionary.pad())
        score, s, e = predict_spans(start.cpu(), end.cpu(), sample["qa"], cfg.max_answer_len)[0]
        return span_text(sample["qa"]["meta"][0], s, e), score


def main():
    parser = argparse.ArgumentParser(
        description="Answer a question from a context with a mega_extractive_qa checkpoint"
    )
    parser.add_argument("checkpoint")
    parser.add_argument("--question", required=True)
    parser.add_argument("--context", required=True)
    parser.add_argument("--spm", help="the sentencepiece model used in preparation (default: whitespace words)")
    parser.add_argument("--data", help="data-bin directory, if it moved since training")
    args = parser.parse_args()
    text, score = QAPredictor.from_checkpoint(args.checkpoint, args.spm, args.data).answer(args.question, args.context)
    print(f"{text}\t{score:.3f}")


if __name__ == "__main__":
    main()
