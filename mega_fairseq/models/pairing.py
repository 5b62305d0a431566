"""Which Mega model goes with which fairseq task, and the error for a wrong `--arch` / `--task` pair.

fairseq builds whatever model `--arch` names for whatever `--task` is given, and a mismatch surfaces
later as an unrelated error (``'MegaEncoderModel' object has no attribute 'supported_targets'`` for
``--arch mega_base --task language_modeling``).  Each Mega model's `build_model` calls `check_task`
first: a task that belongs to another Mega model is refused with the `--arch` presets that fit it
and the `--task` names that fit the chosen `--arch`.  A task in none of the lists (a user's own)
is let through.
"""

from typing import Dict, Tuple

# fairseq model name -> the --task names it is built for
TASKS_FOR_MODEL: Dict[str, Tuple[str, ...]] = {
    "mega_lm": ("language_modeling", "mega_language_modeling"),
    "mega_encoder": (
        "masked_lm",
        "sentence_prediction",
        "sentence_ranking",
        "mega_token_classification",
        "mega_extractive_qa",
    ),
    "mega": ("translation",),
    "lra": ("lra-text", "lra-image"),
}


class TaskPairingError(ValueError):
    """A Mega `--arch` was combined with a `--task` it cannot run; the message names the fitting pairs."""


def task_name(task) -> str:
    """The registered `--task` name of a fairseq task object (its class name if it is not registered)."""
    from fairseq.tasks import TASK_REGISTRY

    names = [name for name, cls in TASK_REGISTRY.items() if cls is type(task)]
    return names[0] if names else type(task).__name__


def presets(model: str) -> Tuple[str, ...]:
    """The `--arch` names registered for fairseq model `model` (the model's own name included)."""
    from fairseq.models import ARCH_MODEL_INV_REGISTRY

    return tuple(ARCH_MODEL_INV_REGISTRY.get(model, ()))


def check_task(cfg, task, model: str) -> None:
    """Raises TaskPairingError when `task` belongs to another Mega model than `model` (the one `cfg` builds)."""
    name = task_name(task)
    if name in TASKS_FOR_MODEL[model]:
        return
    owners = [other for other, tasks in TASKS_FOR_MODEL.items() if name in tasks]
    if not owners:
        return  # not a task we know: the user's own, let fairseq decide
    arch = getattr(cfg, "arch", None) or getattr(cfg, "_name", None) or model
    fitting_archs = ", ".join(arch for owner in owners for arch in presets(owner))
    raise TaskPairingError(
        f"--arch {arch} (a {model} model) does not run --task {name}. For --task {name} choose an --arch of "
        f"{' / '.join(owners)}: {fitting_archs}; --arch {arch} goes with --task {' / '.join(TASKS_FOR_MODEL[model])}."
    )
