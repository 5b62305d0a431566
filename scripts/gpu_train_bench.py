"""Training throughput of fairseq-train on synthetic tokens (used by scripts/gpu_check.sh).

    python scripts/gpu_train_bench.py data DIR [--vocab 16000] [--sequences 1000] [--length 2048]
    python scripts/gpu_train_bench.py train NAME RESULTS.jsonl [--warmup 20] -- DATA <fairseq-train args>
    python scripts/gpu_train_bench.py table RESULTS.jsonl

`data` writes a binarized fairseq LM corpus (dict.txt, train/valid .bin/.idx) without
fairseq-preprocess: random walks on a sparse random Markov chain (4 successors per token, so the
achievable loss is 2 bits/token), which a model learns visibly within a couple of hundred updates.
`train` runs fairseq's train CLI in this process and appends one JSON line to RESULTS.jsonl:
tokens/s over the updates after `--warmup` (CUDA synchronised), peak allocated GPU memory, the
mean training loss (base 2, fairseq's unit) of the last 10 updates, parameter count, wall time.
`table` prints the results as a table.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

SPECIALS = 4  # fairseq Dictionary: <s>, <pad>, </s>, <unk>


def make_data(out_dir: str, vocab: int, sequences: int, length: int, seed: int = 0) -> None:
    from fairseq.data import indexed_dataset

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "dict.txt"), "w") as f:
        f.writelines(f"t{i} 1\n" for i in range(vocab))
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, vocab, size=(vocab, 4))
    for split, count in (("train", sequences), ("valid", max(8, sequences // 50))):
        walk = np.empty((count, length), dtype=np.int64)
        walk[:, 0] = rng.integers(0, vocab, size=count)
        choices = rng.integers(0, 4, size=(count, length))
        for t in range(1, length):
            walk[:, t] = successors[walk[:, t - 1], choices[:, t]]
        builder = indexed_dataset.make_builder(
            os.path.join(out_dir, f"{split}.bin"), impl="mmap", vocab_size=vocab + SPECIALS
        )
        for row in walk + SPECIALS:
            builder.add_item(torch.from_numpy(row))
        builder.finalize(os.path.join(out_dir, f"{split}.idx"))
    print(f"wrote {sequences} x {length} training tokens (vocab {vocab}) to {out_dir}")


class StepRecorder:
    """Wraps fairseq's Trainer.train_step: per-update time (CUDA synchronised), tokens and loss, plus the
    peak allocated GPU memory (fairseq resets the peak counter at every update; we keep the maximum)."""

    def __init__(self):
        self.times, self.tokens, self.losses, self.params, self.peak = [], [], [], 0, 0
        self.cuda = torch.cuda.is_available()

    def install(self):
        from fairseq.trainer import Trainer

        recorder, train_step = self, Trainer.train_step

        def timed_train_step(trainer, samples, raise_oom=False):
            if not recorder.params:
                recorder.params = sum(p.numel() for p in trainer.model.parameters())
            out = train_step(trainer, samples, raise_oom)
            if recorder.cuda:
                torch.cuda.synchronize()
            recorder.times.append(time.perf_counter())
            recorder.tokens.append(sum(int(s["ntokens"]) for s in samples if s and "ntokens" in s))
            recorder.losses.append(out.get("loss") if out else None)
            return out

        Trainer.train_step = timed_train_step
        if self.cuda:
            reset = torch.cuda.reset_peak_memory_stats

            def keep_peak(*args, **kwargs):
                recorder.peak = max(recorder.peak, torch.cuda.max_memory_allocated())
                return reset(*args, **kwargs)

            torch.cuda.reset_peak_memory_stats = keep_peak

    def summary(self, warmup: int) -> dict:
        if self.cuda:
            self.peak = max(self.peak, torch.cuda.max_memory_allocated())
        warmup = min(warmup, max(len(self.times) - 2, 0))
        steps = len(self.times) - warmup - 1
        seconds = self.times[-1] - self.times[warmup] if steps > 0 else float("nan")
        losses = [x for x in self.losses[-10:] if x is not None]
        return {
            "updates": len(self.times),
            "tokens_per_s": sum(self.tokens[warmup + 1 :]) / seconds if steps > 0 else float("nan"),
            "peak_gb": self.peak / 2**30,
            "final_loss": float(np.mean(losses)) if losses else float("nan"),
            "params_m": self.params / 1e6,
        }


def train(name: str, results: str, warmup: int, fairseq_args: list) -> None:
    from fairseq_cli import train as fairseq_train

    recorder = StepRecorder()
    recorder.install()
    start = time.time()
    sys.argv = ["fairseq-train", *fairseq_args, "--distributed-world-size", "1"]
    fairseq_train.cli_main()
    row = {"name": name, **recorder.summary(warmup), "wall_s": time.time() - start}
    with open(results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print("RESULT " + json.dumps(row), flush=True)


def table(results: str, expected=()) -> None:
    rows = {}
    if os.path.exists(results):
        for line in open(results):
            row = json.loads(line)
            rows[row["name"]] = row
    print(f"{'run':<24} {'params':>8} {'updates':>8} {'tokens/s':>10} {'peak GB':>8} {'final loss':>11} {'wall s':>7}")
    for name in list(expected) + [n for n in rows if n not in expected]:
        row = rows.get(name)
        if row is None:
            print(f"{name:<24} {'FAILED (see its log)':>56}")
            continue
        print(
            f"{name:<24} {row['params_m']:>7.1f}M {row['updates']:>8d} {row['tokens_per_s']:>10.0f} "
            f"{row['peak_gb']:>8.2f} "
            f"{row['final_loss']:>11.3f} {row['wall_s']:>7.0f}"
        )
    print("(final loss: mean training loss of the last 10 updates, base 2; the data's floor is 2.0)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data")
    data.add_argument("out_dir")
    data.add_argument("--vocab", type=int, default=16000)
    data.add_argument("--sequences", type=int, default=1000)
    data.add_argument("--length", type=int, default=2048)
    run = sub.add_parser("train")
    run.add_argument("name")
    run.add_argument("results")
    run.add_argument("--warmup", type=int, default=20)
    tab = sub.add_parser("table")
    tab.add_argument("results")
    tab.add_argument("--expect", nargs="*", default=[])
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)  # everything after "--" goes to fairseq-train
    args, fairseq_args = parser.parse_args(argv[:split]), argv[split + 1 :]
    if args.command == "data":
        make_data(args.out_dir, args.vocab, args.sequences, args.length)
    elif args.command == "train":
        train(args.name, args.results, args.warmup, fairseq_args)
    else:
        table(args.results, args.expect)


if __name__ == "__main__":
    main()
