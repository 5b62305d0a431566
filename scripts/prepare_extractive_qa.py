#!/usr/bin/env python
"""Runs `mega-prepare-extractive-qa` from a checkout: ``python scripts/prepare_extractive_qa.py ARGS``.

Thin wrapper: the code is `mega_fairseq/cli/prepare_extractive_qa.py`, installed as the console script
`mega-prepare-extractive-qa`.
This runs the checkout's copy and exposes its names (``import prepare_extractive_qa``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's mega_fairseq first

from mega_fairseq.cli import prepare_extractive_qa as _implementation  # noqa: E402

globals().update({k: v for k, v in vars(_implementation).items() if not k.startswith("__")})

if __name__ == "__main__":
    _implementation.cli()
