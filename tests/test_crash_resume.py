"""Crash safety: `fairseq-train` of a Mega LM killed with SIGKILL mid-epoch resumes from checkpoint_last.pt when the
same command is run again: same update count, same position in the epoch's batches, same losses as if it had not
stopped, and it finishes --max-update."""

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import torch

import mega_fairseq.plugin  # noqa: F401  (allowlists what fairseq checkpoints need for torch.load)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# unbuffered, so the log can be followed live; one intra-op thread: on a small shared machine torch's default
# threads make these tiny models ~20x slower
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
MAX_UPDATE = 40
# "epoch 001:      7 / 61 loss=5.43, ..., num_updates=7, ..."
TRAIN_INNER = re.compile(r"epoch (\d+):\s+(\d+) / (\d+) loss=([0-9.]+),.*?num_updates=(\d+)")


def make_data(tmp_path):
    text = tmp_path / "train.txt"
    words = [f"w{i}" for i in range(40)]
    gen = torch.Generator().manual_seed(0)
    with open(text, "w") as f:
        for _ in range(150):  # ~1950 tokens: 61 blocks of 32 = 61 batches of one block, so 40 updates stay in epoch 1
            ids = torch.randint(0, 40, (12,), generator=gen).tolist()
            f.write(" ".join(words[i] for i in sorted(ids)) + "\n")
    from fairseq import options
    from fairseq_cli import preprocess

    data = tmp_path / "bin"
    preprocess.main(
        options.get_preprocessing_parser().parse_args(
            ["--only-source", "--trainpref", str(text), "--destdir", str(data)]
        )
    )
    return data


def train_command(data, save):
    return [
        BIN / "fairseq-train",
        data,
        "--task",
        "mega_language_modeling",
        "--user-dir",
        REPO / "user_dir",
        "--arch",
        "mega_lm_tiny",
        "--decoder-chunk-size",
        "8",
        "--tokens-per-sample",
        "32",
        "--batch-size",
        "1",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--max-update",
        str(MAX_UPDATE),
        "--save-interval-updates",
        "5",
        "--keep-interval-updates",
        "1",
        "--no-epoch-checkpoints",
        "--disable-validation",
        "--cpu",
        "--num-workers",
        "0",
        "--log-format",
        "simple",
        "--log-interval",
        "1",
        "--seed",
        "1",
        "--save-dir",
        save,
    ]


def train_inner(log):
    """{num_updates: (epoch, batch number in the epoch, batches in the epoch, loss)} from the train_inner lines."""
    return {int(m[5]): (int(m[1]), int(m[2]), int(m[3]), m[4]) for m in TRAIN_INNER.finditer(log)}


def test_kill_9_then_same_command_resumes(tmp_path):
    data = make_data(tmp_path)
    save = tmp_path / "ckpt"
    command = train_command(data, save)

    # first run: SIGKILL once a mid-epoch checkpoint (5 updates) is written and training has gone on past it
    # (at update 7: between two saves, as fairseq copies checkpoint_1_N.pt to checkpoint_last.pt non-atomically)
    first = subprocess.Popen(
        command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines = []
    killed_at = []

    def follow():
        for line in first.stdout:
            lines.append(line)
            m = TRAIN_INNER.search(line)
            if m and int(m[5]) >= 7 and not killed_at and (save / "checkpoint_last.pt").exists():
                os.kill(first.pid, signal.SIGKILL)
                killed_at.append(int(m[5]))

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        first.wait(timeout=90)
    finally:
        if first.poll() is None:
            first.kill()
    reader.join(timeout=10)
    log1 = "".join(lines)
    assert killed_at and first.returncode == -signal.SIGKILL, log1[-3000:]
    assert "done training" not in log1
    before = train_inner(log1)
    assert max(before) < MAX_UPDATE

    saved = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    resumed_from = saved["optimizer_history"][-1]["num_updates"]
    position = saved["extra_state"]["train_iterator"]
    assert resumed_from >= 5 and resumed_from % 5 == 0
    assert position["epoch"] == 1 and position["iterations_in_epoch"] == resumed_from  # saved mid-epoch

    # second run: the very same command
    second = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    log2 = second.stdout + second.stderr
    assert second.returncode == 0, log2[-3000:]
    loaded = re.search(r"Loaded checkpoint (\S+) \(epoch (\d+) @ (\d+) updates\)", log2)
    assert loaded, log2[-3000:]
    assert Path(loaded[1]).name == "checkpoint_last.pt" and int(loaded[2]) == 1 and int(loaded[3]) == resumed_from
    after = train_inner(log2)
    # the update count and the data position continue: batch resumed_from + 1 of epoch 1 is next, not batch 1
    assert min(after) == resumed_from + 1
    assert all(epoch == 1 and batch == update for update, (epoch, batch, _, _) in after.items()), after
    assert sorted(after) == list(range(resumed_from + 1, MAX_UPDATE + 1))
    assert {total for _, _, total, _ in after.values()} == {total for _, _, total, _ in before.values()}
    # and the training itself continues: the updates both runs made (after the checkpoint) have the same losses
    overlap = [u for u in after if u in before]
    assert overlap, (sorted(before), resumed_from)
    assert [after[u][3] for u in overlap] == [before[u][3] for u in overlap]
    assert "done training" in log2
    final = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert final["optimizer_history"][-1]["num_updates"] == MAX_UPDATE
