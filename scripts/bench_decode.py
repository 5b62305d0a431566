#!/usr/bin/env python
"""Benchmark (not a test): incremental (token-by-token) decoding of our chunked Mega causal LM vs
HuggingFace transformers' MegaForCausalLM with the same weights, CPU, batch 1.

Models
    Ours: `--arch mega_lm_hf` built through fairseq's options (4 layers, embed 128, hidden 256, FFN 256,
    z 64, EMA N 16, softmax attention, rotary bias, scalenorm, pre-norm, tied embeddings, biased
    output layer), vocab = a fairseq Dictionary of --vocab symbols, weights from
    `mega_fairseq.testing.randomize_`, Mega-chunk attention with window --chunk (default 128).
    HF: `MegaForCausalLM(MegaConfig(**to_hf_config_kwargs(...), add_lm_hidden_dense_layer=False))`
    loaded with `lm_state_dict_to_hf`, UNCHUNKED (use_chunking=False, chunk_size=-1; HF's chunked
    decoding crashes).  The rotary bias has no size-dependent parameters, so the same weights serve both.
    An unchunked copy of ours (same weights, chunk -1) is built only for the equivalence check.

Equivalence check (before timing)
    At the smallest context C: prefill C-1 tokens, decode token C-1, compare next-token logits
    (max abs diff): ours-unchunked vs HF (same maths), ours-chunked vs HF (same maths while C <= chunk),
    and, at every context, ours-chunked incremental vs ours-chunked full forward over the C tokens.

Timing, per context C (default 128, 1024, 8192)
    Each model: one prefill forward over C-1 tokens (ours: `model.decoder(prefix, incremental_state=state)`;
    HF: `hf(prefix, use_cache=True)` -> past_key_values), --warmup untimed single-token steps, then --steps
    timed single-token steps, split into --rounds alternating blocks (ours, HF, ours, HF, ...) so both
    models sample the same stretches of time on a shared machine.  Ours is called the way fairseq's
    sequence generator calls it: the whole prefix (a view of one preallocated token tensor), of which the
    decoder runs only the unseen token; HF gets the new token and the past_key_values of the previous
    call.  HF's unchunked steps are O(C^2) at long contexts (its rotary bias builds the whole (C, C) bias
    matrix every step and keeps its last row), so HF runs fewer timed steps (at least one per round) where
    --hf-budget seconds would not cover all of them.  "ms/tok" is the median wall time of a step
    (time.perf_counter), "CPU ms" the median CPU time of this thread (time.thread_time; with --threads 1,
    the default, that is the step's cost without the time other processes took the core from it).
    Since the contexts are multiples of the chunk, every context sees the same positions inside a chunk.
Memory
    "state MB": bytes of all tensors in our incremental_state / HF's past_key_values, max over the prefill
    and the timed steps (ours: EMA state + the keys/values of the current chunk, at most chunk-1 of them).
    "RSS+ MB": peak resident-set growth of the process during the timed steps (after gc and malloc_trim;
    kernel VmHWM after clear_refs, or 2 ms sampling); it also sees the temporaries of a step.

Profiling
    If ours is not flat (median t(max C)/t(min C) > --flat-target) or is slower than HF at some context (wall
    or CPU medians), or with --profile: torch.profiler over --profile-steps decoding steps of ours at the
    largest context (top ops by self CPU time, also by input shape), and the top-level aten op counts of one
    step of ours and of HF at the smallest context (deterministic, unlike op times on a shared machine).

Usage (2-4 minutes on 2 AMD EPYC cores, most of it HF at 8192: a ~20-40 s unchunked prefill and ~2-4 s steps)
    python scripts/bench_decode.py
    python scripts/bench_decode.py --contexts 128 1024 --steps 100 --threads 2 --profile
Options: --contexts, --steps, --rounds, --warmup, --chunk, --threads (default 1), --hf-budget, --vocab,
--no-hf, --profile, --profile-steps, --flat-target.
"""

import argparse
import gc
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MiB = 2.0**20
NUM_LAYERS = 4
MODEL_SIZES = dict(
    decoder_layers=NUM_LAYERS,
    decoder_embed_dim=128,
    decoder_hidden_dim=256,
    decoder_ffn_embed_dim=256,
    decoder_z_dim=64,
    decoder_n_dim=16,
)


# ---- machine and memory: mega_fairseq/bench.py -----------------------------------------------
from mega_fairseq.bench import PeakRSS, cpu_model, default_threads, loadavg  # noqa: E402


def tensor_bytes(obj) -> int:
    """Sum of the bytes of every tensor in a nested dict/list/tuple (shared storages counted once)."""
    seen, total, stack = set(), 0, [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            key = (item.untyped_storage().data_ptr(), item.data_ptr(), item.numel())
            if key not in seen:
                seen.add(key)
                total += item.numel() * item.element_size()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif item is not None and hasattr(item, "to_legacy_cache"):  # a transformers Cache object
            stack.append(item.to_legacy_cache())
    return total


# ---- models -------------------------------------------------------------------------------------
def build_ours(chunk: int, vocab: int, max_positions: int):
    from fairseq import options
    from fairseq.data import Dictionary
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.tasks.language_modeling import LanguageModelingTask

    dictionary = Dictionary()
    for i in range(vocab - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    argv = [
        "dummy",
        "--task",
        "language_modeling",
        "--arch",
        "mega_lm_hf",
        "--user-dir",
        str(ROOT / "user_dir"),
        "--tokens-per-sample",
        str(max_positions),
        "--decoder-chunk-size",
        str(chunk),
    ]
    for key, value in MODEL_SIZES.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    parser = options.get_training_parser()
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))
    task = LanguageModelingTask(cfg.task, dictionary)
    return task.build_model(cfg.model).eval(), dictionary


def build_models(chunk: int, vocab: int, max_positions: int, with_hf: bool = True):
    """(ours chunked, ours unchunked, HF unchunked or None, dictionary), all with the same weights."""
    from mega_fairseq.convert.hf_names import lm_state_dict_to_hf, to_hf_config_kwargs
    from mega_fairseq.testing import randomize_

    ours, dictionary = build_ours(chunk, vocab, max_positions)
    randomize_(ours)
    ours_full, _ = build_ours(-1, vocab, max_positions)
    ours_full.load_state_dict(ours.state_dict())
    ours_full.eval()
    hf = None
    if with_hf:
        from transformers import MegaConfig, MegaForCausalLM

        cfg = ours_full.decoder.stack.cfg
        kwargs = to_hf_config_kwargs(cfg, NUM_LAYERS, len(dictionary), dictionary.pad())
        kwargs.update(use_chunking=False, chunk_size=-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hf = MegaForCausalLM(MegaConfig(**kwargs, add_lm_hidden_dense_layer=False)).eval()
        missing, unexpected = hf.load_state_dict(lm_state_dict_to_hf(ours_full.decoder.state_dict(), cfg), strict=False)
        if unexpected or not set(missing) <= {"lm_head.weight"}:
            raise SystemExit(f"ABORT: HF state dict mismatch: missing {missing}, unexpected {unexpected}")
        if not torch.equal(hf.lm_head.weight, hf.mega.embedding_layer.word_embeddings.weight):
            raise SystemExit("ABORT: HF lm_head is not tied to the word embeddings")
        hc = hf.config
        assert not hc.use_chunking and hc.is_decoder and hc.relative_positional_bias == "rotary"
    return ours, ours_full, hf, dictionary


# ---- decoding -------------------------------------------------------------------------------------
class OursDecoder:
    """fairseq-style incremental decoding: the whole prefix each call, the decoder runs the unseen tokens."""

    def __init__(self, model, tokens):
        self.model, self.tokens, self.state, self.pos = model, tokens, {}, 0

    def prefill(self, length: int) -> torch.Tensor:
        logits, _ = self.model.decoder(self.tokens[:, :length], incremental_state=self.state)
        self.pos = length
        return logits[:, -1]

    def step(self) -> torch.Tensor:
        logits, _ = self.model.decoder(self.tokens[:, : self.pos + 1], incremental_state=self.state)
        self.pos += 1
        return logits[:, -1]

    def state_bytes(self) -> int:
        return tensor_bytes(self.state)


class HFDecoder:
    def __init__(self, model, tokens):
        self.model, self.tokens, self.past, self.pos = model, tokens, None, 0

    def prefill(self, length: int) -> torch.Tensor:
        out = self.model(self.tokens[:, :length], use_cache=True)
        self.past, self.pos = out.past_key_values, length
        return out.logits[:, -1]

    def step(self) -> torch.Tensor:
        out = self.model(self.tokens[:, self.pos : self.pos + 1], past_key_values=self.past, use_cache=True)
        self.past, self.pos = out.past_key_values, self.pos + 1
        return out.logits[:, -1]

    def state_bytes(self) -> int:
        return tensor_bytes(self.past)


def random_tokens(dictionary, length: int, seed: int = 1234) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(dictionary.nspecial, len(dictionary), (1, length), generator=gen)


def prefill(decoder, context: int) -> dict:
    start = time.perf_counter()
    decoder.prefill(context - 1)
    return dict(prefill_s=time.perf_counter() - start, state=decoder.state_bytes())


def timed_steps(decoder, steps: int, record: dict):
    """`steps` single-token steps, each timed; tracks the state size and the peak RSS growth."""
    with PeakRSS() as mem:
        for _ in range(steps):
            t0, c0 = time.perf_counter(), time.thread_time()
            decoder.step()
            record["times"].append(time.perf_counter() - t0)
            record["cpu"].append(time.thread_time() - c0)
            record["state"] = max(record["state"], decoder.state_bytes())
    record["rss"] = max(record.get("rss", 0), mem.peak)


def summary(record: dict) -> dict:
    ms = [t * 1e3 for t in record["times"]]
    return dict(
        ms=statistics.median(ms),
        all_ms=ms,
        steps=len(ms),
        prefill_s=record["prefill_s"],
        cpu_ms=statistics.median(record["cpu"]) * 1e3,
        state_mb=record["state"] / MiB,
        rss_mb=record["rss"] / MiB,
    )


def run_context(ours, hf, dictionary, context: int, args) -> dict:
    """Both models: prefill, --warmup untimed steps, then --rounds rounds of [ours: steps/rounds timed steps,
    HF: its share of timed steps], so both sample the same stretches of (shared-machine) time.  HF gets
    fewer steps than ours (at least one per round) where its steps are slow (--hf-budget).  Blocks, not
    per-step alternation: HF's long-context steps would flush the caches before every step of ours."""
    rounds = max(1, min(args.rounds, args.steps))
    tokens = random_tokens(dictionary, context + args.warmup + args.steps + 2, seed=100 + context)
    ours_dec = OursDecoder(ours, tokens)
    o = prefill(ours_dec, context)
    o["times"], o["cpu"] = [], []
    for _ in range(args.warmup):
        ours_dec.step()
    row = {"context": context}
    hf_dec, h, hf_steps = None, None, 0
    if hf is not None:
        hf_dec = HFDecoder(hf, tokens)
        h = prefill(hf_dec, context)
        h["times"], h["cpu"] = [], []
        last = 0.0
        for _ in range(args.warmup):
            t0 = time.perf_counter()
            hf_dec.step()
            last = time.perf_counter() - t0
        hf_steps = args.steps
        if args.hf_budget > 0 and last > 0:
            hf_steps = max(rounds, min(args.steps, int(args.hf_budget / last)))
    for r in range(rounds):
        share = lambda n: n * (r + 1) // rounds - n * r // rounds  # noqa: E731
        timed_steps(ours_dec, share(args.steps), o)
        if hf_dec is not None:
            timed_steps(hf_dec, share(hf_steps), h)
    row["ours"] = summary(o)
    if hf_dec is not None:
        row["hf"] = summary(h)
    return row


@torch.no_grad()
def equivalence(ours, ours_full, hf, dictionary, context: int, log):
    tokens = random_tokens(dictionary, context, seed=7)
    results = {}
    logits = {}
    decoders = [("ours chunked", OursDecoder(ours, tokens)), ("ours unchunked", OursDecoder(ours_full, tokens))]
    if hf is not None:
        decoders.append(("HF", HFDecoder(hf, tokens)))
    for name, dec in decoders:
        dec.prefill(context - 1)
        logits[name] = dec.step()
    full = ours(tokens)[0][:, -1]
    scale = full.abs().max().item()
    if hf is not None:
        results["ours unchunked vs HF"] = (logits["ours unchunked"] - logits["HF"]).abs().max().item()
        results["ours chunked vs HF"] = (logits["ours chunked"] - logits["HF"]).abs().max().item()
        results["HF step vs HF full forward"] = (
            (logits["HF"] - hf(tokens, use_cache=False).logits[:, -1]).abs().max().item()
        )
    results["ours chunked step vs ours full forward"] = (logits["ours chunked"] - full).abs().max().item()
    log(
        f"  equivalence at context {context} (next-token logits after prefill of {context - 1}, |logits| max "
        f"{scale:.2f}):"
    )
    for k, v in results.items():
        log(f"    max |{k}| = {v:.3e}")
    return results, scale


@torch.no_grad()
def self_check(ours, dictionary, context: int, log) -> float:
    """Ours chunked: incremental step logits vs full forward at this context."""
    tokens = random_tokens(dictionary, context, seed=11 + context)
    dec = OursDecoder(ours, tokens)
    dec.prefill(context - 1)
    step = dec.step()
    full = ours(tokens)[0][:, -1]
    diff = (step - full).abs().max().item()
    log(
        f"    ours chunked, context {context}: max |step - full forward| = {diff:.3e} (|logits| max "
        f"{full.abs().max().item():.2f})"
    )
    return diff


@torch.no_grad()
def profile_ours(ours, dictionary, context: int, steps: int, log):
    from torch.profiler import ProfilerActivity, profile

    tokens = random_tokens(dictionary, context + steps + 4)
    dec = OursDecoder(ours, tokens)
    dec.prefill(context - 1)
    for _ in range(3):
        dec.step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            dec.step()
    log(f"\ntorch.profiler: {steps} decoding steps of ours at context {context} (self CPU time, top ops)")
    log(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    log("by input shape:")
    log(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=15))


@torch.no_grad()
def op_counts(ours, hf, dictionary, context: int, log):
    """Top-level aten ops (not counting ops called inside other aten ops) of one decoding step of each model:
    deterministic, unlike the op times on a shared machine."""
    import collections

    from torch.profiler import ProfilerActivity, profile

    tokens = random_tokens(dictionary, context + 8)
    counts, totals = {}, {}
    for name, dec in (("ours", OursDecoder(ours, tokens)), ("HF", HFDecoder(hf, tokens))):
        dec.prefill(context - 1)
        for _ in range(2):
            dec.step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            dec.step()
        events = [e for e in prof.events() if e.name.startswith("aten::")]
        counts[name] = collections.Counter(
            e.name for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")
        )
        totals[name] = len(events)
    log(
        f"\naten ops per decoding step at context {context + 2} (top-level / all, nested included): "
        f"ours {sum(counts['ours'].values())} / {totals['ours']}, HF {sum(counts['HF'].values())} / {totals['HF']}; "
        "top-level ops whose counts differ:"
    )
    diff = [
        (n, counts["ours"][n], counts["HF"][n])
        for n in set(counts["ours"]) | set(counts["HF"])
        if counts["ours"][n] != counts["HF"][n]
    ]
    for n, a, b in sorted(diff, key=lambda t: -abs(t[1] - t[2])):
        log(f"    {n:28s} ours {a:4d}  HF {b:4d}")


# ---- main ---------------------------------------------------------------------------------------
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[128, 1024, 8192])
    parser.add_argument("--steps", type=int, default=64, help="timed single-token steps per context and model")
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating ours/HF blocks the timed steps are split into"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the prefill")
    parser.add_argument(
        "--hf-budget",
        type=float,
        default=30.0,
        help="seconds of timed HF steps per context: fewer than --steps (at least 3) where HF's steps are slow; "
        "<= 0: no cap",
    )
    parser.add_argument("--chunk", type=int, default=128, help="our Mega-chunk size (HF runs unchunked)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: batch-1 decoding of this small model is latency bound, and extra OpenMP "
        "threads slow it down many-fold when the cores are shared)",
    )
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--no-hf", action="store_true", help="time ours only")
    parser.add_argument(
        "--profile", action="store_true", help="profile ours at the largest context even if the targets are met"
    )
    parser.add_argument("--profile-steps", type=int, default=10)
    parser.add_argument(
        "--flat-target", type=float, default=1.3, help="target for t(max context)/t(min context) of ours"
    )
    args = parser.parse_args()
    # quiet the import/build chatter of fairseq, hydra and transformers (their warnings do not affect results)
    logging.disable(logging.INFO)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    contexts = sorted(args.contexts)
    if min(contexts) < 2:
        parser.error("contexts must be >= 2")
    torch.set_num_threads(args.threads)
    log = lambda s="": print(s, flush=True)  # noqa: E731
    import transformers

    log(
        f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
        f"CPU {cpu_model()} ({default_threads()} cores visible), python {platform.python_version()}"
    )
    log(f"load average at start: {loadavg()}")
    t_start = time.perf_counter()
    max_positions = max(contexts) + args.warmup + args.steps + 8
    ours, ours_full, hf, dictionary = build_models(args.chunk, args.vocab, max_positions, with_hf=not args.no_hf)
    cfg = ours.decoder.stack.cfg
    params = sum(p.numel() for p in ours.parameters())
    log(
        f"model: mega_lm_hf, {NUM_LAYERS} layers, D={cfg.embed_dim}, H={cfg.hidden_dim}, FFN={cfg.ffn_dim}, "
        f"z={cfg.z_dim}, "
        f"N={cfg.n_dim}, {cfg.attention_activation}, {cfg.rel_pos_bias} bias, vocab {len(dictionary)}, "
        f"{params / 1e6:.2f}M params; "
        f"ours chunk {cfg.chunk_size}, HF unchunked; batch 1, fp32, eval, no_grad"
    )

    with torch.no_grad():
        equivalence(ours, ours_full, hf, dictionary, contexts[0], log)
        for c in contexts[1:]:
            self_check(ours, dictionary, c, log)

    rows = []
    with torch.no_grad():
        for c in contexts:
            row = run_context(ours, hf, dictionary, c, args)
            gc.collect()
            o = row["ours"]
            line = (
                f"  context {c:6d}: ours prefill {o['prefill_s']:.2f} s, {o['steps']} steps ms min/med/max "
                f"{min(o['all_ms']):.2f}/{o['ms']:.2f}/{max(o['all_ms']):.2f}"
            )
            if "hf" in row:
                h = row["hf"]
                line += (
                    f"; HF prefill {h['prefill_s']:.2f} s, {h['steps']} steps ms min/med/max "
                    f"{min(h['all_ms']):.2f}/{h['ms']:.2f}/{max(h['all_ms']):.2f}"
                )
            log(line)
            rows.append(row)

    hf_steps = ", ".join(f"{r['hf']['steps']} at {r['context']}" for r in rows if "hf" in r) or "-"
    log(
        f"\nincremental decoding, batch 1, ms/tok = median of {args.steps} steps (ours) / of {hf_steps} steps (HF) "
        f"after {args.warmup} warm-up steps (ours: chunk {cfg.chunk_size}; HF: unchunked); state MB = tensors in "
        "incremental_state / "
        f"past_key_values (max over prefill and steps); RSS+ = peak RSS growth during the timed steps "
        f"({PeakRSS.method})"
    )
    header = (
        f"{'context':>8} | {'ours ms/tok':>11} | {'ours state MB':>13} | {'ours RSS+ MB':>12} | {'HF ms/tok':>9} | "
        f"{'HF cache MB':>11} | {'HF RSS+ MB':>10} | {'HF/ours':>7} || {'ours CPU ms':>11} | {'HF CPU ms':>9} | "
        f"{'HF/ours CPU':>11}"
    )
    log(header)
    log("-" * len(header))
    for row in rows:
        o = row["ours"]
        if "hf" in row:
            h = row["hf"]
            hf_part = f"{h['ms']:9.2f} | {h['state_mb']:11.2f} | {h['rss_mb']:10.1f} | {h['ms'] / o['ms']:6.2f}x"
            cpu_part = f"{o['cpu_ms']:11.3f} | {h['cpu_ms']:9.2f} | {h['cpu_ms'] / o['cpu_ms']:10.2f}x"
        else:
            hf_part = f"{'-':>9} | {'-':>11} | {'-':>10} | {'-':>7}"
            cpu_part = f"{o['cpu_ms']:11.3f} | {'-':>9} | {'-':>11}"
        log(
            f"{row['context']:8d} | {o['ms']:11.3f} | {o['state_mb']:13.3f} | {o['rss_mb']:12.1f} | {hf_part} || "
            f"{cpu_part}"
        )
    first, last = rows[0]["ours"], rows[-1]["ours"]
    ratio = last["ms"] / first["ms"]
    ratio_cpu = last["cpu_ms"] / first["cpu_ms"]
    flat = ratio <= args.flat_target
    log(
        f"\nours t({rows[-1]['context']})/t({rows[0]['context']}) = {ratio:.3f} (medians; target <= "
        f"{args.flat_target}: "
        f"{'met' if flat else 'NOT met'}); of the median CPU times: {ratio_cpu:.3f}; "
        f"ours state {first['state_mb']:.3f} -> {last['state_mb']:.3f} MB"
    )
    slower = [r["context"] for r in rows if "hf" in r and r["ours"]["ms"] >= r["hf"]["ms"]]
    slower_cpu = [r["context"] for r in rows if "hf" in r and r["ours"]["cpu_ms"] >= r["hf"]["cpu_ms"]]
    if hf is not None:
        log(
            f"ours faster than HF at every context: wall medians "
            f"{'yes' if not slower else 'NO (contexts ' + ', '.join(map(str, slower)) + ')'}; "
            f"CPU medians {'yes' if not slower_cpu else 'NO (contexts ' + ', '.join(map(str, slower_cpu)) + ')'}"
        )
    log(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU {cpu_model()}; load average at end: "
        f"{loadavg()}; "
        f"total {time.perf_counter() - t_start:.0f} s"
    )
    if args.profile or not flat or slower or slower_cpu:
        with torch.no_grad():
            profile_ours(ours, dictionary, contexts[-1], args.profile_steps, log)
            if hf is not None:
                op_counts(ours, hf, dictionary, contexts[0], log)


if __name__ == "__main__":
    main()
