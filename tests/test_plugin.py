"""Packaging/plugin checks: importing mega_fairseq, checkpoint loading, --user-dir."""
import argparse
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


class NotAllowlisted:
    """An arbitrary class that weights-only torch.load must keep refusing."""

    def __init__(self, value):
        self.value = value


def test_import_allowlists_namespace():
    import mega_fairseq  # noqa: F401

    assert argparse.Namespace in torch.serialization.get_safe_globals()


def test_allowlist_is_idempotent():
    from mega_fairseq import _compat

    _compat.allow_fairseq_checkpoint_globals()
    _compat.allow_fairseq_checkpoint_globals()
    assert torch.serialization.get_safe_globals().count(argparse.Namespace) == 1


def _argparse_checkpoint():
    return {
        "args": argparse.Namespace(arch="transformer_lm", dropout=0.1, data="data-bin/x"),
        "model": {"w": torch.arange(6.0).reshape(2, 3)},
        "extra_state": {"val_loss": 3.5},
    }


def test_argparse_checkpoint_loads_weights_only(tmp_path):
    import mega_fairseq  # noqa: F401

    path = tmp_path / "checkpoint.pt"
    torch.save(_argparse_checkpoint(), path)
    state = torch.load(path, weights_only=True)
    assert isinstance(state["args"], argparse.Namespace)
    assert state["args"].arch == "transformer_lm"
    assert torch.equal(state["model"]["w"], torch.arange(6.0).reshape(2, 3))


def test_other_classes_still_refused(tmp_path):
    import mega_fairseq  # noqa: F401

    path = tmp_path / "evil.pt"
    torch.save({"obj": NotAllowlisted(1)}, path)
    with pytest.raises(pickle.UnpicklingError, match="NotAllowlisted"):
        torch.load(path, weights_only=True)


def test_argparse_checkpoint_refused_without_plugin(tmp_path):
    """Control: plain torch (no plugin import) refuses the same file, so the allowlist matters."""
    path = tmp_path / "checkpoint.pt"
    torch.save(_argparse_checkpoint(), path)
    code = (
        "import pickle, sys, torch\n"
        "try:\n"
        f"    torch.load({str(path)!r}, weights_only=True)\n"
        "except pickle.UnpicklingError as e:\n"
        "    sys.exit(0 if 'argparse.Namespace' in str(e) else 2)\n"
        "sys.exit(1)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_fairseq_import_user_module():
    from fairseq import utils

    user_dir = REPO_ROOT / "user_dir"
    utils.import_user_module(argparse.Namespace(user_dir=str(user_dir)))
    assert "user_dir" in sys.modules
    assert os.path.dirname(sys.modules["user_dir"].__file__) == str(user_dir)
    assert "mega_fairseq" in sys.modules
    assert argparse.Namespace in torch.serialization.get_safe_globals()
