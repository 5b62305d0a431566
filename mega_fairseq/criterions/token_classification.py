"""`mega_token_classification` criterion: token cross-entropy, token accuracy, entity P/R/F1.

Logits (B, T, C) come from the model's token classification head; targets (B, T) hold class ids
with -100 at unscored positions.  Loss = summed cross-entropy over scored tokens, sample size = the
number of scored tokens.  Validation also logs `accuracy` (scored tokens) and, from the BIO tags of
the label dictionary, entity-level `ent_p`, `ent_r`, `ent_f1` (conlleval semantics, summed over the
whole validation set; `mega_fairseq.metrics.bio`).  Select checkpoints with
``--best-checkpoint-metric ent_f1 --maximize-best-checkpoint-metric``.
"""

import math
from dataclasses import dataclass

import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..data.token_labels import IGNORE_INDEX, label_names
from ..metrics.bio import chunk_counts, precision_recall_f1


@dataclass
class TokenClassificationCriterionConfig(FairseqDataclass):
    pass


@register_criterion("mega_token_classification", dataclass=TokenClassificationCriterionConfig)
class TokenClassificationCriterion(FairseqCriterion):
    def __init__(self, task):
        super().__init__(task)
        self.head_name = task.cfg.classification_head_name
        self.labels = label_names(task.label_dictionary)

    def forward(self, model, sample, reduce=True):
        logits, _ = model(**sample["net_input"], features_only=True, classification_head_name=self.head_name)
        target = sample["target"]
        if logits.shape[:2] != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(target.shape)}")
        scored = target.ne(IGNORE_INDEX)
        loss = F.cross_entropy(logits.float()[scored], target[scored], reduction="sum")
        pred = logits.argmax(-1)
        n_scored = int(scored.sum())
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": target.size(0),
            "sample_size": n_scored,
            "nscored": n_scored,
            "ncorrect": int((pred.eq(target) & scored).sum()),
        }
        if not model.training:
            correct = gold = predicted = 0
            for row_pred, row_gold, row_mask in zip(pred.tolist(), target.tolist(), scored.tolist()):
                gold_tags = [self.labels[g] for g, m in zip(row_gold, row_mask) if m]
                pred_tags = [self.labels[p] for p, m in zip(row_pred, row_mask) if m]
                c, g, p = chunk_counts(gold_tags, pred_tags)
                correct, gold, predicted = correct + c, gold + g, predicted + p
            logging_output.update(ent_correct=correct, ent_gold=gold, ent_pred=predicted)
        return loss, n_scored, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        loss, sample_size = total("loss"), total("sample_size")
        metrics.log_scalar("loss", loss / max(sample_size, 1) / math.log(2), sample_size, round=3)
        metrics.log_scalar("accuracy", 100.0 * total("ncorrect") / max(total("nscored"), 1), total("nscored"), round=2)
        if any("ent_gold" in log for log in logging_outputs):
            for key in ("ent_correct", "ent_gold", "ent_pred"):
                metrics.log_scalar_sum("_" + key, total(key))

            def score(index):
                return lambda meters: round(
                    precision_recall_f1(meters["_ent_correct"].sum, meters["_ent_gold"].sum, meters["_ent_pred"].sum)[
                        index
                    ],
                    2,
                )

            metrics.log_derived("ent_p", score(0))
            metrics.log_derived("ent_r", score(1))
            metrics.log_derived("ent_f1", score(2))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
