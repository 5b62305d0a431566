"""MEGA (Moving Average Equipped Gated Attention) for fairseq.

Importing this package registers its models and tasks with fairseq.
"""
from mega_fairseq import _compat

_compat.allow_fairseq_checkpoint_globals()

from mega_fairseq import _distributed, _precision  # noqa: E402

_distributed.apply()  # data parallel on CPU (gloo) under torchrun
_precision.apply()  # --bf16 without torch_xla, --fp16 with CPU parameters

from mega_fairseq import models, tasks  # noqa: E402,F401  (registers archs/tasks with fairseq)
from mega_fairseq import criterions  # noqa: E402,F401  (registers criterions)
from mega_fairseq import reliability; reliability.apply()  # noqa: E402,E702  (lead: fold into the patch module)
