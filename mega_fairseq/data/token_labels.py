"""Per-token classification targets aligned with `<s> tokens </s>` inputs.

The label split is binarized by fairseq-preprocess with the label dictionary, one label symbol
per input token; the symbol `<pad>` marks tokens that are not scored (the non-first subwords of a
word).  Each item becomes ``[IGNORE] + class ids + [IGNORE]`` (IGNORE = -100 for `<s>` and `</s>`
and for `<pad>` labels), where a class id is the label's index minus the dictionary's specials.
"""

import numpy as np
import torch
from fairseq.data import BaseWrapperDataset, Dictionary

IGNORE_INDEX = -100


def num_labels(label_dictionary: Dictionary) -> int:
    return len(label_dictionary) - label_dictionary.nspecial


def label_names(label_dictionary: Dictionary):
    """Class id -> label symbol."""
    return label_dictionary.symbols[label_dictionary.nspecial :]


def check_aligned(input_sizes: np.ndarray, label_sizes: np.ndarray, where: str) -> None:
    """Raises a ValueError naming the first line whose label count differs from its token count."""
    if len(input_sizes) != len(label_sizes):
        raise ValueError(
            f"{where}: {len(input_sizes)} input lines but {len(label_sizes)} label lines; "
            "the label file must have one line per input line"
        )
    bad = np.nonzero(np.asarray(input_sizes) != np.asarray(label_sizes))[0]
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{where}: line {i + 1} has {input_sizes[i] - 1} tokens but {label_sizes[i] - 1} labels "
            f"({len(bad)} misaligned lines); each label line needs one label per token "
            "(`<pad>` for non-first subwords) - rerun scripts/prepare_token_classification.py"
        )


class TokenLabelDataset(BaseWrapperDataset):
    """Wraps binarized label lines (labels + eos) -> LongTensor (len + 1,) of class ids / IGNORE_INDEX."""

    def __init__(self, labels, label_dictionary: Dictionary, where: str):
        super().__init__(labels)
        self.dictionary = label_dictionary
        self.where = where

    def __getitem__(self, index):
        raw = self.dataset[index][:-1].long()  # drop eos
        nspecial = self.dictionary.nspecial
        unknown = (raw < nspecial) & (raw != self.dictionary.pad())
        if unknown.any():
            raise ValueError(
                f"{self.where}: line {index + 1} has a label that is not in label/dict.txt "
                "(binarized as a special symbol); binarize labels with --srcdict label/dict.txt holding every label"
            )
        target = torch.where(raw == self.dictionary.pad(), torch.full_like(raw, IGNORE_INDEX), raw - nspecial)
        ignore = torch.full((1,), IGNORE_INDEX, dtype=torch.long)
        return torch.cat([ignore, target, ignore])

    def collater(self, samples):
        from fairseq.data import data_utils

        return data_utils.collate_tokens(samples, pad_idx=IGNORE_INDEX)
