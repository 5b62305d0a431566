"""Streaming evaluation (`--task mega_language_modeling --stream-state`): carrying Mega's state across
consecutive blocks equals one forward pass over the whole stream, in the model and through `fairseq-eval-lm`."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fairseq import options
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

import mega_fairseq.plugin  # noqa: F401  registers the plugin
from mega_fairseq.tasks.mega_language_modeling import MegaLanguageModelingTask, StreamState

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# one intra-op thread: on a small shared machine torch's default threads make these tiny models ~20x slower
ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_lm_(model):
    from mega_fairseq.testing import randomize_

    randomize_(model)  # weights far from init, so that a lost history shows
    with torch.no_grad():
        # (tied to the embeddings) keeps log-probabilities in a realistic range, |lprob| < 10
        model.decoder.output_projection.weight.mul_(0.1)
        for name, param in model.named_parameters():
            if name.endswith("damping_factor"):  # slow EMA decays (q ~ 0.99): a memory of ~100 tokens
                param.add_(-4.0)
    return model


def tiny_model(**overrides):
    dictionary = Dictionary()
    for i in range(30):
        dictionary.add_symbol(f"w{i}")
    argv = [
        "dummy",
        "--task",
        "mega_language_modeling",
        "--arch",
        "mega_lm_tiny",
        "--user-dir",
        str(REPO / "user_dir"),
        "--tokens-per-sample",
        "16",
        "--decoder-chunk-size",
        "8",
    ]
    for key, value in overrides.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = MegaLanguageModelingTask(cfg.task, dictionary)
    return randomize_lm_(task.build_model(cfg.model).eval()), dictionary


def token_log_probs(model, tokens, **kwargs):
    out = model(tokens, **kwargs)
    return model.get_normalized_probs(out, log_probs=True)


@pytest.mark.parametrize("block", [16, 13])
def test_carried_state_blocks_equal_one_pass(block):
    """Blocks of `block` tokens (aligned with chunk 8, and not) with the state carried in a StreamState give the
    log-probabilities of one forward pass over the whole ~100-token stream; restarting each block does not."""
    model, dictionary = tiny_model()
    gen = torch.Generator().manual_seed(0)
    stream = torch.randint(dictionary.nspecial, len(dictionary), (2, 101), generator=gen)  # two streams side by side
    with torch.no_grad():
        full = token_log_probs(model, stream)
        state = StreamState()
        carried = torch.cat(
            [token_log_probs(model, stream[:, s : s + block], incremental_state=state) for s in range(0, 101, block)], 1
        )
        cold = torch.cat([token_log_probs(model, stream[:, s : s + block]) for s in range(0, 101, block)], 1)
    assert carried.dtype == torch.float32 and carried.shape == full.shape
    assert (carried - full).abs().max() <= 1e-5
    assert (cold - full).abs().max() > 1e-2  # the test can tell the history apart


def test_stream_state_is_not_a_dict():
    """fairseq.utils.move_to_cuda rebuilds dicts; the state object must survive it by identity."""
    from fairseq.utils import apply_to_sample

    state = StreamState()
    sample = {"net_input": {"src_tokens": torch.zeros(1, 2, dtype=torch.long), "incremental_state": state}}
    assert apply_to_sample(lambda t: t.clone(), sample)["net_input"]["incremental_state"] is state


# ---------------------------------------------------------------- end to end through the fairseq command line


def _cli_args(parser, argv):
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, [str(a) for a in argv]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """A tiny corpus binarized with fairseq-preprocess and a checkpoint of mega_lm_tiny (chunk 8) written by
    fairseq-train --task mega_language_modeling (both in-process: each fairseq command costs several seconds of
    start-up), whose weights are then randomized so that the predictions depend strongly on the history."""
    from fairseq import checkpoint_utils
    from fairseq_cli import preprocess, train

    tmp = tmp_path_factory.mktemp("stream")
    words = [f"w{i}" for i in range(40)]
    gen = torch.Generator().manual_seed(0)
    for split, lines in [("train", 150), ("test", 10)]:
        with open(tmp / f"{split}.txt", "w") as f:
            for _ in range(lines):
                ids = torch.randint(0, 40, (12,), generator=gen).tolist()
                f.write(" ".join(words[i] for i in sorted(ids)) + "\n")  # sorted: the context is informative
    data = tmp / "bin"
    preprocess.main(
        options.get_preprocessing_parser().parse_args(
            [
                "--only-source",
                "--trainpref",
                str(tmp / "train.txt"),
                "--testpref",
                str(tmp / "test.txt"),
                "--destdir",
                str(data),
            ]
        )
    )
    save = tmp / "ckpt"
    train.main(
        _cli_args(
            options.get_training_parser(),
            [
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
                "--max-tokens",
                "512",
                "--optimizer",
                "adam",
                "--lr",
                "3e-3",
                "--max-update",
                "2",
                "--cpu",
                "--num-workers",
                "0",
                "--save-dir",
                save,
                "--no-epoch-checkpoints",
                "--disable-validation",
                "--seed",
                "1",
                "--log-format",
                "none",
            ],
        )
    )
    ckpt = save / "checkpoint_last.pt"
    state = torch.load(ckpt, weights_only=False)
    models, _ = checkpoint_utils.load_model_ensemble([str(ckpt)])
    state["model"] = randomize_lm_(models[0]).state_dict()
    torch.save(state, ckpt)
    return data, ckpt


def full_pass_loss(data, ckpt):
    """Base-2 loss of one forward pass over the whole test split: inputs eos + tokens[:-1], targets tokens."""
    from fairseq import checkpoint_utils
    from fairseq.data import data_utils

    models, _ = checkpoint_utils.load_model_ensemble([str(ckpt)])
    model = models[0].eval()
    dictionary = model.decoder.dictionary
    lines = data_utils.load_indexed_dataset(str(data / "test"), dictionary)
    target = torch.cat([lines[i] for i in range(len(lines))]).long()
    inputs = torch.cat([target.new_tensor([dictionary.eos()]), target[:-1]])
    with torch.no_grad():
        lprobs = token_log_probs(model, inputs[None])[0]
    return -lprobs.gather(-1, target[:, None]).sum().item() / target.numel() / math.log(2), target.numel()


def eval_args(data, ckpt, *extra, task="mega_language_modeling"):
    return [
        data,
        "--user-dir",
        REPO / "user_dir",
        "--path",
        ckpt,
        "--gen-subset",
        "test",
        "--task",
        task,
        "--tokens-per-sample",
        "16",
        "--cpu",
        *extra,
    ]


def test_fairseq_eval_lm_streaming(trained):
    """The stock fairseq-eval-lm with --stream-state prints the perplexity of one pass over the whole test split;
    without it every block starts cold, exactly as with --task language_modeling."""
    from fairseq_cli import eval_lm

    data, ckpt = trained
    # the stock command (with its default data-loading worker), in a subprocess, while the in-process evaluations run
    cli = subprocess.Popen(
        [BIN / "fairseq-eval-lm", *eval_args(data, ckpt, "--stream-state", "--no-progress-bar")],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        reference, ntokens = full_pass_loss(data, ckpt)

        def run(*args, **kw):
            return eval_lm.main(
                _cli_args(options.get_eval_lm_parser(), eval_args(data, ckpt, "--num-workers", "0", *args, **kw))
            )

        streamed = run("--stream-state")
        restarted = run()
        stock = run(task="language_modeling")
        output, _ = cli.communicate(timeout=120)
    finally:
        cli.kill()
    assert ntokens > 100
    assert abs(float(streamed["loss"]) - reference) <= 1e-5
    assert abs(float(restarted["loss"]) - reference) > 1e-2  # each block from a cold start: less context
    assert float(restarted["loss"]) == float(stock["loss"])
    assert cli.returncode == 0, output[-3000:]
    assert f"Evaluated {ntokens:,} tokens" in output
    printed = re.search(r"Loss \(base 2\): ([0-9.]+), Perplexity: ([0-9.]+)", output)
    assert printed, output[-3000:]
    assert abs(float(printed.group(1)) - reference) <= 5e-5 + 1e-6
    assert abs(float(printed.group(2)) - 2**reference) <= 5e-3 + 1e-6
    assert abs(float(printed.group(2)) - float(restarted["perplexity"])) > 0.01


def test_stream_batches(trained):
    """Streaming batches: one block each, in stream order, all sharing one StreamState (a new one per evaluation);
    shards are contiguous ranges of blocks."""
    from fairseq import tasks

    data, ckpt = trained
    cfg = _cli_args(options.get_eval_lm_parser(), eval_args(data, ckpt, "--stream-state"))
    task = tasks.setup_task(cfg.task)
    task.load_dataset("test")
    dataset = task.dataset("test")
    batches = list(task.eval_lm_dataloader(dataset, num_workers=0))
    assert [b["id"].tolist() for b in batches] == [[i] for i in range(len(dataset))]
    assert len({id(b["net_input"]["incremental_state"]) for b in batches}) == 1
    assert isinstance(batches[0]["net_input"]["incremental_state"], StreamState)
    again = next(iter(task.eval_lm_dataloader(dataset, num_workers=0)))
    assert again["net_input"]["incremental_state"] is not batches[0]["net_input"]["incremental_state"]
    target = torch.cat([b["target"][0] for b in batches])
    inputs = torch.cat([b["net_input"]["src_tokens"][0] for b in batches])
    assert torch.equal(inputs, torch.cat([target.new_tensor([task.dictionary.eos()]), target[:-1]]))  # one stream
    shards = [
        [b["id"].item() for b in task.eval_lm_dataloader(dataset, num_shards=2, shard_id=k, num_workers=0)]
        for k in (0, 1)
    ]
    assert shards[0] + shards[1] == list(range(len(dataset))) and abs(len(shards[0]) - len(shards[1])) <= 1
    with pytest.raises(ValueError, match="context-window"):
        task.eval_lm_dataloader(dataset, context_window=4)


def test_stream_state_refuses_non_mega_models():
    dictionary = Dictionary()
    argv = [
        "dummy",
        "--task",
        "mega_language_modeling",
        "--arch",
        "transformer_lm",
        "--decoder-layers",
        "1",
        "--stream-state",
    ]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    with pytest.raises(ValueError, match="needs a Mega language model"):
        MegaLanguageModelingTask(cfg.task, dictionary).build_model(cfg.model)
