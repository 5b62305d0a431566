"""Packaging/plugin checks: what importing mega_fairseq (and its plugin) does, checkpoint loading, --user-dir."""

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
    import mega_fairseq.plugin  # noqa: F401

    assert argparse.Namespace in torch.serialization.get_safe_globals()


def test_allowlist_is_idempotent():
    from mega_fairseq.fairseq_patches import allow_fairseq_checkpoint_globals

    allow_fairseq_checkpoint_globals()
    allow_fairseq_checkpoint_globals()
    assert torch.serialization.get_safe_globals().count(argparse.Namespace) == 1


def _argparse_checkpoint():
    return {
        "args": argparse.Namespace(arch="transformer_lm", dropout=0.1, data="data-bin/x"),
        "model": {"w": torch.arange(6.0).reshape(2, 3)},
        "extra_state": {"val_loss": 3.5},
    }


def test_argparse_checkpoint_loads_weights_only(tmp_path):
    import mega_fairseq.plugin  # noqa: F401

    path = tmp_path / "checkpoint.pt"
    torch.save(_argparse_checkpoint(), path)
    state = torch.load(path, weights_only=True)
    assert isinstance(state["args"], argparse.Namespace)
    assert state["args"].arch == "transformer_lm"
    assert torch.equal(state["model"]["w"], torch.arange(6.0).reshape(2, 3))


def test_other_classes_still_refused(tmp_path):
    import mega_fairseq.plugin  # noqa: F401

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


def _fresh_python(code: str) -> str:
    """Runs `code` in a new interpreter (this checkout first on sys.path); returns its stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize(
    "module", ["mega_fairseq", "mega_fairseq.modules", "mega_fairseq.metrics", "mega_fairseq.testing"]
)
def test_building_blocks_import_without_fairseq(module):
    """The torch-only parts import neither fairseq nor the plugin, and change no torch setting."""
    out = _fresh_python(
        "import sys, torch\n"
        "safe = list(torch.serialization.get_safe_globals())\n"
        f"import {module}\n"
        "plugin = ('mega_fairseq.plugin', 'mega_fairseq.models', 'mega_fairseq.tasks', 'mega_fairseq.criterions')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('fairseq', 'hydra', 'omegaconf') or m in "
        "plugin)\n"
        "print(loaded, list(torch.serialization.get_safe_globals()) == safe)\n"
    )
    assert out.strip() == "[] True"


def test_building_a_stack_of_every_norm_imports_no_fairseq():
    """Building and running layers (every norm, layernorm's apex switch included) stays torch-only: the same
    files run inside HF exports, where fairseq is not installed."""
    out = _fresh_python(
        "import sys, torch\n"
        "from mega_fairseq.modules import MegaLayerConfig, MegaStack, norms\n"
        "for norm in norms.NORMS:\n"
        "    cfg = MegaLayerConfig(embed_dim=8, z_dim=4, hidden_dim=8, ffn_dim=8, n_dim=2, "
        "normalization_type=norm)\n"
        "    MegaStack(cfg, 1, torch.nn.Embedding(10, 8))(torch.randint(0, 10, (2, 5)))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fairseq', 'hydra', 'omegaconf')))\n"
    )
    assert out.strip() == "[]"


REGISTERED = (
    "from fairseq.criterions import CRITERION_REGISTRY\n"
    "from fairseq.distributed import utils\n"
    "from fairseq.models import ARCH_MODEL_REGISTRY\n"
    "from fairseq.tasks import TASK_REGISTRY\n"
    "print('mega_lm_tiny' in ARCH_MODEL_REGISTRY, 'mega_translation_tiny' in ARCH_MODEL_REGISTRY,\n"
    "      'lra-text' in TASK_REGISTRY, 'mega_extractive_qa' in TASK_REGISTRY,\n"
    "      'lra_cross_entropy' in CRITERION_REGISTRY,\n"
    "      getattr(utils.call_main, '_mega_fairseq_patch', False), 'mega_fairseq.plugin' in sys.modules)\n"
)


@pytest.mark.parametrize(
    "statement",
    [
        "import mega_fairseq.plugin",
        "from mega_fairseq.models.mega_lm import MegaLanguageModel",
        "import mega_fairseq.tasks.lra",
        "import mega_fairseq.criterions",
    ],
)
def test_fairseq_facing_imports_load_the_whole_plugin(statement):
    """Any fairseq-facing import registers every model, task and criterion and applies the patches."""
    assert _fresh_python(f"import sys\n{statement}\n{REGISTERED}").split() == ["True"] * 7


@pytest.mark.parametrize("user_dir", ["user_dir", "mega_fairseq"])
def test_user_dir_loads_the_plugin(user_dir):
    """``--user-dir user_dir`` (the shim) and ``--user-dir path/to/mega_fairseq`` (the package itself) both work."""
    code = (
        "import argparse, sys\n"
        "from fairseq import utils\n"
        f"utils.import_user_module(argparse.Namespace(user_dir={str(REPO_ROOT / user_dir)!r}))\n"
    )
    assert _fresh_python(code + REGISTERED).split() == ["True"] * 7
