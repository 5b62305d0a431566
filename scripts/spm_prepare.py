#!/usr/bin/env python
"""Runs `mega-spm-prepare` from a checkout: ``python scripts/spm_prepare.py ARGS``.

Thin wrapper: the code is `mega_fairseq/cli/spm_prepare.py`, installed as the console script
`mega-spm-prepare`.
This runs the checkout's copy and exposes its names (``import spm_prepare``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's mega_fairseq first

from mega_fairseq.cli import spm_prepare as _implementation  # noqa: E402

globals().update({k: v for k, v in vars(_implementation).items() if not k.startswith("__")})

if __name__ == "__main__":
    _implementation.main()
