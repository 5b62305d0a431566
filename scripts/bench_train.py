#!/usr/bin/env python
"""Training throughput and memory: fairseq `mega_lm` vs `transformer_lm` of equal parameters, CPU.

    python scripts/bench_train.py                              # L = 256 ... 8192, chunk 128
    python scripts/bench_train.py --lengths 1024 4096 --chunk 512 --tokens-per-step 8192

What is measured
    fairseq's training step -- `task.train_step` (forward, cross-entropy criterion, backward) then the Adam
    `optimizer.step()` -- of a language model built by fairseq from the command-line options
    (`--arch mega_lm` through the plugin, `--arch transformer_lm`), on random tokens, the same number of tokens
    per step (--tokens-per-step) at every length: batch = tokens-per-step / L.  mega_lm: 4 layers D=256,
    H=512, FFN 512, z=64, N=16, Mega-chunk --chunk (the mega_lm defaults otherwise: simple relative bias,
    EMA truncation 2048); transformer_lm: 4 layers D=256, 4 heads, the FFN width that makes its parameter
    count equal to mega_lm's (printed).  Both tie input and output embeddings, vocab 1000, dropout 0.1.

Columns
    tok/s: tokens per second of the median of --repeats timed steps (after a warm-up step, which counts the FLOPs,
        and a step measuring memory);
    peak MB: peak live tensor memory of one step (torch.profiler allocation events, as bench_layers.py);
    GFLOP/s: FLOPs of one step counted by torch.utils.flop_counter (matrix products; Mega's EMA FFTs and
        element-wise ops are not counted, so Mega's figure is a lower bound), plus the transformer's attention
        products inside the flash kernel, which the counter misses (`transformer_attention_flops`) / median time;
    roofline: this machine's measured float32 GEMM rate (2048^3 torch.mm, all threads), for scale.
    mega/tf: tokens/s ratio and peak-memory ratio (transformer / mega), the targets' measures.
A transformer row whose projected peak (quadratic growth from the previous two rows) exceeds --max-gib is
skipped and shows the projection.

Noise: wall clock on a shared machine; other processes on the cores inflate step times (the load averages
are printed).  Memory does not depend on them.
"""

import argparse
import gc
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import profile
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mega_fairseq.bench import allocator_peak, cpu_model, loadavg  # noqa: E402

VOCAB, DIM, LAYERS = 1000, 256, 4
MEGA_SIZES = ["--decoder-hidden-dim", "512", "--decoder-ffn-embed-dim", "512", "--decoder-z-dim", "64"]
MEGA_SIZES += ["--decoder-n-dim", "16"]


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def dictionary_dir() -> str:
    root = tempfile.mkdtemp(prefix="bench_train_")
    Path(root, "dict.txt").write_text("".join(f"w{i} 1\n" for i in range(VOCAB - 4)))
    return root


def build(arch_args, length: int, data: str):
    """(task, model, criterion, optimizer) as fairseq-train builds them."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.optim import build_optimizer

    argv = [
        data, "--task", "language_modeling", "--user-dir", str(ROOT / "user_dir"), "--tokens-per-sample", str(length),
        "--max-target-positions", str(length), "--optimizer", "adam", "--lr", "1e-4", "--cpu", "--dropout", "0.1",
        "--decoder-layers", str(LAYERS), "--decoder-embed-dim", str(DIM), "--share-decoder-input-output-embed",
        "--criterion", "cross_entropy", *arch_args,
    ]  # fmt: skip
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    torch.manual_seed(0)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    optimizer = build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    return task, model.train(), criterion, optimizer


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def transformer_ffn_for(target: int, data: str) -> int:
    """The transformer FFN width whose model has `target` parameters (params are linear in the width)."""
    sizes = {}
    for ffn in (512, 1024):
        _, model, _, _ = build(transformer_args(ffn), 256, data)
        sizes[ffn] = count(model)
    per_unit = (sizes[1024] - sizes[512]) / 512
    return max(8, round(512 + (target - sizes[512]) / per_unit))


def transformer_args(ffn: int):
    return ["--arch", "transformer_lm", "--decoder-ffn-embed-dim", str(ffn), "--decoder-attention-heads", "4"]


def sample(batch: int, length: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, VOCAB, (batch, length + 1), generator=gen)
    return {
        "id": torch.arange(batch),
        "nsentences": batch,
        "ntokens": batch * length,
        "net_input": {"src_tokens": tokens[:, :-1].contiguous(), "src_lengths": torch.full((batch,), length)},
        "target": tokens[:, 1:].contiguous(),
    }


def step(task, model, criterion, optimizer, batch):
    optimizer.zero_grad()
    task.train_step(batch, model, criterion, optimizer, update_num=0)
    optimizer.step()


def transformer_attention_flops(length: int, batch: int) -> int:
    """FLOPs of transformer_lm's attention matrix products, which torch.utils.flop_counter does not see inside the
    CPU flash kernel (fairseq's MultiheadAttention calls F.multi_head_attention_forward, hence SDPA):
    per layer and sequence 4 L^2 D forward (q k^T, weights v) + 10 L^2 D backward (the kernel recomputes q k^T)."""
    return 14 * length**2 * DIM * LAYERS * batch


def measure(built, batch, repeats: int) -> dict:
    with FlopCounterMode(display=False) as flops:  # the warm-up step counts the FLOPs
        step(*built, batch)
    gc.collect()
    with profile(profile_memory=True) as prof:
        step(*built, batch)
    peak = allocator_peak(prof)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(*built, batch)
        times.append(time.perf_counter() - start)
    return dict(seconds=statistics.median(times), peak_mb=peak / 2**20, flops=flops.get_total_flops())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
    p.add_argument("--chunk", type=int, default=128)
    p.add_argument("--tokens-per-step", type=int, default=8192)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--max-gib", type=float, default=9.0, help="skip transformer rows projected above this peak")
    args = p.parse_args(argv)
    data = dictionary_dir()
    roofline = sgemm_gflops()
    print(f"torch {torch.__version__}, {cpu_model()}, threads {torch.get_num_threads()}, load average {loadavg()}")
    print(f"roofline: float32 GEMM (2048^3 torch.mm) {roofline:.0f} GFLOP/s")
    mega_args = ["--arch", "mega_lm", *MEGA_SIZES, "--decoder-chunk-size", str(args.chunk)]
    _, mega_model, _, _ = build(mega_args, 256, data)
    target = count(mega_model)
    ffn = transformer_ffn_for(target, data)
    _, tf_model, _, _ = build(transformer_args(ffn), 256, data)
    print(f"parameters: mega_lm {target:,} (chunk {args.chunk}); transformer_lm {count(tf_model):,} (FFN {ffn})")
    del mega_model, tf_model
    header = (
        f"{'L':>5} {'batch':>5} | {'mega tok/s':>10} {'MB':>7} {'GFLOP/s':>7} | {'tf tok/s':>9} {'MB':>7} "
        f"{'GFLOP/s':>7} | {'speed mega/tf':>13} {'mem tf/mega':>11} | {'roofline':>8}"
    )
    print(header)
    print("-" * len(header))
    tf_peaks = []
    for length in sorted(args.lengths):
        batch = max(1, args.tokens_per_step // length)
        tokens = batch * length
        data_batch = sample(batch, length, seed=length)
        mega = measure(build(mega_args, length, data), data_batch, args.repeats)
        gc.collect()
        projected = None
        if len(tf_peaks) >= 2 and tf_peaks[-1][1] > 0:
            (l1, m1), (l2, m2) = tf_peaks[-2:]
            exponent = math.log(m2 / m1) / math.log(l2 / l1)  # peak ~ L^exponent between the last two rows
            projected = m2 * (length / l2) ** exponent
        if projected is not None and projected > args.max_gib * 1024:
            tf = None
        else:
            tf = measure(build(transformer_args(ffn), length, data), data_batch, args.repeats)
            tf["flops"] += transformer_attention_flops(length, batch)
            tf_peaks.append((length, tf["peak_mb"]))
        gc.collect()
        mega_tps, mega_gf = tokens / mega["seconds"], mega["flops"] / mega["seconds"] / 1e9
        line = f"{length:>5} {batch:>5} | {mega_tps:>10.0f} {mega['peak_mb']:>7.0f} {mega_gf:>7.1f} | "
        if tf is None:
            line += f"{'skipped: projected ' + format(projected / 1024, '.1f') + ' GiB':>25} | {'':>13} {'':>11} | "
        else:
            tf_tps, tf_gf = tokens / tf["seconds"], tf["flops"] / tf["seconds"] / 1e9
            line += (
                f"{tf_tps:>9.0f} {tf['peak_mb']:>7.0f} {tf_gf:>7.1f} | {mega_tps / tf_tps:>13.2f} "
                f"{tf['peak_mb'] / mega['peak_mb']:>11.2f} | "
            )
        line += f"{roofline:>8.0f}"
        flops_note = f"  (GFLOP per step: mega {mega['flops'] / 1e9:.1f}" + (
            f", tf {tf['flops'] / 1e9:.1f})" if tf is not None else ")"
        )
        print(line + flops_note, flush=True)
    print(f"load average at end {loadavg()}")


if __name__ == "__main__":
    main()
