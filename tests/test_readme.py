"""The README is tested: every ```bash block runs here, in README order, scaled down.

How: the blocks of each README section (`readme_blocks`) are run with ``bash -eo pipefail`` in one shared
workspace (a temporary directory that links `user_dir/`, `scripts/` and `configs/` of this checkout, with
shims for the package's console scripts first on PATH), after `SUBSTITUTIONS` of that section are applied:
sizes, update counts and paths, each of which must still occur in the README (a recipe that drifts from
the table fails here).  Blocks that need real external data (WMT'16, SQuAD, LRA raw files, a NER corpus)
run against tiny fabricated stand-ins (`fabricate`).  Blocks that cannot run here are in `EXCLUDED` with
the reason.  `test_every_readme_block_is_run_or_excluded` (default run) fails on a block that is neither, so
a new block cannot stay untested.

Default run: the coverage check and the "Using it with fairseq" section (about 25 s).  Everything else is
`slow` (``bash scripts/test.sh -m slow -k readme``, a few minutes).
"""

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent

# (section, first command line of the block) -> why it does not run here
EXCLUDED = {
    ("Quick start", "bash scripts/demo.sh"): "creates and installs into the checkout's .venv (scripts/_env.sh) and "
    "takes minutes; its steps are the commands of 'Using it with fairseq', run below",
    ("Quick start", "bash scripts/test.sh"): "is this test suite",
    ("Installation details", "pip install torch==2.13.0"): "installs packages: the environment running these tests "
    "is that install",
    (
        "HuggingFace transformers: export and import",
        "mega-export-hf CHECKPOINT OUT_DIR [--data DATA_BIN] [--head HEAD]",
    ): (
        "a usage synopsis, not a command; the exports and imports run in tests/test_hf_export.py, test_hf_heads.py, "
        "test_hf_translation.py"
    ),
    ("Multi-GPU, multi-node and mixed precision", "fairseq-train data-bin/my_lm --task language_modeling"): (
        "needs several GPUs (torchrun, SLURM); the CPU torchrun form is run by tests/test_distributed.py"
    ),
}

SMALL_MODEL_LM = "--tokens-per-sample 32 --max-tokens 256"
HYDRA_SMALL_TRANSLATION = (
    " model.encoder_layers=1 model.decoder_layers=1 model.encoder_embed_dim=16 model.decoder_embed_dim=16"
    " model.encoder_hidden_dim=16 model.decoder_hidden_dim=16 model.encoder_ffn_embed_dim=16"
    " model.decoder_ffn_embed_dim=16 model.encoder_z_dim=8 model.decoder_z_dim=8 dataset.max_tokens=512"
    " optimization.max_update=2 common.cpu=true lr_scheduler.warmup_updates=1 lr_scheduler.total_num_update=2"
    " task.max_source_positions=64 task.max_target_positions=64 checkpoint.no_epoch_checkpoints=true"
)
HYDRA_SMALL_LRA = (
    " model.encoder_layers=1 model.encoder_embed_dim=16 model.encoder_hidden_dim=32 model.encoder_ffn_embed_dim=32"
    " model.encoder_z_dim=8 model.classifier_out_dim=16 dataset.batch_size=4 dataset.batch_size_valid=4"
    " optimization.max_update=2 optimization.update_freq=[1] common.cpu=true lr_scheduler.warmup_updates=1"
    " lr_scheduler.total_num_update=2"
)

# section -> [(README text, scaled-down text)], applied in order to the section's blocks; each must match
SUBSTITUTIONS = {
    "Using it with fairseq": [
        ("--workers 2", "--workers 1"),
        ("--tokens-per-sample 128 --max-tokens 2048", SMALL_MODEL_LM),
        ("--warmup-updates 50", "--warmup-updates 2"),
        ("--max-update 300", "--max-update 4"),
        ("--prefix-size 8 --beam 5 --max-len-b 50", "--prefix-size 8 --beam 2 --max-len-b 5"),
        ("--beam 1 --max-len-b 50", "--beam 1 --max-len-b 5"),
    ],
    "Installed tools": [("--tokens-per-sample 128 --max-tokens 2048", SMALL_MODEL_LM)],
    "Language models (`mega_lm`)": [("--tokens-per-sample 2048", "--tokens-per-sample 64")],
    "Masked LM and fine-tuning (encoder)": [
        ("--workers 2", "--workers 1"),
        (
            "--tokens-per-sample 512 --sample-break-mode complete --max-tokens 8192",
            "--tokens-per-sample 64 --sample-break-mode complete --max-tokens 512",
        ),
        ("--warmup-updates 1000", "--warmup-updates 2"),
        ("--max-update 100000", "--max-update 3"),
        ("--batch-size 32 --required-batch-size-multiple 1", "--batch-size 8 --required-batch-size-multiple 1"),
        ("--max-epoch 10", "--max-epoch 1"),
        # data-bin/sts and data-bin/mc: the README does not show their preparation; fabricated stand-ins
        ("# 3a. classification", "python finetune_data.py data-bin/mlm/dict.txt\n# 3a. classification"),
    ],
    "Token classification (`mega_token_classification`)": [
        (
            "--batch-size 32 --optimizer adam --lr 1e-4 --max-epoch 10",
            "--batch-size 8 --optimizer adam --lr 1e-4 --max-epoch 1",
        ),
    ],
    "Extractive QA (`mega_extractive_qa`)": [
        (
            "--batch-size 32 --optimizer adam --lr 1e-4 --max-epoch 3",
            "--batch-size 8 --optimizer adam --lr 1e-4 --max-epoch 1",
        ),
    ],
    "Translation (`mega`)": [
        (
            "bash scripts/prepare_wmt16_en_de.sh RAW_DIR",
            "VOCAB=32 WORKERS=1 bash scripts/prepare_wmt16_en_de.sh RAW_DIR",
        ),
        (
            "checkpoint.save_dir=$PWD/checkpoints/wmt16",
            "checkpoint.save_dir=$PWD/checkpoints/wmt16" + HYDRA_SMALL_TRANSLATION,
        ),
        ("--beam 5 --lenpen 0.5 --post-process", "--beam 2 --lenpen 0.5 --max-len-b 10 --post-process"),
        ("RAW_DIR", "raw_wmt"),
    ],
    "Long Range Arena": [
        (
            "checkpoint.save_dir=$PWD/checkpoints/lra_listops",
            "checkpoint.save_dir=$PWD/checkpoints/lra_listops" + HYDRA_SMALL_LRA,
        ),
    ],
}

# section -> sections whose outputs it reads (run first in the same workspace)
NEEDS = {
    "Installed tools": ["Using it with fairseq"],
    "Language models (`mega_lm`)": ["Using it with fairseq"],
    "Token classification (`mega_token_classification`)": ["Masked LM and fine-tuning (encoder)"],
    "Extractive QA (`mega_extractive_qa`)": ["Masked LM and fine-tuning (encoder)"],
}


def readme_blocks(text=None):
    """[(section heading without #'s, block text)] of every ```bash block of the README, in order."""
    blocks, section, current = [], None, None
    for line in (README.read_text(encoding="utf-8") if text is None else text).splitlines():
        if current is not None:
            if line.startswith("```"):
                blocks.append((section, "\n".join(current)))
                current = None
            else:
                current.append(line)
        elif line.startswith("```bash"):
            current = []
        elif re.match(r"#{1,6} ", line):
            section = line.lstrip("#").strip()
    return blocks


def first_command(block: str) -> str:
    return next(line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#"))


def excluded(section: str, block: str):
    for (sec, start), reason in EXCLUDED.items():
        if sec == section and first_command(block).startswith(start):
            return reason
    return None


def section_blocks(section: str):
    return [block for sec, block in readme_blocks() if sec == section and excluded(sec, block) is None]


def scaled(section: str) -> str:
    """The section's runnable blocks, joined, with its substitutions applied (each must match)."""
    script = "\n".join(section_blocks(section))
    for old, new in SUBSTITUTIONS.get(section, []):
        assert old in script, f"README section {section!r} no longer contains {old!r}: update SUBSTITUTIONS"
        script = script.replace(old, new)
    return script


# ------------------------------------------------------------------------------------------ coverage (default run)
def test_every_readme_block_is_run_or_excluded():
    sections = {section for section, _ in readme_blocks()}
    runnable = {section for section, block in readme_blocks() if excluded(section, block) is None}
    not_run = runnable - set(SECTION_TESTS)
    assert not not_run, (
        f"README sections with bash blocks that no test runs: {sorted(not_run)}; add them to SECTION_TESTS "
        "(scaled down through SUBSTITUTIONS) or their blocks to EXCLUDED with the reason"
    )
    stale = [key for key in EXCLUDED if not any(excluded(s, b) for s, b in readme_blocks() if s == key[0])]
    assert not stale, f"EXCLUDED entries that match no README block: {stale}"
    assert set(SUBSTITUTIONS) <= sections and set(NEEDS) <= set(SECTION_TESTS)
    for section in SUBSTITUTIONS:
        scaled(section)  # every substitution still matches the README


def test_the_block_parser_sees_sections_and_blocks():
    text = "# A\n\n```bash\necho 1\n```\n## B (`b`)\n```python\nx\n```\n```bash\n# c\necho 2\n```\n"
    assert readme_blocks(text) == [("A", "echo 1"), ("B (`b`)", "# c\necho 2")]
    assert first_command("# c\necho 2") == "echo 2"


# ------------------------------------------------------------------------------------------ fabricated data
WORDS = [f"{c}{i}" for c, n in (("w", 30), ("p", 6), ("q", 6), ("l", 6), ("o", 10)) for i in range(n)]


def sentences(n, seed, length=(6, 14)):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(*length))) for _ in range(n)]


def write_lines(path: Path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def fabricate(ws: Path) -> None:
    """Stand-ins for the README's inputs: corpus/ (sentencepiece pieces of spm.model), raw/ (fine-tuning),
    ner/ (CoNLL), squad/ (SQuAD JSON), raw_wmt/ (WMT'16 files), lra_release/listops-1000/ (generated)."""
    import sentencepiece as spm

    text = sentences(300, 0)
    write_lines(ws / "spm_text.txt", text)
    spm.SentencePieceTrainer.train(
        input=str(ws / "spm_text.txt"),
        model_prefix=str(ws / "spm"),
        vocab_size=80,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(ws / "spm.model"))
    pieces = lambda lines: [" ".join(sp.encode(line, out_type=str)) for line in lines]  # noqa: E731
    for split, n, seed in (("train", 200, 1), ("valid", 20, 2), ("test", 20, 3)):
        write_lines(ws / "corpus" / f"{split}.txt", pieces(sentences(n, seed)))
    for split, n, seed in (("train", 40, 4), ("valid", 10, 5)):
        first, second = pieces(sentences(n, seed)), pieces(sentences(n, seed + 10))
        write_lines(ws / "raw" / f"{split}.input0", first)
        write_lines(ws / "raw" / f"{split}.input1", second)
        write_lines(ws / "raw" / f"{split}.label", [str(len(a.split()) % 2) for a in first])
    # NER: p* begins a person, q* continues it, l* is a location, o* is O
    for split, n, seed in (("train", 40, 6), ("valid", 10, 7)):
        rows = []
        for sentence in sentences(n, seed):
            for word in sentence.split():
                label = {"p": "B-PER", "q": "I-PER", "l": "B-LOC"}.get(word[0], "O")
                rows.append(f"{word} X {label}")
            rows.append("")
        write_lines(ws / "ner" / f"{split}.conll", rows)
    for name, n, seed in (("train-v1.1.json", 30, 8), ("dev-v1.1.json", 10, 9)):
        paragraphs = []
        for i, context in enumerate(sentences(n, seed)):
            answer = context.split()[2]
            qas = [
                {
                    "id": f"{name}-{i}",
                    "question": " ".join(sentences(1, seed * 100 + i, (3, 5))),
                    "answers": [
                        {
                            "text": answer,
                            "answer_start": context.index(" " + answer + " ") + 1
                            if " " + answer + " " in context
                            else context.index(answer),
                        }
                    ],
                }
            ]
            paragraphs.append({"context": context, "qas": qas})
        (ws / "squad").mkdir(exist_ok=True)
        (ws / "squad" / name).write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}))
    for split, n, seed in (("train", 200, 10), ("newstest2013", 12, 11), ("newstest2014", 11, 12)):
        en = sentences(n, seed, (3, 8))
        write_lines(ws / "raw_wmt" / f"{split}.en", en)
        write_lines(ws / "raw_wmt" / f"{split}.de", [" ".join(reversed(line.split())) for line in en])
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_listops.py"),
            str(ws / "lra_release" / "listops-1000"),
            "--train",
            "40",
            "--valid",
            "10",
            "--test",
            "11",
            "--min-length",
            "10",
            "--max-length",
            "30",
        ],
        check=True,
        capture_output=True,
        env=environment(ws),
    )


FINETUNE_DATA = '''"""Stand-ins the README's fine-tuning block reads but does not prepare:
data-bin/sts (regression: two inputs,
raw float labels) and data-bin/mc (multiple choice: a context and 4 choices, raw index labels), from raw/ and
binarized with the pretraining dictionary sys.argv[1]."""
import subprocess
import sys
from pathlib import Path

srcdict, raw = sys.argv[1], Path("raw")


def write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\\n" for line in lines))


for name, n_inputs in (("sts", 2), ("mc", 5)):
    text = Path("data-bin", name, "text")
    for split in ("train", "valid"):
        first = (raw / f"{split}.input0").read_text().splitlines()
        if name == "sts":
            inputs = [first, (raw / f"{split}.input1").read_text().splitlines()]
            labels = [f"{len(line.split()) / 10:.2f}" for line in first]
        else:
            inputs = [first] + [first[k:] + first[:k] for k in range(1, 5)]
            labels = [str(i % 4) for i in range(len(first))]
        for k, lines in enumerate(inputs):
            write(text / f"{split}.input{k}", lines)
        write(Path("data-bin", name, "label", f"{split}.label"), labels)
    for k in range(n_inputs):
        subprocess.run(
            ["fairseq-preprocess", "--only-source", "--srcdict", srcdict, "--destdir", f"data-bin/{name}/input{k}",
             "--trainpref", str(text / f"train.input{k}"), "--validpref", str(text / f"valid.input{k}"),
             "--workers", "1"],
            check=True, capture_output=True,
        )
'''


def console_script_shims(bin_dir: Path) -> None:
    """A shim per console script of setup.py (the checkout's code, whether or not the package is installed)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, module, function in entry_points():
        shim = bin_dir / name
        shim.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" -c "import sys; from {module} import {function}; '
            f'sys.argv[0] = \'{name}\'; sys.exit({function}())" "$@"\n'
        )
        shim.chmod(0o755)


def entry_points():
    """[(command, module, function)] of setup.py's console_scripts."""
    text = (REPO / "setup.py").read_text()
    return [(name, module, function) for name, module, function in re.findall(r'"([\w-]+) = ([\w.]+):(\w+)"', text)]


def environment(ws: Path):
    path = f"{ws / 'bin'}:{VENV_BIN}:{os.environ['PATH']}"
    return dict(os.environ, PATH=path, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


class Workspace:
    """One directory where the README's sections run in order (a section runs the sections it NEEDS first)."""

    def __init__(self, root: Path):
        self.root, self.done, self.logs = root, set(), {}
        for name in ("user_dir", "scripts", "configs"):
            (root / name).symlink_to(REPO / name)
        console_script_shims(root / "bin")
        (root / "finetune_data.py").write_text(FINETUNE_DATA)
        fabricate(root)

    def run(self, section: str) -> str:
        for needed in NEEDS.get(section, []):
            if needed not in self.done:
                self.run(needed)
        script = self.root / f"section_{len(self.done)}.sh"
        script.write_text("set -eo pipefail\n" + scaled(section) + "\n")
        stdin = (self.root / "corpus" / "test.txt").read_text().splitlines()[0] + "\n"
        proc = subprocess.run(
            ["bash", str(script)],
            cwd=self.root,
            env=environment(self.root),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"README section {section!r} failed ({script}):\n{log[-6000:]}"
        self.done.add(section)
        self.logs[section] = log
        return log


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("readme"))


# ------------------------------------------------------------------------------------------ the sections
def check_using_it_with_fairseq(ws: Workspace, log: str):
    assert (ws.root / "checkpoints/my_lm/checkpoint_best.pt").exists()
    assert "Loss (base 2)" in log and "Perplexity" in log  # fairseq-eval-lm
    test_lines = len((ws.root / "corpus/test.txt").read_text().splitlines())
    hypotheses = [line for line in log.splitlines() if line.startswith("H-")]
    # fairseq-generate (every test line: --required-batch-size-multiple 1) + fairseq-interactive (one prompt)
    assert len(hypotheses) == test_lines + 1, (len(hypotheses), test_lines)


def check_installed_tools(ws: Workspace, log: str):
    assert "mega_lm_tiny" in log and "--decoder-chunk-size" in log and "Perplexity" in log


def check_language_models(ws: Workspace, log: str):
    assert "Perplexity" in log


def check_masked_lm(ws: Workspace, log: str):
    for save in ("mlm", "classification", "sts", "mc"):
        assert (ws.root / "checkpoints" / save / "checkpoint_last.pt").exists(), save
    assert not (ws.root / "checkpoints" / "checkpoint_last.pt").exists()  # every run names its --save-dir
    # the section's python block (the hub interface) on the checkpoint the block above trained
    (code,) = re.findall(r"```python\n(.*?)```", section_text("Masked LM and fine-tuning (encoder)"), re.S)
    code += "\nassert features.shape[0] == 1 and log_probs.shape == (1, 3)\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ws.root, env=environment(ws.root), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def section_text(section: str) -> str:
    """The README text of one section (up to the next heading; `#` lines inside code blocks are not headings)."""
    lines, inside, fenced = [], False, False
    for line in README.read_text(encoding="utf-8").splitlines():
        fenced = fenced != line.startswith("```")
        heading = not fenced and not line.startswith("```") and re.match(r"#{1,6} ", line)
        if heading:
            inside = line.lstrip("#").strip() == section
        elif inside:
            lines.append(line)
    return "\n".join(lines) + "\n"


def check_token_classification(ws: Workspace, log: str):
    assert (ws.root / "checkpoints/ner/checkpoint_best.pt").exists() and "ent_f1" in log


def check_extractive_qa(ws: Workspace, log: str):
    assert "no token-type embeddings" in log  # the masked-LM checkpoint has none: fresh ones, with a log line
    assert (ws.root / "checkpoints/squad/checkpoint_best.pt").exists() and "f1" in log


def check_translation(ws: Workspace, log: str):
    hypotheses = [line for line in (ws.root / "gen.out").read_text().splitlines() if line.startswith("D-")]
    assert len(hypotheses) == len((ws.root / "raw_wmt/newstest2014.de").read_text().splitlines())
    assert "BLEU" in log


def check_lra(ws: Workspace, log: str):
    assert (ws.root / "checkpoints/lra_listops/checkpoint_best.pt").exists() and "accuracy" in log


SECTION_TESTS = {
    "Using it with fairseq": check_using_it_with_fairseq,
    "Installed tools": check_installed_tools,
    "Language models (`mega_lm`)": check_language_models,
    "Masked LM and fine-tuning (encoder)": check_masked_lm,
    "Token classification (`mega_token_classification`)": check_token_classification,
    "Extractive QA (`mega_extractive_qa`)": check_extractive_qa,
    "Translation (`mega`)": check_translation,
    "Long Range Arena": check_lra,
}
FAST = {"Using it with fairseq"}


@pytest.mark.parametrize(
    "section",
    [s if s in FAST else pytest.param(s, marks=pytest.mark.slow) for s in SECTION_TESTS],
)
def test_readme_section_runs(workspace, section):
    log = workspace.run(section)
    SECTION_TESTS[section](workspace, log)
