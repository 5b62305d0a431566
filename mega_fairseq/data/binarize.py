"""Running fairseq-preprocess from the data scripts (one text file set -> one data-bin subfolder)."""

import shlex
from pathlib import Path
from typing import Dict, List, Optional


def preprocess_args(
    files: Dict[str, Path], destdir: Path, srcdict: Optional[Path] = None, workers: int = 1
) -> List[str]:
    """fairseq-preprocess arguments binarizing `files` ({split: text file}) into `destdir`."""
    args = ["--only-source", "--destdir", str(destdir), "--workers", str(workers)]
    flags = {"train": "--trainpref", "valid": "--validpref", "test": "--testpref"}
    for split, path in files.items():
        if split not in flags:
            raise ValueError(f"split {split!r}: fairseq-preprocess knows train/valid/test only")
        args += [flags[split], str(path)]
    if srcdict is not None:
        args += ["--srcdict", str(srcdict)]
    return args


def run(args: List[str], dry_run: bool) -> None:
    """Prints the fairseq-preprocess command; runs it (in this process) unless `dry_run`."""
    print("fairseq-preprocess " + shlex.join(args), flush=True)
    if dry_run:
        return
    from fairseq import options
    from fairseq_cli import preprocess

    preprocess.main(options.get_preprocessing_parser().parse_args(args))
