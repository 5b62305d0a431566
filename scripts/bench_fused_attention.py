"""Softmax attention routes side by side in one process: forward + backward time of a 4-layer MegaStack (D=256,
z=64, H=512, rotary bias) with `attention_kernel.FUSED_ATTENTION` forced to each route: explicit ((L, L) scores
and weights), sdpa (torch's scaled_dot_product_attention, the value cut into groups of the q/k width) and
blockwise (blocks of query rows recomputed in backward, `modules/blockwise_attention.py`).

    python scripts/bench_fused_attention.py [--threads 2] [--long]

Prints one row per (chunk, length, batch, causal): the best of two timed steps per route, interleaved, and each
route's time / explicit's.  --long adds unchunked L = 8192 (about two minutes).  The default "auto" takes the
blockwise route on the CPU from FUSED_MIN_KEYS_CPU keys per block; this script shows why (README: "Scaling").
"""

import argparse
import time

import torch

from mega_fairseq.modules import MegaLayerConfig, MegaStack, attention_kernel

CASES = [(128, 2048, 4, True), (128, 2048, 4, False), (512, 4096, 2, True), (-1, 2048, 1, False), (-1, 4096, 1, True)]
LONG_CASES = [(-1, 8192, 1, False), (-1, 8192, 1, True)]
ROUTES = {"explicit": False, "sdpa": "sdpa", "blockwise": "blockwise"}


def step_seconds(stack: MegaStack, tokens: torch.Tensor) -> float:
    start = time.perf_counter()
    hidden = stack(tokens)[0]
    hidden.float().pow(2).mean().backward()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long", action="store_true", help="also unchunked L = 8192")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = list(ROUTES)
    print(
        f"{'chunk':>6} {'L':>6} {'B':>3} {'causal':>6} | "
        + " ".join(f"{name + ' s':>11}" for name in names)
        + " | "
        + " ".join(f"{name + '/explicit':>18}" for name in names[1:])
    )
    for chunk, length, batch, causal in CASES + (LONG_CASES if args.long else []):
        cfg = MegaLayerConfig(
            embed_dim=256, z_dim=64, hidden_dim=512, ffn_dim=512, n_dim=16, chunk_size=chunk,
            bidirectional=not causal, causal=causal, rel_pos_bias="rotary", normalization_type="layernorm",
        )  # fmt: skip
        stack = MegaStack(cfg, 4, torch.nn.Embedding(1000, 256, padding_idx=1))
        tokens = torch.randint(2, 1000, (batch, length))
        best = {}
        try:
            for name in names + names:
                attention_kernel.FUSED_ATTENTION = ROUTES[name]
                stack.zero_grad(set_to_none=True)
                best[name] = min(best.get(name, float("inf")), step_seconds(stack, tokens))
        finally:
            attention_kernel.FUSED_ATTENTION = "auto"
        print(
            f"{chunk:>6} {length:>6} {batch:>3} {str(causal):>6} | "
            + " ".join(f"{best[name]:>11.2f}" for name in names)
            + " | "
            + " ".join(f"{best[name] / best['explicit']:>18.2f}" for name in names[1:])
        )


if __name__ == "__main__":
    main()
