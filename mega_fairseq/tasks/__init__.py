"""fairseq tasks registered by mega_fairseq.

- ``mega_language_modeling``: fairseq's ``language_modeling`` plus streaming evaluation
  (``fairseq-eval-lm --task mega_language_modeling --stream-state``) that carries Mega's
  EMA state and chunk cache across blocks.
- ``lra-text``, ``lra-image``: Long Range Arena classification (ListOps, IMDB, AAN retrieval;
  CIFAR-10, Pathfinder, Path-X pixels).
- ``mega_token_classification``: per-token labels (NER, tagging) with first-subword labelling.
- ``mega_extractive_qa``: SQuAD-style span extraction over overlapping context windows.

Importing this package (or any module in it) loads `mega_fairseq.plugin`, which registers every
model, task and criterion; a new task module is added to its ``REGISTERING_MODULES``.
"""

from .. import plugin  # noqa: F401
