"""Base of the tasks that fine-tune one `mega_encoder` head (token classification, extractive QA).

One input dictionary (`self.dictionary`), the task's `--max-positions` passed to the model, the
head registered when the model is built (`register_head`), and evaluation batches that keep
every example (`KeepAllEvalBatchesMixin`).
"""

import contextlib

from fairseq.tasks import FairseqTask
from omegaconf import OmegaConf, open_dict

from ._eval_batches import KeepAllEvalBatchesMixin


class EncoderHeadTask(KeepAllEvalBatchesMixin, FairseqTask):
    def register_head(self, model):
        """Registers this task's head (named `cfg.classification_head_name`) on `model`."""
        raise NotImplementedError

    def build_model(self, cfg, from_checkpoint=False):
        from fairseq import models

        with open_dict(cfg) if OmegaConf.is_config(cfg) else contextlib.ExitStack():
            cfg.max_positions = self.cfg.max_positions
        model = models.build_model(cfg, self, from_checkpoint)
        self.register_head(model)
        return model

    def max_positions(self):
        return self.cfg.max_positions

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary
