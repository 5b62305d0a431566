"""fairseq criterions registered by mega_fairseq (importing a module registers it).

- ``mega_token_classification``: per-token cross-entropy, token accuracy, entity P/R/F1.
- ``mega_extractive_qa``: start/end cross-entropy, exact match and F1 per example across windows.
- ``lra_cross_entropy``: sequence classification cross-entropy with accuracy (Long Range Arena).
"""
from . import token_classification  # noqa: F401
from . import extractive_qa  # noqa: F401
from . import lra_cross_entropy  # noqa: F401
