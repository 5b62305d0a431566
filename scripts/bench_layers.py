#!/usr/bin/env python
"""Benchmark (not a test): our Mega encoder stack vs HuggingFace transformers' Mega, same weights, CPU.

What is measured
    One training step -- forward + backward of loss = hidden.float().pow(2).mean() through the whole
    model (embeddings and every layer) -- of a 4-layer bidirectional Mega encoder: hidden 256, z 64,
    intermediate 512, normalized FFN 512, EMA N 16, softmax attention, rotary bias, scalenorm,
    pre-norm, all dropout probabilities 0, batch 4, vocab 1000, random token ids without padding.
    `mega_fairseq.testing.hf_twin` builds our `MegaStack` and HF's `MegaModel` with identical
    randomized weights; both run in train() mode.  Each (length, chunk) pair is one row: chunk -1 is
    full attention, chunk C is Mega-chunk attention with window C.  HF needs the length to be a
    multiple of the chunk: if it is not, HF gets its input right-padded (with an attention mask) to the
    next multiple while ours gets the raw length (at the default lengths nothing is padded).  Without
    padding HF is called with attention_mask=None, its cheapest path.

Correctness guard
    Before timing, each chunk setting is checked at the smallest length (and, when chunked, at the
    smallest length spanning at least two chunks): max |ours - HF| of the forward outputs, relative to
    the output scale.  The warm-up step at the smallest length also compares every parameter gradient
    (mapped to our names via hf_names).  A relative difference above --tolerance aborts the run, so
    the table never compares different maths.

Time
    Per row: one warm-up step per model, then N timed steps per model, interleaved (ours, HF, HF,
    ours, ...) in the same process so that both see the same machine state; the table shows the median
    (wall clock, time.perf_counter).  N is --repeats if given, else chosen from the warm-up times so a
    row takes about --row-budget seconds of timed steps (between 1 and 7 repeats).

Peak memory (CPU, no torch.cuda), two numbers per model, both in MiB above the level before the step
    "MB" (the target column): peak of live tensor memory in torch's CPU allocator during one forward +
        backward, saved activations, gradients and temporaries (including those inside fused kernels)
        all counted.  The step runs under torch.profiler(profile_memory=True); every allocation and
        free is an event with its byte count, and the peak of their running sum is the answer.  It
        does not depend on malloc's fragmentation or on what the process did before.
    "RSS MB": peak resident-set growth of the process: before the step, gc.collect(), glibc
        malloc_trim(0) (freed heap pages go back to the OS), baseline = RSS from /proc/self/statm, and
        the kernel's RSS high-water mark is reset by writing 5 to /proc/self/clear_refs (Linux >= 4.0);
        after it, VmHWM (/proc/self/status) - baseline.  If clear_refs cannot be written, a thread
        samples /proc/self/statm every 2 ms instead (the output says which ran).  RSS also sees memory
        outside torch's allocator (FFT/BLAS workspaces) and glibc heap fragmentation, which depends on
        the allocation history of the process, so it is noisier: --isolate-memory re-measures it for each
        model in a fresh subprocess that holds only that model (slower).
    The warm-up step is the measured one (each model is pre-warmed once at a short length at start-up
    so that one-time library initialisation is not counted), so memory costs no extra steps; the
    profiler's overhead only touches that untimed step.  Parameter gradients are set to None before
    every step, so their allocation is part of every step.

Noise
    Timings are wall clock on a shared machine: anything else running on the cores (check the load
    averages printed at start and end) inflates them, and with all cores used by torch's OpenMP pool a
    single busy core can slow a step several-fold.  Rows with one repeat (L = 8192) are single samples.
    stderr carries torch.profiler chatter (kineto start/stop lines, a one-time "memory block of unknown
    size" warning); it does not affect the results.

Usage (the default run takes about 11 minutes on 2 idle AMD EPYC cores, most of it at L = 8192 unchunked)
    python scripts/bench_layers.py                 # L = 512, 2048, 8192 x chunk -1, 1024
    python scripts/bench_layers.py --quick         # L = 512, 2048
    python scripts/bench_layers.py --lengths 2048 --chunks -1 --profile   # + torch.profiler tables
    # our attention routes (default "auto": blockwise from 4096 keys on the CPU), long contexts at batch 1:
    python scripts/bench_layers.py --lengths 2048 8192 16384 --chunks -1 --batch 1 --hf-max-length 8192
    python scripts/bench_layers.py --lengths 2048 8192 --chunks -1 --batch 1 --attention explicit   # or sdpa
Options: --lengths, --chunks, --batch, --repeats, --quick, --threads (default: all cores), --row-budget,
--isolate-memory, --profile [--profile-top K], --tolerance, --attention auto|explicit|sdpa|blockwise (our
softmax attention route, `attention_kernel.FUSED_ATTENTION`; --explicit-attention = --attention explicit: the
(L, L) scores of every layer), --hf-max-length L (HF rows only up to L; longer rows time ours alone: HF holds
several (L, L) matrices per layer).
"""

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
BATCH, NUM_LAYERS, VOCAB, PAD = 4, 4, 1000, 1
MODEL_SIZES = dict(embed_dim=256, z_dim=64, hidden_dim=512, ffn_dim=512, n_dim=16)
PREWARM_LENGTH = 128


# ---- imports ------------------------------------------------------------------------------------
def import_ours():
    """(MegaLayerConfig, hf_twin, stack_state_dict_from_hf): torch-only imports (fairseq is not loaded)."""
    from mega_fairseq.convert.hf_names import stack_state_dict_from_hf
    from mega_fairseq.modules import MegaLayerConfig
    from mega_fairseq.testing import hf_twin

    return MegaLayerConfig, hf_twin, stack_state_dict_from_hf


# ---- machine and memory: mega_fairseq/bench.py -----------------------------------------------
from mega_fairseq.bench import MiB, PeakRSS, allocator_peak, cpu_model, default_threads  # noqa: E402


# ---- models -------------------------------------------------------------------------------------
def hf_length(length: int, chunk: int) -> int:
    """HF chunked attention needs the length to be <= chunk or a multiple of it."""
    if chunk <= 0 or length <= chunk:
        return length
    return math.ceil(length / chunk) * chunk


class Pair:
    """Our MegaStack and HF's MegaModel with identical weights, both in train() mode, for one chunk setting."""

    def __init__(self, chunk: int, seed: int = 0):
        MegaLayerConfig, hf_twin, self._from_hf = import_ours()
        self.chunk = chunk
        self.cfg = MegaLayerConfig(
            **MODEL_SIZES,
            bidirectional=True,
            chunk_size=chunk,
            attention_activation="softmax",
            rel_pos_bias="rotary",
            normalization_type="scalenorm",
            normalize_before=True,
            dropout=0.0,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            ffn_hidden_dropout=0.0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.ours, self.hf = hf_twin(self.cfg, NUM_LAYERS, vocab_size=VOCAB, pad_token_id=PAD, seed=seed)
        hc = self.hf.config
        assert hc.use_chunking == (chunk > 0) and (chunk <= 0 or hc.chunk_size == chunk), "HF chunking differs"
        assert hc.bidirectional and not hc.is_decoder and hc.attention_activation == "softmax"
        assert hc.relative_positional_bias == "rotary" and hc.normalization_type == "scalenorm"
        for name in (
            "dropout_prob",
            "hidden_dropout_prob",
            "attention_probs_dropout_prob",
            "nffn_activation_dropout_prob",
        ):
            assert getattr(hc, name) == 0.0, f"HF {name} is {getattr(hc, name)}"
        self.ours.train()
        self.hf.train()

    def model(self, which: str):
        return self.ours if which == "ours" else self.hf

    def inputs(self, which: str, tokens: torch.Tensor):
        """Model call kwargs for `tokens` (batch, L) without padding."""
        if which == "ours":
            return dict(tokens=tokens)
        length = tokens.size(1)
        target = hf_length(length, self.chunk)
        if target == length:
            return dict(input_ids=tokens)
        ids = torch.cat([tokens, tokens.new_full((tokens.size(0), target - length), PAD)], dim=1)
        mask = torch.zeros_like(ids)
        mask[:, :length] = 1
        return dict(input_ids=ids, attention_mask=mask)

    def forward(self, which: str, tokens: torch.Tensor) -> torch.Tensor:
        kwargs = self.inputs(which, tokens)
        if which == "ours":
            return self.ours(**kwargs)[0]
        return self.hf(**kwargs).last_hidden_state[:, : tokens.size(1)]

    def step(self, which: str, tokens: torch.Tensor) -> float:
        """One forward + backward; returns the loss."""
        model = self.model(which)
        for p in model.parameters():
            p.grad = None
        hidden = self.forward(which, tokens)
        loss = hidden.float().pow(2).mean()
        loss.backward()
        return loss.item()

    def grads_in_our_names(self, which: str) -> dict:
        if which == "ours":
            return {k: p.grad for k, p in self.ours.named_parameters()}
        grads = {k: p.grad for k, p in self.hf.named_parameters() if p.grad is not None}
        return self._from_hf(grads, self.cfg, prefix="")


def random_tokens(length: int, seed: int = 1234) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + length)
    return torch.randint(PAD + 1, VOCAB, (BATCH, length), generator=gen)


def set_batch(batch: int) -> None:
    global BATCH
    BATCH = batch


def output_diff(pair: Pair, length: int):
    tokens = random_tokens(length)
    with torch.no_grad():
        a, b = pair.forward("ours", tokens), pair.forward("hf", tokens)
    scale = b.abs().max().item()
    return (a - b).abs().max().item(), scale


def grad_diff(ours: dict, hf: dict):
    """(max over parameters of max|g_ours - g_hf| / max|g_hf|, that parameter's name)."""
    if ours.keys() != hf.keys():
        raise RuntimeError(f"gradient names differ: {sorted(ours.keys() ^ hf.keys())[:5]}")
    worst, where = 0.0, None
    for k in ours:
        g, h = ours[k], hf[k]
        if g is None or h is None:
            raise RuntimeError(f"no gradient for {k}")
        rel = (g - h).abs().max().item() / max(h.abs().max().item(), 1e-12)
        if rel > worst:
            worst, where = rel, k
    return worst, where


# ---- one row --------------------------------------------------------------------------------------
def timed(pair: Pair, which: str, tokens: torch.Tensor) -> float:
    start = time.perf_counter()
    pair.step(which, tokens)
    return time.perf_counter() - start


def measured_step(pair: Pair, which: str, tokens: torch.Tensor):
    """(seconds, peak tensor-allocator growth bytes, peak RSS growth bytes) of one step."""
    from torch.profiler import ProfilerActivity, profile

    with PeakRSS() as mem:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            seconds = timed(pair, which, tokens)
    return seconds, allocator_peak(prof), mem.peak


def prewarm(pair: Pair):
    tokens = random_tokens(min(PREWARM_LENGTH, pair.chunk) if pair.chunk > 0 else PREWARM_LENGTH)
    for which in ("ours", "hf"):
        pair.step(which, tokens)


def run_row(pair: Pair, length: int, args, check_grads: bool, log):
    tokens = random_tokens(length)
    which_models = ("ours", "hf") if length <= args.hf_max_length else ("ours",)
    check_grads = check_grads and "hf" in which_models
    warm, peaks, rss, grads = {"hf": 0.0}, {"hf": float("nan")}, {"hf": float("nan")}, {}
    for which in which_models:
        warm[which], peaks[which], rss[which] = measured_step(pair, which, tokens)
        if check_grads:
            grads[which] = {k: v.clone() for k, v in pair.grads_in_our_names(which).items()}
        log(
            f"    warm-up {which:4s}: {warm[which] * 1e3:9.1f} ms (profiled), peak tensors +{peaks[which] / MiB:8.1f} "
            "MiB, "
            f"RSS +{rss[which] / MiB:8.1f} MiB"
        )
    gdiff = None
    if check_grads:
        gdiff = grad_diff(grads["ours"], grads["hf"])
        del grads
        log(f"    gradients: max relative diff {gdiff[0]:.2e} (at {gdiff[1]})")
        if gdiff[0] > args.tolerance * 10:
            raise SystemExit(f"ABORT: gradients of ours and HF differ by {gdiff[0]:.3g} (relative) at L={length}")
    if args.repeats:
        repeats = args.repeats
    else:
        repeats = max(1, min(7, int(args.row_budget / (warm["ours"] + warm["hf"]))))
    times = {"ours": [], "hf": [] if "hf" in which_models else [float("nan")]}
    for r in range(repeats):
        for which in which_models if r % 2 == 0 else which_models[::-1]:
            times[which].append(timed(pair, which, tokens))
    log(
        f"    timed ({repeats} each, ms): ours {' '.join(f'{t * 1e3:.0f}' for t in times['ours'])}; "
        f"HF {' '.join(f'{t * 1e3:.0f}' for t in times['hf'])}"
    )
    if args.isolate_memory:
        for which in which_models:
            iso = isolated_peak(which, length, pair.chunk, args.threads)
            rss[which] = iso["rss_bytes"]
            log(
                f"    fresh process {which:4s}: peak tensors +{iso['peak_bytes'] / MiB:8.1f} MiB, RSS "
                f"+{rss[which] / MiB:8.1f} MiB"
            )
    return dict(
        length=length,
        chunk=pair.chunk,
        repeats=repeats,
        ours_ms=statistics.median(times["ours"]) * 1e3,
        hf_ms=statistics.median(times["hf"]) * 1e3,
        ours_all_ms=[round(t * 1e3, 1) for t in times["ours"]],
        hf_all_ms=[round(t * 1e3, 1) for t in times["hf"]],
        ours_mb=peaks["ours"] / MiB,
        hf_mb=peaks["hf"] / MiB,
        ours_rss_mb=rss["ours"] / MiB,
        hf_rss_mb=rss["hf"] / MiB,
    )


ATTENTION_SETTINGS = {"auto": "auto", "explicit": False, "sdpa": "sdpa", "blockwise": "blockwise"}
ATTENTION_SETTING_NAMES = {value: name for name, value in ATTENTION_SETTINGS.items()}
ATTENTION_DESCRIPTIONS = {
    "auto": "explicit below 4096 keys per block, blockwise from there on the CPU",
    "explicit": "(L, L) scores and weights",
    "sdpa": "torch's scaled_dot_product_attention, rotary bias folded into q/k",
    "blockwise": "blocks of query rows recomputed in backward, rotary bias folded into q/k",
}


def attention_kernel():
    from mega_fairseq.modules import attention_kernel

    return attention_kernel


def isolated_peak(which: str, length: int, chunk: int, threads: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--_memory-worker",
        which,
        "--lengths",
        str(length),
        "--chunks",
        str(chunk),
        "--threads",
        str(threads),
        "--batch",
        str(BATCH),
        "--attention",
        ATTENTION_SETTING_NAMES[attention_kernel().FUSED_ATTENTION],
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def memory_worker(args):
    """Fresh process: build the pair, keep only one model, pre-warm it, measure one step."""
    which = args._memory_worker
    pair = Pair(args.chunks[0])
    if which == "ours":
        pair.hf = None
    else:
        pair.ours = None
    gc.collect()
    tokens = random_tokens(min(PREWARM_LENGTH, pair.chunk) if pair.chunk > 0 else PREWARM_LENGTH)
    pair.step(which, tokens)
    _, peak, rss = measured_step(pair, which, random_tokens(args.lengths[0]))
    print(json.dumps({"peak_bytes": peak, "rss_bytes": rss, "method": PeakRSS.method}))


# ---- profiling ----------------------------------------------------------------------------------
def profile_row(pair: Pair, length: int, top: int, log):
    from torch.profiler import ProfilerActivity, profile

    tokens = random_tokens(length)
    for which in ("ours", "hf"):
        pair.step(which, tokens)  # warm
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
            pair.step(which, tokens)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=48)
        log(f"\n=== torch.profiler: {which}, L={length}, chunk={pair.chunk} (sorted by self CPU time, top {top}) ===")
        log(table)


# ---- main ---------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    p.add_argument("--chunks", type=int, nargs="+", default=[-1, 1024], help="-1 = full attention")
    p.add_argument("--quick", action="store_true", help="lengths 512 and 2048 only")
    p.add_argument("--repeats", type=int, default=0, help="timed steps per model and row (default: from --row-budget)")
    p.add_argument(
        "--row-budget", type=float, default=20.0, help="seconds of timed steps per row when --repeats is not given"
    )
    p.add_argument("--threads", type=int, default=default_threads(), help="torch.set_num_threads (default: all cores)")
    p.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest relative |ours - HF| output difference accepted"
    )
    p.add_argument("--isolate-memory", action="store_true", help="measure peak memory per model in fresh subprocesses")
    p.add_argument(
        "--profile", action="store_true", help="also print torch.profiler tables (one step per model and row)"
    )
    p.add_argument("--profile-top", type=int, default=15)
    p.add_argument("--json", type=str, default=None, help="also write the rows to this JSON file")
    p.add_argument("--batch", type=int, default=BATCH, help=f"sequences per step (default {BATCH})")
    p.add_argument(
        "--attention",
        choices=sorted(ATTENTION_SETTINGS),
        default="auto",
        help="our softmax attention route (attention_kernel.FUSED_ATTENTION; default auto)",
    )
    p.add_argument(
        "--explicit-attention",
        action="store_const",
        dest="attention",
        const="explicit",
        help="= --attention explicit: the (L, L) scores and weights of every layer",
    )
    p.add_argument("--hf-max-length", type=int, default=1 << 30, help="run HF only at lengths up to this")
    p.add_argument("--_memory-worker", dest="_memory_worker", choices=["ours", "hf"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.lengths = [512, 2048]
    if args.repeats < 0:
        p.error("--repeats must be >= 0")
    for chunk in args.chunks:
        if chunk == 0 or chunk < -1:
            p.error(f"chunk must be -1 or positive, got {chunk}")
    return args


def main(argv=None):
    args = parse_args(argv)
    set_batch(args.batch)
    attention_kernel().FUSED_ATTENTION = ATTENTION_SETTINGS[args.attention]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args._memory_worker:
        return memory_worker(args)

    def log(msg=""):
        print(msg, flush=True)

    import transformers

    lengths = sorted(set(args.lengths))
    log(
        f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), transformers "
        f"{transformers.__version__}, "
        f"python {platform.python_version()}"
    )
    log(
        f"CPU: {cpu_model()}; {os.cpu_count()} logical cores, torch threads: {torch.get_num_threads()}; "
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    log(
        f"model: {NUM_LAYERS} layers, {MODEL_SIZES}, batch {BATCH}, vocab {VOCAB}; bidirectional, softmax, rotary, "
        "scalenorm, prenorm, dropout 0, train(); step = forward + backward of hidden.pow(2).mean()"
    )
    log(f"ours: attention route {args.attention!r} ({ATTENTION_DESCRIPTIONS[args.attention]})")
    started = time.perf_counter()
    rows = []
    for chunk in args.chunks:
        log(f"\n-- chunk {chunk} --")
        pair = Pair(chunk)
        prewarm(pair)
        check_at = {lengths[0]}
        if chunk > 0:
            multi = [L for L in lengths if L >= 2 * chunk]
            if multi:
                check_at.add(multi[0])
        for length in sorted(check_at):
            diff, scale = output_diff(pair, length)
            log(
                f"  check L={length}: max |ours - HF| = {diff:.2e} (output max |HF| {scale:.2f}, relative "
                f"{diff / scale:.2e})"
            )
            if diff > args.tolerance * scale:
                raise SystemExit(
                    f"ABORT: ours and HF disagree at L={length}, chunk={chunk}: {diff:.3g} > {args.tolerance} * "
                    f"{scale:.3g}"
                )
        for length in lengths:
            log(f"  L={length} chunk={chunk}")
            rows.append(run_row(pair, length, args, check_grads=(length == lengths[0]), log=log))
            if args.profile:
                profile_row(pair, length, args.profile_top, log)
        del pair
        gc.collect()

    log(
        f"\ntimes: median of the repeats after 1 warm-up, interleaved ours/HF.  MB: peak live tensor memory of one "
        "step "
        f"(torch.profiler allocation events); RSS MB: peak RSS growth ({PeakRSS.method}"
        f"{', fresh subprocess per model' if args.isolate_memory else ', same process'})"
    )
    header = (
        f"{'L':>6} {'chunk':>6} {'reps':>4} {'ours ms':>10} {'HF ms':>10} {'HF/ours':>8} {'ours MB':>9} {'HF MB':>9} "
        f"{'HF/ours mem':>11} {'ours RSS MB':>11} {'HF RSS MB':>10}  target"
    )
    log(header)
    log("-" * len(header))
    for r in rows:
        speed = r["hf_ms"] / r["ours_ms"]
        mem = r["hf_mb"] / r["ours_mb"] if r["ours_mb"] > 0 else float("inf")
        need = 1.5 if r["length"] >= 2048 else 1.0
        verdict = []
        if speed < need:
            verdict.append(f"speed<{need}")
        if r["ours_mb"] > r["hf_mb"]:
            verdict.append("mem>HF")
        log(
            f"{r['length']:>6} {r['chunk']:>6} {r['repeats']:>4} {r['ours_ms']:>10.1f} {r['hf_ms']:>10.1f} "
            f"{speed:>8.2f} "
            f"{r['ours_mb']:>9.1f} {r['hf_mb']:>9.1f} {mem:>11.2f} {r['ours_rss_mb']:>11.1f} {r['hf_rss_mb']:>10.1f}  "
            f"{'ok' if not verdict else 'MISS ' + ','.join(verdict)}"
        )
    log(
        f"\ntarget: HF/ours >= 1.5 at L >= 2048 and >= 1.0 everywhere; ours peak MB (tensor memory) <= HF's.  "
        f"total {time.perf_counter() - started:.0f} s; load average at end: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
