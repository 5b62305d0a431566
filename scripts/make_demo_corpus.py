"""Write a small English corpus made from the docstrings of Python's standard library.

    python scripts/make_demo_corpus.py OUT_DIR

Writes OUT_DIR/{train,valid,test}.txt: one paragraph per line, words and punctuation
separated by single spaces. Uses only text that ships with Python, so nothing is
downloaded. Deterministic for a given Python version (docstrings change between
releases): modules and their members are visited in sorted order, paragraphs are
de-duplicated, and every 20th paragraph goes to valid, the one after it to test.
"""
import importlib
import inspect
import re
import sys
from pathlib import Path

# Fixed list of standard-library modules that import without side effects.
MODULES = sorted([
    "abc", "argparse", "array", "ast", "asyncio", "base64", "bisect", "calendar",
    "cmd", "codecs", "collections", "concurrent.futures", "configparser", "contextlib",
    "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email.message",
    "enum", "fnmatch", "fractions", "ftplib", "functools", "getopt", "gettext", "glob",
    "gzip", "hashlib", "heapq", "hmac", "html.parser", "http.client", "http.cookiejar",
    "http.server", "imaplib", "inspect", "io", "ipaddress", "itertools", "json",
    "logging", "logging.handlers", "mailbox", "math", "mimetypes", "multiprocessing",
    "numbers", "operator", "optparse", "os", "pathlib", "pdb", "pickle", "pkgutil",
    "platform", "poplib", "pprint", "pydoc", "queue", "random", "re", "sched",
    "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket",
    "socketserver", "sqlite3", "ssl", "statistics", "string", "struct", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "trace",
    "traceback", "types", "typing", "unittest", "urllib.parse", "urllib.request",
    "uuid", "warnings", "wave", "weakref", "xml.dom.minidom", "xml.etree.ElementTree",
    "zipfile", "zipimport", "zlib",
])

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
MIN_WORDS = 8          # drop short fragments (signatures, headings)
MAX_CHARS = 400_000    # total size cap (~ a few hundred KB)


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


def paragraphs():
    seen = set()
    for modname in MODULES:
        try:
            module = importlib.import_module(modname)
        except ImportError:  # e.g. a Python built without ssl or sqlite3
            continue
        for doc in docstrings(module):
            for para in re.split(r"\n\s*\n", doc or ""):
                if ">>>" in para:  # skip doctest examples: code, not prose
                    continue
                tokens = TOKEN_RE.findall(para)
                line = " ".join(tokens)
                if len(tokens) >= MIN_WORDS and line not in seen:
                    seen.add(line)
                    yield line


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": [], "valid": [], "test": []}
    total = 0
    for i, line in enumerate(paragraphs()):
        if total >= MAX_CHARS:
            break
        total += len(line) + 1
        split = "valid" if i % 20 == 0 else "test" if i % 20 == 1 else "train"
        splits[split].append(line)
    for split, lines in splits.items():
        (out / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        n_words = sum(len(l.split()) for l in lines)
        print(f"{out / (split + '.txt')}: {len(lines)} lines, {n_words} words")


if __name__ == "__main__":
    main(sys.argv)
