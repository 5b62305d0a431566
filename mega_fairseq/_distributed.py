"""Data-parallel training on machines without CUDA (gloo on CPU) for fairseq 0.12.

fairseq assumes one CUDA device per rank.  Without CUDA it fails in four places; each patch
below changes behaviour only when ``torch.cuda.device_count() == 0`` (or, for DDP, when the
module's parameters live on the CPU) and leaves the CUDA path untouched:

1. torchrun: ``device_id = rank % torch.cuda.device_count()`` -> ZeroDivisionError.  We take
   device id 0 (the CPU has no device index) and keep everything else fairseq derives from the
   launcher's environment.
2. ``--distributed-world-size N`` without a launcher asserts "world size is N but have 0
   available devices" and would spawn ``cuda.device_count()`` = 0 processes; we raise a clear
   error that says to launch with torchrun instead.
3. The default ``--distributed-backend nccl`` does not exist without CUDA; we use gloo.
4. The default ``--ddp-backend pytorch_ddp`` passes ``device_ids=[device_id]`` to
   ``DistributedDataParallel``, which must be None for CPU modules; we drop it for CPU modules.

``apply()`` is idempotent; it runs when ``mega_fairseq`` is imported, which fairseq does for
``--user-dir`` while parsing the command line, before ``distributed_utils.call_main``.
"""
import logging
import os

import torch

logger = logging.getLogger(__name__)

_PATCHED = "_mega_fairseq_cpu_patch"


def _no_cuda() -> bool:
    return torch.cuda.device_count() == 0


def _wrap(module, name, make):
    """Replaces module.name by make(original) once (marks the wrapper so re-imports keep it)."""
    original = getattr(module, name)
    if getattr(original, _PATCHED, False):
        return
    wrapper = make(original)
    setattr(wrapper, _PATCHED, True)
    wrapper.__wrapped__ = original
    setattr(module, name, wrapper)


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
                f"On CPU start one process per rank with torchrun: "
                f"python -m torch.distributed.run --nproc_per_node {n} $(which fairseq-train) ... --distributed-world-size {n} --cpu"
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


def apply() -> None:
    """Installs the four CPU patches (idempotent)."""
    from fairseq.distributed import utils as distributed_utils
    from fairseq.models import distributed_fairseq_model

    _wrap(distributed_utils, "_infer_torch_distributed_launch_init", _launch_init)
    _wrap(distributed_utils, "_infer_single_node_init", _single_node_init)
    _wrap(distributed_utils, "distributed_init", _distributed_init)
    _wrap(distributed_fairseq_model, "DistributedDataParallel", _cpu_ddp)
