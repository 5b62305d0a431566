"""`mega_extractive_qa` criterion: start/end cross-entropy; exact match and F1 per example.

Logits (W, T, 2) for W windows come from the model's question answering head; padding is masked
out.  Loss = (CE(start) + CE(end)) / 2 summed over windows, sample size = W.  In validation the
best span of every example over all its windows (`data.qa_spans`, ``--max-answer-len``)
is scored against its gold answers: SQuAD exact match / word F1 on the normalized answer text
when the label file has the text, else exact match / F1 of token positions.  Logged as `em` and
`f1` (percent, averaged over the examples with a gold answer); select checkpoints with
``--best-checkpoint-metric f1 --maximize-best-checkpoint-metric``.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..data.qa_spans import predict_spans, score_prediction, span_logits


@dataclass
class ExtractiveQACriterionConfig(FairseqDataclass):
    pass


@register_criterion("mega_extractive_qa", dataclass=ExtractiveQACriterionConfig)
class ExtractiveQACriterion(FairseqCriterion):
    def __init__(self, task):
        super().__init__(task)
        self.head_name = task.cfg.classification_head_name
        self.max_answer_len = task.cfg.max_answer_len

    def forward(self, model, sample, reduce=True):
        start, end = span_logits(model, sample, self.head_name, self.task.source_dictionary.pad())
        target = sample["target"]
        loss = (
            F.cross_entropy(start, target[:, 0], reduction="sum") + F.cross_entropy(end, target[:, 1], reduction="sum")
        ) / 2
        n_windows = target.size(0)
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": n_windows,
        }
        if not model.training and "qa" in sample:
            qa = sample["qa"]
            em = f1 = scored = 0.0
            with torch.no_grad():
                predictions = predict_spans(start.detach().cpu(), end.detach().cpu(), qa, self.max_answer_len)
            for (_, s, e), gold, meta in zip(predictions, qa["gold_spans"], qa["meta"]):
                result = score_prediction((s, e), gold, meta)
                if result is not None:
                    em, f1, scored = em + result[0], f1 + result[1], scored + 1
            logging_output.update(qa_em=em, qa_f1=f1, qa_scored=scored)
        return loss, n_windows, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        sample_size = total("sample_size")
        metrics.log_scalar("loss", total("loss") / max(sample_size, 1) / math.log(2), sample_size, round=3)
        if any("qa_scored" in log for log in logging_outputs):
            for key in ("qa_em", "qa_f1", "qa_scored"):
                metrics.log_scalar_sum("_" + key, total(key))

            def percent(key):
                return lambda meters: round(100.0 * meters[key].sum / max(meters["_qa_scored"].sum, 1), 2)

            metrics.log_derived("em", percent("_qa_em"))
            metrics.log_derived("f1", percent("_qa_f1"))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
