"""Training memory of mega_lm against sequence length: with Mega-chunk it grows linearly.

    python scripts/bench_lm_memory.py [--lengths 1024 2048 4096 8192] [--chunk 1024]

One forward+backward (cross-entropy) of a causal Mega LM (4 layers, D=256, H=512, z=64, N=16,
vocab 1000) at batch 1 for each `--tokens-per-sample` length, chunked and unchunked.  Prints
the peak live tensor memory of the step (torch.profiler allocation events, the same measure as
scripts/bench_layers.py) and MB per 1k tokens: flat per-token memory means linear growth.
"""

import argparse
import time

import torch
from torch import nn
from torch.profiler import profile

from mega_fairseq.bench import allocator_peak
from mega_fairseq.modules import MegaLayerConfig, MegaStack


def step_peak(chunk: int, length: int, vocab: int = 1000) -> tuple:
    torch.manual_seed(0)
    cfg = MegaLayerConfig(
        embed_dim=256,
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
    stack = MegaStack(cfg, 4, nn.Embedding(vocab, 256, padding_idx=1), final_norm=True).train()
    head = nn.Linear(256, vocab)
    tokens = torch.randint(2, vocab, (1, length + 1))
    start = time.perf_counter()
    with profile(profile_memory=True) as prof:
        hidden, _, _ = stack(tokens[:, :-1])
        loss = nn.functional.cross_entropy(head(hidden).view(-1, vocab), tokens[:, 1:].reshape(-1))
        loss.backward()
    return allocator_peak(prof) / 2**20, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--chunk", type=int, default=1024)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'tokens':>7} {'chunk':>6} {'peak MB':>9} {'MB/1k tok':>10} {'step s':>7}")
    for chunk in (args.chunk, -1):
        for length in args.lengths:
            mb, secs = step_peak(chunk, length)
            print(f"{length:>7} {chunk:>6} {mb:>9.1f} {mb / length * 1024:>10.1f} {secs:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
