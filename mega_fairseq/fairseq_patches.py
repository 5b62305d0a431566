"""Compatibility patches for fairseq 0.12 (and recent torch), applied once when fairseq loads the plugin.

``apply()`` runs from `mega_fairseq.plugin`, which fairseq imports for ``--user-dir`` while parsing the
command line (before ``distributed_utils.call_main``), and which importing `mega_fairseq.models`,
`.tasks` or `.criterions` loads too.  Importing this module changes nothing by itself.

Every patch goes through `patch_once`, which replaces a fairseq name by a wrapper of the original
only when it is safe to: fairseq's version is one the patch was written for, the name exists, and
the original has the parameters the wrapper expects.  Otherwise it logs a warning naming what is
lost and leaves fairseq untouched; re-applying is a no-op.

Checkpoints (torch >= 2.6)
    ``torch.load`` defaults to ``weights_only=True``; fairseq checkpoints of argparse-configured
    models pickle an ``argparse.Namespace``, which the weights-only unpickler refuses.  We allowlist
    exactly that class (`allow_fairseq_checkpoint_globals`); weights_only stays on for the rest.

Data parallel without CUDA (gloo on CPU)
    fairseq assumes one CUDA device per rank.  Each patch below changes behaviour only when
    ``torch.cuda.device_count() == 0`` (or, for DDP, when the module's parameters live on the CPU):

    1. torchrun: ``device_id = rank % torch.cuda.device_count()`` -> ZeroDivisionError.  We take
       device id 0 (the CPU has no device index) and keep what fairseq derives from the launcher.
    2. ``--distributed-world-size N`` without a launcher asserts "world size is N but have 0
       available devices"; we raise a clear error that says to launch with torchrun instead.
    3. The default ``--distributed-backend nccl`` does not exist without CUDA; we use gloo.
    4. The default ``--ddp-backend pytorch_ddp`` passes ``device_ids=[device_id]`` to
       ``DistributedDataParallel``, which must be None for CPU modules; we drop it for CPU modules.

Mixed precision on CPU (and bf16 on CUDA)
    5. ``--bf16`` / ``--memory-efficient-bf16``: fairseq's argument parser turns on ``--tpu`` whenever
       bf16 is asked for, and the trainer then asks torch_xla for a device (``'NoneType' object has no
       attribute 'xla_device'``).  When torch_xla is not installed we switch ``tpu`` back off (in every
       config section) before ``distributed_utils.call_main`` runs, so bf16 trains like fp16 does
       (model in bf16, fp32 master weights, no loss scaling).  With torch_xla nothing changes.
    6. ``--fp16`` (not memory-efficient) keys one flat fp32 copy of the parameters by
       ``torch.cuda.current_device()``, which raises without CUDA.  For CPU parameters we key it by
       the CPU tensors' ``device.index`` (None), which the optimizer's syncs look up.

    ``--memory-efficient-fp16`` needs no patch.  ``--amp`` runs on the CPU but trains in fp32 there:
    fairseq's AMP uses CUDA autocast and the CUDA grad scaler, which do nothing for CPU tensors.

Adding a patch: write ``make(original) -> replacement`` and call
``patch_once(owner, "name", make, params=(...), purpose="...")`` from `apply()` (or from your own
``apply`` that `mega_fairseq.plugin` calls).
"""

import argparse
import inspect
import logging
import os
from typing import Callable, Optional, Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)

FAIRSEQ_VERSIONS = ("0.12.",)
"""Version prefixes of fairseq the patches are written for (``fairseq.__version__``)."""

PATCH_MARK = "_mega_fairseq_patch"
"""Attribute set (True) on every replacement, so a second `patch_once` of the same name is a no-op."""


def fairseq_version() -> str:
    import fairseq

    return str(getattr(fairseq, "__version__", "unknown"))


def _leading_params(obj) -> Optional[list]:
    """Parameter names of a function (of ``__init__`` for a class), or None if they cannot be read."""
    try:
        return list(inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters)
    except (TypeError, ValueError):
        return None


def patch_once(
    owner,
    name: str,
    make: Callable,
    *,
    params: Sequence[str],
    purpose: str,
    versions: Sequence[str] = FAIRSEQ_VERSIONS,
) -> bool:
    """Replaces ``owner.name`` (a module or class attribute) by ``make(original)``, once.

    Guards, checked in this order; a failing one logs a warning (naming ``purpose``, i.e. what the
    user loses) and leaves ``owner`` untouched:

    - ``fairseq.__version__`` starts with one of ``versions``;
    - ``owner`` has ``name``;
    - the original's leading parameter names are ``params`` (for a class: those of its ``__init__``,
      ``self`` included; for a classmethod: those of its function, ``cls`` included).

    The replacement gets ``PATCH_MARK`` = True and ``__wrapped__`` = the original; when the current
    value already has the mark nothing is done.  A classmethod is unwrapped for ``make`` and its
    replacement re-wrapped as a classmethod.  Returns True when the patch is in place afterwards.
    """
    is_class = inspect.isclass(owner)
    where = f"{owner.__module__}.{owner.__qualname__}" if is_class else getattr(owner, "__name__", repr(owner))
    where = f"{where}.{name}"
    version = fairseq_version()
    if not any(version.startswith(prefix) for prefix in versions):
        logger.warning(
            "not patching %s (%s): written for fairseq %s, found fairseq %s",
            where,
            purpose,
            " or ".join(v + "x" for v in versions),
            version,
        )
        return False
    raw = owner.__dict__.get(name) if is_class else None
    if (raw is None) if is_class else not hasattr(owner, name):  # a class must define it itself (not inherit it)
        logger.warning("not patching %s (%s): fairseq %s has no such name", where, purpose, version)
        return False
    is_classmethod = isinstance(raw, classmethod)
    original = raw.__func__ if is_classmethod else getattr(owner, name)
    if getattr(original, PATCH_MARK, False):
        return True
    found = _leading_params(original)
    if found is None or found[: len(params)] != list(params):
        logger.warning(
            "not patching %s (%s): expected parameters (%s), found (%s)",
            where,
            purpose,
            ", ".join(params),
            "unreadable" if found is None else ", ".join(found),
        )
        return False
    replacement = make(original)
    setattr(replacement, PATCH_MARK, True)
    replacement.__wrapped__ = original
    setattr(owner, name, classmethod(replacement) if is_classmethod else replacement)
    return True


# ---- checkpoints ----------------------------------------------------------------------------------


def allow_fairseq_checkpoint_globals() -> None:
    """Allowlists ``argparse.Namespace`` and plain numpy arrays for weights-only ``torch.load``.

    numpy arrays: fairseq keeps the validation meters in ``extra_state``, and ``--eval-bleu`` logs its
    n-gram counts as numpy arrays, so a checkpoint of a run with validation BLEU (the WMT'16 recipe) holds
    ``numpy.ndarray`` objects (rebuilt from ``_reconstruct``, ``ndarray`` and ``dtype``: data, no code).
    Idempotent.  A no-op on torch versions without ``add_safe_globals`` (those do not default to
    weights_only=True either).
    """
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:
        return
    import numpy

    allowed = [argparse.Namespace, numpy.ndarray, numpy.dtype, numpy.core.multiarray._reconstruct]
    allowed += [type(numpy.dtype(name)) for name in ("bool", "int32", "int64", "float32", "float64")]
    missing = [item for item in allowed if item not in torch.serialization.get_safe_globals()]
    if missing:
        add_safe_globals(missing)


# ---- data parallel without CUDA -------------------------------------------------------------------


def _no_cuda() -> bool:
    return torch.cuda.device_count() == 0


def _launch_init(original):
    def infer_launch_init(cfg):
        if not _no_cuda():
            return original(cfg)
        # torchrun without CUDA: the rank's "device" is the CPU, index 0
        cfg.distributed_init_method = "env://"
        cfg.distributed_world_size = int(os.environ["WORLD_SIZE"])
        cfg.distributed_rank = int(os.environ["RANK"])
        cfg.device_id = 0
        cfg.distributed_no_spawn = True  # torchrun started the processes

    return infer_launch_init


def _single_node_init(original):
    def infer_single_node_init(cfg):
        if _no_cuda():
            n = cfg.distributed_world_size
            raise ValueError(
                f"--distributed-world-size {n} without CUDA: fairseq spawns one process per GPU and there are none. "
                f"On CPU start one process per rank with torchrun: python -m torch.distributed.run "
                f"--nproc_per_node {n} $(which fairseq-train) ... --distributed-world-size {n} --cpu"
            )
        return original(cfg)

    return infer_single_node_init


def _distributed_init(original):
    def distributed_init(cfg):
        dt = getattr(cfg, "distributed_training", cfg)  # a FairseqConfig, or a flat argparse Namespace
        tpu = getattr(getattr(cfg, "common", cfg), "tpu", False)
        if _no_cuda() and not tpu and dt.distributed_backend == "nccl":
            logger.info("no CUDA device: using the gloo distributed backend instead of nccl")
            dt.distributed_backend = "gloo"
        return original(cfg)

    return distributed_init


def _cpu_ddp(ddp_class):
    class DistributedDataParallel(ddp_class):
        """torch DDP that accepts fairseq's ``device_ids=[k]`` for CPU modules (where torch requires None)."""

        def __init__(self, module, device_ids=None, output_device=None, **kwargs):
            if all(p.device.type == "cpu" for p in module.parameters()):
                device_ids = output_device = None
            super().__init__(module, device_ids=device_ids, output_device=output_device, **kwargs)

    DistributedDataParallel.__qualname__ = ddp_class.__qualname__
    return DistributedDataParallel


# ---- mixed precision ------------------------------------------------------------------------------


def _bf16_without_xla(call_main):
    from fairseq.distributed import utils as distributed_utils

    def wrapped_call_main(cfg, main, **kwargs):
        common = getattr(cfg, "common", None)
        if common is not None and common.bf16 and common.tpu and getattr(distributed_utils, "xm", None) is None:
            where = "the CPU" if common.cpu else "the default device"
            logger.info("--bf16 without torch_xla: training in bfloat16 on %s, not on a TPU", where)
            for section in cfg.values():  # common, distributed_training, task, optimizer each hold a copy of the flag
                if hasattr(section, "keys") and "tpu" in section:
                    section.tpu = False
        return call_main(cfg, main, **kwargs)

    return wrapped_call_main


def _flat_fp32_params_on_cpu(build_fp32_params):
    def wrapped(cls, args, params, flatten=True):
        if flatten and params and all(p.device.type == "cpu" for p in params):
            flat = nn.Parameter(torch.cat([p.data.float().reshape(-1) for p in params]))
            flat.grad = torch.zeros_like(flat.data)
            return {None: flat}  # CPU tensors have device.index None
        return build_fp32_params(cls, args, params, flatten=flatten)

    return wrapped


def apply() -> None:
    """Installs every patch of this module (idempotent; each one guarded by `patch_once`)."""
    from fairseq.distributed import utils as distributed_utils
    from fairseq.models import distributed_fairseq_model
    from fairseq.optim import fp16_optimizer

    allow_fairseq_checkpoint_globals()

    cpu = "data-parallel training without CUDA"
    patch_once(
        distributed_utils,
        "_infer_torch_distributed_launch_init",
        _launch_init,
        params=("cfg",),
        purpose=f"{cpu} under torchrun",
    )
    patch_once(
        distributed_utils,
        "_infer_single_node_init",
        _single_node_init,
        params=("cfg",),
        purpose=f"{cpu}: the error that says to use torchrun",
    )
    patch_once(
        distributed_utils,
        "distributed_init",
        _distributed_init,
        params=("cfg",),
        purpose=f"{cpu}: gloo instead of nccl",
    )
    patch_once(
        distributed_fairseq_model,
        "DistributedDataParallel",
        _cpu_ddp,
        params=("self", "module", "device_ids", "output_device"),
        purpose=f"{cpu}: DDP of CPU modules",
    )
    patch_once(
        distributed_utils, "call_main", _bf16_without_xla, params=("cfg", "main"), purpose="--bf16 without torch_xla"
    )
    patch_once(
        fp16_optimizer._FP16OptimizerMixin,
        "build_fp32_params",
        _flat_fp32_params_on_cpu,
        params=("cls", "args", "params", "flatten"),
        purpose="--fp16 with parameters on the CPU",
    )
