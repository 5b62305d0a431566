"""Data-parallel training on CPU (2 gloo processes) through fairseq-train, and syncbatchnorm across ranks.

fairseq-train runs under torchrun with the default DDP backend (pytorch_ddp); the plugin's patches
(mega_fairseq/fairseq_patches.py) make that work without CUDA.
"""

import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from conftest import BIN, LM_TRAIN_ARGS, REPO, fairseq_cli

NO_DROPOUT = ["--dropout", "0", "--attention-dropout", "0", "--hidden-dropout", "0", "--activation-dropout", "0"]
UPDATES = 3  # = one epoch of the tiny corpus at 2 x 512 tokens: the checkpoint sits at an epoch boundary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_train(data, save_dir, *extra, nproc=2):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(BIN / "fairseq-train"),
        str(data),
        *map(str, LM_TRAIN_ARGS),
        *NO_DROPOUT,
        "--distributed-world-size",
        str(nproc),
        "--save-dir",
        str(save_dir),
        *map(str, extra),
    ]
    proc = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun fairseq-train failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def max_param_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def ddp_vs_single(lm_data, tmp_path_factory):
    """Checkpoints after UPDATES updates: 2 processes x batch B, and 1 process x B with --update-freq 2."""
    root = tmp_path_factory.mktemp("ddp")
    common = ["--max-update", UPDATES, "--disable-validation"]
    log = torchrun_train(lm_data, root / "two", *common)
    fairseq_cli(
        "fairseq-train", lm_data, *LM_TRAIN_ARGS, *NO_DROPOUT, *common, "--update-freq", "2", "--save-dir", root / "one"
    )
    return root, log


def test_two_cpu_processes_equal_update_freq_two(ddp_vs_single):
    root, log = ddp_vs_single
    assert "training on 2 devices" in log and "gloo" in log
    two, one = load(root / "two/checkpoint_last.pt"), load(root / "one/checkpoint_last.pt")
    assert two["optimizer_history"][-1]["num_updates"] == one["optimizer_history"][-1]["num_updates"] == UPDATES
    diff = max_param_diff(two["model"], one["model"])
    assert diff < 1e-5, f"2-process parameters differ from --update-freq 2 by {diff:.2e}"


def test_two_process_checkpoint_resumes_in_one_process(ddp_vs_single, lm_data, tmp_path):
    root, _ = ddp_vs_single
    proc = fairseq_cli(
        "fairseq-train",
        lm_data,
        *LM_TRAIN_ARGS,
        *NO_DROPOUT,
        "--update-freq",
        "2",
        "--max-update",
        UPDATES + 2,
        "--disable-validation",
        "--restore-file",
        root / "two/checkpoint_last.pt",
        "--save-dir",
        tmp_path,
    )
    log = proc.stdout + proc.stderr
    assert f"@ {UPDATES} updates" in log  # fairseq's "loaded checkpoint ... (epoch E @ N updates)"
    assert "epoch 002" in log  # the 2-process run finished epoch 1; the 1-process run goes on with epoch 2
    resumed = load(tmp_path / "checkpoint_last.pt")
    assert resumed["optimizer_history"][-1]["num_updates"] == UPDATES + 2
    start = load(root / "two/checkpoint_last.pt")["model"]
    assert all(torch.isfinite(v).all() for v in resumed["model"].values())
    assert max_param_diff(resumed["model"], start) > 1e-4  # it trained on from the restored weights


def test_world_size_without_launcher_on_cpu_says_use_torchrun(monkeypatch):
    from fairseq.distributed import utils as distributed_utils

    from mega_fairseq import fairseq_patches

    fairseq_patches.apply()  # idempotent; loading the plugin has applied it already

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match="torch.distributed.run --nproc_per_node 2"):
        distributed_utils._infer_single_node_init(SimpleNamespace(distributed_world_size=2))


# ---- syncbatchnorm across 2 gloo processes ----------------------------------------------------
DIM = 6


def combined_batch():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, DIM, generator=gen) * 3 + 1
    mask = torch.zeros(4, 9, dtype=torch.bool)
    mask[0, 6:] = True  # rank 0 holds samples 0-1 (with padding), rank 1 samples 2-3 (none)
    mask[1, 3:] = True
    x = x.masked_fill(mask.unsqueeze(-1), 1e3)  # garbage in padding must not leak into the statistics
    upstream = torch.randn(4, 9, DIM, generator=gen)
    weight, bias = torch.rand(DIM, generator=gen) + 0.5, torch.randn(DIM, generator=gen)
    return x, mask, upstream, weight, bias


def syncbn_worker(rank, init_file, out_dir):
    # the building blocks import torch only, so the spawned processes skip importing fairseq (seconds each)
    from mega_fairseq.modules.norms import MaskedBatchNorm

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        x, mask, upstream, weight, bias = combined_batch()
        rows = slice(2 * rank, 2 * rank + 2)
        norm = MaskedBatchNorm(DIM, sync=True).train()
        with torch.no_grad():
            norm.weight.copy_(weight), norm.bias.copy_(bias)
        x_local = x[rows].clone().requires_grad_(True)
        out = norm(x_local, mask[rows])
        (out * upstream[rows] * (~mask[rows]).unsqueeze(-1)).sum().backward()
        torch.save(
            {
                "out": out.detach(),
                "x_grad": x_local.grad,
                "w_grad": norm.weight.grad,
                "b_grad": norm.bias.grad,
                "running_mean": norm.running_mean,
                "running_var": norm.running_var,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
        dist.barrier()  # both ranks done with their collectives before either tears gloo down
    finally:
        dist.destroy_process_group()


def test_syncbatchnorm_two_processes_equal_batchnorm_over_combined_batch(tmp_path):
    mp.spawn(syncbn_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    x, mask, upstream, weight, bias = combined_batch()
    keep = ~mask
    ref = nn.BatchNorm1d(DIM, eps=1e-5).train()
    with torch.no_grad():
        ref.weight.copy_(weight), ref.bias.copy_(bias)
    x = x.clone().requires_grad_(True)
    ref_out = ref(x[keep])  # (real tokens, DIM): statistics over the real tokens of both ranks
    (ref_out * upstream[keep]).sum().backward()

    out = torch.cat([r["out"] for r in ranks])
    x_grad = torch.cat([r["x_grad"] for r in ranks])
    assert (out[keep] - ref_out).abs().max() < 1e-4
    assert (x_grad[keep] - x.grad[keep]).abs().max() < 1e-4  # gradients flow through the all-reduced statistics
    assert x_grad[mask].abs().max() == 0
    # DDP sums the ranks' parameter gradients (then averages); their sum is the single-process gradient
    assert (ranks[0]["w_grad"] + ranks[1]["w_grad"] - ref.weight.grad).abs().max() < 1e-4
    assert (ranks[0]["b_grad"] + ranks[1]["b_grad"] - ref.bias.grad).abs().max() < 1e-4
    for r in ranks:  # every rank tracks the running statistics of the combined batch
        assert (r["running_mean"] - ref.running_mean).abs().max() < 1e-5
        assert (r["running_var"] - ref.running_var).abs().max() < 1e-4
