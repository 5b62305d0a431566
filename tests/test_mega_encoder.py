"""mega_encoder: every head equals its transformers class with the same weights (through hf_names), padding
anywhere never changes a sample's output, fairseq's masked_lm -> sentence_prediction / sentence_ranking
pipeline trains from the CLI, and bad input gets a clear error."""

import json
import os
import subprocess
import warnings

import pytest
import torch
import transformers
from fairseq.data import Dictionary

from mega_fairseq.convert.hf_names import (
    ENCODER_HEAD_KEYS,
    encoder_hf_config_kwargs,
    encoder_state_dict_from_hf,
    encoder_state_dict_to_hf,
    to_hf_config_kwargs,
)
from mega_fairseq.models.mega_encoder import segments_from_separator
from mega_fairseq.testing import randomize_

from conftest import BIN, REPO, assert_exports_to_transformers, fairseq_cli

warnings.filterwarnings("ignore", category=FutureWarning)
TOL = 1e-5
NUM_LABELS = {"classification": 3, "regression": 1, "token_classification": 4}


def dictionary():
    d = Dictionary()
    for i in range(40):
        d.add_symbol(f"w{i}")
    d.add_symbol("<mask>")
    return d


def build(arch="mega_tiny", task=None, **overrides):
    """A mega_encoder from a preset plus overrides (the config fairseq-train would make, without its parser)."""
    from argparse import Namespace
    from types import SimpleNamespace

    from fairseq.models import ARCH_CONFIG_REGISTRY

    from mega_fairseq.models.mega_encoder import MegaEncoderConfig, MegaEncoderModel

    args = Namespace(**overrides)
    ARCH_CONFIG_REGISTRY[arch](args)
    cfg = MegaEncoderConfig(**vars(args))
    return MegaEncoderModel.build_model(cfg, task or SimpleNamespace(source_dictionary=dictionary())).eval()


def build_with_parser(task, *argv):
    """A mega_encoder built exactly as fairseq-train builds it (argparse -> task.build_model)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = options.parse_args_and_arch(
        options.get_training_parser(), ["dummy", "--task", task, "--user-dir", str(REPO / "user_dir"), *argv]
    )
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.get_task(task)(cfg.task, dictionary())
    return task.build_model(cfg.model), cfg


def add_head(model, kind, name="head"):
    if kind in ("classification", "regression"):
        model.register_classification_head(name, NUM_LABELS[kind])
    elif kind == "multiple_choice":
        model.register_classification_head(name, 1, head_type="multiple_choice")
    elif kind == "token_classification":
        model.register_token_classification_head(name, NUM_LABELS[kind])
    elif kind == "question_answering":
        model.register_question_answering_head(name)
    elif kind == "pooler":
        model.register_pooler_head(name)
    return model


def batch(lengths, pad=1, seed=0, low=4, high=44, eos_at=None):
    """(tokens (B, T) right-padded, keep mask).  Row i starts with <s>; eos_at puts a </s> separator there."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(low, high, (len(lengths), max(lengths)), generator=gen)
    tokens[:, 0] = 0
    if eos_at is not None:
        tokens[:, eos_at] = 2
    keep = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    return tokens.masked_fill(~keep, pad), keep


def hf_twin(model, kind):
    """The transformers class of `kind` loaded (strictly) with our model's weights through hf_names."""
    cfg = model.encoder.stack.cfg
    hf_kind = "classification" if kind == "regression" else kind
    hf_class, _, _ = ENCODER_HEAD_KEYS[hf_kind]
    config = transformers.MegaConfig(
        **to_hf_config_kwargs(
            cfg,
            len(model.encoder.stack.layers),
            len(model.encoder.dictionary),
            model.encoder.dictionary.pad(),
            model.type_vocab_size,
        ),
        **encoder_hf_config_kwargs(
            hf_kind,
            num_labels=NUM_LABELS.get(kind),
            lm_hidden_dense=model.lm_head.dense is not None,
            tied=not model.cfg.untie_weights_roberta,
        ),
    )
    hf = getattr(transformers, hf_class)(config)
    state = encoder_state_dict_to_hf(model.state_dict(), cfg, hf_kind, None if kind == "masked_lm" else "head")
    assert not [k for k in state if "gamma" in k or "beta" in k]
    hf.load_state_dict(state, strict=True)
    return hf.eval(), hf_kind


def assert_close(ours, theirs, what):
    scale = theirs.abs().max().item()
    worst = (ours - theirs).abs().max().item()
    assert worst <= TOL * max(1.0, scale), f"{what}: max abs diff {worst:.3g} (scale {scale:.3g})"


KINDS = [
    "masked_lm",
    "masked_lm_no_dense",
    "classification",
    "regression",
    "multiple_choice",
    "token_classification",
    "question_answering",
    "pooler",
]
CONFIGS = {
    "plain": {},
    "types_chunked": {"add_token_type_embeddings": True, "encoder_chunk_size": 4},
    "simple_laplace_postnorm": {
        "arch": "mega_encoder",
        "encoder_layers": 2,
        "encoder_embed_dim": 32,
        "encoder_hidden_dim": 48,
        "encoder_z_dim": 16,
        "encoder_n_dim": 4,
        "encoder_ffn_embed_dim": 40,
        "rel_pos_bias": "simple",
        "attention_activation_fn": "laplace",
        "normalization_type": "layernorm",
        "max_positions": 32,
        "untie_weights_roberta": True,
    },
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("kind", KINDS)
def test_head_matches_transformers(kind, config):
    overrides = dict(CONFIGS[config])
    if kind == "masked_lm_no_dense":
        kind, overrides["no_lm_hidden_dense"] = "masked_lm", True
    model = randomize_(add_head(build(**overrides), kind), seed=1)
    hf, hf_kind = hf_twin(model, kind)
    tokens, keep = batch([12, 9, 5], seed=2)
    types = (
        torch.randint(0, 2, tokens.shape, generator=torch.Generator().manual_seed(3)) if model.type_vocab_size else None
    )
    hf_kwargs = {"token_type_ids": types} if types is not None else {}
    head = None if kind == "masked_lm" else "head"
    with torch.no_grad():
        if kind == "multiple_choice":  # HF takes (B, C, T) at once; fairseq's sentence_ranking runs each choice
            choices = torch.stack([tokens, tokens.roll(1, 0), tokens.roll(2, 0)], 1)
            choice_keep = torch.stack([keep, keep.roll(1, 0), keep.roll(2, 0)], 1)
            choice_types = None if types is None else torch.stack([types, types.roll(1, 0), types.roll(2, 0)], 1)
            ours = torch.cat(
                [
                    model(
                        choices[:, c],
                        classification_head_name=head,
                        token_types=None if types is None else choice_types[:, c],
                    )[0]
                    for c in range(3)
                ],
                1,
            )
            theirs = hf(choices, attention_mask=choice_keep.long(), token_type_ids=choice_types).logits
            assert ours.shape == theirs.shape == (3, 3)
        else:
            ours, _ = model(tokens, classification_head_name=head, token_types=types)
            out = hf(tokens, attention_mask=keep.long(), **hf_kwargs)
            if kind == "question_answering":
                theirs = torch.stack([out.start_logits, out.end_logits], -1)
            elif kind == "pooler":
                theirs = out.pooler_output
            else:
                theirs = out.logits
            if ours.dim() == 3:  # per-token outputs: compare real tokens
                ours, theirs = ours[keep], theirs[keep]
        if kind in ("pooler", "multiple_choice", "classification", "regression"):
            assert theirs.abs().max() > 0.05 and theirs.std() > 1e-3, (
                "head output too flat for the comparison to mean anything"
            )
        assert_close(ours, theirs, f"{kind}/{config}")
        if kind == "masked_lm":  # fairseq's masked_lm criterion asks for the masked positions only
            masked = keep & (torch.rand(keep.shape, generator=torch.Generator().manual_seed(4)) < 0.3)
            assert_close(model(tokens, masked_tokens=masked, token_types=types)[0], out.logits[masked], "masked_tokens")
    back = encoder_state_dict_from_hf(hf.state_dict(), model.encoder.stack.cfg, hf_kind, head)
    own = model.state_dict()
    assert back and all(torch.equal(back[k], own[k]) for k in back), "hf_names round trip changed a tensor"
    assert {k for k in own if k.startswith("encoder.")} <= set(back)


def test_name_tables_are_complete():
    """Every parameter of every head kind has exactly one HF name (and the HF class has no other parameter)."""
    model = build(add_token_type_embeddings=True)
    for kind in ["classification", "multiple_choice", "token_classification", "question_answering", "pooler"]:
        add_head(model, kind, name=kind)
    state = model.state_dict()
    for kind, (_, _, keys) in ENCODER_HEAD_KEYS.items():
        if kind == "masked_lm":
            ours = {k for k in state if k.startswith("lm_head.")}
        else:
            ours = {k for k in state if k.startswith(f"classification_heads.{kind}.")}
        assert ours == {o.format(head=kind) for o, _ in keys}, kind


def test_segments_from_separator_follow_hf_pair_ids():
    # fairseq's sentence_prediction layout <s> A </s> </s> B </s> (+ padding) -> HF ids 0 0 0 1 1 1 (padding: 1,
    # ignored)
    tokens = torch.tensor([[0, 7, 8, 2, 2, 9, 2, 1], [1, 1, 0, 7, 2, 2, 9, 2], [0, 7, 8, 9, 2, 1, 1, 1]])
    assert segments_from_separator(tokens, 2).tolist() == [
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 1, 1, 1],
        [0, 0, 0, 0, 0, 1, 1, 1],
    ]
    model = build(add_token_type_embeddings=True)
    assert model._token_types(tokens, None).tolist() == segments_from_separator(tokens, 2).tolist()
    with torch.no_grad():  # derived ids = the same ids given explicitly; zero_token_types = HF's default (all zero)
        assert torch.equal(model(tokens)[0], model(tokens, token_types=segments_from_separator(tokens, 2))[0])
        assert not torch.allclose(model(tokens)[0], model(tokens, token_types=torch.zeros_like(tokens))[0])
    zero = build(add_token_type_embeddings=True, zero_token_types=True)
    assert zero._token_types(tokens, None) is None


def shift_left_padded(tokens, keep, rows):
    """Moves the padding of `rows` to the left."""
    tokens, keep = tokens.clone(), keep.clone()
    for r in rows:
        n = int(keep[r].sum())
        tokens[r] = torch.cat([tokens[r, n:], tokens[r, :n]])
        keep[r] = torch.cat([keep[r, n:], keep[r, :n]])
    return tokens, keep


@pytest.mark.parametrize("config", ["plain", "types_chunked"])
def test_padding_anywhere_never_changes_a_sample(config):
    model = build(**CONFIGS[config])
    for kind in ["classification", "multiple_choice", "token_classification", "question_answering", "pooler"]:
        add_head(model, kind, name=kind)
    randomize_(model, seed=5)
    tokens, keep = batch([13, 9, 5, 11, 2], seed=6, eos_at=3)  # the </s> at 3 makes two segments
    tokens[4, 1] = 2  # a two-token sample
    tokens, keep = shift_left_padded(tokens, keep, rows=[1, 3])
    with torch.no_grad():
        for head in [None, *model.classification_heads]:
            together, _ = model(tokens, classification_head_name=head)
            for r in range(tokens.size(0)):
                alone, _ = model(tokens[r : r + 1, keep[r]], classification_head_name=head)
                got = together[r : r + 1]
                if head is None or together.dim() == 3:
                    got = got[:, keep[r]]
                assert_close(got, alone, f"{head} row {r}")


def test_checkpoint_heads_are_added_dropped_and_restored():
    pretrained = randomize_(build(rel_pos_bias="simple", max_positions=16), seed=7)
    state = pretrained.state_dict()
    # fine-tuning model: new head, longer max_positions (sentence_prediction sets it) -> bias re-centred, head kept
    # fresh
    tuned = add_head(build(rel_pos_bias="simple", max_positions=24), "classification")
    fresh = {k: v.clone() for k, v in tuned.classification_heads.state_dict().items()}
    tuned.load_state_dict(dict(state), strict=True)
    assert all(torch.equal(tuned.classification_heads.state_dict()[k], v) for k, v in fresh.items())
    key = "encoder.stack.layers.0.mega_layer.rel_pos_bias.rel_pos_bias"
    assert torch.equal(tuned.state_dict()[key][8:39], state[key]) and not tuned.state_dict()[key][:8].any()
    tokens, _ = batch([10, 10])
    with torch.no_grad():  # offsets within the old range keep their bias: same features
        assert_close(tuned(tokens, features_only=True)[0], pretrained(tokens, features_only=True)[0], "re-centred bias")
    # a checkpoint with heads: a head of another shape is dropped, an unknown one too, or re-registered on request
    randomize_(tuned, seed=8)
    add_head(tuned, "question_answering", name="qa")
    saved = tuned.state_dict()
    other = add_head(build(rel_pos_bias="simple", max_positions=24), "token_classification", name="head")
    other.load_state_dict(dict(saved), strict=True)
    assert (
        set(other.classification_heads) == {"head"} and other.classification_heads["head"].classifier.out_features == 4
    )
    keeper = build(rel_pos_bias="simple", max_positions=24, load_checkpoint_heads=True)
    keeper.load_state_dict(dict(saved), strict=True)
    assert set(keeper.classification_heads) == {"head", "qa"}
    assert torch.equal(
        keeper.classification_heads["qa"].qa_outputs.weight, tuned.classification_heads["qa"].qa_outputs.weight
    )


def test_sentence_ranking_task_gets_multiple_choice_heads():
    """fairseq's sentence_ranking registers (name, num_classes=1): a MultipleChoiceHead; elsewhere 1 class is
    regression."""
    model, cfg = build_with_parser(
        "sentence_ranking", "--arch", "mega_tiny", "--criterion", "sentence_ranking", "--num-classes", "3"
    )
    assert type(model.classification_heads["sentence_classification_head"]).__name__ == "MultipleChoiceHead"
    assert cfg.task.max_positions == 2048  # sentence_ranking reads the model's --max-positions
    plain = build()
    plain.register_classification_head("reg", num_classes=1)
    assert type(plain.classification_heads["reg"]).__name__ == "SequenceClassificationHead"


def test_probabilities_and_max_positions():
    model = build()
    tokens, _ = batch([7, 4])
    with torch.no_grad():
        out = model(tokens)
    lprobs = model.get_normalized_probs(out, log_probs=True)
    assert lprobs.shape == (2, 7, 45) and torch.allclose(lprobs.exp().sum(-1), torch.ones(2, 7), atol=1e-5)
    assert torch.allclose(model.output_layer(out[1]["inner_states"][-1].transpose(0, 1)), out[0])
    assert model.max_positions() >= 10**6  # rotary: any length
    assert build(rel_pos_bias="simple", max_positions=32).max_positions() == 32


def test_bad_input_gets_clear_errors():
    model = build(add_token_type_embeddings=True)
    tokens, _ = batch([6, 6])
    with pytest.raises(ValueError, match="unknown head 'nope'.*register"):
        model(tokens, classification_head_name="nope")
    with pytest.raises(ValueError, match=r"token_types must have the shape of src_tokens \(2, 6\)"):
        model(tokens, token_types=torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 2\).*--type-vocab-size"):
        model(tokens, token_types=torch.full_like(tokens, 2))
    with pytest.raises(ValueError, match="integer ids"):
        model(tokens, token_types=torch.zeros(2, 6))
    with pytest.raises(ValueError, match="--add-token-type-embeddings"):
        build()(tokens, token_types=torch.zeros_like(tokens))
    with pytest.raises(ValueError, match="num_classes=1"):
        model.register_classification_head("mc", 3, head_type="multiple_choice")
    with pytest.raises(ValueError, match="num_labels"):
        model.register_token_classification_head("tok", 0)
    with pytest.raises(ValueError, match="head_type"):
        model.register_classification_head("x", 2, head_type="span")
    with pytest.raises(KeyError, match="is 'head' a question_answering head"):
        encoder_state_dict_to_hf(
            add_head(model, "pooler").state_dict(), model.encoder.stack.cfg, "question_answering", "head"
        )
    with pytest.raises(ValueError, match="sequence of 40 positions"):
        build(rel_pos_bias="simple", max_positions=32)(batch([40])[0])


# ---- fairseq-train: masked_lm pretraining, then fine-tuning with fairseq's own tasks ------------

WORDS = [f"w{i}" for i in range(40)]


def _sentence(gen, half, n=8):
    ids = torch.randint(0, 20, (n,), generator=gen) + 20 * half
    return " ".join(WORDS[i] for i in ids.tolist())


def _binarize(src, dest, srcdict=None):
    """fairseq-preprocess --only-source, in-process (the CLI's start-up time, once per file, adds up)."""
    from fairseq import options
    from fairseq_cli import preprocess

    argv = [
        "--only-source",
        "--trainpref",
        f"{src}/train.txt",
        "--validpref",
        f"{src}/valid.txt",
        "--destdir",
        str(dest),
        "--workers",
        "1",
    ]
    preprocess.main(
        options.get_preprocessing_parser().parse_args(argv + (["--srcdict", str(srcdict)] if srcdict else []))
    )


@pytest.fixture(scope="module")
def encoder_data(tmp_path_factory):
    """masked-LM corpus + sentence_prediction (pairs; label = which half of the vocabulary the first sentence
    uses; regression: the fraction of low-half words) + sentence_ranking (3 choices; the right one shares
    the context's half).  Returns the directories."""
    root = tmp_path_factory.mktemp("encoder")
    gen = torch.Generator().manual_seed(0)
    text = root / "text"
    text.mkdir()
    for split, n in (("train", 192), ("valid", 16)):
        (text / f"{split}.txt").write_text(
            "".join(_sentence(gen, int(torch.randint(0, 2, (1,), generator=gen))) + "\n" for _ in range(n))
        )
    _binarize(text, root / "mlm")
    srcdict = root / "mlm/dict.txt"
    cls, reg, rank = root / "cls", root / "reg", root / "rank"
    for split, n in (("train", 96), ("valid", 16)):
        rows = {name: [] for name in ("a", "b", "label", "value", "ctx", "c0", "c1", "c2", "answer")}
        for _ in range(n):
            half = int(torch.randint(0, 2, (1,), generator=gen))
            rows["a"].append(_sentence(gen, half)), rows["b"].append(_sentence(gen, 1 - half, 5))
            rows["label"].append(f"l{half}"), rows["value"].append(f"{float(half):.1f}")
            answer = int(torch.randint(0, 3, (1,), generator=gen))
            rows["ctx"].append(_sentence(gen, half))
            for c in range(3):
                rows[f"c{c}"].append(_sentence(gen, half if c == answer else 1 - half, 4))
            rows["answer"].append(str(answer))
        for name, lines in rows.items():
            (root / "raw" / name).mkdir(parents=True, exist_ok=True)
            (root / "raw" / name / f"{split}.txt").write_text("\n".join(lines) + "\n")
        for d in (reg / "label", rank):
            d.mkdir(parents=True, exist_ok=True)
        (reg / "label" / f"{split}.label").write_text("\n".join(rows["value"]) + "\n")
        (rank / f"{split}.label").write_text("\n".join(rows["answer"]) + "\n")
    for out, name in (
        ("cls/input0", "a"),
        ("cls/input1", "b"),
        ("rank/input0", "ctx"),
        ("rank/input1", "c0"),
        ("rank/input2", "c1"),
        ("rank/input3", "c2"),
    ):
        _binarize(root / "raw" / name, root / out, srcdict)
    _binarize(root / "raw" / "label", cls / "label")
    for split in ("train", "valid"):  # sentence_ranking reads its labels from label/{split}.label
        (rank / "label").mkdir(exist_ok=True)
        (rank / f"{split}.label").rename(rank / "label" / f"{split}.label")
    (reg / "input0").symlink_to(cls / "input0")
    (reg / "input1").symlink_to(cls / "input1")
    return root


COMMON = [
    "--user-dir",
    REPO / "user_dir",
    "--cpu",
    "--num-workers",
    "0",
    "--optimizer",
    "adam",
    "--lr",
    "3e-3",
    "--log-format",
    "json",
    "--log-interval",
    "1",
    "--no-epoch-checkpoints",
    "--seed",
    "1",
    "--batch-size",
    "32",
    "--disable-validation",
]
MODEL = ["--arch", "mega_tiny", "--encoder-chunk-size", "8", "--add-token-type-embeddings"]


def train_losses(log: str):
    """Per-epoch training losses from fairseq-train's json log."""
    rows = [json.loads(line[line.index("{") :]) for line in log.splitlines() if '"train_loss"' in line]
    return [float(r["train_loss"]) for r in rows]


@pytest.fixture(scope="module")
def pretrained(encoder_data, tmp_path_factory):
    save = tmp_path_factory.mktemp("mlm_ckpt")
    proc = fairseq_cli(
        "fairseq-train",
        encoder_data / "mlm",
        "--task",
        "masked_lm",
        "--criterion",
        "masked_lm",
        *MODEL,
        *COMMON,
        "--tokens-per-sample",
        "32",
        "--sample-break-mode",
        "eos",
        "--max-epoch",
        "3",
        "--save-dir",
        save,
    )
    return save / "checkpoint_last.pt", train_losses(proc.stdout + proc.stderr)


def test_masked_lm_pretraining_loss_falls(pretrained):
    _, losses = pretrained
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.3, losses


FINETUNE = {
    "classification": [
        "cls",
        "--task",
        "sentence_prediction",
        "--criterion",
        "sentence_prediction",
        "--num-classes",
        "2",
        "--init-token",
        "0",
        "--separator-token",
        "2",
    ],
    "regression": [
        "reg",
        "--task",
        "sentence_prediction",
        "--criterion",
        "sentence_prediction",
        "--num-classes",
        "1",
        "--regression-target",
        "--init-token",
        "0",
        "--separator-token",
        "2",
    ],
    "multiple_choice": [
        "rank",
        "--task",
        "sentence_ranking",
        "--criterion",
        "sentence_ranking",
        "--num-classes",
        "3",
        "--init-token",
        "0",
        "--separator-token",
        "2",
    ],
}


@pytest.fixture(scope="module")
def finetuned(pretrained, encoder_data, tmp_path_factory):
    """kind -> (save dir, log) of fairseq-train fine-tuning runs from the masked-LM checkpoint.  The three
    runs start together: each spends most of its time importing fairseq, which a second core overlaps."""
    checkpoint, _ = pretrained
    env = dict(os.environ, PYTHONPATH=str(REPO))
    runs = {}
    for kind, (data, *task) in FINETUNE.items():
        save = tmp_path_factory.mktemp(f"finetune_{kind}")
        log = open(save / "log.txt", "w")
        argv = [
            str(BIN / "fairseq-train"),
            str(encoder_data / data),
            *task,
            *map(str, MODEL + COMMON),
            "--max-epoch",
            "3",
            "--save-dir",
            str(save),
            "--restore-file",
            str(checkpoint),
            "--reset-optimizer",
            "--reset-dataloader",
            "--reset-meters",
        ]
        runs[kind] = (save, log, subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
    results = {}
    for kind, (save, log, proc) in runs.items():
        proc.wait(timeout=600)
        log.close()
        text = (save / "log.txt").read_text()
        assert proc.returncode == 0, f"fine-tuning ({kind}) failed:\n{text[-4000:]}"
        results[kind] = (save, text)
    return results


@pytest.mark.parametrize("kind", list(FINETUNE))
def test_finetune_from_masked_lm_checkpoint(kind, finetuned):
    save, log = finetuned[kind]
    losses = train_losses(log)
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert "Loaded checkpoint" in log
    state = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    head = {
        "classification": "classification_heads.sentence_classification_head.out_proj.weight",
        "regression": "classification_heads.sentence_classification_head.out_proj.weight",
        "multiple_choice": "classification_heads.sentence_classification_head.classifier.weight",
    }[kind]
    assert head in state


AUTO_CLASSES = {
    "classification": "AutoModelForSequenceClassification",
    "regression": "AutoModelForSequenceClassification",
    "multiple_choice": "AutoModelForMultipleChoice",
}


@pytest.mark.parametrize("kind", list(FINETUNE))
def test_finetuned_checkpoint_exports_to_transformers(kind, finetuned, encoder_data, tmp_path):
    save, _ = finetuned[kind]
    assert_exports_to_transformers(
        save / "checkpoint_last.pt", encoder_data / FINETUNE[kind][0], AUTO_CLASSES[kind], tmp_path / "hf"
    )


def test_pretrained_checkpoint_exports_to_transformers(pretrained, encoder_data, tmp_path):
    assert_exports_to_transformers(pretrained[0], encoder_data / "mlm", "AutoModelForMaskedLM", tmp_path / "hf")
