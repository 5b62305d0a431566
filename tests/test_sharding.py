"""Sharded training through fairseq's own engine (FairScale): `--zero-sharding os` (optimizer state sharded with
FairScale's OSS) on 2 CPU processes equals 1 process, and its consolidated checkpoint resumes with --restore-file and
exports with mega-export-hf; `--ddp-backend fully_sharded` (FairScale's FSDP) needs CUDA, and says so by flag on CPU.
The GPU run of fully_sharded (with per-layer FSDP wrapping and checkpointing) is in scripts/gpu_check.sh."""

import pytest
import torch
from test_distributed import NO_DROPOUT, UPDATES, load, max_param_diff, torchrun_train

from conftest import LM_TRAIN_ARGS, fairseq_cli

# mega_lm_tiny with the structure transformers' MegaForCausalLM has, so mega-export-hf takes the checkpoint
EXPORTABLE = ["--no-scale-embedding", "--no-final-norm"]

fairscale = pytest.importorskip("fairscale", reason="fairscale not installed (pip install '.[sharding]')")


@pytest.fixture(scope="module")
def oss_vs_single(lm_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("oss")
    common = ["--max-update", UPDATES, "--disable-validation", *EXPORTABLE]
    torchrun_train(lm_data, root / "two", *common, "--zero-sharding", "os")
    fairseq_cli(
        "fairseq-train", lm_data, *LM_TRAIN_ARGS, *NO_DROPOUT, *common, "--update-freq", "2", "--save-dir", root / "one"
    )
    return root


@pytest.mark.slow
def test_zero_sharding_two_processes_equal_one(oss_vs_single):
    two, one = load(oss_vs_single / "two/checkpoint_last.pt"), load(oss_vs_single / "one/checkpoint_last.pt")
    assert two["cfg"]["distributed_training"]["zero_sharding"] == "os"
    assert two["optimizer_history"][-1]["num_updates"] == UPDATES
    diff = max_param_diff(two["model"], one["model"])
    assert diff < 1e-5, f"--zero-sharding os parameters differ from one process by {diff:.2e}"
    # consolidated: the optimizer state of every parameter, as a 1-process run saves it
    assert len(two["last_optimizer_state"]["state"]) == len(one["last_optimizer_state"]["state"])


@pytest.mark.slow
def test_zero_sharding_checkpoint_resumes_and_exports(oss_vs_single, lm_data, tmp_path):
    checkpoint = oss_vs_single / "two/checkpoint_last.pt"
    proc = fairseq_cli(
        "fairseq-train", lm_data, *LM_TRAIN_ARGS, *NO_DROPOUT, *EXPORTABLE, "--update-freq", "2",
        "--max-update", UPDATES + 1, "--disable-validation", "--restore-file", checkpoint,
        "--save-dir", tmp_path / "resumed",
    )  # fmt: skip
    assert f"@ {UPDATES} updates" in proc.stdout + proc.stderr
    assert load(tmp_path / "resumed/checkpoint_last.pt")["optimizer_history"][-1]["num_updates"] == UPDATES + 1
    fairseq_cli("mega-export-hf", checkpoint, tmp_path / "hf", "--data", lm_data)
    assert (tmp_path / "hf/config.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA fully_sharded runs (scripts/gpu_check.sh)")
def test_fully_sharded_without_cuda_names_the_flag(lm_data, tmp_path):
    proc = fairseq_cli(
        "fairseq-train", lm_data, *LM_TRAIN_ARGS, "--max-update", "1", "--ddp-backend", "fully_sharded",
        "--save-dir", tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--ddp-backend fully_sharded needs CUDA" in proc.stderr and "--zero-sharding os" in proc.stderr
