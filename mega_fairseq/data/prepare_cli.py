"""The command-line flow the ``scripts/prepare_*.py`` fine-tuning data scripts share.

Each script reads raw train/valid/test files, writes token (and label) text files under
``--destdir``, then binarizes them with fairseq-preprocess (`binarize.preprocess_args` / `binarize.run`).
This module holds what is the same in all of them: the split/tokenizer/dictionary/binarize options
(`build_parser`), the splits that were given (`given_splits`), the ``error: ...`` exit on a
ValueError from bad input (`run_main`), and the line count of a text file (`count_lines`, also used by
`mega-spm-prepare` and fairseq-preprocess's parallel-file check).
"""

import argparse
from pathlib import Path
from typing import Callable, Dict, Optional

SPLITS = ("train", "valid", "test")


def count_lines(path) -> int:
    """Number of lines of a text file (a last line without a newline counts)."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def build_parser(doc: str, add_task_arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None):
    """Parser with --train (required), --valid, --test, --destdir, --spm, --srcdict, the script's own
    options (`add_task_arguments`), then --workers and --no-binarize; described by `doc`'s first paragraph."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--valid", type=Path)
    parser.add_argument("--test", type=Path)
    parser.add_argument("--destdir", type=Path, required=True)
    parser.add_argument("--spm", help="sentencepiece model: split words into pieces (default: whitespace words)")
    parser.add_argument(
        "--srcdict", type=Path, help="input dictionary (a pretrained model's dict.txt); default: built from train"
    )
    if add_task_arguments is not None:
        add_task_arguments(parser)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--no-binarize", action="store_true", help="write the text files and print the fairseq-preprocess commands"
    )
    return parser


def given_splits(args) -> Dict[str, Path]:
    """{split name: raw file} for the splits given on the command line, in train, valid, test order."""
    return {name: getattr(args, name) for name in SPLITS if getattr(args, name)}


def first_non_utf8_line(path) -> int:
    """1-based number of the first line of `path` that is not valid UTF-8 (0 if every line is)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def not_utf8(path, error: UnicodeDecodeError) -> ValueError:
    """The error to raise when `path` (a text input) is not UTF-8: names the file, the line and the fix."""
    return ValueError(
        f"{path}:{first_non_utf8_line(path)}: not UTF-8 text ({error.reason}); convert the file to UTF-8 "
        "(e.g. iconv -f latin1 -t utf-8)"
    )


def run_main(main: Callable[[], None]) -> None:
    """Runs a script's ``main()``; a ValueError (bad input, its message names the file) exits with ``error: ...``."""
    try:
        main()
    except ValueError as error:
        raise SystemExit(f"error: {error}")
