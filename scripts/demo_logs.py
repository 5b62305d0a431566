#!/usr/bin/env python
"""The demos' log helper: fairseq's progress lines without third-party noise, and a PNG of validation curves.

    fairseq-train ... 2>&1 | tee run/train.log | python scripts/demo_logs.py filter
    python scripts/prepare_lra.py ... 2>&1 | python scripts/demo_logs.py quiet
    python scripts/demo_logs.py plot OUT.png mega=run/mega/train.log transformer=run/transformer/train.log

`filter` passes fairseq's own log lines (``2026-01-01 12:00:00 | INFO | ...``) and drops what drowns them:
hydra/omegaconf deprecation warnings, the full config dict, the model's module tree, the tensorboardX hint
of an unrelated fairseq task.  From a ``Traceback`` on, everything is passed, so a failure shows in full.
`quiet` passes every line but third-party warnings (e.g. fairscale's torch.cuda.amp deprecation, printed by
any process importing fairseq) and that hint: for our own tools, whose messages and errors must all show.

`plot` reads the validation lines of fairseq's simple log format (``valid on 'valid' subset | loss 5.4 |
... | num_updates 300``) of each LABEL=LOG and draws every validation metric found (loss, and bleu or
accuracy when logged) against updates and against wall time (seconds since the log's first line), one
line per model; it prints the PNG's path.  Needs matplotlib (``pip install -c constraints.txt -e '.[demo]'``).
"""

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Dict, List

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \| (DEBUG|INFO|WARNING|ERROR|CRITICAL) \| ")
NOISE = (
    re.compile(r"\| fairseq_cli\.\w+ \| \{'_name'"),  # the config dict
    re.compile(r"\| fairseq_cli\.\w+ \| \w+\($"),  # first line of the model's module tree
    re.compile(r"Please install tensorboardX"),  # fairseq's text_to_speech task, imported by every run
    re.compile(r"\| (can_reuse_epoch_itr|reuse_dataloader|rebuild_batches) = "),  # per-epoch iterator chatter
)
METRICS = ("loss", "bleu", "accuracy")


def keep(line: str) -> bool:
    """Whether `filter` passes one line (before any traceback)."""
    return bool(LOG_LINE.match(line)) and not any(pattern.search(line) for pattern in NOISE)


# a third-party library's warning (file in site-packages), followed by its indented source line
THIRD_PARTY_WARNING = re.compile(r"site-packages/.*:\d+: \w*Warning: ")
FAIRSEQ_HINT = re.compile(r"^INFO:fairseq\.tasks\.text_to_speech:Please install tensorboardX")


def quiet_stream(lines, out) -> None:
    """Passes every line but third-party warnings (with their source line) and fairseq's tensorboardX hint: for
    the output of our own tools (data preparation), whose messages and errors all show."""
    skip_source = False
    for line in lines:
        if skip_source and line.startswith((" ", "\t")):
            skip_source = False
            continue
        skip_source = bool(THIRD_PARTY_WARNING.search(line))
        if skip_source or FAIRSEQ_HINT.match(line):
            continue
        out.write(line)
        out.flush()


def filter_stream(lines, out) -> None:
    failing = False
    for line in lines:
        failing = failing or line.startswith("Traceback")
        if failing or keep(line):
            out.write(line)
            out.flush()


def validation_points(log: Path) -> List[Dict[str, float]]:
    """[{"updates", "wall", metric: value, ...}] of each validation line of a fairseq simple-format log."""
    points, start = [], None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
        start = start or stamp
        if "valid on '" not in line:
            continue
        fields = dict(part.strip().split(" ", 1) for part in line.split(" | ")[4:] if " " in part.strip())
        if "num_updates" not in fields:
            continue
        point = {"updates": float(fields["num_updates"]), "wall": (stamp - start).total_seconds()}
        for metric in METRICS:
            if metric in fields:
                point[metric] = float(fields[metric])
        points.append(point)
    return points


def plot(out: Path, runs: Dict[str, Path], title: str = "") -> Path:
    """Writes the PNG of every run's validation curves to `out` and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {label: validation_points(log) for label, log in runs.items()}
    empty = [label for label, points in curves.items() if not points]
    if empty:
        raise ValueError(f"no validation lines in the logs of {', '.join(empty)} (fairseq --log-format simple)")
    metrics = [m for m in METRICS if any(m in p for points in curves.values() for p in points)]
    fig, axes = plt.subplots(len(metrics), 2, figsize=(10, 3.2 * len(metrics)), squeeze=False)
    for row, metric in enumerate(metrics):
        for col, (x, xlabel) in enumerate((("updates", "updates"), ("wall", "wall time (s)"))):
            ax = axes[row][col]
            for label, points in curves.items():
                pts = [p for p in points if metric in p]
                ax.plot([p[x] for p in pts], [p[metric] for p in pts], marker="o", markersize=3, label=label)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"valid {metric}")
            ax.grid(alpha=0.3)
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("filter", help="stdin -> stdout: fairseq's log lines without third-party noise")
    commands.add_parser("quiet", help="stdin -> stdout: every line but third-party warnings (our tools' output)")
    plotting = commands.add_parser("plot", help="PNG of validation curves of one or more fairseq logs")
    plotting.add_argument("out", type=Path, help="the PNG to write")
    plotting.add_argument("runs", nargs="+", help="LABEL=LOG, e.g. mega=checkpoints/demo/mega/train.log")
    plotting.add_argument("--title", default="")
    args = parser.parse_args(argv)
    if args.command in ("filter", "quiet"):
        (filter_stream if args.command == "filter" else quiet_stream)(sys.stdin, sys.stdout)
        return
    runs = {}
    for run in args.runs:
        label, sep, log = run.partition("=")
        if not sep:
            parser.error(f"runs are LABEL=LOG, e.g. mega=train.log; got {run!r}")
        runs[label] = Path(log)
    try:
        path = plot(args.out, runs, args.title)
    except ImportError:
        raise SystemExit("error: plotting needs matplotlib: pip install -c constraints.txt -e '.[demo]'")
    except ValueError as error:
        raise SystemExit(f"error: {error}")
    print(f"validation curves: {path}")


if __name__ == "__main__":
    main()
