"""ruff (config: ruff.toml) passes over the package, scripts, tests, user_dir and setup.py."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["mega_fairseq", "scripts", "tests", "user_dir", "setup.py"]


def _ruff():
    """The ruff next to this interpreter (a virtualenv's bin/), else the one on PATH, else None."""
    beside = Path(sys.executable).with_name("ruff")
    return str(beside) if beside.is_file() else shutil.which("ruff")


def test_ruff_check_passes():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install ruff, or the package's [test] extra)")
    result = subprocess.run([ruff, "check", "--no-cache", *TARGETS], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
