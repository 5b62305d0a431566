"""mega-export-hf --verify-with PYTHON: the staged export is also verified in other interpreters (e.g. the transformers
5 env, $MEGA_HF5_PYTHON) through its model code, in float64, on the in-process check's probes; any failure refuses
the export (nothing written) naming the flag and the transformers version; the model card lists each version."""

import ast
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from test_hf_heads import checkpoint_with_heads  # noqa: F401  (fixture)
from test_hf_remote_code import HF5_PYTHON, train

needs_hf5 = pytest.mark.skipif(
    not Path(HF5_PYTHON).exists(), reason="no transformers 5 env (set MEGA_HF5_PYTHON; scripts/test.sh builds one)"
)


@pytest.fixture(scope="module")
def lm_checkpoint(lm_data, tmp_path_factory):
    """A fairseq-trained mega_lm_hf (chunk 8: probes of 16, 4 and 12 tokens)."""
    return train(lm_data, tmp_path_factory.mktemp("verify_with") / "ckpt"), lm_data


def assert_nothing_written(tmp_path: Path, out: Path):
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}")] == []  # no staging left


def card_lines(out: Path):
    return [line for line in (out / "README.md").read_text().splitlines() if line.startswith("- ")]


@needs_hf5
def test_cli_verifies_with_transformers_5_and_the_card_names_it(lm_checkpoint, tmp_path, capsys):
    from huggingface_hub import ModelCard

    from mega_fairseq.convert import hf_export

    checkpoint, data = lm_checkpoint
    out = tmp_path / "hf"
    assert hf_export.main([str(checkpoint), str(out), "--data", str(data), "--verify-with", HF5_PYTHON]) == 0
    assert "verified: max |output diff|" in capsys.readouterr().out
    card = ModelCard.load(out / "README.md")
    lines = [line for line in card.text.splitlines() if line.startswith("- ") and "max |diff|" in line]
    found = {re.sub(r": max \|diff\| .*", "", line[2:]): float(line.rsplit(" ", 1)[1]) for line in lines}
    versions = [how for how in found if how.startswith("model code (trust_remote_code=True) on transformers 5.")]
    assert len(versions) == 1 and re.fullmatch(r".* on transformers 5\.\d+\.\d+", versions[0]), found
    assert any(how.startswith("model code (trust_remote_code=True) on transformers 4.") for how in found), found
    assert "transformers' own Mega on transformers 4.57.6" in found, found
    assert all(diff <= 1e-6 for diff in found.values()), found  # float64 on both sides


def test_missing_interpreter_is_refused_by_the_cli_naming_the_flag(lm_checkpoint, tmp_path, capsys):
    from mega_fairseq.convert import hf_export

    checkpoint, data = lm_checkpoint
    missing = tmp_path / "no-such-python"
    out = tmp_path / "hf"
    assert hf_export.main([str(checkpoint), str(out), "--data", str(data), "--verify-with", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"--verify-with {missing}" in err and "not an executable Python interpreter" in err, err
    assert "nothing written" in err and "--no-verify" in err, err
    assert_nothing_written(tmp_path, out)


def test_interpreters_default_to_the_environment_variable_and_no_verify_skips_them(
    lm_checkpoint, tmp_path, monkeypatch
):
    from mega_fairseq.convert import hf_export

    checkpoint, data = lm_checkpoint
    monkeypatch.setenv("MEGA_VERIFY_PYTHONS", os.pathsep.join(["", sys.executable, "python3"]))
    found = hf_export.verify_pythons()  # empty entries skipped, a bare name looked up on PATH
    assert [label for _, label in found] == [
        f"--verify-with {p} (from $MEGA_VERIFY_PYTHONS)" for p in (sys.executable, "python3")
    ]
    missing = str(tmp_path / "gone" / "python")
    monkeypatch.setenv("MEGA_VERIFY_PYTHONS", os.pathsep.join([sys.executable, missing]))
    with pytest.raises(hf_export.ConversionError, match=r"--verify-with .*gone/python \(from \$MEGA_VERIFY_PYTHONS\)"):
        hf_export.export(str(checkpoint), str(tmp_path / "hf"), data=str(data))
    assert_nothing_written(tmp_path, tmp_path / "hf")
    assert hf_export.verify_pythons([]) == []  # an explicit empty list: none, whatever the environment says
    hf_export.export(str(checkpoint), str(tmp_path / "hf"), data=str(data), verify=False)
    assert "Not verified (`--no-verify`)" in (tmp_path / "hf" / "README.md").read_text()


def test_a_mismatch_in_the_other_interpreter_refuses_the_export(lm_checkpoint, tmp_path, monkeypatch):
    """The check is not vacuous: fairseq's expected outputs for the probe shorter than the chunk (4 tokens), as the
    probe file carries them, moved by 1e-3 -> refused, naming the flag and the interpreter's transformers."""
    from mega_fairseq.convert import hf_export

    checkpoint, data = lm_checkpoint
    python = HF5_PYTHON if Path(HF5_PYTHON).exists() else sys.executable
    original = hf_export.probe_tensors

    def tampered(*args):
        tensors = original(*args)
        short = next(i for i in range(9) if tensors[f"probe{i}.input_ids"].size(1) == 4)
        tensors[f"probe{short}.expected"] += 1e-3
        return tensors

    monkeypatch.setattr(hf_export, "probe_tensors", tampered)
    with pytest.raises(hf_export.ConversionError) as err:
        hf_export.export(str(checkpoint), str(tmp_path / "hf"), data=str(data), verify_with=[python])
    message = str(err.value)
    assert f"--verify-with {python}" in message and "nothing written" in message, message
    assert re.search(r"model code \(trust_remote_code=True\) on transformers \d+\.\d+\.\d+ outputs differ", message)
    assert "differ by 0.001" in message and "probe of length 4" in message, message
    assert_nothing_written(tmp_path, tmp_path / "hf")


def test_an_interpreter_that_errors_or_hangs_is_a_clear_error(tmp_path, monkeypatch):
    from mega_fairseq.convert import hf_export

    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(hf_export.ConversionError) as err:
        hf_export.run_remote_verify(str(broken), f"--verify-with {broken}", tmp_path, tmp_path / "probes.safetensors")
    message = str(err.value)
    assert f"--verify-with {broken} failed" in message and "exit code 3" in message, message
    assert "No module named torch" in message and "nothing written" in message, message
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(hf_export, "VERIFY_TIMEOUT_S", 1)
    with pytest.raises(hf_export.ConversionError, match=r"--verify-with .*slow-python did not finish within 1 s"):
        hf_export.run_remote_verify(str(slow), f"--verify-with {slow}", tmp_path, tmp_path / "probes.safetensors")


def test_the_check_reports_the_transformers_version_and_errors_as_json(tmp_path):
    """Run as the exporter runs it (by path): an export directory that does not load -> one JSON line with the
    version and the error, exit code 1."""
    import subprocess

    from safetensors.torch import save_file

    from mega_fairseq.convert import hf_export

    probes = tmp_path / "probes.safetensors"
    save_file(
        {"probe0.input_ids": torch.zeros(1, 4, dtype=torch.long), "probe0.expected": torch.zeros(1, 4, 7)},
        str(probes),
        metadata={"hf_class": "MegaForCausalLM", "auto_class": "AutoModelForCausalLM", "probes": "1"},
    )
    proc = subprocess.run(
        [sys.executable, str(hf_export.REMOTE_VERIFY_SCRIPT), str(tmp_path / "no_export"), str(probes)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 1 and result["transformers"].startswith("4.") and "no_export" in result["error"], result


def test_the_check_imports_only_torch_transformers_safetensors_and_the_stdlib_and_knows_every_class():
    from mega_fairseq.convert import remote_verify
    from mega_fairseq.convert.remote_code import AUTO_CLASS_OF

    tree = ast.parse(Path(remote_verify.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert all(node.level == 0 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))
    assert imported - set(sys.stdlib_module_names) == {"torch", "transformers", "safetensors"}, imported
    assert set(remote_verify.OUTPUTS) == set(AUTO_CLASS_OF)


@needs_hf5
def test_an_encoder_head_export_verifies_on_transformers_5(checkpoint_with_heads, tmp_path):  # noqa: F811
    """Question answering (start/end logits stacked), with token types, sentence-pair probes of a chunked encoder."""
    from mega_fairseq.convert.hf_export import export

    checkpoint, data = checkpoint_with_heads
    assert export(str(checkpoint), str(tmp_path / "qa"), data=str(data), head="qa", verify_with=[HF5_PYTHON]) <= 1e-6
    lines = card_lines(tmp_path / "qa")
    assert any(re.match(r"- model code \(trust_remote_code=True\) on transformers 5\.\d+\.\d+: max", x) for x in lines)
