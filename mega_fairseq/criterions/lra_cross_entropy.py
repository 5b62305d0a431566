"""`lra_cross_entropy`: sequence-classification cross-entropy with accuracy (the original fork's criterion).

The model maps ``sample["net_input"]`` to logits (B, C); the target is one class per example
(B,).  The loss is summed over examples and normalized per example (every LRA recipe passes
`--sentence-avg`; the sample size here is always the number of examples).  Logs `loss` (base 2,
per example) and `accuracy` (percent of examples whose argmax is the target).
"""

import math
from dataclasses import dataclass

import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass


@dataclass
class LRACrossEntropyConfig(FairseqDataclass):
    pass


@register_criterion("lra_cross_entropy", dataclass=LRACrossEntropyConfig)
class LRACrossEntropyCriterion(FairseqCriterion):
    def forward(self, model, sample, reduce=True):
        logits = model(**sample["net_input"])
        target = sample["target"].view(-1)
        if logits.dim() != 2 or logits.size(0) != target.numel():
            raise ValueError(
                f"lra_cross_entropy expects logits (batch, classes) for {target.numel()} targets, got "
                f"{tuple(logits.shape)}"
            )
        num_classes = logits.size(1)
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
            bad = target[(target < 0) | (target >= num_classes)][0].item()
            raise ValueError(
                f"label {bad} is outside the model's {num_classes} classes: set --sentence-class-num to the number of "
                "classes"
            )
        lprobs = F.log_softmax(logits.float(), dim=-1)
        loss = F.nll_loss(lprobs, target, reduction="sum" if reduce else "none")
        ncorrect = (lprobs.argmax(dim=-1) == target).sum()
        nsentences = target.numel()
        logging_output = {
            "loss": loss.data,
            "ncorrect": ncorrect.data,
            "ntokens": sample["ntokens"],
            "nsentences": nsentences,
            "sample_size": nsentences,
        }
        return loss, nsentences, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss = sum(log.get("loss", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        nsentences = sum(log.get("nsentences", 0) for log in logging_outputs)
        ncorrect = sum(log.get("ncorrect", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss / max(sample_size, 1) / math.log(2), sample_size, round=3)
        metrics.log_scalar("accuracy", 100.0 * ncorrect / max(nsentences, 1), nsentences, round=3)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
