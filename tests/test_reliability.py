"""Trust (issue 13): nothing lost on a crash, nothing executed from a file, failures named in the user's terms.

fp16 overflow on the CPU, atomic checkpoint writes and resume from the newest intact checkpoint, finished runs
that exit without training (mega_fairseq/reliability.py); CIFAR-10 batches through a restricted unpickler
(scripts/prepare_lra.py); parallel files of different lengths (scripts/spm_prepare.py, prepare_wmt16_en_de.sh,
fairseq-preprocess with --user-dir); the fault-injection script (slow)."""

import errno
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from mega_fairseq import reliability

from conftest import LM_TRAIN_ARGS, REPO, fairseq_cli

sys.path.insert(0, str(REPO / "scripts"))
import prepare_lra  # (after the sys.path insert)

ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def train(data, save, *extra, check=True):
    proc = fairseq_cli(
        "fairseq-train",
        data,
        *LM_TRAIN_ARGS,
        "--disable-validation",
        "--log-interval",
        "1",
        "--save-dir",
        save,
        *extra,
        check=check,
    )
    return proc, proc.stdout + proc.stderr


def updates_in(checkpoint):
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["optimizer_history"][-1]["num_updates"]


# ---- 1. fp16 on the CPU survives a gradient overflow ------------------------------------------------
@pytest.mark.parametrize("flag", ["--fp16", "--memory-efficient-fp16"])
def test_fp16_gradient_overflow_on_cpu_lowers_the_scale_and_goes_on(lm_data, tmp_path, flag):
    # 2^30 as first loss scale: the first steps overflow in fp16 (fairseq's overflow path called .cuda())
    _, log = train(lm_data, tmp_path, flag, "--fp16-init-scale", "1073741824", "--max-update", "3")
    assert "Torch not compiled with CUDA" not in log
    scales = [
        float(s)
        for s in re.findall(r"gradient overflow detected, ignoring gradient, setting loss scale to: ([0-9.]+)", log)
    ]
    assert len(scales) >= 2 and scales == sorted(scales, reverse=True) and scales[0] < 2**30, log[-3000:]
    assert "done training" in log and updates_in(tmp_path / "checkpoint_last.pt") == 3


# ---- 2. atomic checkpoint writes, resume from the newest intact checkpoint ----------------------------
def test_atomic_write_keeps_the_old_file_and_leaves_no_partial_file_when_the_write_raises(tmp_path):
    target = tmp_path / "checkpoint_last.pt"
    target.write_bytes(b"old checkpoint")
    with pytest.raises(RuntimeError, match="killed mid-write"), reliability.atomic_write(target) as f:
        f.write(b"new, partial")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old checkpoint" and os.listdir(tmp_path) == ["checkpoint_last.pt"]
    with reliability.atomic_write(target) as f:
        f.write(b"new checkpoint")
    assert target.read_bytes() == b"new checkpoint" and os.listdir(tmp_path) == ["checkpoint_last.pt"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # like any other file, not mkstemp's 0600


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_fairseq_checkpoint_save_and_copy_are_atomic(tmp_path, monkeypatch):
    """torch_persistent_save (fairseq's left `NAME.pt.tmp` behind) and the copies to checkpoint_last.pt (in place)."""
    from fairseq import checkpoint_utils

    import mega_fairseq.plugin  # noqa: F401  (applies the patches; alone this test would see fairseq's own writers)

    good, last = tmp_path / "checkpoint_1_5.pt", tmp_path / "checkpoint_last.pt"
    checkpoint_utils.torch_persistent_save({"step": 5}, str(good))
    assert checkpoint_utils.PathManager.copy(str(good), str(last), overwrite=True)
    assert torch.load(last)["step"] == 5

    real_save = torch.save

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.EIO, "simulated crash")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(OSError):
        checkpoint_utils.torch_persistent_save({"step": 6}, str(good))
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(good)["step"] == 5 and sorted(os.listdir(tmp_path)) == ["checkpoint_1_5.pt", "checkpoint_last.pt"]

    # a full disk in the copy to checkpoint_last.pt: clear error, checkpoint_last.pt keeps its content
    checkpoint_utils.torch_persistent_save({"step": 10, "pad": torch.zeros(1000)}, str(tmp_path / "checkpoint_1_10.pt"))
    monkeypatch.setenv(reliability.DISK_LIMIT_ENV, "100")
    monkeypatch.setattr(reliability, "_written", [0])
    with pytest.raises(
        OSError,
        match=r"no space left on the device writing .*checkpoint_last.pt.*keeps its previous content.*"
        r"run the same command again",
    ) as err:
        checkpoint_utils.PathManager.copy(str(tmp_path / "checkpoint_1_10.pt"), str(last), overwrite=True)
    assert err.value.errno == errno.ENOSPC
    assert torch.load(last)["step"] == 5 and not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_truncated_checkpoint_last_resumes_from_the_newest_intact_checkpoint(lm_data, tmp_path):
    save = tmp_path / "ckpt"
    train(lm_data, save, "--max-update", "3", "--save-interval-updates", "1", "--keep-interval-updates", "2")
    last = save / "checkpoint_last.pt"
    assert reliability.checkpoint_is_intact(last) and updates_in(last) == 3
    # what a kill in the middle of fairseq's in-place copy to checkpoint_last.pt left behind
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    assert not reliability.checkpoint_is_intact(last)
    _, log = train(lm_data, save, "--max-update", "5", "--save-interval-updates", "1", "--keep-interval-updates", "2")
    assert re.search(
        r"checkpoint_last\.pt is unreadable .*resuming from the newest intact checkpoint \S*checkpoint_1_3\.pt", log
    ), log[-3000:]
    assert re.search(r"Loaded checkpoint \S*checkpoint_1_3\.pt \(epoch 1 @ 3 updates\)", log), log[-3000:]
    assert "done training" in log and updates_in(last) == 5


def test_unreadable_checkpoint_last_without_any_other_checkpoint_is_a_clear_error(lm_data, tmp_path):
    (tmp_path / "checkpoint_last.pt").write_bytes(b"")
    proc, log = train(lm_data, tmp_path, "--max-update", "1", check=False)
    assert proc.returncode != 0
    assert re.search(
        r"checkpoint_last\.pt is unreadable \(truncated or corrupt\) and --save-dir \S+ holds no other intact "
        r"checkpoint",
        log,
    )


# ---- 3. a finished run says so and does nothing -----------------------------------------------------
def test_rerunning_a_finished_command_does_not_train_past_max_update(lm_data, tmp_path):
    train(lm_data, tmp_path, "--max-update", "3")
    last = tmp_path / "checkpoint_last.pt"
    before = last.read_bytes(), last.stat().st_mtime_ns
    proc, log = train(lm_data, tmp_path, "--max-update", "3")
    assert proc.returncode == 0
    assert re.search(
        r"training already finished: \S+checkpoint_last\.pt it is at 3 updates and --max-update is 3", log
    ), log[-3000:]
    assert "train_inner" not in log and "Saved checkpoint" not in log
    assert (last.read_bytes(), last.stat().st_mtime_ns) == before and updates_in(last) == 3


@pytest.mark.slow
def test_rerunning_a_finished_command_does_not_train_past_max_epoch(lm_data, tmp_path):
    train(lm_data, tmp_path, "--max-epoch", "1")
    last = tmp_path / "checkpoint_last.pt"
    before = last.read_bytes(), updates_in(last)
    _, log = train(lm_data, tmp_path, "--max-epoch", "1")
    assert re.search(r"training already finished: \S+ it completed epoch 1 and --max-epoch is 1", log), log[-3000:]
    assert "train_inner" not in log and "Saved checkpoint" not in log and last.read_bytes() == before[0]


# ---- 8. no code runs from a CIFAR-10 batch ----------------------------------------------------------
class _WritesMarker:
    """Unpickling this calls os.system: what a hostile "data_batch_1" can do with plain pickle.load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar_batches_are_unpickled_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": _WritesMarker(marker), b"labels": [0]}))
    with pytest.raises(
        pickle.UnpicklingError, match=r"data_batch_1: refusing to unpickle posix\.system.*could run code"
    ):
        prepare_lra.load_cifar_batch(evil)
    assert not marker.exists()
    # the same through the command line
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        (raw / name).write_bytes(evil.read_bytes())
    proc = subprocess.run(
        [sys.executable, REPO / "scripts/prepare_lra.py", "cifar10", raw, tmp_path / "out"],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "refusing to unpickle" in proc.stderr and not marker.exists()
    # builtins.eval / exec are refused just the same
    (raw / "data_batch_1").write_bytes(
        b"cbuiltins\neval\n(V__import__('os').system('touch " + str(marker).encode() + b"')\ntR."
    )
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle builtins.eval"):
        prepare_lra.load_cifar_batch(raw / "data_batch_1")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_cifar_batches_still_load(tmp_path, protocol):
    """The real batches (Python 2 pickles of dicts of bytes, lists and a uint8 array) and re-pickled copies."""
    rng = np.random.RandomState(0)
    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [3, 1, 4],
        b"data": rng.randint(0, 256, (3, 3072)).astype(np.uint8),
        b"filenames": [b"a.png", b"b.png", b"c.png"],
        b"mean": np.float32(0.5),
    }
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    loaded = prepare_lra.load_cifar_batch(path)
    assert (
        loaded[b"labels"] == [3, 1, 4]
        and np.array_equal(loaded[b"data"], batch[b"data"])
        and loaded[b"filenames"][2] == b"c.png"
    )
    path.write_bytes(pickle.dumps(batch, protocol=protocol)[:-20])
    with pytest.raises(pickle.UnpicklingError, match="data_batch_1: not a CIFAR-10 python batch"):
        prepare_lra.load_cifar_batch(path)


# ---- 10. parallel files of different lengths --------------------------------------------------------
def _parallel(text_dir, n_en, n_de, splits=("train", "valid")):
    text_dir.mkdir(parents=True, exist_ok=True)
    for split in splits:
        (text_dir / f"{split}.en").write_text("".join(f"hello world {i}\n" for i in range(n_en)))
        (text_dir / f"{split}.de").write_text("".join(f"hallo welt {i}\n" for i in range(n_de)))


def test_spm_prepare_refuses_parallel_files_of_different_lengths(tmp_path):
    _parallel(tmp_path / "text", 30, 29)
    proc = subprocess.run(
        [
            sys.executable,
            REPO / "scripts/spm_prepare.py",
            tmp_path / "text",
            tmp_path / "spm",
            "--langs",
            "en",
            "de",
            "--splits",
            "train",
            "valid",
            "--vocab-size",
            "30",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert re.search(
        r"the train files of --langs en de differ in length: \S+train\.en has 30 lines, \S+train\.de has 29 lines",
        proc.stderr,
    )
    assert not (tmp_path / "spm" / "spm.model").exists()


def test_prepare_wmt16_names_both_files_and_their_line_counts(tmp_path):
    raw = tmp_path / "raw"
    _parallel(raw, 5, 5, splits=("train", "newstest2013"))
    _parallel(raw, 4, 3, splits=("newstest2014",))
    proc = subprocess.run(
        ["bash", REPO / "scripts/prepare_wmt16_en_de.sh", raw, tmp_path / "out"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert re.search(r"newstest2014\.en has 4 lines but \S+newstest2014\.de has 3", proc.stderr), proc.stderr


def test_fairseq_preprocess_with_the_plugin_refuses_parallel_files_of_different_lengths(tmp_path):
    _parallel(tmp_path / "text", 10, 10, splits=("train",))
    _parallel(tmp_path / "text", 6, 7, splits=("valid",))
    text = tmp_path / "text"
    proc = fairseq_cli(
        "fairseq-preprocess",
        "-s",
        "en",
        "-t",
        "de",
        "--trainpref",
        text / "train",
        "--validpref",
        text / "valid",
        "--destdir",
        tmp_path / "bin",
        "--user-dir",
        REPO / "user_dir",
        check=False,
    )
    assert proc.returncode != 0
    assert re.search(r"\S+valid\.en has 6 lines but \S+valid\.de has 7", proc.stderr), proc.stderr[-2000:]
    assert not (tmp_path / "bin" / "train.en-de.en.bin").exists()  # stopped before binarizing anything


def test_check_parallel_files_counts_a_last_line_without_newline(tmp_path):
    (tmp_path / "a").write_text("x\ny")
    (tmp_path / "b").write_text("x\ny\n")
    reliability.check_parallel_files([(tmp_path / "a", tmp_path / "b")])
    (tmp_path / "b").write_text("x\ny\nz")
    with pytest.raises(ValueError, match=r"\S+/a has 2 lines but \S+/b has 3"):
        reliability.check_parallel_files([(tmp_path / "a", tmp_path / "b")])


# ---- fault injection (Build item 3) -----------------------------------------------------------------
@pytest.mark.slow
def test_fault_injection_loses_no_run(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            REPO / "scripts/fault_injection.py",
            "--runs",
            "5",
            "--export-runs",
            "4",
            "--work-dir",
            tmp_path,
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = re.search(r"killed (\d+) / resumed (\d+) / lost (\d+)", proc.stdout)
    assert summary and int(summary[3]) == 0 and int(summary[1]) >= 1, proc.stdout[-3000:]
    assert "full disk: clear error, last good checkpoint intact" in proc.stdout, proc.stdout[-3000:]
    exports = re.search(r"exports: killed (\d+) / torn (\d+)", proc.stdout)
    assert exports and int(exports[2]) == 0, proc.stdout[-3000:]


# ---- 4. a dictionary fingerprint in every checkpoint -------------------------------------------------
def _load(checkpoint, data):
    from fairseq import checkpoint_utils

    import mega_fairseq.plugin  # noqa: F401  (the reliability patches and the models)

    return checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], arg_overrides={"data": str(data)})


def _with_swapped_lines(data, out, first=5, second=6):
    """A copy of the data-bin directory `data` whose dict.txt has two lines swapped (same size, other ids)."""
    out.mkdir()
    for path in data.iterdir():
        (out / path.name).symlink_to(path)
    (out / "dict.txt").unlink()
    lines = (data / "dict.txt").read_text().splitlines(keepends=True)
    lines[first], lines[second] = lines[second], lines[first]
    (out / "dict.txt").write_text("".join(lines))
    return out


def test_two_swapped_dictionary_lines_are_refused_naming_the_checkpoint_and_the_dictionary(trained_lm, tmp_path):
    from mega_fairseq.models.dictionary_fingerprint import FINGERPRINT_KEY, DictionaryMismatchError

    data, checkpoint, _ = trained_lm
    swapped = _with_swapped_lines(data, tmp_path / "swapped")
    assert FINGERPRINT_KEY in torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    # fairseq-generate / -eval-lm / -validate and hub from_pretrained load through load_model_ensemble_and_task
    with pytest.raises(DictionaryMismatchError) as err:
        _load(checkpoint, swapped)
    assert re.search(
        rf"^{re.escape(str(checkpoint))}: the task's dictionary \({re.escape(str(swapped))}/dict\.txt\) is not the "
        r"one the checkpoint was trained with .*pass the data directory it was trained on.*--srcdict",
        str(err.value),
    ), str(err.value)
    models, _, _ = _load(checkpoint, data)  # its own dictionary: fine
    # a checkpoint written before fingerprints existed still loads (unchecked)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    del state["model"][FINGERPRINT_KEY]
    torch.save(state, tmp_path / "old.pt")
    old, _, _ = _load(tmp_path / "old.pt", swapped)
    assert int(old[0].dictionary_digest[0]) != int(models[0].dictionary_digest[0])
    # fairseq-train --restore-file: the refusal, not fairseq's "please ensure that the architectures match"
    proc, log = train(swapped, tmp_path / "resume", "--restore-file", checkpoint, "--max-update", "40", check=False)
    assert proc.returncode != 0 and "architectures match" not in log.splitlines()[-1]
    assert re.search(rf"DictionaryMismatchError: {re.escape(str(checkpoint))}: the task's dictionary", log), log[-2000:]


@pytest.mark.parametrize(
    "arch, task, layout",
    [
        ("mega_tiny", "masked_lm", {"dict.txt": 20}),
        ("mega_lra_listop", "lra-text", {"src-bin/dict.txt": 20, "label-bin/dict.txt": 2}),
        ("mega_translation_tiny", "translation", {"dict.en.txt": 20, "dict.de.txt": 20}),
    ],
)
def test_encoder_lra_and_translation_checkpoints_carry_the_fingerprint(tmp_path, arch, task, layout):
    from fairseq.data import Dictionary

    from mega_fairseq.convert.hf_import import fairseq_setup
    from mega_fairseq.models.dictionary_fingerprint import DictionaryMismatchError

    def data_dir(name, swap):
        for file, size in layout.items():
            symbols = [f"w{i}" for i in range(size)]
            if swap and size > 2:
                symbols[3], symbols[4] = symbols[4], symbols[3]
            dictionary = Dictionary()
            for symbol in symbols:
                dictionary.add_symbol(symbol)
            (tmp_path / name / file).parent.mkdir(parents=True, exist_ok=True)
            dictionary.save(str(tmp_path / name / file))
        return str(tmp_path / name)

    small = {"max_source_positions": 64, "max_target_positions": 64} if task == "translation" else {}
    lang = {"source_lang": "en", "target_lang": "de"} if task == "translation" else {}
    _, _, model = fairseq_setup(arch, small, task, data_dir("a", False), lang)
    _, _, same = fairseq_setup(arch, small, task, data_dir("b", False), lang)
    _, _, other = fairseq_setup(arch, small, task, data_dir("c", True), lang)
    state = model.state_dict()
    assert state["dictionary_digest"].numel() == (2 if task == "translation" else 1)
    same.load_state_dict(state)
    with pytest.raises(DictionaryMismatchError, match=r"dictionary has the checkpoint's size but other symbols|is not"):
        other.load_state_dict(state)


# ---- 5, 6, 7, 9. conversions: no silent replacing, no NaN weights, ordinary file modes ---------------
HF_READY_SIZES = {
    "decoder_layers": 1,
    "decoder_embed_dim": 16,
    "decoder_hidden_dim": 32,
    "decoder_ffn_embed_dim": 32,
    "decoder_z_dim": 8,
    "decoder_n_dim": 2,
}


@pytest.fixture(scope="module")
def hf_ready(tmp_path_factory):
    """(checkpoint, data-bin, verified export dir) of an untrained exportable mega_lm_hf, built in-process."""
    from fairseq import checkpoint_utils
    from fairseq.data import Dictionary

    from mega_fairseq.convert import hf_export
    from mega_fairseq.convert.hf_import import checkpoint_dict, fairseq_setup

    root = tmp_path_factory.mktemp("hf_ready")
    dictionary = Dictionary()
    for i in range(20):
        dictionary.add_symbol(f"w{i}")
    (root / "bin").mkdir()
    dictionary.save(str(root / "bin" / "dict.txt"))
    cfg, _, model = fairseq_setup("mega_lm_hf", HF_READY_SIZES, "language_modeling", str(root / "bin"))
    checkpoint_utils.torch_persistent_save(checkpoint_dict(cfg, model.state_dict()), str(root / "model.pt"))
    old_mask = os.umask(0o022)
    try:
        assert hf_export.main([str(root / "model.pt"), str(root / "hf"), "--data", str(root / "bin")]) == 0
    finally:
        os.umask(old_mask)
    return root / "model.pt", root / "bin", root / "hf"


def test_export_writes_every_file_0644_and_refuses_a_non_empty_directory_unless_overwrite(hf_ready, tmp_path, capsys):
    from mega_fairseq.convert import hf_export

    checkpoint, data, exported = hf_ready
    modes = {p.name: p.stat().st_mode & 0o777 for p in exported.iterdir()}
    assert {"README.md", "config.json", "dict.txt", "model.safetensors"} <= set(modes), modes  # + the model code
    assert set(modes.values()) == {0o644}, modes
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    args = [str(checkpoint), str(out), "--data", str(data), "--no-verify"]
    assert hf_export.main(args) == 2
    err = capsys.readouterr().err
    assert re.search(r"non-empty directory \S+out would replace \S+config\.json, \S+notes\.txt.*--overwrite", err), err
    assert (out / "config.json").read_text() == "{}" and not (out / "model.safetensors").exists()
    assert hf_export.main(args + ["--overwrite"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "notes.txt").read_text() == "mine"
    assert hf_export.main([str(checkpoint), str(out / "notes.txt"), "--data", str(data)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_import_refuses_to_replace_a_data_bin_dictionary_unless_overwrite(hf_ready, tmp_path, capsys):
    from mega_fairseq.convert import hf_import

    _, data, exported = hf_ready
    data_bin = tmp_path / "data-bin"
    data_bin.mkdir()
    (data_bin / "dict.txt").write_text("mine 1\n")
    (data_bin / "train.bin").write_bytes(b"")
    args = [str(exported), str(data_bin / "model.pt"), "--no-verify"]
    assert hf_import.main(args) == 2
    err = capsys.readouterr().err
    assert re.search(r"would replace \S+data-bin/dict\.txt \(dict\.txt beside binarized data .*--overwrite", err), err
    assert (data_bin / "dict.txt").read_text() == "mine 1\n" and not (data_bin / "model.pt").exists()
    assert hf_import.main(args + ["--overwrite"]) == 0
    assert (data_bin / "dict.txt").read_text() == (data / "dict.txt").read_text()
    assert (data_bin / "model.pt").stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_non_finite_weights_are_refused_by_import_and_export_naming_the_tensors(hf_ready, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from mega_fairseq.convert import hf_export, hf_import

    checkpoint, data, exported = hf_ready
    broken = tmp_path / "hf_nan"
    broken.mkdir()
    for path in exported.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    weights = load_file(str(exported / "model.safetensors"))
    weights["lm_head.bias"] = torch.full_like(weights["lm_head.bias"], float("nan"))
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    assert hf_import.main([str(broken), str(tmp_path / "a" / "model.pt"), "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"hf_nan/model\.safetensors: 1 of \d+ tensors are not finite: lm_head\.bias \(NaN/inf\)", err)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    # weights float16 cannot hold: --dtype float16 would write inf
    weights = load_file(str(exported / "model.safetensors"))
    weights["lm_head.bias"] = torch.full_like(weights["lm_head.bias"], 1e6)
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    assert hf_import.main([str(broken), str(tmp_path / "b" / "model.pt"), "--no-verify", "--dtype", "float16"]) == 2
    assert re.search(
        r"1 of \d+ tensors are not finite: \S+output_projection\.bias \(overflows float16\)", capsys.readouterr().err
    )
    # a fairseq checkpoint with NaN weights does not export
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    key = next(k for k, v in state["model"].items() if "layers.0." in k and v.is_floating_point())
    state["model"][key] = torch.full_like(state["model"][key], float("inf"))
    torch.save(state, tmp_path / "nan.pt")
    assert hf_export.main([str(tmp_path / "nan.pt"), str(tmp_path / "out"), "--data", str(data), "--no-verify"]) == 2
    assert re.search(
        rf"nan\.pt: 1 of \d+ tensors are not finite: {re.escape(key)} \(NaN/inf\)", capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---- bad inputs a user can give: each named in their terms (Build item 2) ---------------------------
RAW_ERRORS = (KeyError, IndexError, ZeroDivisionError, UnicodeDecodeError, AttributeError, TypeError, EOFError)


@pytest.fixture(scope="module")
def bad(hf_ready, lm_data, tmp_path_factory):
    """Bad files of every kind, next to the good ones they imitate."""
    import json

    from fairseq import checkpoint_utils
    from safetensors.torch import save_file

    from mega_fairseq.convert.hf_import import checkpoint_dict, fairseq_setup

    checkpoint, _, exported = hf_ready
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.RandomState(0)
    files = {
        "empty.pt": b"",
        "truncated.pt": checkpoint.read_bytes()[:5000],
        "text.pt": b"hello world\n",
        "random.pt": rng.bytes(4096),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    save_file({"x": torch.randn(3)}, str(root / "weights.safetensors"))
    torch.save({"a": 1}, root / "dict.pt")
    torch.save([1, 2], root / "list.pt")
    for name, text in {
        "no_count": b"w1 5\nbroken\n",
        "latin1": b"w1 5\n\xe9t\xe9 3\n",
        "duplicate": b"w1 5\nw2 4\nw1 3\n",
        "count_text": b"w1 5\nw2 many\n",
    }.items():
        (root / name).mkdir()
        (root / name / "dict.txt").write_bytes(text)
    for name in ("truncated_bin", "random_idx", "empty_idx", "other_dict"):
        (root / name).mkdir()
        for path in lm_data.iterdir():
            (root / name / path.name).write_bytes(path.read_bytes())
    (root / "truncated_bin" / "train.bin").write_bytes((lm_data / "train.bin").read_bytes()[:100])
    (root / "random_idx" / "train.idx").write_bytes(rng.bytes(2000))
    (root / "empty_idx" / "train.idx").write_bytes(b"")
    lines = (lm_data / "dict.txt").read_text().splitlines(keepends=True)
    (root / "other_dict" / "dict.txt").write_text("".join(lines[:5]))
    # transformers directories with one broken file each
    config = json.loads((exported / "config.json").read_text())
    variants = {
        "cfg_empty": ("config.json", b""),
        "cfg_list": ("config.json", b"[1, 2]"),
        "cfg_binary": ("config.json", rng.bytes(100)),
        "cfg_hidden_text": ("config.json", json.dumps({**config, "hidden_size": "abc"}).encode()),
        "cfg_chunk_zero": ("config.json", json.dumps({**config, "use_chunking": True, "chunk_size": 0}).encode()),
        "w_random": ("model.safetensors", rng.bytes(5000)),
        "w_truncated": ("model.safetensors", (exported / "model.safetensors").read_bytes()[:3000]),
        "w_foreign": ("model.safetensors", (root / "weights.safetensors").read_bytes()),
        "hf_bad_dict": ("dict.txt", b"w1 5\nbroken\n"),
    }
    for name, (file, data) in variants.items():
        (root / name).mkdir()
        for path in exported.iterdir():
            (root / name / path.name).write_bytes(path.read_bytes())
        (root / name / file).write_bytes(data)
    # a fairseq checkpoint of another model (transformer_lm)
    options = {"decoder_layers": 1, "decoder_embed_dim": 16, "decoder_ffn_embed_dim": 16, "decoder_attention_heads": 2}
    cfg, _, model = fairseq_setup("transformer_lm", options, "language_modeling", str(lm_data))
    checkpoint_utils.torch_persistent_save(checkpoint_dict(cfg, model.state_dict()), str(root / "transformer_lm.pt"))
    # prepare-script inputs
    (root / "latin1.conll").write_bytes(b"caf\xe9 O\n")
    (root / "list.json").write_text("[1, 2]")
    (root / "no_context.json").write_text('{"data": [{"paragraphs": [{"qas": [{"id": "1", "question": "q"}]}]}]}')
    (root / "listops").mkdir()
    for split in ("basic_train", "basic_val", "basic_test"):
        (root / "listops" / f"{split}.tsv").write_bytes(b"Source\tTarget\n( [MAX 2 \xff ] )\t2\n")
    (root / "cifar").mkdir()
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        (root / "cifar" / name).write_bytes(rng.bytes(1000))
    (root / "out").mkdir()
    (root / "good").symlink_to(lm_data)
    return root


def _train_options(data, *extra):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    import mega_fairseq.plugin  # noqa: F401

    argv = [str(data), *map(str, LM_TRAIN_ARGS), *map(str, extra)]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    return cfg, task


def _build(data, *extra):
    cfg, task = _train_options(data, *extra)
    return task.build_model(cfg.model)


def _load_split(data, *extra):
    _, task = _train_options(data, *extra)
    task.load_dataset("train")


def _main(module, *argv):
    from mega_fairseq.convert import hf_export, hf_import, original

    return {"export": hf_export, "import": hf_import, "original": original}[module].main(list(map(str, argv)))


def _script(name, *argv):
    module = {"tc": "prepare_token_classification", "qa": "prepare_extractive_qa", "lra": "prepare_lra"}[name]
    return __import__(module).main(list(map(str, argv)))


def _qa_predictor(checkpoint):
    from mega_fairseq.qa_inference import QAPredictor

    return QAPredictor.from_checkpoint(str(checkpoint))


H = "hf_ready"  # stands for the good checkpoint / data / export of the hf_ready fixture
BAD_INPUTS = {
    # a file that is not a checkpoint, wherever one is read (generate/eval-lm/validate/hub, --restore-file, export)
    "ckpt empty": (lambda b, h: _load(b / "empty.pt", h[1]), r"empty\.pt is not a readable fairseq checkpoint"),
    "ckpt truncated": (lambda b, h: _load(b / "truncated.pt", h[1]), r"truncated\.pt is not a readable fairseq"),
    "ckpt text": (lambda b, h: _load(b / "text.pt", h[1]), r"text\.pt is not a readable fairseq checkpoint"),
    "ckpt random": (lambda b, h: _load(b / "random.pt", h[1]), r"random\.pt is not a checkpoint torch can load safe"),
    "ckpt safetensors": (lambda b, h: _load(b / "weights.safetensors", h[1]), r"is a safetensors file.*mega-import-hf"),
    "ckpt dict": (lambda b, h: _load(b / "dict.pt", h[1]), r"dict\.pt is not a readable fairseq checkpoint"),
    "ckpt list": (lambda b, h: _load(b / "list.pt", h[1]), r"list\.pt is not a readable fairseq checkpoint"),
    "qa_inference LM ckpt": (lambda b, h: _qa_predictor(h[0]), r"is a LanguageModelingTask checkpoint, not an extra"),
    # dictionaries
    "dict no count": (lambda b, h: _build(b / "no_count"), r"no_count/dict\.txt, line 2: expected '<symbol> <count>'"),
    "dict latin-1": (lambda b, h: _build(b / "latin1"), r"latin1/dict\.txt, line 2: not UTF-8 text"),
    "dict duplicate": (lambda b, h: _build(b / "duplicate"), r"duplicate/dict\.txt, line 3: duplicate symbol 'w1'"),
    "dict count text": (lambda b, h: _build(b / "count_text"), r"count_text/dict\.txt, line 2: expected"),
    # binarized splits
    "split truncated .bin": (lambda b, h: _load_split(b / "truncated_bin"), r"train\.bin is truncated: .*fairseq-prep"),
    "split random .idx": (lambda b, h: _load_split(b / "random_idx"), r"not a readable fairseq binarized split"),
    "split empty .idx": (lambda b, h: _load_split(b / "empty_idx"), r"not a readable fairseq binarized split"),
    "split of another dict": (
        lambda b, h: _load_split(b / "other_dict"),
        r"train\.bin holds token id \d+ but \S+other_dict/dict\.txt has only 9 symbols: .*--srcdict",
    ),
    # option values (fairseq-train's parsing, then the model)
    "--decoder-chunk-size 0": (lambda b, h: _build(h[1], "--decoder-chunk-size", 0), r"--decoder-chunk-size must be"),
    "--decoder-chunk-size abc": (lambda b, h: _build(h[1], "--decoder-chunk-size", "abc"), r"argument --decoder-chunk"),
    "--decoder-embed-dim -8": (lambda b, h: _build(h[1], "--decoder-embed-dim", -8), r"--decoder-embed-dim must be"),
    "--decoder-layers 0": (lambda b, h: _build(h[1], "--decoder-layers", 0), r"--decoder-layers must be at least 1"),
    "--dropout 1.5": (lambda b, h: _build(h[1], "--dropout", 1.5), r"--dropout must be in \[0, 1\), got 1\.5"),
    "--truncation-length 0": (lambda b, h: _build(h[1], "--truncation-length", 0), r"--truncation-length must be"),
    "--decoder-z-dim 0": (lambda b, h: _build(h[1], "--decoder-z-dim", 0), r"--decoder-z-dim must be a positive"),
    "--activation-fn bogus": (lambda b, h: _build(h[1], "--activation-fn", "bogus"), r"argument --activation-fn: inv"),
    "--max-target-positions -3": (lambda b, h: _build(h[1], "--max-target-positions", -3), r"--max-target-positions"),
    "--tokens-per-sample 0": (
        lambda b, h: _load_split(b / "good", "--tokens-per-sample", 0),
        r"--tokens-per-sample must be a positive number of tokens",
    ),
    # mega-import-hf
    "hf config.json empty": (lambda b, h: _main("import", b / "cfg_empty", b / "out/1.pt"), r"is not a JSON file"),
    "hf config.json list": (lambda b, h: _main("import", b / "cfg_list", b / "out/2.pt"), r"holds a JSON list"),
    "hf config.json binary": (lambda b, h: _main("import", b / "cfg_binary", b / "out/3.pt"), r"is not a JSON file"),
    "hf hidden_size text": (
        lambda b, h: _main("import", b / "cfg_hidden_text", b / "out/4.pt", "--no-verify"),
        r"cfg_hidden_text/config\.json: hidden_size is .abc. but must be a number",
    ),
    "hf chunk_size 0": (
        lambda b, h: _main("import", b / "cfg_chunk_zero", b / "out/5.pt", "--no-verify"),
        r"config\.json describes a model fairseq cannot build: --decoder-chunk-size must be a positive",
    ),
    "hf weights random": (lambda b, h: _main("import", b / "w_random", b / "out/6.pt"), r"not a readable safetensors"),
    "hf weights truncated": (
        lambda b, h: _main("import", b / "w_truncated", b / "out/7.pt"),
        r"not a readable safetensors",
    ),
    "hf weights foreign": (
        lambda b, h: _main("import", b / "w_foreign", b / "out/8.pt", "--no-verify"),
        r"its weights lack '\S+', which the model its config\.json describes needs",
    ),
    "hf dict.txt bad line": (
        lambda b, h: _main("import", b / "hf_bad_dict", b / "out/9.pt", "--no-verify"),
        r"hf_bad_dict/dict\.txt, line 2: expected '<symbol> <count>'",
    ),
    "hf OUT is a directory": (lambda b, h: _main("import", h[2], b / "out"), r"is a directory: pass a file name"),
    # mega-export-hf
    "export random ckpt": (lambda b, h: _main("export", b / "random.pt", b / "out/e1"), r"random\.pt is not a check"),
    "export transformer_lm": (
        lambda b, h: _main("export", b / "transformer_lm.pt", b / "out/e2", "--data", b / "good", "--no-verify"),
        r"no HuggingFace export for TransformerLanguageModel",
    ),
    "export --data without dict": (
        lambda b, h: _main("export", h[0], b / "out/e3", "--data", b / "cifar"),
        r"No such file.*dict\.txt.*pass --data DIR",
    ),
    # mega-import-original
    "original empty": (lambda b, h: _main("original", b / "empty.pt", b / "out/o1.pt"), r"could not be loaded safe"),
    "original random": (lambda b, h: _main("original", b / "random.pt", b / "out/o2.pt"), r"could not be loaded safe"),
    "original ours": (lambda b, h: _main("original", h[0], b / "out/o3.pt"), r"has no argparse args"),
    # data-preparation scripts
    "conll latin-1": (
        lambda b, h: _script("tc", "--train", b / "latin1.conll", "--destdir", b / "out/t"),
        r":1: not U",
    ),
    "squad list": (lambda b, h: _script("qa", "--train", b / "list.json", "--destdir", b / "out/q"), r"not SQuAD"),
    "squad no context": (
        lambda b, h: _script("qa", "--train", b / "no_context.json", "--destdir", b / "out/q2"),
        r"missing field 'context'",
    ),
    "--spm random": (
        lambda b, h: _script("tc", "--train", b / "latin1.conll", "--destdir", b / "out/t2", "--spm", b / "random.pt"),
        r"--spm \S+random\.pt is not a sentencepiece model",
    ),
    "listops not UTF-8": (lambda b, h: _script("lra", "listops", b / "listops", b / "out/l"), r"tsv:2: not UTF-8 text"),
    "cifar random batch": (lambda b, h: _script("lra", "cifar10", b / "cifar", b / "out/c"), r"not a CIFAR-10 python"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_named_in_the_users_terms(case, bad, hf_ready, capsys):
    run, expected = BAD_INPUTS[case]
    try:
        code = run(bad, hf_ready)
        message = f"exit {code}: " + capsys.readouterr().err
        assert code not in (0, None), f"{case}: accepted ({message})"
    except SystemExit as exit_:
        message = f"{exit_.code} " + capsys.readouterr().err
    except Exception as err:
        assert not isinstance(err, RAW_ERRORS), f"{case}: raw {type(err).__name__}: {err}"
        message = f"{type(err).__name__}: {err}"
    assert re.search(expected, message, re.S), f"{case}: {message[-2000:]}"


def test_spm_prepare_names_bad_options_and_bad_text(tmp_path):
    text = tmp_path / "text"
    text.mkdir()
    (text / "train.en").write_bytes(b"a b\n" * 10)
    (text / "train.de").write_bytes(b"c \xff d\n" * 10)

    def spm_prepare(*extra):
        argv = [text, tmp_path / "spm", "--langs", "en", "de", "--splits", "train", *extra]
        return subprocess.run(
            [sys.executable, REPO / "scripts/spm_prepare.py", *map(str, argv)],
            capture_output=True,
            text=True,
            check=False,
        )

    assert re.search(r"train\.de:1: not UTF-8 text", spm_prepare("--vocab-size", "10").stderr)
    (text / "train.de").write_bytes(b"c d\n" * 10)
    assert "--vocab-size must be a positive number" in spm_prepare("--vocab-size", "0").stderr
    proc = spm_prepare("--vocab-size", "100000")
    assert re.search(r"sentencepiece could not train on .*Vocabulary size too high.*--vocab-size", proc.stderr)
    assert "Traceback" not in proc.stderr
