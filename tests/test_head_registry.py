"""The head registry (`models.heads.HEAD_KINDS`) is the single source of head kinds: for every entry the
model registers it, a checkpoint's parameters name it back, the exporter maps it to its transformers
class (every parameter accounted for, outputs equal) and the importer maps that class back to it.  A new
entry missing any of its pieces fails here."""

from argparse import Namespace
from types import SimpleNamespace

import pytest
import torch
import transformers
from fairseq.data import Dictionary

from mega_fairseq.convert.hf_names import ENCODER_HEAD_KEYS
from mega_fairseq.convert.targets import EncoderHeadTarget, target_for_fairseq_model, target_for_hf_class
from mega_fairseq.models.heads import HEAD_KINDS, head_kind, head_spec, head_spec_from_state_dict
from mega_fairseq.testing import randomize_


def tiny_encoder():
    from fairseq.models import ARCH_CONFIG_REGISTRY

    from mega_fairseq.models.mega_encoder import MegaEncoderConfig, MegaEncoderModel

    dictionary = Dictionary()
    for i in range(40):
        dictionary.add_symbol(f"w{i}")
    dictionary.add_symbol("<mask>")
    args = Namespace()
    ARCH_CONFIG_REGISTRY["mega_tiny"](args)
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=None)
    return MegaEncoderModel.build_model(MegaEncoderConfig(**vars(args)), task).eval(), task


@pytest.mark.parametrize("name", list(HEAD_KINDS))
def test_every_registered_kind_round_trips_through_transformers(name):
    kind = HEAD_KINDS[name]
    assert kind.name == name and kind.module is not None
    model, task = tiny_encoder()

    # importer: the HF class maps back to this kind, which registers under its task's default name
    target = target_for_hf_class(kind.hf_class)
    assert isinstance(target, EncoderHeadTarget) and target.kind == name and target.head_name == kind.default_name
    fixed = kind.num_labels if isinstance(kind.num_labels, int) else 3
    target.prepare_import(model, SimpleNamespace(num_labels=fixed))
    head = model.classification_heads[kind.default_name]
    assert type(head) is kind.module and head_spec(head)[0] == name

    # the model: a checkpoint's parameter names identify the kind and sizes
    params = dict(head.state_dict())
    assert set(params) == kind.param_names, "hf_keys must name every parameter of the head"
    assert head_spec_from_state_dict(params) == head_spec(head)
    assert ENCODER_HEAD_KEYS[name][:2] == (kind.hf_class, kind.hf_body_prefix)

    # exporter: the head maps to its HF class, strictly, with equal outputs
    randomize_(model, seed=1)
    export = target_for_fairseq_model(model, kind.default_name)
    assert export.hf_class == kind.hf_class and export.kind == name
    assert not export.problems(model)
    hf = getattr(transformers, kind.hf_class)(export.make_config(model, task)).eval()
    missing, unexpected = hf.load_state_dict(export.to_hf(model), strict=False)
    assert not unexpected and not [k for k in missing if not k.endswith("_float_tensor")], (missing, unexpected)
    tokens = torch.randint(4, 40, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = export.fairseq_outputs(model, tokens), export.hf_outputs(hf, tokens)
    assert ours.shape == theirs.shape and (ours - theirs).abs().max() < 1e-5

    # importer, back: the HF weights restore the model's head exactly
    back = target.from_hf(hf.state_dict(), model)
    own = model.state_dict()
    assert all(torch.equal(back[k], own[k]) for k in own if k.startswith("classification_heads."))


def test_unknown_kind_names_the_registry():
    with pytest.raises(ValueError, match="choose one of classification, multiple_choice"):
        head_kind("span")
    model, _ = tiny_encoder()
    with pytest.raises(ValueError, match="unknown head kind 'span'"):
        model.register_head("x", "span")
