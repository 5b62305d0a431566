"""Mixed-precision training on CPU (and bf16 on CUDA) for fairseq 0.12.

Two fairseq behaviours are changed, each only in the case that fails today:

1. ``--bf16`` / ``--memory-efficient-bf16``: fairseq's argument parser turns on ``--tpu`` whenever
   bf16 is asked for (bf16 used to mean TPU), and the trainer then asks torch_xla for a device
   (``'NoneType' object has no attribute 'xla_device'`` without torch_xla).  When torch_xla is not
   installed we switch ``tpu`` back off (in every config section) before ``distributed_utils.call_main`` runs, so bf16
   trains on the CPU or the GPU like fp16 does (model in bf16, fp32 master weights, no loss
   scaling).  With torch_xla installed nothing changes.
2. ``--fp16`` (not memory-efficient) keeps one flat fp32 copy of the parameters keyed by
   ``torch.cuda.current_device()``, which raises without CUDA.  For parameters on the CPU we
   key the flat copy by the CPU tensors' ``device.index`` (None), which is what the optimizer's
   gradient and parameter syncs look up.

``--memory-efficient-fp16`` needs no patch.  ``--amp`` runs on the CPU but trains in fp32 there:
fairseq's AMP uses CUDA autocast and the CUDA grad scaler, which do nothing for CPU tensors.
``apply()`` is idempotent and runs when ``mega_fairseq`` is imported.
"""
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

_PATCHED = "_mega_fairseq_precision_patch"


def _bf16_without_xla(call_main):
    from fairseq.distributed import utils as distributed_utils

    def wrapped_call_main(cfg, main, **kwargs):
        common = getattr(cfg, "common", None)
        if common is not None and common.bf16 and common.tpu and getattr(distributed_utils, "xm", None) is None:
            logger.info("--bf16 without torch_xla: training in bfloat16 on %s, not on a TPU", "the CPU" if common.cpu else "the default device")
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
    """Installs both patches (idempotent)."""
    from fairseq.distributed import utils as distributed_utils
    from fairseq.optim.fp16_optimizer import _FP16OptimizerMixin

    if not getattr(distributed_utils.call_main, _PATCHED, False):
        wrapper = _bf16_without_xla(distributed_utils.call_main)
        setattr(wrapper, _PATCHED, True)
        distributed_utils.call_main = wrapper

    original = _FP16OptimizerMixin.__dict__["build_fp32_params"]
    if not getattr(original.__func__, _PATCHED, False):
        wrapper = _flat_fp32_params_on_cpu(original.__func__)
        setattr(wrapper, _PATCHED, True)
        _FP16OptimizerMixin.build_fp32_params = classmethod(wrapper)
