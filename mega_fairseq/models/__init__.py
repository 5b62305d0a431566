"""Mega models registered with fairseq: `mega_lm`, `mega_lra`, `mega_encoder`, `mega_translation`.

Importing this package (or any module in it) loads `mega_fairseq.plugin`, which registers every
model, task and criterion and applies the fairseq patches; the list of registering modules is there.
"""

from .. import plugin  # noqa: F401
