"""fairseq ``--user-dir`` shim: ``fairseq-train ... --user-dir user_dir``.

fairseq imports this directory as a top-level module named after its basename
(``user_dir``). All it does is import ``mega_fairseq.plugin``, which registers the
MEGA architectures, tasks and criterions and applies the fairseq compatibility patches.
Works whether or not ``mega_fairseq`` is pip-installed: if it is not importable, the
repository root (this directory's parent) is put on ``sys.path`` first.
"""

import importlib.util
import os
import sys

if importlib.util.find_spec("mega_fairseq") is None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mega_fairseq.plugin  # noqa: E402,F401
