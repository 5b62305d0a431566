#!/usr/bin/env python
"""Runs `mega-prepare-lra` from a checkout: ``python scripts/prepare_lra.py ARGS``.

Thin wrapper: the code is `mega_fairseq/cli/prepare_lra.py`, installed as the console script
`mega-prepare-lra`.
This runs the checkout's copy and exposes its names (``import prepare_lra``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's mega_fairseq first

from mega_fairseq.cli import prepare_lra as _implementation  # noqa: E402

globals().update({k: v for k, v in vars(_implementation).items() if not k.startswith("__")})

if __name__ == "__main__":
    _implementation.main()
