"""Compatibility shims between fairseq 0.12 and recent torch.

torch >= 2.6 loads checkpoints with ``torch.load(..., weights_only=True)`` by
default. fairseq checkpoints of models configured through argparse (rather
than a dataclass) pickle an ``argparse.Namespace``, which the weights-only
unpickler refuses ("Unsupported global: GLOBAL argparse.Namespace"). We allow
exactly that class; weights_only stays on for everything else.
"""
import argparse

import torch


def allow_fairseq_checkpoint_globals() -> None:
    """Allowlist ``argparse.Namespace`` for weights-only ``torch.load``.

    Idempotent. A no-op on torch versions without ``add_safe_globals``
    (those do not default to weights_only=True either).
    """
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:
        return
    if argparse.Namespace not in torch.serialization.get_safe_globals():
        add_safe_globals([argparse.Namespace])
