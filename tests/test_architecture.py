"""The package's layering (docs/architecture.md), checked on the source: which layer may import which,
no imports of another module's private names, and torch-only building blocks."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "mega_fairseq"

# layer -> the other layers it may import (a layer may always import itself)
ALLOWED = {
    "modules": set(),  # building blocks: torch only
    "metrics": set(),
    "data": {"metrics"},
    "models": {"modules", "plugin"},
    "criterions": {"data", "metrics", "plugin"},
    "tasks": {"models", "data", "metrics", "plugin"},
    "convert": {"models", "modules", "plugin", "fairseq_patches", "reliability"},
    "fairseq_patches": set(),
    "reliability": {"fairseq_patches", "data"},
    "plugin": {"fairseq_patches", "reliability"},  # imports the registering modules by name (REGISTERING_MODULES)
    "qa_inference": {"data", "plugin"},
    "testing": {"convert", "modules"},
    "bench": set(),
    "cli": {"(root)", "data", "metrics", "models", "plugin"},  # console scripts (mega-prepare-*, mega-fairseq info)
    "__main__": {"cli"},
    "(root)": set(),
}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, name: str = None):
    """(target module, imported names) of every import of a mega_fairseq module in `path` (module `name`)."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mega_fairseq":
                continue
            if node.module is None:  # `from . import x`: x is a module
                for alias in node.names:
                    yield f"{target}.{alias.name}", []
            else:
                yield target, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mega_fairseq":
                    yield alias.name, []


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


SOURCES = sorted(ROOT.rglob("*.py"))


def test_every_layer_is_declared():
    layers = {_layer(_module_name(path)) for path in SOURCES}
    assert layers <= set(ALLOWED), f"layers missing from ALLOWED (and docs/architecture.md): {layers - set(ALLOWED)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    source_layer = _layer(_module_name(path))
    for target, names in _imports(path):
        target_layer = _layer(target)
        if target_layer != source_layer:
            assert target_layer in ALLOWED[source_layer], f"{path.name}: {source_layer} may not import {target}"
        if target != _module_name(path).rsplit(".", 1)[0]:  # not the file's own package
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{path.name} imports private names {private} from {target}"


def test_the_layer_rules_can_fail(tmp_path):
    """The checks above see a forbidden import and a private name (so they are not vacuous)."""
    bad = tmp_path / "probe.py"
    bad.write_text("from ..models.options import _private\n", encoding="utf-8")
    ((target, names),) = list(_imports(bad, "mega_fairseq.modules.probe"))
    assert target == "mega_fairseq.models.options" and names == ["_private"]
    assert _layer(target) not in ALLOWED["modules"]
