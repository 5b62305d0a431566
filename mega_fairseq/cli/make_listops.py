"""Generate a ListOps data set (the LRA task) with no download.

ListOps (Nangia & Bowman 2018; LRA's long version): a nested expression of the operators
MAX, MIN, MED (median, rounded down) and SM (sum modulo 10) over the digits 0-9; the label is
its value (10 classes).  Written in LRA's TSV format (`Source<TAB>Target` header, the source
with LRA's bracketing), so `mega-prepare-lra listops` reads it like the public release:

    ( ( ( [MAX 2 ) 9 ) ] )        value 9      (model tokens: [MAX 2 9 ])

Length = number of model tokens (operators, digits, `]`; the parentheses are dropped by
prepare_lra.py, as in LRA).  Trees are drawn like LRA's generator: a node is an operator with
2..max_args arguments with probability 1/4 (a digit otherwise, and always at max_depth), and
trees outside [min_length, max_length] are redrawn.  Deterministic for a given --seed.

    mega-make-listops OUT_DIR --train 20000 --valid 1000 --test 1000 \
        --min-length 500 --max-length 1000
writes OUT_DIR/basic_{train,val,test}.tsv.
"""

import argparse
import random
import sys
from pathlib import Path

OPERATORS = ("[MAX", "[MIN", "[MED", "[SM")
CLOSE = "]"
VOCABULARY = OPERATORS + (CLOSE,) + tuple(str(d) for d in range(10))
OPERATOR_PROBABILITY = 0.25


def apply(op: str, args):
    if op == "[MAX":
        return max(args)
    if op == "[MIN":
        return min(args)
    if op == "[MED":
        s = sorted(args)
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) // 2
    if op == "[SM":
        return sum(args) % 10
    raise ValueError(f"unknown ListOps operator {op!r}")


class _TooLong(Exception):
    pass


def random_tree(rng: random.Random, depth: int, max_depth: int, max_args: int, limit: int, used=None):
    """-> (LRA-bracketed source pieces, value, model-token length).

    Raises `_TooLong` as soon as the tree passes `limit` model tokens (it would be redrawn anyway)."""
    used = [0] if used is None else used
    if depth >= max_depth or rng.random() >= OPERATOR_PROBABILITY:
        digit = rng.randrange(10)
        used[0] += 1
        if used[0] > limit:
            raise _TooLong
        return [str(digit)], digit, 1
    op = rng.choice(OPERATORS)
    n_args = rng.randint(2, max_args)
    used[0] += 2  # operator + "]"
    pieces, values, length = [], [], 2
    for _ in range(n_args):
        sub, value, sub_len = random_tree(rng, depth + 1, max_depth, max_args, limit, used)
        pieces.append(sub)
        values.append(value)
        length += sub_len
    # LRA's bracketing: ( ( ... ( op a1 ) a2 ) ... ak ) ] )
    out = ["("] * (n_args + 1) + [op] + pieces[0] + [")"]
    for sub in pieces[1:]:
        out += sub + [")"]
    out += [CLOSE, ")"]
    return out, apply(op, values), length


def evaluate(tokens) -> int:
    """Value of a ListOps expression given as tokens (parentheses allowed and ignored)."""
    stack = []
    for tok in tokens:
        if tok in ("(", ")"):
            continue
        if tok in OPERATORS:
            stack.append([tok])
        elif tok == CLOSE:
            if not stack or len(stack[-1]) < 2:
                raise ValueError("unbalanced ListOps expression: ']' without an open operator with arguments")
            op, *args = stack.pop()
            value = apply(op, args)
            if not stack:
                return value
            stack[-1].append(value)
        elif tok.isdigit() and len(tok) == 1:
            if not stack:
                return int(tok)
            stack[-1].append(int(tok))
        else:
            raise ValueError(f"unknown ListOps token {tok!r}")
    raise ValueError("unbalanced ListOps expression: an operator is never closed")


def generate(
    count: int, min_length: int, max_length: int, seed: int, max_depth: int = 10, max_args: int = 10, seen=None
):
    """`count` distinct (source, value) pairs with min_length <= model tokens <= max_length."""
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}..{max_length}")
    rng = random.Random(seed)
    seen = set() if seen is None else seen
    out, tries = [], 0
    while len(out) < count:
        tries += 1
        if tries > 1000 * (count + 10):
            raise ValueError(
                f"could not draw {count} ListOps trees of {min_length}..{max_length} tokens with "
                f"max_depth={max_depth}, "
                f"max_args={max_args}; widen the length range or raise --max-depth/--max-args"
            )
        try:
            pieces, value, length = random_tree(rng, 1, max_depth, max_args, max_length)
        except _TooLong:
            continue
        if length >= min_length:
            source = " ".join(pieces)
            if source not in seen:
                seen.add(source)
                out.append((source, value))
    return out


def write_tsv(path: Path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("Source\tTarget\n")
        for source, value in rows:
            f.write(f"{source}\t{value}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--valid", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--min-length", type=int, default=500, help="fewest model tokens per expression")
    parser.add_argument("--max-length", type=int, default=1000, help="most model tokens per expression (LRA: 2000)")
    parser.add_argument("--max-depth", type=int, default=10)
    parser.add_argument("--max-args", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    seen = set()  # no expression appears in two splits
    for i, (split, count) in enumerate((("train", args.train), ("val", args.valid), ("test", args.test))):
        rows = generate(
            count, args.min_length, args.max_length, args.seed * 1000 + i, args.max_depth, args.max_args, seen
        )
        write_tsv(args.out_dir / f"basic_{split}.tsv", rows)
        print(f"{split}: {len(rows)} expressions -> {args.out_dir / f'basic_{split}.tsv'}", file=sys.stderr)


if __name__ == "__main__":
    main()
