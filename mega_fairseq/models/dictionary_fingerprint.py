"""Dictionary fingerprints: a checkpoint refuses to run against a dictionary other than the one it was trained with.

Every Mega model (`mega_lm`, `mega_encoder`, `lra`, `mega`) mixes in `DictionaryFingerprintMixin`, which keeps a
persistent buffer ``dictionary_digest`` (long, shape (K,)): one 63-bit fingerprint per token dictionary of the model
(K = 1; translation: source, target; LRA on pixels: none), ``sha256("\\n".join(symbols))`` of the dictionary's
symbols in order, so a swapped, renamed or added line changes it.  The buffer goes into every checkpoint the model
writes (``fairseq-train``, ``mega-import-hf``, ``mega-import-original``) through its state dict.

On ``load_state_dict`` (``fairseq-train --restore-file`` / resume, ``fairseq-generate``, ``fairseq-eval-lm``,
``fairseq-validate``, hub ``from_pretrained``: all load weights through it) the saved fingerprints are compared with
the task's dictionaries; a mismatch raises `DictionaryMismatchError` naming the dictionary file (the path fairseq
loaded it from, recorded by `mega_fairseq.reliability`) and the fix; `mega_fairseq.reliability` adds the checkpoint's
path.  A checkpoint written before fingerprints existed (no ``dictionary_digest`` key) loads unchecked.
"""

import hashlib
from typing import List, Optional, Tuple

import torch

FINGERPRINT_KEY = "dictionary_digest"
SOURCE_FILE_ATTR = "source_file"
"""Attribute a fairseq ``Dictionary`` gets when loaded from a file (set by `mega_fairseq.reliability`)."""

FIX = (
    "Use the dictionary the checkpoint was trained with: pass the data directory it was trained on, or binarize "
    "your data with its dictionary (fairseq-preprocess --srcdict DICT, translation: --srcdict/--tgtdict; "
    "mega-import-hf writes the dict.txt beside the checkpoint)"
)


def dictionary_digest(dictionary) -> int:
    """A 63-bit fingerprint of a dictionary's symbols (in order), stored with the weights."""
    digest = hashlib.sha256("\n".join(dictionary.symbols).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def dictionary_file(dictionary) -> Optional[str]:
    """The file the dictionary was loaded from (None when built in memory)."""
    return getattr(dictionary, SOURCE_FILE_ATTR, None)


class DictionaryMismatchError(ValueError):
    """The task's dictionary is not the checkpoint's.  ``checkpoint`` (the file, when known) prefixes the message."""

    def __init__(self, detail: str, checkpoint: Optional[str] = None):
        super().__init__(detail)
        self.detail, self.checkpoint = detail, checkpoint

    def __str__(self):
        return f"{self.checkpoint}: {self.detail}" if self.checkpoint else self.detail


class DictionaryFingerprintMixin:
    """Mix in before the fairseq model class.  Subclasses may override `fingerprinted_dictionaries`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_dictionary_fingerprint()

    def register_dictionary_fingerprint(self) -> None:
        """(Re)computes the buffer; a model that sets its encoder/decoder after ``super().__init__`` calls it again."""
        digests = [dictionary_digest(d) for _, d, _ in self.fingerprinted_dictionaries()]
        self.register_buffer(FINGERPRINT_KEY, torch.tensor(digests, dtype=torch.long))

    def fingerprinted_dictionaries(self) -> List[Tuple[str, object, Optional[str]]]:
        """(label, dictionary, embedding key or None) for each token dictionary: the encoder's, the decoder's."""
        sides = [
            (label, getattr(getattr(self, side, None), "dictionary", None))
            for side, label in (("encoder", "source"), ("decoder", "target"))
        ]
        sides = [(label, d) for label, d in sides if d is not None and hasattr(d, "symbols")]
        if len(sides) == 1:
            sides = [("", sides[0][1])]
        return [(label, d, None) for label, d in sides]

    def check_dictionaries(self, state_dict) -> None:
        """Raises DictionaryMismatchError when `state_dict` was trained with other dictionaries than the model's."""
        saved = state_dict.get(FINGERPRINT_KEY)
        for index, (label, dictionary, embed_key) in enumerate(self.fingerprinted_dictionaries()):
            side = f"{label} " if label else ""
            where = dictionary_file(dictionary)
            named = f" ({where})" if where else ""
            if embed_key is not None and embed_key in state_dict and state_dict[embed_key].size(0) != len(dictionary):
                raise DictionaryMismatchError(
                    f"the checkpoint's {side}dictionary has {state_dict[embed_key].size(0)} symbols but the task's "
                    f"has {len(dictionary)}{named}. {FIX}"
                )
            if saved is None or saved.numel() != len(self.dictionary_digest):
                continue  # written before fingerprints (or by another model kind): nothing to check against
            if int(saved[index]) != int(self.dictionary_digest[index]):
                if embed_key is None:
                    problem = f"the task's {side}dictionary{named} is not the one the checkpoint was trained with"
                else:
                    problem = f"the task's {side}dictionary has the checkpoint's size but other symbols{named}"
                raise DictionaryMismatchError(
                    f"{problem} (lines swapped, renamed or replaced: every score would be silently wrong). {FIX}"
                )

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        self.check_dictionaries(state_dict)
        if FINGERPRINT_KEY not in state_dict or state_dict[FINGERPRINT_KEY].numel() != len(self.dictionary_digest):
            state_dict = dict(state_dict)  # an older checkpoint: keep this model's own fingerprint
            state_dict[FINGERPRINT_KEY] = self.dictionary_digest.clone()
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)
