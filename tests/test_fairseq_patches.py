"""The patch-once helper and its guards (mega_fairseq/fairseq_patches.py); the patches' behaviour is
tested in test_distributed.py and test_mixed_precision.py."""

import logging
import types

import fairseq

from mega_fairseq import fairseq_patches
from mega_fairseq.fairseq_patches import PATCH_MARK, patch_once


def _stand_in():
    module = types.ModuleType("fake_fairseq_utils")

    def call_main(cfg, main, **kwargs):
        return ("original", cfg)

    module.call_main = call_main
    return module


def _tagging(original):
    def wrapper(cfg, main, **kwargs):
        return ("patched", original(cfg, main, **kwargs))

    return wrapper


def test_patch_once_wraps_and_is_idempotent():
    module = _stand_in()
    original = module.call_main
    assert patch_once(module, "call_main", _tagging, params=("cfg", "main"), purpose="test")
    assert module.call_main(1, None) == ("patched", ("original", 1))
    assert getattr(module.call_main, PATCH_MARK) and module.call_main.__wrapped__ is original
    assert patch_once(module, "call_main", _tagging, params=("cfg", "main"), purpose="test")
    assert module.call_main(1, None) == ("patched", ("original", 1))  # not wrapped twice


def test_patch_once_handles_classmethods():
    class Mixin:
        @classmethod
        def build(cls, args, params, flatten=True):
            return (cls.__name__, params, flatten)

    def make(original):
        def wrapped(cls, args, params, flatten=True):
            return ("patched", original(cls, args, params, flatten=flatten))

        return wrapped

    assert patch_once(Mixin, "build", make, params=("cls", "args", "params", "flatten"), purpose="test")
    assert isinstance(Mixin.__dict__["build"], classmethod)
    assert Mixin.build(None, [1]) == ("patched", ("Mixin", [1], True))
    assert patch_once(Mixin, "build", make, params=("cls", "args", "params", "flatten"), purpose="test")
    assert Mixin.build(None, [1]) == ("patched", ("Mixin", [1], True))


def test_missing_name_warns_and_skips(caplog):
    module = _stand_in()
    del module.call_main
    with caplog.at_level(logging.WARNING, logger=fairseq_patches.__name__):
        assert not patch_once(module, "call_main", _tagging, params=("cfg", "main"), purpose="--bf16 without torch_xla")
    assert not hasattr(module, "call_main")
    assert "fake_fairseq_utils.call_main (--bf16 without torch_xla)" in caplog.text and "no such name" in caplog.text


def test_inherited_name_on_a_class_is_not_patched(caplog):
    class Base:
        @classmethod
        def build(cls, args, params, flatten=True):
            return "base"

    class Child(Base):
        pass

    with caplog.at_level(logging.WARNING, logger=fairseq_patches.__name__):
        assert not patch_once(Child, "build", lambda f: f, params=("cls",), purpose="test")
    assert "build" not in Child.__dict__ and Base.build(None, []) == "base"


def test_changed_signature_warns_and_skips(caplog):
    module = _stand_in()

    def call_main(config, entry_point):  # renamed parameters: a fairseq this patch was not written for
        return "original"

    module.call_main = call_main
    with caplog.at_level(logging.WARNING, logger=fairseq_patches.__name__):
        assert not patch_once(module, "call_main", _tagging, params=("cfg", "main"), purpose="test")
    assert module.call_main is call_main
    assert "expected parameters (cfg, main), found (config, entry_point)" in caplog.text


def test_other_fairseq_version_warns_and_skips(monkeypatch, caplog):
    monkeypatch.setattr(fairseq, "__version__", "0.13.0")
    module = _stand_in()
    original = module.call_main
    with caplog.at_level(logging.WARNING, logger=fairseq_patches.__name__):
        assert not patch_once(module, "call_main", _tagging, params=("cfg", "main"), purpose="test")
    assert module.call_main is original
    assert "written for fairseq 0.12.x, found fairseq 0.13.0" in caplog.text


def test_apply_skips_every_patch_on_another_fairseq_version(monkeypatch, caplog):
    """apply() under a fairseq it does not target leaves fairseq alone (no exception), one warning per patch."""
    from fairseq.distributed import utils as distributed_utils
    from fairseq.models import distributed_fairseq_model
    from fairseq.optim import fp16_optimizer

    targets = [
        (distributed_utils, "_infer_torch_distributed_launch_init"),
        (distributed_utils, "_infer_single_node_init"),
        (distributed_utils, "distributed_init"),
        (distributed_utils, "call_main"),
        (distributed_fairseq_model, "DistributedDataParallel"),
    ]
    unpatched = {}
    for owner, name in targets:  # restore fairseq's originals for the duration of the test
        current = getattr(owner, name)
        unpatched[name] = getattr(current, "__wrapped__", current)
        monkeypatch.setattr(owner, name, unpatched[name])
    mixin = fp16_optimizer._FP16OptimizerMixin
    build = mixin.__dict__["build_fp32_params"].__func__
    monkeypatch.setattr(mixin, "build_fp32_params", classmethod(getattr(build, "__wrapped__", build)))
    monkeypatch.setattr(fairseq, "__version__", "1.0.0")

    with caplog.at_level(logging.WARNING, logger=fairseq_patches.__name__):
        fairseq_patches.apply()
    for owner, name in targets:
        assert getattr(owner, name) is unpatched[name]
    assert not getattr(mixin.__dict__["build_fp32_params"].__func__, PATCH_MARK, False)
    assert caplog.text.count("found fairseq 1.0.0") == 6


def test_apply_patches_this_fairseq():
    """The installed fairseq is one the patches target: every guard passes, every name is patched."""
    from fairseq.distributed import utils as distributed_utils
    from fairseq.models import distributed_fairseq_model
    from fairseq.optim import fp16_optimizer

    fairseq_patches.apply()
    patched = [
        distributed_utils._infer_torch_distributed_launch_init,
        distributed_utils._infer_single_node_init,
        distributed_utils.distributed_init,
        distributed_utils.call_main,
        distributed_fairseq_model.DistributedDataParallel,
        fp16_optimizer._FP16OptimizerMixin.__dict__["build_fp32_params"].__func__,
    ]
    assert all(getattr(p, PATCH_MARK, False) for p in patched)
