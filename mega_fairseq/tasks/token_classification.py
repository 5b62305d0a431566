"""`mega_token_classification`: per-token labels (NER/POS tagging) with a token classification head.

Data (fairseq-preprocess output, written by `scripts/prepare_token_classification.py`)::

    DATA/input0/{dict.txt, train.bin/.idx, valid.bin/.idx, ...}   subword tokens, one sentence a line
    DATA/label/{dict.txt, train.bin/.idx, valid.bin/.idx, ...}    one label per token, `<pad>` on
                                                                  non-first subwords (not scored)

Inputs are ``<s> tokens </s>``; targets are class ids at first subwords and -100 elsewhere (the
`<s>`/`</s>` positions, other subwords), which loss and metrics ignore.  The number of labels is
the size of `label/dict.txt`; the model gets a head of that size named
``--classification-head-name`` (`register_token_classification_head`).  The input dictionary gets
`<mask>` appended like fairseq's `masked_lm`, so a masked-LM checkpoint's embeddings fit
(`--restore-file ckpt --reset-optimizer --reset-dataloader --reset-meters`).
Validation batches keep every sentence (`_eval_batches`).
Criterion: `mega_token_classification` (token accuracy; entity precision/recall/F1 of BIO tags).
"""

import logging
import os
from dataclasses import dataclass, field

import numpy as np
from fairseq.data import (
    Dictionary,
    IdDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    PrependTokenDataset,
    RightPadDataset,
    SortDataset,
    data_utils,
)
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import register_task
from omegaconf import II, MISSING

from ..data.token_labels import TokenLabelDataset, check_aligned, num_labels
from .encoder_head_task import EncoderHeadTask

logger = logging.getLogger(__name__)


@dataclass
class TokenClassificationConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "data-bin directory with input0/ and label/"})
    max_positions: int = field(default=512, metadata={"help": "max tokens per sentence, <s> and </s> included"})
    classification_head_name: str = field(
        default="token_classification_head", metadata={"help": "name of the model's token classification head"}
    )
    no_shuffle: bool = field(default=False, metadata={"help": "keep the training sentences in file order"})
    train_subset: str = II("dataset.train_subset")
    seed: int = II("common.seed")


def load_input_dictionary(path: str) -> Dictionary:
    """The input dictionary as fairseq's masked_lm loads it (with `<mask>` appended)."""
    dictionary = Dictionary.load(path)
    dictionary.add_symbol("<mask>")
    return dictionary


@register_task("mega_token_classification", dataclass=TokenClassificationConfig)
class TokenClassificationTask(EncoderHeadTask):
    def __init__(self, cfg, data_dictionary, label_dictionary):
        super().__init__(cfg)
        self.dictionary = data_dictionary
        self.label_dictionary = label_dictionary

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        data_dict = load_input_dictionary(os.path.join(cfg.data, "input0", "dict.txt"))
        label_dict = Dictionary.load(os.path.join(cfg.data, "label", "dict.txt"))
        if num_labels(label_dict) < 1:
            raise ValueError(f"{cfg.data}/label/dict.txt holds no labels")
        logger.info(f"[input] dictionary: {len(data_dict)} types; {num_labels(label_dict)} labels")
        return cls(cfg, data_dict, label_dict)

    @property
    def num_labels(self) -> int:
        return num_labels(self.label_dictionary)

    def load_dataset(self, split, combine=False, **kwargs):
        def load(key, dictionary):
            path = os.path.join(self.cfg.data, key, split)
            dataset = data_utils.load_indexed_dataset(path, dictionary, combine=combine)
            if dataset is None:
                raise FileNotFoundError(f"no binarized split '{split}' at {path}.bin/.idx")
            return dataset

        tokens = load("input0", self.dictionary)
        raw_labels = load("label", self.label_dictionary)
        check_aligned(tokens.sizes, raw_labels.sizes, f"{self.cfg.data}/label/{split} vs input0/{split}")
        labels = TokenLabelDataset(raw_labels, self.label_dictionary, f"{self.cfg.data}/label/{split}")
        tokens = PrependTokenDataset(tokens, self.dictionary.bos())
        dataset = NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": {
                    "src_tokens": RightPadDataset(tokens, pad_idx=self.dictionary.pad()),
                    "src_lengths": NumelDataset(tokens, reduce=False),
                },
                "target": labels,
                "nsentences": NumSamplesDataset(),
                "ntokens": NumelDataset(tokens, reduce=True),
            },
            sizes=[tokens.sizes],
        )
        if not self.cfg.no_shuffle:
            with data_utils.numpy_seed(self.cfg.seed):
                shuffle = np.random.permutation(len(tokens))
            dataset = SortDataset(dataset, sort_order=[shuffle])
        logger.info(f"loaded {split}: {len(dataset)} sentences")
        self.datasets[split] = dataset
        return dataset

    def register_head(self, model):
        model.register_token_classification_head(self.cfg.classification_head_name, self.num_labels)
