"""The package's commands: console scripts of setup.py (and their scripts/ wrappers), `mega-fairseq info`,
`__version__`, `--user-dir` of a pip-installed package from any directory, the tensorboard extra, and the
demos' log filter and validation-curve PNG."""

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mega_fairseq
from mega_fairseq.cli import info

from conftest import BIN, LM_TRAIN_ARGS, REPO, fairseq_cli

DATA_TOOLS = {
    "mega-prepare-lra": "prepare_lra",
    "mega-prepare-token-classification": "prepare_token_classification",
    "mega-prepare-extractive-qa": "prepare_extractive_qa",
    "mega-spm-prepare": "spm_prepare",
    "mega-make-listops": "make_listops",
}


def entry_points():
    text = (REPO / "setup.py").read_text()
    return dict(
        (name, (module, function)) for name, module, function in re.findall(r'"([\w-]+) = ([\w.]+):(\w+)"', text)
    )


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"wrapper_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_console_scripts_resolve_and_the_wrappers_run_the_same_code():
    points = entry_points()
    assert set(DATA_TOOLS) | {"mega-fairseq"} <= set(points)
    for name, (module, function) in points.items():
        assert callable(getattr(importlib.import_module(module), function)), name
    for name, script in DATA_TOOLS.items():
        module, _ = points[name]
        assert module == f"mega_fairseq.cli.{script}"
        wrapper = load_script(script)
        assert wrapper.main is importlib.import_module(module).main  # the wrapper exposes the package's code


def test_version():
    setup = (REPO / "setup.py").read_text()
    assert re.fullmatch(r"\d+\.\d+\.\d+", mega_fairseq.__version__)
    assert "mega_fairseq" in setup and "__version__" in setup  # setup.py reads the version from the package


def test_info_lists_presets_sizes_tasks_criterions_and_every_option(capsys):
    from dataclasses import fields

    from fairseq.models import MODEL_DATACLASS_REGISTRY

    info.main(["info"])
    text = capsys.readouterr().out
    for arch in (
        "mega_lm_tiny",
        "mega_base",
        "mega_tiny",
        "mega_wmt_en_de",
        "mega_lra_listop",
        "transformer_lra_listop",
    ):
        assert re.search(rf"^    {arch} +layers \d+|^    {arch} +encoder: layers", text, re.M), arch
    assert "mega_lm_tiny               layers 2, D 64" in text
    assert "mega_token_classification" in text and "lra_cross_entropy" in text and "mega_extractive_qa" in text
    assert "--task masked_lm | sentence_prediction" in text
    for model in ("mega_lm", "mega_encoder", "mega", "lra"):
        for field in [f for f in fields(MODEL_DATACLASS_REGISTRY[model]) if not f.name.startswith("_")]:
            flag = "--" + field.name.replace("_", "-")
            assert re.search(rf"^  {re.escape(flag)} ", text, re.M), (model, flag)
    assert re.search(r"--decoder-chunk-size +decoder Mega-chunk attention window", text)
    assert f"--user-dir {os.path.dirname(mega_fairseq.__file__)}" in text
    info.main(["info", "--arch", "mega_tiny"])
    one = capsys.readouterr().out
    assert "mega_tiny" in one and "mega_lm_tiny" not in one and "Options of mega_encoder" in one
    with pytest.raises(SystemExit, match="--arch nope is not a Mega model or preset"):
        info.main(["info", "--arch", "nope"])


def test_python_m_mega_fairseq_runs(monkeypatch, capsys):
    import runpy

    monkeypatch.setattr(sys, "argv", ["python -m mega_fairseq", "info", "--arch", "mega_lm_tiny"])
    runpy.run_module("mega_fairseq", run_name="__main__")
    out = capsys.readouterr().out
    assert "mega_lm_tiny" in out and "--decoder-chunk-size" in out


def test_label_list_errors_show_the_format(tmp_path):
    prepare = load_script("prepare_token_classification")
    (tmp_path / "train.conll").write_text("a X B-PER\nb X O\n\n")
    with pytest.raises(ValueError, match=r"comma-separated, e\.g\. --labels B-PER,O"):
        prepare.main(["--train", str(tmp_path / "train.conll"), "--destdir", str(tmp_path / "o"), "--labels", "O"])
    (tmp_path / "valid.conll").write_text("a X B-LOC\n\n")
    with pytest.raises(ValueError, match=r"--labels, comma-separated: --labels B-LOC,B-PER,O"):
        prepare.main(
            ["--train", str(tmp_path / "train.conll"), "--valid", str(tmp_path / "valid.conll"), "--destdir",
             str(tmp_path / "o2"), "--no-binarize"]
        )  # fmt: skip


def test_tensorboard_logdir_writes_event_files(lm_data, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra: pip install -e '.[tensorboard]'")
    args = [a for a in LM_TRAIN_ARGS]
    fairseq_cli(
        "fairseq-train", lm_data, *args, "--max-update", "3", "--no-save", "--tensorboard-logdir", tmp_path / "tb"
    )
    events = {path.parent.name for path in (tmp_path / "tb").rglob("events.out.tfevents.*")}
    assert {"train", "valid"} <= events, events


# ------------------------------------------------------------------------------------------ demos' log helper
demo_logs = load_script("demo_logs")

LOG = """\
2026-01-01 10:00:00 | INFO | fairseq.tasks.text_to_speech | Please install tensorboardX: pip install tensorboardX
/venv/lib/python3.11/site-packages/hydra/experimental/initialize.py:43: UserWarning: hydra.experimental.initialize()
  deprecation_warning(message=message)
2026-01-01 10:00:01 | INFO | fairseq_cli.train | {'_name': None, 'common': {}}
2026-01-01 10:00:01 | INFO | fairseq_cli.train | MegaLanguageModel(
  (decoder): MegaDecoder(
)
2026-01-01 10:00:01 | INFO | fairseq_cli.train | model: MegaLanguageModel
2026-01-01 10:00:05 | INFO | train_inner | epoch 001:      2 / 4 loss=8.325, ppl=320.76, num_updates=2, wall=3
2026-01-01 10:00:06 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 6.5 | ppl 90.5 | num_updates 2
2026-01-01 10:00:11 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 5.5 | accuracy 40.2 | num_updates 4
Traceback (most recent call last):
  File "x.py", line 1
ValueError: boom
"""


def test_demo_log_filter_keeps_fairseq_lines_and_tracebacks():
    import io

    out = io.StringIO()
    demo_logs.filter_stream(io.StringIO(LOG), out)
    kept = out.getvalue().splitlines()
    assert kept[0].endswith("model: MegaLanguageModel") and any("train_inner" in line for line in kept)
    assert not any(
        "hydra" in line or "'_name'" in line or "MegaDecoder" in line or "tensorboardX" in line for line in kept
    )
    assert kept[-3:] == ["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: boom"]


def test_demo_log_quiet_drops_only_third_party_warnings():
    import io

    text = (
        "/v/lib/python3.11/site-packages/fairscale/experimental/nn/offload.py:19: FutureWarning: `torch.cuda.amp.x`\n"
        "  return torch.cuda.amp.custom_fwd(orig_func)  # type: ignore\n"
        "INFO:fairseq.tasks.text_to_speech:Please install tensorboardX: pip install tensorboardX\n"
        "listops train: 20 examples\n"
        "  indented output of our own\n"
        "mega-prepare-lra: error: RAW_DIR x does not exist\n"
    )
    out = io.StringIO()
    demo_logs.quiet_stream(io.StringIO(text), out)
    assert out.getvalue().splitlines() == [
        "listops train: 20 examples",
        "  indented output of our own",
        "mega-prepare-lra: error: RAW_DIR x does not exist",
    ]


def test_demo_plot_writes_a_png_of_validation_curves(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the demo extra: pip install -e '.[demo]'")
    (tmp_path / "a.log").write_text(LOG)
    points = demo_logs.validation_points(tmp_path / "a.log")
    assert points == [
        {"updates": 2.0, "wall": 6.0, "loss": 6.5},
        {"updates": 4.0, "wall": 11.0, "loss": 5.5, "accuracy": 40.2},
    ]
    demo_logs.main(["plot", str(tmp_path / "out" / "curves.png"), f"a={tmp_path / 'a.log'}", f"b={tmp_path / 'a.log'}"])
    assert (tmp_path / "out" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"validation curves: {tmp_path / 'out' / 'curves.png'}" in capsys.readouterr().out
    (tmp_path / "empty.log").write_text("nothing\n")
    with pytest.raises(SystemExit, match="no validation lines in the logs of e"):
        demo_logs.main(["plot", str(tmp_path / "x.png"), f"e={tmp_path / 'empty.log'}"])


# ------------------------------------------------------------------------------------------ slow: real installs, demos
@pytest.mark.slow
def test_pip_installed_package_has_the_commands_and_works_as_user_dir_from_any_directory(lm_data, tmp_path):
    target = tmp_path / "site"
    build = tmp_path / "src"
    shutil.copytree(REPO, build, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "build", "__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", target, build],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = dict(os.environ, PYTHONPATH=str(target), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in list(DATA_TOOLS) + ["mega-fairseq"]:
        assert (target / "bin" / name).exists(), name
    run = lambda *cmd: subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True)  # noqa: E731
    out = run(target / "bin" / "mega-fairseq", "info")
    assert out.returncode == 0 and f"--user-dir {target / 'mega_fairseq'}" in out.stdout, out.stderr[-2000:]
    listops = run(target / "bin" / "mega-make-listops", "lo", "--train", "4", "--valid", "2", "--test", "2",
                  "--min-length", "5", "--max-length", "20")  # fmt: skip
    assert listops.returncode == 0 and (elsewhere / "lo" / "basic_train.tsv").exists(), listops.stderr[-2000:]
    user_dir = run(sys.executable, "-c", "import mega_fairseq, os; print(os.path.dirname(mega_fairseq.__file__))")
    assert Path(user_dir.stdout.strip()) == target / "mega_fairseq"
    args = [str(a) for a in LM_TRAIN_ARGS]
    args[args.index("--user-dir") + 1] = user_dir.stdout.strip()
    train = run(BIN / "fairseq-train", lm_data, *args, "--max-update", "2", "--save-dir", "ckpt")
    assert train.returncode == 0, train.stderr[-3000:]
    assert (elsewhere / "ckpt" / "checkpoint_last.pt").exists()


def demo_checkout(tmp_path):
    """A copy of the demo scripts whose _env.sh uses this environment instead of creating .venv."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    for path in (REPO / "scripts").iterdir():
        if path.is_file():
            shutil.copy(path, root / "scripts" / path.name)
    for name in ("user_dir", "mega_fairseq", "configs", "setup.py", "constraints.txt"):
        (root / name).symlink_to(REPO / name)
    env_sh = (REPO / "scripts" / "_env.sh").read_text()
    stub = 'mega_env_setup() {\n    cd "$MEGA_REPO_ROOT"\n}\n'
    start = env_sh.index("mega_env_setup() {")
    end = env_sh.index("\n}\n", start) + 3
    (root / "scripts" / "_env.sh").write_text(env_sh[:start] + stub + env_sh[end:])
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", PYTHONPATH=str(REPO))
    env.pop("PYTHONWARNINGS", None)  # the real third-party warnings: the demos' filter must drop them
    return root, env


@pytest.mark.slow
def test_demo_lra_listops_plots_both_models(tmp_path):
    pytest.importorskip("matplotlib")
    root, env = demo_checkout(tmp_path)
    env.update(
        MINUTES="0.15", TRAIN="64", VALID="16", TEST="16", MIN_LEN="10", MAX_LEN="30", BATCH="8", VALID_EVERY="3"
    )
    proc = subprocess.run(["bash", "scripts/demo_lra_listops.sh"], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    png = root / "checkpoints/demo_lra_listops/curves.png"
    assert png.exists() and f"validation curves: {png.relative_to(root)}" in proc.stdout
    assert "[mega]" in proc.stdout and "valid on 'valid' subset" in proc.stdout
    full_log = (root / "checkpoints/demo_lra_listops/mega/train.log").read_text()
    assert "UserWarning" in full_log and "{'_name'" in full_log  # the full log keeps everything ...
    assert "UserWarning" not in proc.stdout and "{'_name'" not in proc.stdout  # ... the terminal shows progress


@pytest.mark.slow
def test_demo_translation_plots_both_models(tmp_path):
    pytest.importorskip("matplotlib")
    if not list(Path("/usr/share/locale/de/LC_MESSAGES").glob("*.mo")):
        pytest.skip("no German gettext catalogs on this machine")
    root, env = demo_checkout(tmp_path)
    env.update(MAX_UPDATE="4", MAX_TOKENS="512", VOCAB="300", VALID_EVERY="2", GENERATE_EXTRA="--beam 1 --max-len-b 5")
    proc = subprocess.run(["bash", "scripts/demo_translation.sh"], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    png = root / "checkpoints/demo_mt/curves.png"
    assert png.exists() and f"validation curves: {png.relative_to(root)}" in proc.stdout
    assert "valid on 'valid' subset" in proc.stdout and "UserWarning" not in proc.stdout
    assert "UserWarning" in (root / "checkpoints/demo_mt/mega/train.log").read_text()
