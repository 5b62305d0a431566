#!/usr/bin/env python
"""Fault injection: fairseq-train runs killed with SIGKILL at random points must resume and finish.

    python scripts/fault_injection.py [--runs 50] [--max-update 12] [--seed 0] [--work-dir DIR]

Each run trains a tiny `mega_lm_tiny` on a small generated corpus with a checkpoint after every update
(`--save-interval-updates 1`), in a fresh --save-dir, and is killed with SIGKILL:
  - even runs: at a uniformly random time between the process start and the end of a clean run
    (so during start-up, training, checkpoint writes or the copies to checkpoint_last.pt);
  - odd runs: the moment a checkpoint write is seen in progress (a temporary file in --save-dir),
    after a random number of saves.
Then the very same command runs again, without a kill; it must exit 0 with checkpoint_last.pt at
--max-update updates. Prints one line per run and `killed K / resumed R / lost L` (killed: the kill hit
the run before it finished; resumed: the rerun loaded a checkpoint rather than starting over; lost: the
rerun failed or ended at another update count). Exit status 1 if any run was lost.

Export kills (`--export-runs`, default 10): `mega-export-hf` of a tiny `mega_lm_hf` checkpoint into a fresh
directory, killed at a random time (even runs) or once its hidden staging directory exists (odd runs). OUT_DIR
must then be absent, empty or a complete export (every file a clean export writes, model code included;
config.json and model.safetensors readable), and the same command again must finish the export (or, after a
complete one, refuse to replace it).
Prints `exports: killed K / torn T`; a torn export counts as lost.

Full-disk case: the same command with MEGA_FAIRSEQ_DISK_LIMIT_BYTES (mega_fairseq/reliability.py: writes
fail with ENOSPC past that many bytes) set so that the third update's checkpoint does not fit; and, when
running as root and tmpfs can be mounted, with --save-dir on a tmpfs of that size. The run must fail with
"no space left on the device", leave no partial file and keep checkpoint_last.pt at the last good update;
the rerun without the limit must resume from there and finish.
"""

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOADED = re.compile(r"Loaded checkpoint (\S+) \(epoch (\d+) @ (\d+) updates\)")


def make_data(root: Path) -> Path:
    """~1950 tokens of sorted random words, binarized: 61 batches of one 32-token block per epoch."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(40)]
    text = root / "train.txt"
    text.write_text("".join(" ".join(sorted(rng.choice(words) for _ in range(12))) + "\n" for _ in range(150)))
    data = root / "bin"
    subprocess.run(
        [BIN / "fairseq-preprocess", "--only-source", "--trainpref", text, "--destdir", data],
        check=True,
        capture_output=True,
        env=env(),
    )
    return data


def env(**extra):
    return dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **extra)


def command(data, save, max_update):
    return [
        BIN / "fairseq-train",
        data,
        "--task",
        "language_modeling",
        "--user-dir",
        REPO / "user_dir",
        "--arch",
        "mega_lm_tiny",
        "--decoder-chunk-size",
        "8",
        "--tokens-per-sample",
        "32",
        "--batch-size",
        "1",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--max-update",
        str(max_update),
        "--save-interval-updates",
        "1",
        "--keep-interval-updates",
        "2",
        "--no-epoch-checkpoints",
        "--disable-validation",
        "--cpu",
        "--num-workers",
        "0",
        "--log-format",
        "simple",
        "--log-interval",
        "1",
        "--seed",
        "1",
        "--save-dir",
        save,
    ]


def num_updates(checkpoint):
    import torch

    import mega_fairseq  # noqa: F401  (allowlists what fairseq checkpoints need for torch.load)

    return torch.load(checkpoint, map_location="cpu", weights_only=True)["optimizer_history"][-1]["num_updates"]


def saving(save: Path) -> bool:
    """A checkpoint write or copy is in progress: one of reliability.atomic_write's temporary files exists."""
    try:
        return any(name.endswith(".tmp") for name in os.listdir(save))
    except FileNotFoundError:
        return False


def run_killed(cmd, save: Path, rng: random.Random, clean_seconds: float, during_save: bool, log):
    """Starts cmd and SIGKILLs it; returns (killed before it finished, a save was in progress at the kill)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        start = time.monotonic()
        if during_save:
            saves_to_skip, seen, was_saving = rng.randint(0, 8), 0, False
            while proc.poll() is None and time.monotonic() - start < 3 * clean_seconds:
                now_saving = saving(save)
                if now_saving and not was_saving:
                    if seen >= saves_to_skip:
                        break
                    seen += 1
                was_saving = now_saving
                time.sleep(0.0005)
        else:
            deadline = start + rng.uniform(0.0, clean_seconds)
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
        in_save = saving(save)
        killed = proc.poll() is None
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return killed, killed and in_save


def export_state(out: Path, expected: set) -> str:
    """'absent' (no OUT_DIR or an empty one), 'complete' (every file of `expected`, the names a clean export
    writes, there and config.json / model.safetensors readable) or 'torn: ...'."""
    import json

    from safetensors.torch import load_file

    names = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if not names:
        return "absent"
    if names != expected:
        return f"torn: {sorted(names)}"
    try:
        json.loads((out / "config.json").read_text())
        load_file(str(out / "model.safetensors"))
    except Exception as err:
        return f"torn: {err}"
    return "complete"


def export_kills(data, root: Path, runs: int, rng: random.Random) -> int:
    """Kills mega-export-hf runs; returns the number of torn exports (or of reruns that failed)."""
    hf_model = ["--arch", "mega_lm_hf", "--decoder-layers", "1", "--decoder-embed-dim", "16"]
    hf_model += ["--decoder-hidden-dim", "32", "--decoder-ffn-embed-dim", "32", "--decoder-z-dim", "8"]
    train = [str(a) for a in command(data, root / "hf_src", 1)]
    train[train.index("mega_lm_tiny") - 1 : train.index("mega_lm_tiny") + 1] = hf_model
    subprocess.run(train, env=env(), check=True, capture_output=True, timeout=600)
    checkpoint = root / "hf_src" / "checkpoint_last.pt"

    def export_cmd(out):
        return [BIN / "mega-export-hf", checkpoint, out, "--data", data]

    start = time.monotonic()
    subprocess.run(export_cmd(root / "export_clean"), env=env(), check=True, capture_output=True, timeout=600)
    clean_seconds = time.monotonic() - start
    expected = {p.name for p in (root / "export_clean").iterdir()}  # config, weights, card, dict, model code
    killed = torn = 0
    for i in range(runs):
        out = root / f"export{i:03d}"
        with open(root / f"export{i:03d}.kill.log", "w") as log:
            proc = subprocess.Popen(export_cmd(out), env=env(), stdout=log, stderr=subprocess.STDOUT)
            start = time.monotonic()
            deadline = start + rng.uniform(0.0, clean_seconds)
            while proc.poll() is None and time.monotonic() < (start + 3 * clean_seconds if i % 2 else deadline):
                if i % 2 and any(p.name.startswith(f".{out.name}.tmp") for p in root.iterdir()):
                    time.sleep(rng.uniform(0.0, 0.5))  # somewhere inside the staged writes or the verification
                    break
                time.sleep(0.002)
            was_killed = proc.poll() is None
            if was_killed:
                proc.kill()
            proc.wait()
        killed += was_killed
        after_kill = export_state(out, expected)
        rerun = subprocess.run(export_cmd(out), env=env(), capture_output=True, text=True, timeout=600, check=False)
        final = export_state(out, expected)
        ok = not after_kill.startswith("torn") and final == "complete"
        ok &= rerun.returncode == 0 if after_kill == "absent" else "would replace" in rerun.stderr
        torn += not ok
        print(
            f"export {i + 1:3d}: {'killed' if was_killed else 'finished before the kill'}; OUT_DIR {after_kill}; "
            f"rerun exit {rerun.returncode} -> {final}{'' if ok else '  TORN'}",
            flush=True,
        )
    print(f"exports: killed {killed} / torn {torn} (of {runs})")
    return torn


def full_disk_case(data, root: Path, max_update: int, checkpoint_bytes: int) -> bool:
    """True when a full disk fails the run clearly, keeps the last good checkpoint and the rerun finishes."""
    ok = True
    # each update writes checkpoint_1_N.pt and its copy checkpoint_last.pt: 2 checkpoints; room for 2 updates and a half
    limit = int(4.5 * checkpoint_bytes)
    cases = [("write hook", root / "disk_hook", env(MEGA_FAIRSEQ_DISK_LIMIT_BYTES=str(limit)))]
    tmpfs = root / "disk_tmpfs"
    tmpfs.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={limit + 64 * 1024}", "tmpfs", str(tmpfs)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if mounted:
        cases.append(("tmpfs", tmpfs, env()))
    else:
        print("full disk (tmpfs): skipped, cannot mount a tmpfs here (needs root)")
    try:
        for name, save, run_env in cases:
            proc = subprocess.run(
                command(data, save, max_update), env=run_env, capture_output=True, text=True, timeout=600, check=False
            )
            log = proc.stdout + proc.stderr
            last = save / "checkpoint_last.pt"
            message = re.search(r"no space left on the device writing .*", log)
            leftovers = [n for n in os.listdir(save) if n.endswith(".tmp")]
            good = last.exists() and num_updates(last)
            print(
                f"full disk ({name}): exit {proc.returncode}; message: {message[0][:160] if message else None!r}; "
                f"checkpoint_last.pt at {good} updates; partial files left: {leftovers}"
            )
            if proc.returncode == 0 or not message or leftovers or not good:
                print(log[-3000:])
                ok = False
                continue
            if name == "tmpfs":
                subprocess.run(["umount", str(tmpfs)], check=True)
                mounted = False
                continue  # the tmpfs is gone with its files; the hook case checks the rerun
            rerun = subprocess.run(
                command(data, save, max_update), env=env(), capture_output=True, text=True, timeout=600, check=False
            )
            loaded = LOADED.search(rerun.stdout + rerun.stderr)
            resumed_ok = rerun.returncode == 0 and loaded and int(loaded[3]) == good and num_updates(last) == max_update
            print(
                f"full disk ({name}): rerun without the limit resumed from {loaded[3] if loaded else None} updates, "
                f"finished at {num_updates(last) if rerun.returncode == 0 else 'failed'}"
            )
            ok &= bool(resumed_ok)
    finally:
        if mounted:
            subprocess.run(["umount", str(tmpfs)], check=False)
    if ok:
        print("full disk: clear error, last good checkpoint intact")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--max-update", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, help="default: a temporary directory, removed at the end")
    parser.add_argument("--no-full-disk", action="store_true", help="skip the full-disk case")
    parser.add_argument("--export-runs", type=int, default=10, help="mega-export-hf runs to kill (0: none)")
    args = parser.parse_args(argv)
    if args.work_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return run(args, Path(tmp))
    args.work_dir.mkdir(parents=True, exist_ok=True)
    return run(args, args.work_dir)


def run(args, root: Path) -> int:
    rng = random.Random(args.seed)
    data = make_data(root)
    # a clean run: its duration bounds the random kill times; its checkpoint size sizes the full disk
    start = time.monotonic()
    subprocess.run(
        command(data, root / "clean", args.max_update), env=env(), check=True, capture_output=True, timeout=600
    )
    clean_seconds = time.monotonic() - start
    checkpoint_bytes = (root / "clean" / "checkpoint_last.pt").stat().st_size
    print(f"clean run: {clean_seconds:.1f} s to {args.max_update} updates, checkpoint {checkpoint_bytes} bytes")

    killed = resumed = lost = in_saves = 0
    for i in range(args.runs):
        save = root / f"run{i:03d}"
        cmd = command(data, save, args.max_update)
        was_killed, in_save = run_killed(
            cmd, save, rng, clean_seconds, during_save=i % 2 == 1, log=root / f"run{i:03d}.kill.log"
        )
        killed += was_killed
        in_saves += in_save
        at_kill = num_updates(save / "checkpoint_last.pt") if (save / "checkpoint_last.pt").exists() else None
        rerun = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600, check=False)
        log = rerun.stdout + rerun.stderr
        (root / f"run{i:03d}.rerun.log").write_text(log)
        loaded = LOADED.search(log)
        final = num_updates(save / "checkpoint_last.pt") if rerun.returncode == 0 else None
        resumed += bool(was_killed and loaded)
        is_lost = rerun.returncode != 0 or final != args.max_update
        lost += is_lost
        print(
            f"run {i + 1:3d}: {'killed' if was_killed else 'finished before the kill'}"
            f"{' inside a checkpoint write' if in_save else ''}; checkpoint_last.pt at {at_kill} updates; "
            f"rerun {'resumed from ' + loaded[3] if loaded else 'started from scratch'} -> "
            f"{'exit ' + str(rerun.returncode) if rerun.returncode else f'{final} updates'}"
            f"{'  LOST' if is_lost else ''}",
            flush=True,
        )
        if is_lost:
            print(log[-3000:])
    print(
        f"killed {killed} / resumed {resumed} / lost {lost} (of {args.runs} runs; {in_saves} kills inside a checkpoint "
        "write)"
    )
    torn = export_kills(data, root, args.export_runs, rng) if args.export_runs else 0
    disk_ok = True if args.no_full_disk else full_disk_case(data, root, args.max_update, checkpoint_bytes)
    return 0 if lost == 0 and torn == 0 and disk_ok else 1


if __name__ == "__main__":
    sys.exit(main())
