"""The fairseq plugin: importing this module makes Mega usable from fairseq.

It applies the fairseq compatibility patches (`fairseq_patches.apply()`) and the crash-safety ones
(`reliability.apply()`), then imports every module
that registers something with fairseq (models and architectures, tasks, criterions).  This module is
the only list of them: a new registering module is added below.

What loads it:

- ``--user-dir user_dir``: `user_dir/__init__.py` imports it;
- ``--user-dir path/to/mega_fairseq``: fairseq imports ``mega_fairseq.tasks.*`` and ``mega_fairseq.models.*``;
- importing `mega_fairseq.models`, `mega_fairseq.tasks` or `mega_fairseq.criterions` (or any module in
  them): their ``__init__`` imports this module, so ``from mega_fairseq.models.mega_lm import
  MegaLanguageModel`` alone finds the tasks, criterions and patches too;
- ``import mega_fairseq.plugin`` explicitly (scripts and tests that load checkpoints).

Importing `mega_fairseq` or `mega_fairseq.modules` does not load it (nor fairseq).
"""

import importlib

from . import fairseq_patches, reliability

REGISTERING_MODULES = (
    "mega_fairseq.models.mega_lm",
    "mega_fairseq.models.mega_lra",
    "mega_fairseq.models.mega_encoder",
    "mega_fairseq.models.mega_translation",
    "mega_fairseq.tasks.mega_language_modeling",
    "mega_fairseq.tasks.lra",
    "mega_fairseq.tasks.token_classification",
    "mega_fairseq.tasks.extractive_qa",
    "mega_fairseq.criterions.token_classification",
    "mega_fairseq.criterions.extractive_qa",
    "mega_fairseq.criterions.lra_cross_entropy",
)
"""Modules whose import registers models/architectures, tasks or criterions with fairseq, in order."""

fairseq_patches.apply()
reliability.apply()  # crash safety: atomic checkpoints, resume fallback, finished runs, fp16 overflow on CPU
# Each subpackage's __init__ imports this module back: harmless, it is in sys.modules by then.
for _name in REGISTERING_MODULES:
    importlib.import_module(_name)
