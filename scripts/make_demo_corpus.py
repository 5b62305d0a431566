"""Write an English corpus made from text that ships with Python itself (no download).

    python scripts/make_demo_corpus.py OUT_DIR [--max-chars N]

Sources, in this order: the language reference topics behind `help()` (pydoc_data.topics),
then the docstrings of the standard library's modules, their public members and class
methods (sorted by name).  Writes OUT_DIR/{train,valid,test}.txt with one paragraph per line
(whitespace collapsed, natural text: tokenization is left to sentencepiece).  Deterministic
for a given Python version: paragraphs are de-duplicated, code examples (">>>") and short
fragments are skipped, and every 20th paragraph goes to valid, the one after it to test.
"""

import argparse
import contextlib
import importlib
import inspect
import io
import re
import sys
import warnings
from pathlib import Path

# modules whose import has effects (opens a browser, prints, needs a display) or is platform-only
SKIP = {
    "antigravity",
    "this",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "__main__",
    "lib2to3",
    "ensurepip",
    "venv",
    "msilib",
    "winreg",
    "winsound",
    "msvcrt",
    "nt",
    "crypt",
    "nis",
    "spwd",
    "ossaudiodev",
}
MIN_WORDS = 8


def docstrings(module):
    yield inspect.getdoc(module)
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        yield inspect.getdoc(obj)
        if inspect.isclass(obj):
            for attr, member in sorted(vars(obj).items()):
                if not attr.startswith("_") and callable(member):
                    yield inspect.getdoc(member)


def texts():
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield topics[name]
    names = sorted(n for n in getattr(sys, "stdlib_module_names", ()) if not n.startswith("_") and n not in SKIP)
    for modname in names:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                module = importlib.import_module(modname)
        except Exception:  # not built on this machine (e.g. no ssl)
            continue
        yield from docstrings(module)


def paragraphs():
    seen = set()
    for text in texts():
        for para in re.split(r"\n\s*\n", text or ""):
            if ">>>" in para or para.startswith((" ", "\t")):  # code, not prose
                continue
            line = " ".join(para.split())
            if len(line.split()) >= MIN_WORDS and line not in seen:
                seen.add(line)
                yield line


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--max-chars", type=int, default=1_800_000, help="stop after this many characters (default 1.8M)"
    )
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    splits = {"train": [], "valid": [], "test": []}
    total = 0
    for i, line in enumerate(paragraphs()):
        if total >= args.max_chars:
            break
        total += len(line) + 1
        splits["valid" if i % 20 == 0 else "test" if i % 20 == 1 else "train"].append(line)
    for split, lines in splits.items():
        path = args.out_dir / f"{split}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{path}: {len(lines)} paragraphs, {sum(len(line) for line in lines) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
