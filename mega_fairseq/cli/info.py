"""`mega-fairseq info` (also ``python -m mega_fairseq``): what the plugin registers with fairseq.

fairseq 0.12's ``fairseq-train --help`` lists a model's options only once ``--arch`` is given and never
lists the presets; this command prints, from fairseq's own registries after loading the plugin:

- the version, and the ``--user-dir`` to pass (the installed package's directory);
- every Mega model (fairseq ``--arch`` family) with the ``--task`` names it goes with, and each preset
  (``--arch``) with its key sizes (layers, D = embed dim, H = hidden dim, z, N, FFN, chunk);
- the tasks and criterions the plugin registers;
- every Mega option with its default and help text: the layer options all models share once, then each
  model's own.

``mega-fairseq info --arch NAME`` limits the presets and options to one model (a preset or model name).
"""

import argparse
import dataclasses
import os
import sys
from typing import Dict, List, Optional

import mega_fairseq

from .. import plugin  # noqa: F401  registers the models, tasks and criterions
from ..models.options import SIZE_NAMES, MegaLayerOptions, flag
from ..models.pairing import TASKS_FOR_MODEL, presets

SIZE_LABELS = {
    "layers": "layers",
    "embed_dim": "D",
    "hidden_dim": "H",
    "z_dim": "z",
    "n_dim": "N",
    "ffn_embed_dim": "FFN",
    "chunk_size": "chunk",
}


def user_dir() -> str:
    """The directory to pass as ``--user-dir`` (the installed package's own directory)."""
    return os.path.dirname(os.path.abspath(mega_fairseq.__file__))


def preset_config(model: str, arch: str) -> Dict[str, object]:
    """The options preset `arch` of `model` sets, over the model's dataclass defaults."""
    from fairseq.models import ARCH_CONFIG_REGISTRY, MODEL_DATACLASS_REGISTRY

    args = argparse.Namespace()
    ARCH_CONFIG_REGISTRY[arch](args)
    values = {}
    for field in dataclasses.fields(MODEL_DATACLASS_REGISTRY[model]):
        default = field.default if field.default is not dataclasses.MISSING else None
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        values[field.name] = default
    values.update(vars(args))
    return values


def preset_sizes(model: str, arch: str) -> str:
    """ "layers 4, D 128, H 256, z 64, N 16, FFN 256, chunk -1" for one side (both for an encoder-decoder)."""
    values = preset_config(model, arch)
    parts = []
    for side in ("encoder", "decoder"):
        if f"{side}_layers" not in values or (model == "mega_lm" and side == "encoder"):
            continue
        if model in ("mega_encoder", "lra") and side == "decoder":
            continue
        sizes = ", ".join(f"{SIZE_LABELS[name]} {values.get(f'{side}_{name}')}" for name in SIZE_NAMES)
        parts.append(f"{side}: {sizes}" if model == "mega" else sizes)
    return "; ".join(parts)


def option_lines(fields, indent: str = "  ") -> List[str]:
    lines = []
    for field in fields:
        if field.name.startswith("_"):
            continue
        help_text = field.metadata.get("help", "")
        default = field.default if field.default is not dataclasses.MISSING else None
        if isinstance(default, str) and default.startswith("${"):
            default = "from the task"
            help_text = help_text or "set from the task's option of the same name"
        lines.append(f"{indent}{flag(field.name):34s} {help_text} (default: {default})")
    return lines


def describe(only: Optional[str] = None) -> str:
    """The text `mega-fairseq info` prints; `only`: a model or preset name to limit models and options to."""
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_DATACLASS_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    models = list(TASKS_FOR_MODEL)
    if only is not None:
        model = only if only in TASKS_FOR_MODEL else getattr(ARCH_MODEL_REGISTRY.get(only), "__name__", None)
        owner = [m for m in TASKS_FOR_MODEL if only in presets(m)]
        if not owner:
            known = ", ".join(a for m in TASKS_FOR_MODEL for a in presets(m))
            raise SystemExit(f"error: --arch {only} is not a Mega model or preset; choose one of: {known}")
        models = owner[:1] if model not in TASKS_FOR_MODEL else [model]
    out = [
        f"mega_fairseq {mega_fairseq.__version__}",
        f"--user-dir {user_dir()}",
        "",
        "Architectures (--arch) by model, with the --task names each goes with:",
    ]
    for model in models:
        out.append(f"  {model}  (--task {' | '.join(TASKS_FOR_MODEL[model])})")
        for arch in presets(model):
            if only is not None and only not in (model, arch):
                continue
            out.append(f"    {arch:26s} {preset_sizes(model, arch)}")
    ours = sorted(name for name, cls in TASK_REGISTRY.items() if cls.__module__.startswith("mega_fairseq."))
    out += ["", "Tasks registered by the plugin (--task): " + ", ".join(ours)]
    ours = sorted(name for name, cls in CRITERION_REGISTRY.items() if cls.__module__.startswith("mega_fairseq."))
    out += ["Criterions registered by the plugin (--criterion): " + ", ".join(ours), ""]
    shared = {field.name for field in dataclasses.fields(MegaLayerOptions)}
    out.append("Layer options (every model):")
    out += option_lines(dataclasses.fields(MegaLayerOptions))
    for model in models:
        own = [field for field in dataclasses.fields(MODEL_DATACLASS_REGISTRY[model]) if field.name not in shared]
        out += ["", f"Options of {model}:"]
        out += option_lines(own)
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="mega-fairseq", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    info = commands.add_parser("info", help="list architectures, presets, tasks, criterions and options")
    info.add_argument("--arch", help="only this model or preset")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command in (None, "info"):
        print(describe(getattr(args, "arch", None)))


if __name__ == "__main__":
    main()
