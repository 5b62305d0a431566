"""fairseq criterions registered by mega_fairseq (importing a module registers it).

- ``mega_token_classification``: per-token cross-entropy, token accuracy, entity P/R/F1.
- ``mega_extractive_qa``: start/end cross-entropy, exact match and F1 per example across windows.
- ``lra_cross_entropy``: sequence classification cross-entropy with accuracy (Long Range Arena).

Importing this package (or any module in it) loads `mega_fairseq.plugin`, which registers every
model, task and criterion; a new criterion module is added to its ``REGISTERING_MODULES``.
"""

from .. import plugin  # noqa: F401
