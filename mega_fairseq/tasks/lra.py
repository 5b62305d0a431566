"""Long Range Arena tasks: `lra-text` (ListOps, IMDB bytes, AAN retrieval) and `lra-image`
(CIFAR-10 grayscale, Pathfinder, Path-X pixels), with the original fork's names and data layout.

Data (written by `scripts/prepare_lra.py`; the fork's processed data uses the same layout):

    DATA/src-bin/{split}.{bin,idx} + dict.txt    inputs: token ids (+ </s>) or uint8 pixels 0..255
    DATA/src1-bin/{split}.{bin,idx}              second documents: makes `lra-text` a retrieval task
    DATA/label-bin/{split}.{bin,idx} + dict.txt  one label per example; class i = i-th label symbol

`lra-image` also reads the fork's text format (DATA/input/{split}.src: one image per line,
space-separated 0..255; DATA/label/{split}.label: one integer per line).  Pixels become
(x / 255 - mean) / std with `--pixel-normalization mean,std` (CIFAR-10: 0.48,0.24).

A batch is ``{"id", "net_input": {"src_tokens" (B, T), "src_lengths" (B,)[, "src1_tokens",
"src1_lengths"]}, "target" (B,), "nsentences", "ntokens"}``; token inputs are right-padded,
pixel inputs are float (B, H*W).  Use with `--arch mega_lra_*` and `--criterion lra_cross_entropy`.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch
from fairseq.data import (
    BaseWrapperDataset,
    Dictionary,
    IdDataset,
    ListDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    RawLabelDataset,
    RightPadDataset,
    SortDataset,
    TruncateDataset,
    data_utils,
)
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from ..models.mega_lra import CLS_SYMBOL
from ._eval_batches import KeepAllEvalBatchesMixin

logger = logging.getLogger(__name__)

PREPARE_HINT = "write it with scripts/prepare_lra.py TASK RAW_DIR OUT_DIR"


@dataclass
class LRATaskConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "data directory with src-bin/ (and src1-bin/) and label-bin/"})
    truncate_source: Optional[int] = field(
        default=None, metadata={"help": "keep the first N tokens/pixels of every input"}
    )
    no_shuffle: bool = field(
        default=False, metadata={"help": "keep the data order (otherwise shuffled once, then batched by length)"}
    )
    seed: int = II("common.seed")


@dataclass
class LRAImageConfig(LRATaskConfig):
    pixel_normalization: List[float] = field(
        default_factory=lambda: [0.5, 0.5], metadata={"help": "mean,std of pixels scaled to [0, 1]"}
    )


class PixelDataset(BaseWrapperDataset):
    """uint8 pixel rows -> float (x / 255 - mean) / std; batches stack into (B, H*W)."""

    def __init__(self, dataset, mean: float, std: float):
        super().__init__(dataset)
        self.mean, self.std = mean, std

    def __getitem__(self, index):
        return self.dataset[index].float().div(255.0).sub(self.mean).div(self.std)

    def collater(self, samples):
        return torch.stack(samples) if samples else torch.zeros(0, 0)


class _LRATask(KeepAllEvalBatchesMixin, FairseqTask):
    """What both LRA tasks share: labels, batching, class-count check.

    Outside training, batches are not rounded to --required-batch-size-multiple (`KeepAllEvalBatchesMixin`):
    fairseq's rounding drops the tail of a split (issue #5036), which would bias test accuracy."""

    def __init__(self, cfg: LRATaskConfig, dictionary: Optional[Dictionary], label_dictionary: Optional[Dictionary]):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.label_dictionary = label_dictionary
        self.paired = False

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.label_dictionary

    @property
    def num_classes(self) -> Optional[int]:
        return None if self.label_dictionary is None else len(self.label_dictionary) - self.label_dictionary.nspecial

    def _path(self, *parts) -> str:
        return os.path.join(self.cfg.data, *parts)

    @staticmethod
    def _load_label_dictionary(data: str) -> Dictionary:
        path = os.path.join(data, "label-bin", "dict.txt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: {PREPARE_HINT}")
        return Dictionary.load(path)

    def _indexed(self, folder: str, split: str, dictionary):
        prefix = self._path(folder, split)
        dataset = data_utils.load_indexed_dataset(prefix, dictionary, "mmap")
        if dataset is None:
            raise FileNotFoundError(f"{prefix}.bin/.idx not found: {PREPARE_HINT}")
        return dataset

    def _labels(self, split: str) -> np.ndarray:
        """Class index of every example of `split` (binarized label-bin, or the fork's label/{split}.label)."""
        text = self._path("label", f"{split}.label")
        if self.label_dictionary is None and os.path.exists(text):
            with open(text) as f:
                try:
                    return np.array([int(line) for line in f if line.strip()], dtype=np.int64)
                except ValueError as e:
                    raise ValueError(f"{text}: labels must be integers ({e})") from None
        dataset = self._indexed("label-bin", split, self.label_dictionary)
        sizes = np.asarray(dataset.sizes)
        if (sizes != 2).any():
            i = int(np.nonzero(sizes != 2)[0][0])
            raise ValueError(
                f"{self._path('label-bin', split)}: example {i} has {sizes[i] - 1} label tokens; expected exactly one "
                "label per line"
            )
        ids = np.array([int(dataset[i][0]) for i in range(len(dataset))], dtype=np.int64)
        special = ids < self.label_dictionary.nspecial
        if special.any():
            i = int(np.nonzero(special)[0][0])
            raise ValueError(
                f"{self._path('label-bin', split)}: example {i} has the special label "
                f"{self.label_dictionary[ids[i]]!r}; "
                "labels must be symbols of label-bin/dict.txt"
            )
        return ids - self.label_dictionary.nspecial

    def _finish(self, split: str, net_input: dict, sizes: np.ndarray, labels: np.ndarray, ntokens):
        if len(labels) != len(sizes):
            raise ValueError(f"{self.cfg.data}: split {split!r} has {len(sizes)} inputs but {len(labels)} labels")
        dataset = NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": net_input,
                "target": RawLabelDataset(labels.tolist()),
                "nsentences": NumSamplesDataset(),
                "ntokens": ntokens,
            },
            sizes=[sizes],
        )
        if not self.cfg.no_shuffle:
            with data_utils.numpy_seed(self.cfg.seed):
                shuffle = np.random.permutation(len(dataset))
            dataset = SortDataset(dataset, sort_order=[shuffle, sizes])  # by length, ties in random order
        logger.info(f"{split}: {len(dataset)} examples, {self.num_classes or 'unknown number of'} classes")
        self.datasets[split] = dataset
        return dataset

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        wanted = getattr(cfg, "sentence_class_num", None)
        if self.num_classes is not None and wanted is not None and wanted < self.num_classes:
            raise ValueError(
                f"the data has {self.num_classes} classes ({self._path('label-bin', 'dict.txt')}) but the model "
                "predicts "
                f"{wanted}: set --sentence-class-num {self.num_classes}"
            )
        return model

    def max_positions(self):
        return None  # the model's max_positions decides


@register_task("lra-text", dataclass=LRATaskConfig)
class LRATextTask(_LRATask):
    """Token classification of one sequence, or of a pair of documents when DATA/src1-bin exists (retrieval)."""

    @classmethod
    def setup_task(cls, cfg: LRATaskConfig, **kwargs):
        path = os.path.join(cfg.data, "src-bin", "dict.txt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: {PREPARE_HINT}")
        dictionary = Dictionary.load(path)
        dictionary.add_symbol(CLS_SYMBOL)
        task = cls(cfg, dictionary, cls._load_label_dictionary(cfg.data))
        task.paired = os.path.isdir(os.path.join(cfg.data, "src1-bin"))
        logger.info(f"dictionary: {len(dictionary)} types; {'retrieval (pairs)' if task.paired else 'single inputs'}")
        return task

    def _source(self, folder: str, split: str):
        dataset = self._indexed(folder, split, self.dictionary)
        if self.cfg.truncate_source:
            dataset = TruncateDataset(dataset, self.cfg.truncate_source)
        return dataset

    def load_dataset(self, split: str, combine: bool = False, **kwargs):
        src = self._source("src-bin", split)
        net_input = {
            "src_tokens": RightPadDataset(src, pad_idx=self.dictionary.pad()),
            "src_lengths": NumelDataset(src, reduce=False),
        }
        sizes = np.asarray(src.sizes)
        ntokens = NumelDataset(src, reduce=True)
        if self.paired:
            src1 = self._source("src1-bin", split)
            if len(src1) != len(src):
                raise ValueError(
                    f"{self.cfg.data}: split {split!r} has {len(src)} first documents but {len(src1)} second documents "
                    "(src1-bin)"
                )
            net_input.update(
                src1_tokens=RightPadDataset(src1, pad_idx=self.dictionary.pad()),
                src1_lengths=NumelDataset(src1, reduce=False),
            )
            sizes = np.maximum(sizes, np.asarray(src1.sizes))
        return self._finish(split, net_input, sizes, self._labels(split), ntokens)


@register_task("lra-image", dataclass=LRAImageConfig)
class LRAImageTask(_LRATask):
    """Classification of images given as pixel sequences (row by row)."""

    @classmethod
    def setup_task(cls, cfg: LRAImageConfig, **kwargs):
        if len(cfg.pixel_normalization) != 2 or cfg.pixel_normalization[1] <= 0:
            raise ValueError(
                f"--pixel-normalization takes mean,std with std > 0 (e.g. 0.48,0.24), got "
                f"{list(cfg.pixel_normalization)}"
            )
        label_dictionary = None
        if not os.path.isdir(os.path.join(cfg.data, "label")):
            label_dictionary = cls._load_label_dictionary(cfg.data)
        return cls(cfg, None, label_dictionary)

    def _pixels(self, split: str):
        text = self._path("input", f"{split}.src")
        if os.path.exists(text) and not os.path.exists(self._path("src-bin", f"{split}.bin")):
            rows = []
            with open(text) as f:
                for lineno, line in enumerate(f, start=1):
                    try:
                        rows.append(torch.tensor([int(v) for v in line.split()], dtype=torch.uint8))
                    except (ValueError, RuntimeError):
                        raise ValueError(f"{text}:{lineno}: pixels must be integers 0..255") from None
            return ListDataset(rows, np.array([len(r) for r in rows]))
        return self._indexed("src-bin", split, None)

    def load_dataset(self, split: str, combine: bool = False, **kwargs):
        raw = self._pixels(split)
        sizes = np.asarray(raw.sizes)
        if len(sizes) and (sizes != sizes[0]).any():
            i = int(np.nonzero(sizes != sizes[0])[0][0])
            raise ValueError(
                f"{self.cfg.data}: split {split!r} mixes image sizes ({sizes[0]} pixels for example 0, {sizes[i]} for "
                f"example {i}); "
                "every image of a task must have the same size"
            )
        mean, std = self.cfg.pixel_normalization
        src = PixelDataset(raw, mean, std)
        if self.cfg.truncate_source:
            src = TruncateDataset(src, self.cfg.truncate_source)
            sizes = np.minimum(sizes, self.cfg.truncate_source)
        net_input = {"src_tokens": src, "src_lengths": NumelDataset(src, reduce=False)}
        return self._finish(split, net_input, sizes, self._labels(split), NumelDataset(src, reduce=True))
