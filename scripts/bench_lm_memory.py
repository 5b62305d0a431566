"""Training memory and time of a Mega LM against sequence length, with and without activation checkpointing.

    python scripts/bench_lm_memory.py                       # 8K, 16K, 32K, 65,536 tokens; chunk 1024
    python scripts/bench_lm_memory.py --lengths 1024 2048 --chunk 1024 --unchunked

One training update (forward, cross-entropy, backward, Adam step) of mega_lm's decoder body (`MegaStack`:
embeddings, 4 causal Mega layers D=256, H=512, z=64, N=16, FFN 512, rotary bias, layernorm, final norm,
dropout 0.1) plus a D x V output projection (vocab 1000), at batch 1 for each length (tokens per sample),
Mega-chunk `--chunk`.  Each length runs plain and with per-layer activation checkpointing (the
`--checkpoint-activations` of every Mega model); `--unchunked` adds rows without Mega-chunk.

Columns
    peak MB: peak live tensor memory of the update (torch.profiler allocation events, as in bench_layers.py):
        saved activations, gradients, optimizer state and temporaries inside kernels all counted.
    MB/1k tok: peak MB per 1024 tokens; equal values down a column mean memory linear in length.
    s/update: wall clock of the measured update (one sample after a warm-up update at that length; other
        processes on the machine's cores inflate it, memory does not depend on them).
A row whose projected peak (the previous row's MB/1k tok times its length) exceeds --max-gib is skipped
and shows the projection instead (so the benchmark never takes more memory than that).
"""

import argparse
import gc
import time

import torch
from torch import nn
from torch.profiler import profile

from mega_fairseq.bench import allocator_peak, loadavg
from mega_fairseq.modules import MegaLayerConfig, MegaStack

VOCAB, DIM = 1000, 256


def build(chunk: int, checkpoint: bool):
    torch.manual_seed(0)
    cfg = MegaLayerConfig(
        embed_dim=DIM,
        z_dim=64,
        hidden_dim=512,
        ffn_dim=512,
        n_dim=16,
        bidirectional=False,
        causal=True,
        chunk_size=chunk,
        normalization_type="layernorm",
        dropout=0.1,
    )
    stack = MegaStack(
        cfg, 4, nn.Embedding(VOCAB, DIM, padding_idx=1), final_norm=True, checkpoint_activations=checkpoint
    )
    model = nn.ModuleDict(dict(stack=stack, head=nn.Linear(DIM, VOCAB))).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-4)


def update(model, optimizer, tokens):
    optimizer.zero_grad(set_to_none=True)
    hidden, _, _ = model["stack"](tokens[:, :-1])
    loss = nn.functional.cross_entropy(model["head"](hidden).view(-1, VOCAB), tokens[:, 1:].reshape(-1))
    loss.backward()
    optimizer.step()


def measure(chunk: int, length: int, checkpoint: bool) -> tuple:
    """(peak MB, seconds) of one update after a warm-up update (Adam state exists then)."""
    model, optimizer = build(chunk, checkpoint)
    tokens = torch.randint(2, VOCAB, (1, length + 1), generator=torch.Generator().manual_seed(length))
    update(model, optimizer, tokens)
    gc.collect()
    start = time.perf_counter()
    with profile(profile_memory=True) as prof:
        update(model, optimizer, tokens)
    seconds = time.perf_counter() - start
    return allocator_peak(prof) / 2**20, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384, 32768, 65536])
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--unchunked", action="store_true", help="also rows without Mega-chunk")
    parser.add_argument("--max-gib", type=float, default=10.0, help="skip rows projected above this peak")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {loadavg()}")
    header = f"{'tokens':>7} {'chunk':>6} {'checkpoint':>10} {'peak MB':>9} {'MB/1k tok':>10} {'s/update':>9}"
    print(header)
    print("-" * len(header))
    for chunk in (args.chunk, -1) if args.unchunked else (args.chunk,):
        for checkpoint in (False, True):
            per_k = None
            for length in sorted(args.lengths):
                flag = "yes" if checkpoint else "no"
                if per_k is not None and per_k * length / 1024 > args.max_gib * 1024:
                    projected = per_k * length / 1024
                    print(f"{length:>7} {chunk:>6} {flag:>10} {'skipped':>9}  (projected {projected / 1024:.1f} GiB)")
                    continue
                mb, secs = measure(chunk, length, checkpoint)
                per_k = mb / length * 1024
                print(f"{length:>7} {chunk:>6} {flag:>10} {mb:>9.1f} {per_k:>10.1f} {secs:>9.2f}", flush=True)
    print(f"load average at end {loadavg()}")


if __name__ == "__main__":
    main()
