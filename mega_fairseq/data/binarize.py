"""Running fairseq-preprocess from the data scripts (one text file set -> one data-bin subfolder)."""
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional


def preprocess_command(files: Dict[str, Path], destdir: Path, srcdict: Optional[Path] = None, workers: int = 1) -> List[str]:
    """The fairseq-preprocess command binarizing `files` ({split: text file}) into `destdir`."""
    cmd = [sys.executable, "-m", "fairseq_cli.preprocess", "--only-source", "--destdir", str(destdir), "--workers", str(workers)]
    flags = {"train": "--trainpref", "valid": "--validpref", "test": "--testpref"}
    for split, path in files.items():
        if split not in flags:
            raise ValueError(f"split {split!r}: fairseq-preprocess knows train/valid/test only")
        cmd += [flags[split], str(path)]
    if srcdict is not None:
        cmd += ["--srcdict", str(srcdict)]
    return cmd


def run(cmd: List[str], dry_run: bool) -> None:
    """Prints the command; runs it unless `dry_run`, raising with fairseq's stderr on failure."""
    print(shlex.join(cmd), flush=True)
    if dry_run:
        return
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"fairseq-preprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
