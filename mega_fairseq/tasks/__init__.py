"""fairseq tasks registered by mega_fairseq.

- ``mega_language_modeling``: fairseq's ``language_modeling`` plus streaming evaluation
  (``fairseq-eval-lm --task mega_language_modeling --stream-state``) that carries Mega's
  EMA state and chunk cache across blocks.
- ``lra-text``, ``lra-image``: Long Range Arena classification (ListOps, IMDB, AAN retrieval;
  CIFAR-10, Pathfinder, Path-X pixels).
- ``mega_token_classification``: per-token labels (NER, tagging) with first-subword labelling.
- ``mega_extractive_qa``: SQuAD-style span extraction over overlapping context windows.

Modules added here must be imported from this file so that importing
``mega_fairseq`` registers them.
"""
from . import mega_language_modeling  # noqa: F401
from . import lra  # noqa: F401
from . import token_classification  # noqa: F401
from . import extractive_qa  # noqa: F401
