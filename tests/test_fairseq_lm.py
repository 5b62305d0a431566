"""mega_lm through fairseq: registration, incremental decoding via fairseq's incremental_state, CLI training."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mega_fairseq  # noqa: F401  registers the plugin
from fairseq.data import Dictionary
from fairseq.models import ARCH_MODEL_REGISTRY

REPO = Path(__file__).resolve().parents[1]


def tiny_lm(**overrides):
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.tasks.language_modeling import LanguageModelingTask

    dictionary = Dictionary()
    for i in range(30):
        dictionary.add_symbol(f"w{i}")
    parser = options.get_training_parser()
    argv = ["dummy", "--task", "language_modeling", "--arch", "mega_lm_tiny", "--user-dir", str(REPO / "user_dir"), "--tokens-per-sample", "64"]
    for key, value in overrides.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))
    task = LanguageModelingTask(cfg.task, dictionary)
    return task.build_model(cfg.model).eval(), dictionary


def test_arch_is_registered():
    assert "mega_lm_tiny" in ARCH_MODEL_REGISTRY


@pytest.mark.parametrize("overrides", [{}, {"decoder_chunk_size": 4}, {"attention_activation_fn": "laplace", "decoder_chunk_size": 4}, {"rel_pos_bias": "simple"}])
def test_incremental_decoding_equals_full_forward(overrides):
    model, dictionary = tiny_lm(**overrides)
    tokens = torch.randint(dictionary.nspecial, len(dictionary), (3, 10))
    with torch.no_grad():
        full, _ = model(tokens)
        incremental_state = {}
        steps = []
        for t in range(10):
            # fairseq passes the whole prefix every step; the decoder runs only the new token
            out, _ = model.decoder(tokens[:, : t + 1], incremental_state=incremental_state)
            steps.append(out[:, -1:])
    assert (torch.cat(steps, 1) - full).abs().max() <= 1e-4 * full.abs().max().clamp(min=1)


def test_reorder_incremental_state():
    model, dictionary = tiny_lm(decoder_chunk_size=4)
    tokens = torch.randint(dictionary.nspecial, len(dictionary), (3, 7))
    order = torch.tensor([1, 1, 0])
    with torch.no_grad():
        state = {}
        model.decoder(tokens[:, :6], incremental_state=state)
        model.decoder.reorder_incremental_state_scripting(state, order)
        out, _ = model.decoder(tokens[order][:, :7], incremental_state=state)
        full, _ = model(tokens[order])
    assert (out[:, -1] - full[:, -1]).abs().max() <= 1e-4


def test_fairseq_train_and_eval_lm_cli(tmp_path):
    text = tmp_path / "text"
    text.mkdir()
    words = [f"w{i}" for i in range(40)]
    gen = torch.Generator().manual_seed(0)
    for split, lines in [("train", 200), ("valid", 20)]:
        with open(text / f"{split}.txt", "w") as f:
            for _ in range(lines):
                ids = torch.randint(0, 40, (12,), generator=gen).tolist()
                f.write(" ".join(words[i] for i in sorted(ids)) + "\n")  # sorted: learnable structure
    data = tmp_path / "bin"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    bindir = Path(sys.executable).parent
    subprocess.run(
        [bindir / "fairseq-preprocess", "--only-source", "--trainpref", text / "train.txt", "--validpref", text / "valid.txt", "--destdir", data],
        check=True, env=env, capture_output=True,
    )
    save = tmp_path / "ckpt"
    train = subprocess.run(
        [bindir / "fairseq-train", data, "--task", "language_modeling", "--user-dir", REPO / "user_dir", "--arch", "mega_lm_tiny",
         "--tokens-per-sample", "32", "--max-tokens", "512", "--optimizer", "adam", "--lr", "3e-3", "--max-update", "30",
         "--cpu", "--num-workers", "0", "--save-dir", save, "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "5",
         "--decoder-chunk-size", "8", "--seed", "1"],
        env=env, capture_output=True, text=True,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    losses = [float(line.split("loss=")[1].split(",")[0]) for line in train.stderr.splitlines() + train.stdout.splitlines() if "train_inner" in line and "loss=" in line]
    assert len(losses) >= 2 and losses[-1] < losses[0], losses
    assert (save / "checkpoint_last.pt").exists()
    ev = subprocess.run(
        [bindir / "fairseq-eval-lm", data, "--user-dir", REPO / "user_dir", "--path", save / "checkpoint_last.pt", "--gen-subset", "valid",
         "--tokens-per-sample", "32", "--cpu", "--num-workers", "0"],
        env=env, capture_output=True, text=True,
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "Perplexity" in ev.stderr + ev.stdout
