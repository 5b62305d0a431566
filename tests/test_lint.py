"""ruff (config: ruff.toml) passes over the package, scripts, tests, user_dir and setup.py: lint and format."""

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


@pytest.mark.parametrize(
    "command", [["check", "--no-cache"], ["format", "--check", "--no-cache"]], ids=["check", "format"]
)
def test_ruff_passes(command):
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install ruff, or the package's [test] extra)")
    result = subprocess.run([ruff, *command, *TARGETS], cwd=REPO, capture_output=True, text=True)
    fix = "run `ruff format .`" if command[0] == "format" else "run `ruff check --fix .` and fix the rest"
    assert result.returncode == 0, f"{fix}:\n{result.stdout}{result.stderr}"
