"""Helpers the scripts share: the prepare scripts' flow (mega_fairseq/data/prepare_cli.py) and the demos'
preamble (scripts/_env.sh: mega_demo_start / mega_demo_elapsed)."""

import subprocess
from pathlib import Path

import pytest

from mega_fairseq.data.prepare_cli import build_parser, given_splits, run_main

REPO = Path(__file__).resolve().parents[1]


def test_parser_and_given_splits_keep_train_valid_test_order():
    parser = build_parser("Title line.\n\nMore.", lambda p: p.add_argument("--labels"))
    args = parser.parse_args(["--test", "t.txt", "--train", "a.txt", "--destdir", "out", "--labels", "A,B"])
    assert given_splits(args) == {"train": Path("a.txt"), "test": Path("t.txt")}
    assert (args.labels, args.workers, args.no_binarize, args.srcdict, args.spm) == ("A,B", 1, False, None, None)
    assert parser.description == "Title line."
    options = [a.option_strings[0] for a in parser._actions if a.option_strings][1:]
    assert options == [
        "--train",
        "--valid",
        "--test",
        "--destdir",
        "--spm",
        "--srcdict",
        "--labels",
        "--workers",
        "--no-binarize",
    ]
    with pytest.raises(SystemExit):
        parser.parse_args(["--destdir", "out"])  # --train is required


def test_run_main_turns_bad_input_into_an_error_exit():
    def main():
        raise ValueError("data.conll:3: no column 5")

    with pytest.raises(SystemExit, match=r"^error: data.conll:3: no column 5$"):
        run_main(main)


def test_demo_start_clears_outputs_and_creates_the_last(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "old").write_text("stale")
    (tmp_path / "save").mkdir()
    (tmp_path / "save" / "checkpoint_last.pt").write_text("stale")
    script = (
        f"set -euo pipefail\nsource {REPO / 'scripts' / '_env.sh'}\n"
        "mega_env_setup() { echo setup; }\n"  # stand-in: no venv or pip here
        f"cd {tmp_path}\n"
        "mega_demo_start data save\n"
        "ls -A data 2>&1 || echo 'no data'\nls -A save\n"
        'elapsed=$(mega_demo_elapsed)\n[ "$elapsed" -ge 0 ] && [ "$elapsed" -lt 60 ] && echo clock ok\n'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:1] == ["setup"] and "no data" in out and "clock ok" in out
    assert not (tmp_path / "data").exists() and list((tmp_path / "save").iterdir()) == []
