"""Fused vs explicit softmax attention, side by side in one process: forward + backward time of a 4-layer
MegaStack (D=256, z=64, H=512, rotary bias) with `attention_kernel.FUSED_ATTENTION` forced True and False.

    python scripts/bench_fused_attention.py [--threads 2]

Prints one row per (chunk, length, batch, causal): the best of two timed steps each, and fused / explicit.
The default "auto" takes the fused route on the CPU only from FUSED_MIN_KEYS_CPU keys per block; this script
shows why (README: "Scaling").
"""

import argparse
import time

import torch

from mega_fairseq.modules import MegaLayerConfig, MegaStack, attention_kernel

CASES = [(128, 2048, 4, True), (128, 2048, 4, False), (512, 4096, 2, True), (-1, 2048, 1, False), (-1, 4096, 1, True)]


def step_seconds(stack: MegaStack, tokens: torch.Tensor) -> float:
    start = time.perf_counter()
    hidden = stack(tokens)[0]
    hidden.float().pow(2).mean().backward()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{'chunk':>6} {'L':>6} {'B':>3} {'causal':>6} | {'explicit s':>10} {'fused s':>8} | fused/explicit")
    for chunk, length, batch, causal in CASES:
        cfg = MegaLayerConfig(
            embed_dim=256, z_dim=64, hidden_dim=512, ffn_dim=512, n_dim=16, chunk_size=chunk,
            bidirectional=not causal, causal=causal, rel_pos_bias="rotary", normalization_type="layernorm",
        )  # fmt: skip
        stack = MegaStack(cfg, 4, torch.nn.Embedding(1000, 256, padding_idx=1))
        tokens = torch.randint(2, 1000, (batch, length))
        best = {}
        for fused in (False, True, False, True):
            attention_kernel.FUSED_ATTENTION = fused
            best[fused] = min(best.get(fused, float("inf")), step_seconds(stack, tokens))
        attention_kernel.FUSED_ATTENTION = "auto"
        print(
            f"{chunk:>6} {length:>6} {batch:>3} {str(causal):>6} | {best[False]:>10.2f} {best[True]:>8.2f} | "
            f"{best[True] / best[False]:.2f}"
        )


if __name__ == "__main__":
    main()
