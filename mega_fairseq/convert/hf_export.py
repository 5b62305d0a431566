"""Export a fairseq Mega checkpoint to transformers (config.json + model.safetensors).

    mega-export-hf CHECKPOINT OUT_DIR [--data DIR] [--head HEAD] [--spm SPM_MODEL]
                   [--dtype float32|float16|bfloat16] [--verify-with PYTHON ...] [--no-verify]

Lossless or refused: structures transformers' Mega cannot express are refused with the option
to change (`targets.stack_problems`).  The export is written to a temporary directory,
loaded back with transformers and compared with the fairseq model on probe batches, in float64
(max abs difference <= 1e-4); only if the outputs agree is it moved to OUT_DIR, so a wrong
or partial model is never left behind.  `--verify-with PYTHON` (repeatable; default: the
interpreters in the environment variable MEGA_VERIFY_PYTHONS, separated by os.pathsep) also runs
the check in another interpreter with torch + transformers (e.g. a transformers 5.x virtualenv):
`remote_verify.py` loads the staged export there with trust_remote_code=True and compares with
fairseq's outputs on the same probes.  The fairseq dictionary is saved as `dict.txt` next to
the weights (so `mega-import-hf` restores it exactly), and with `--spm` a transformers tokenizer
with the dictionary's ids (`tokenizer`).
"""

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .. import plugin  # noqa: F401  registers the models so the checkpoint can be built
from .common import (
    DTYPES,
    TOLERANCE,
    ConversionError,
    check_finite,
    decoder_inputs,
    hf_token_types_for_probe,
    move_into,
    probe_tokens,
    refuse_to_replace,
    staging_dir,
    task_dictionary,
    user_errors,
)
from .remote_code import AUTO_CLASS_OF, add_auto_map, custom_pipelines, write_model_code
from .targets import Target, target_for_fairseq_model


def load_fairseq_model(checkpoint: str, data: str = None):
    """(model in eval mode, task) from a fairseq checkpoint (torch.load stays weights_only)."""
    from fairseq import checkpoint_utils

    if not Path(checkpoint).is_file():
        raise ConversionError(f"checkpoint {checkpoint} does not exist")
    overrides = {"data": data} if data else None
    try:
        models, _, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides=overrides)
    except FileNotFoundError as err:
        raise ConversionError(f"{err}; pass --data DIR with the data-bin directory holding the dictionary") from err
    return models[0].eval(), task


def label_names(labels, num_labels: int) -> List[str]:
    """Class names of a classifier whose class k is the label dictionary's symbol nspecial + k, or [] where there is
    none (regression, no label dictionary).  fairseq pads a dictionary to a multiple of 8 with ``madeupwordNNNN``
    symbols; the classes are the first `num_labels` real symbols."""
    if labels is None or num_labels < 2:
        return []
    names = list(labels.symbols[labels.nspecial : labels.nspecial + num_labels])
    if len(names) != num_labels or any(name.startswith("madeupword") for name in names):
        return []
    return names


def shorter_probes(cfg, tokens: torch.Tensor) -> List[torch.Tensor]:
    """Prefixes of the probe `tokens`: one shorter than the chunk (or 5 tokens unchunked) and, when chunked, one
    longer than a chunk but not a multiple of it."""
    if not cfg.chunked:
        return [tokens[:, : min(5, tokens.size(1) - 1)]] if tokens.size(1) > 5 else []
    chunk, length = cfg.chunk_size, tokens.size(1)
    probes = [tokens[:, : max(chunk // 2, 2)]] if chunk > 2 else []
    if chunk + 1 < length:
        probes.append(tokens[:, : chunk + max(chunk // 2, 1) if chunk + max(chunk // 2, 1) < length else chunk + 1])
    return probes


def compare(target: Target, model, hf_model, tokens: torch.Tensor) -> float:
    """Max abs difference between the fairseq and transformers outputs on `tokens` (in the models' dtype)."""
    with torch.no_grad():
        ours = target.fairseq_outputs(model, tokens).double()
        theirs = target.hf_outputs(hf_model, tokens).double()
    if ours.shape != theirs.shape:
        raise ValueError(f"output shapes differ: fairseq {tuple(ours.shape)} vs transformers {tuple(theirs.shape)}")
    return (ours - theirs).abs().max().item()


# ---------------------------------------------------------------- verification in other interpreters
VERIFY_PYTHONS_ENV = "MEGA_VERIFY_PYTHONS"  # default --verify-with interpreters, separated by os.pathsep
VERIFY_TIMEOUT_S = 600  # seconds one interpreter's check may take
REMOTE_VERIFY_SCRIPT = Path(__file__).resolve().parent / "remote_verify.py"
CODE_PATH = "model code (trust_remote_code=True)"


def verify_pythons(given: Optional[Sequence[str]] = None) -> List[Tuple[str, str]]:
    """(executable, how the user named it) of each interpreter to verify with: `given` (--verify-with), else the
    entries of $MEGA_VERIFY_PYTHONS.  A bare name is looked up on PATH.  ConversionError for one that is not an
    executable file (checked before anything is computed)."""
    if given is None:
        entries = [e for e in os.environ.get(VERIFY_PYTHONS_ENV, "").split(os.pathsep) if e.strip()]
        named = [(e, f"--verify-with {e} (from ${VERIFY_PYTHONS_ENV})") for e in entries]
    else:
        named = [(e, f"--verify-with {e}") for e in given]
    found = []
    for entry, label in named:
        path = entry if os.sep in entry or (os.altsep and os.altsep in entry) else shutil.which(entry)
        if not path or not Path(path).is_file() or not os.access(path, os.X_OK):
            raise ConversionError(
                f"{label}: {entry} is not an executable Python interpreter; pass the path of a Python with torch, "
                "transformers and safetensors (e.g. a transformers 5.x virtualenv's bin/python), or --no-verify to "
                "skip verification; nothing written"
            )
        found.append((str(Path(path).absolute()), label))
    return found


def probe_tensors(target: Target, config, reference, probes: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
    """What `remote_verify.py` reads (its docstring has the layout): each probe's transformers inputs, as
    `target.hf_outputs` passes them, and the fairseq model's float64 outputs (`reference` is in float64)."""
    tensors = {}
    for i, tokens in enumerate(probes):
        inputs = {"input_ids": tokens}
        if target.hf_class == "EncoderDecoderModel":
            inputs["decoder_input_ids"] = decoder_inputs(tokens)
        elif target.hf_class != "MegaForCausalLM":
            types = hf_token_types_for_probe(SimpleNamespace(config=config), tokens)
            if types is not None:
                inputs["token_type_ids"] = types
        with torch.no_grad():
            inputs["expected"] = target.fairseq_outputs(reference, tokens).double()
        tensors.update({f"probe{i}.{name}": value.detach().clone().contiguous() for name, value in inputs.items()})
    return tensors


def write_probe_file(path: Path, target: Target, config, reference, probes: Sequence[torch.Tensor]) -> None:
    """The probes and fairseq's expected outputs as safetensors (no pickle), for `remote_verify.py`."""
    from safetensors.torch import save_file

    meta = {"hf_class": target.hf_class, "auto_class": AUTO_CLASS_OF[target.hf_class], "probes": str(len(probes))}
    save_file(probe_tensors(target, config, reference, probes), str(path), metadata=meta)


def run_remote_verify(python: str, label: str, export_dir: Path, probe_file: Path) -> dict:
    """`remote_verify.py`'s JSON result from interpreter `python`; ConversionError if it cannot run, times out or
    reports an error."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # a local directory: nothing to download
    where = f"verification with {label}"
    try:
        proc = subprocess.run(
            [python, str(REMOTE_VERIFY_SCRIPT), str(export_dir), str(probe_file)],
            capture_output=True,
            text=True,
            timeout=VERIFY_TIMEOUT_S,
            env=env,
        )
    except subprocess.TimeoutExpired as err:
        raise ConversionError(
            f"{where} did not finish within {VERIFY_TIMEOUT_S} s; nothing written. Check the interpreter, or pass "
            "--no-verify to skip verification"
        ) from err
    except OSError as err:
        raise ConversionError(f"{where} could not start {python} ({err}); nothing written") from err
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if not isinstance(result, dict) or "error" in result or proc.returncode != 0:
        version = result.get("transformers") if isinstance(result, dict) else None
        detail = result.get("error") if isinstance(result, dict) and result.get("error") else proc.stderr[-2000:]
        detail = detail.strip() or "(no output: is it a Python interpreter?)"
        raise ConversionError(
            f"{where} failed (transformers {version or 'not importable or unknown'}, exit code {proc.returncode}); "
            f"nothing written. The interpreter needs torch, transformers and safetensors; the check said:\n"
            f"{detail}"
        )
    return result


def verify_in_interpreters(
    pythons: Sequence[Tuple[str, str]],
    target: Target,
    config,
    reference,
    probes: Sequence[torch.Tensor],
    export_dir: Path,
    tolerance: float,
) -> List[Tuple[str, float]]:
    """(how it was loaded, max |diff|) per interpreter of `verify_pythons`: the staged `export_dir` through its model
    code in that interpreter's transformers, on every probe, against fairseq's float64 outputs; ConversionError
    naming the interpreter and its transformers version on any difference above `tolerance`."""
    if not pythons:
        return []
    done = []
    with tempfile.TemporaryDirectory(prefix="mega-export-probes-") as probe_dir:
        probe_file = Path(probe_dir) / "probes.safetensors"
        write_probe_file(probe_file, target, config, reference, probes)
        for python, label in pythons:
            result = run_remote_verify(python, label, export_dir, probe_file)
            how = f"{CODE_PATH} on transformers {result['transformers']}"
            for length, diff in zip(result["lengths"], result["diffs"]):
                if not diff <= tolerance:
                    raise ConversionError(
                        f"verification failed ({label}): {how} outputs differ by {diff:.3g} (> {tolerance:g}) on a "
                        f"probe of length {length}; nothing written"
                    )
            if len(result["diffs"]) != len(probes):
                raise ConversionError(
                    f"verification with {label} checked {len(result['diffs'])} of {len(probes)} probes; nothing written"
                )
            done.append((how, max(result["diffs"])))
    return done


PIPELINE_TAGS = {
    "MegaForCausalLM": "text-generation",
    "MegaForMaskedLM": "fill-mask",
    "MegaForSequenceClassification": "text-classification",
    "MegaForTokenClassification": "token-classification",
    "MegaForQuestionAnswering": "question-answering",
    "MegaModel": "feature-extraction",
    "EncoderDecoderModel": "translation",
}


def usage_snippet(target: Target, native: bool) -> str:
    """Python that loads the export from the current directory and runs it (a test runs it as written)."""
    auto = AUTO_CLASS_OF[target.hf_class]
    lines = [
        "import torch",
        f"from transformers import {auto}",
        "",
        f'model = {auto}.from_pretrained(".", trust_remote_code=True).eval()  # this directory',
        "ids = torch.tensor([[0, 5, 6, 7, 8, 2]])  # fairseq dictionary ids (dict.txt; <s>=0, </s>=2)",
    ]
    if target.hf_class == "MegaForCausalLM":
        lines.append("print(model.generate(ids[:, 1:], max_new_tokens=8, do_sample=False, num_beams=2))")
    elif target.hf_class == "EncoderDecoderModel":
        lines.append("print(model.generate(ids[:, 1:], max_new_tokens=8, num_beams=2))  # decoding starts at </s>")
    elif target.hf_class == "MegaForMultipleChoice":
        lines.append("print(model(ids.unsqueeze(1)).logits)  # (batch, choices)")
    elif target.hf_class == "MegaForQuestionAnswering":
        lines.append("print(model(ids).start_logits)")
    elif target.hf_class == "MegaModel":
        lines.append("print(model(ids).pooler_output)")
    else:
        lines.append("print(model(ids).logits)")
    return "\n".join(lines)


def model_card(
    target: Target,
    cfg,
    config,
    checkpoint: str,
    max_diff: float,
    tokenizer_note: str,
    native: bool = True,
    verified_with=(),
    license: str = None,
) -> str:
    """README.md in the hub's conventions (YAML front matter through huggingface_hub's ModelCard).  verified_with:
    one line per way the export was loaded and checked (e.g. "model code (trust_remote_code=True) on transformers
    5.23.0: max |diff| 2.2e-16"); empty: not verified."""
    from huggingface_hub import ModelCard, ModelCardData

    notes = []
    if getattr(config, "add_token_type_embeddings", False):
        notes.append(
            "Token types: fairseq's mega_encoder uses type 0 up to the first `</s>` and 1 after it when given no ids; "
            "transformers uses 0 everywhere unless you pass `token_type_ids` — pass them (0 for the first segment, "
            "1 for the second) to get fairseq's outputs."
        )
    if cfg.chunked:
        notes.append(
            f"Chunked (chunk {cfg.chunk_size}): the model code takes any length and decodes at every length; "
            "transformers 4.x's own Mega classes need inputs whose length is <= the chunk or a multiple of it"
            + (" and cannot decode chunked models (use the model code)." if cfg.causal else ".")
        )
    if native and cfg.causal and cfg.attention_activation != "softmax":
        notes.append(
            f"{cfg.attention_activation} attention: transformers 4.x's own Mega decodes it with a wrong length "
            "normalizer; the model code decodes exactly."
        )
    if target.hf_class == "MegaForCausalLM":
        notes.append(
            "Decoding: fairseq decodes a language model after `</s>` (id 2): start a prompt with it to get "
            "fairseq-interactive's continuation; `length_penalty=0.0, early_stopping=True` give its `--lenpen 0` beam "
            "search. Batches of prompts are left-padded (pass the `attention_mask`); each row decodes as it would "
            "alone."
        )
    if target.hf_class == "EncoderDecoderModel":
        notes.append(
            "Decoding: `generation_config.json` holds fairseq-generate's defaults (beam 5, `--lenpen 1`, "
            "`--min-len 1`, `--max-len-b 200`), so a bare `generate()` returns fairseq-generate's translation; "
            "keyword arguments override them."
        )
    if tokenizer_note:
        notes.append(tokenizer_note)
    tasks = list(custom_pipelines(target.hf_class))
    if tasks:
        names = ", ".join(f"`{task}`" for task in tasks)
        notes.append(
            f"Pipelines {names} (removed from transformers 5): `pipeline_mega_fairseq.py`, "
            f'named in config.json\'s `custom_pipelines`: `pipeline("{tasks[0]}", model=DIR, trust_remote_code=True)` '
            "on 5.x and 4.57.6 alike. On 4.57.6 it needs `trust_remote_code=True` even where the model loads natively: "
            "transformers 4.x picks the shipped pipeline over its own"
            + (" (its own translation never ran on Mega, which has no generate())." if "translation" in tasks else ".")
        )
    pipeline_tag = PIPELINE_TAGS.get(target.hf_class)
    data = ModelCardData(
        library_name="transformers",
        tags=["mega", "fairseq", "mega-fairseq"],
        pipeline_tag=pipeline_tag,
        license=license,
    )
    if native:
        loading = (
            "- transformers **5.x** (and 4.57.6): the model code shipped here, `trust_remote_code=True` "
            "(`configuration_mega_fairseq.py`, `modeling_mega_fairseq.py`, `mega_*.py`: torch + transformers only).\n"
            f"- transformers **4.57.6** without `trust_remote_code`: its own `{target.hf_class}` (`model_type: mega`); "
            "transformers 4.x's Mega has known bugs (no chunked decoding; see the notes).\n"
        )
    else:
        loading = (
            "- transformers **5.x** and **4.57.6**: only through the model code shipped here, "
            "`trust_remote_code=True` (`model_type: mega_fairseq`: transformers' own Mega would compute this "
            "configuration differently, e.g. its RMSNorm does not normalise).\n"
        )
    if verified_with:
        verification = (
            "Verified after export, in float64, against the fairseq model on probe batches (whole chunks; for the "
            "model code also a length shorter than the chunk and one that is not a multiple of it): max |output "
            f"difference| {max_diff:.2e}. "
            "Loaded and checked with:\n\n" + "".join(f"- {how}\n" for how in verified_with)
        )
    else:
        verification = "Not verified (`--no-verify`).\n"
    body = (
        f"# Mega ({target.hf_class}) exported from fairseq\n\n"
        f"Exported by `mega-export-hf` (mega_fairseq) from `{checkpoint}`.\n\n"
        "## Loading\n\n"
        + loading
        + "\nRun in this directory:\n\n```python\n"
        + usage_snippet(target, native)
        + "\n```\n\n"
        "## Verification\n\n"
        + verification
        + "\n`dict.txt` is the fairseq dictionary (ids = rows of the embedding); `mega-import-hf` reads it back.\n\n"
        + "".join(f"- {n}\n" for n in notes)
        + "\n## Source configuration\n\n```json\n"
        + json.dumps(vars(cfg), indent=2, default=str)
        + "\n```\n"
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def _tied(hf_model, key: str, missing) -> bool:
    """Whether `key` is a tied copy of a parameter that was loaded (e.g. lm_head.weight = word embeddings)."""
    params = dict(hf_model.named_parameters(remove_duplicate=False))
    return key in params and any(
        params[key] is value for name, value in params.items() if name != key and name not in missing
    )


def save_weights(weights, out_dir: Path, dtype: torch.dtype) -> None:
    """`weights` (transformers' Mega names) as `out_dir/model.safetensors` (each tensor its own copy)."""
    from safetensors.torch import save_file

    tensors = {
        k: v.detach().to(dtype if v.is_floating_point() else v.dtype).clone().contiguous() for k, v in weights.items()
    }
    save_file(tensors, str(Path(out_dir) / "model.safetensors"), metadata={"format": "pt"})


def load_model_code(export_dir, hf_class: str):
    """The export in `export_dir` loaded through its own model code (trust_remote_code=True)."""
    import transformers

    auto = getattr(transformers, AUTO_CLASS_OF[hf_class])
    return auto.from_pretrained(str(export_dir), trust_remote_code=True, dtype=torch.float32)


def export(
    checkpoint: str,
    out_dir: str,
    data: str = None,
    head: str = None,
    dtype: str = "float32",
    spm: str = None,
    verify: bool = True,
    license: str = None,
    verify_with: Optional[Sequence[str]] = None,
) -> float:
    """Writes the export; returns the verified max abs output difference (nan when not verified).

    verify_with: Python interpreters (with torch + transformers) that also load the staged export through its model
    code and check it (`verify_in_interpreters`); None: those in $MEGA_VERIFY_PYTHONS (os.pathsep-separated).
    Ignored with verify=False."""
    import transformers

    from .tokenizer import save_tokenizer

    if dtype not in DTYPES:
        raise ConversionError(f"unknown dtype {dtype!r}; choose {', '.join(DTYPES)}")
    pythons = verify_pythons(verify_with) if verify else []
    model, task = load_fairseq_model(checkpoint, data)
    check_finite(model.state_dict(), checkpoint, DTYPES[dtype])
    try:
        target = target_for_fairseq_model(model, head)
    except ValueError as err:
        raise ConversionError(str(err)) from err
    problems = target.problems(model, native=False)
    if problems:
        raise ConversionError(
            f"cannot export losslessly to transformers' {target.hf_class}:\n  - " + "\n  - ".join(problems)
        )
    native_problems = target.problems(model)
    native = not native_problems  # else: model code only (a distinct model_type; transformers' Mega would differ)
    dictionary = task_dictionary(task)
    cfg = target.layer_cfg(model)
    hf_class = getattr(transformers, target.hf_class)
    config = target.make_config(model, task)
    config.architectures = [target.hf_class]
    if not native:
        for side in [config, getattr(config, "encoder", None), getattr(config, "decoder", None)]:
            if side is not None and hasattr(side, "hidden_size"):
                side.norm_eps = cfg.norm_eps
    names = label_names(getattr(task, "label_dictionary", None), getattr(config, "num_labels", 0))
    if names:  # class names for id2label
        config.id2label = dict(enumerate(names))
        config.label2id = {name: i for i, name in config.id2label.items()}
    weights = target.to_hf(model)
    hf = None
    if native:
        hf = hf_class(config).eval()
        missing, unexpected = hf.load_state_dict(weights, strict=False)
        missing = [key for key in missing if not _tied(hf, key, missing)]
        if unexpected or missing:
            raise ConversionError(
                f"name mapping incomplete: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
    probe_dictionary = (
        dictionary
        if task.target_dictionary is None or len(task.target_dictionary) >= len(dictionary)
        else task.target_dictionary
    )

    out = Path(out_dir)
    with staging_dir(out) as tmp:
        if native:
            hf.to(DTYPES[dtype]).save_pretrained(tmp, safe_serialization=True)
        else:
            save_weights(weights, tmp, DTYPES[dtype])
            config.save_pretrained(tmp)
        generation = target.generation_defaults(model, task)
        if generation:
            transformers.GenerationConfig(**generation).save_pretrained(tmp)
        write_model_code(tmp, native, target.hf_class)
        add_auto_map(tmp / "config.json", target.hf_class, native)
        dictionary.save(str(tmp / "dict.txt"))
        if (
            task.target_dictionary is not None
            and task.target_dictionary is not dictionary
            and task.target_dictionary != dictionary
        ):
            task.target_dictionary.save(str(tmp / "dict.target.txt"))
        tokenizer_note = ""
        if spm:
            positions = model.max_positions()
            positions = positions[0] if isinstance(positions, tuple) else positions
            translation = target.hf_class == "EncoderDecoderModel"
            summary = save_tokenizer(
                spm,
                dictionary,
                str(tmp),
                model_max_length=int(positions),
                add_special_tokens=not cfg.causal,
                target_dictionary=task.target_dictionary if translation else None,
            )
            tokenizer_note = f"Tokenizer: XLM-R style from `{Path(spm).name}` with the fairseq dictionary's ids" + (
                "; as a causal LM's, it adds no special tokens (fast tokenizer; pass `add_special_tokens=False` to "
                "the slow one)."
                if cfg.causal and not translation
                else "; it encodes a source text as fairseq's translation task does (pieces, then `</s>`; fast "
                "tokenizer) and decodes the target (one joined dictionary)."
                if translation
                else "."
            )
            if summary["spm_pieces_left_out"]:
                tokenizer_note += (
                    f" {summary['spm_pieces_left_out']} sentencepiece pieces are not in the dictionary and were left "
                    "out "
                    "(fairseq maps them to <unk>; the tokenizer segments around them)."
                )
        max_diff = float("nan")
        verified_with = []
        if verify:
            tokens = probe_tokens(cfg, probe_dictionary)
            scale = target.fairseq_outputs(model, tokens).abs().max().item()
            tolerance = TOLERANCE if dtype == "float32" else 1e-2 * max(1.0, scale)
            # (how it is loaded, loader, probes): transformers' Mega only gets whole chunks (its known limits);
            # the model code also gets a probe shorter than the chunk and one that is not a multiple of it
            probes = [tokens] + shorter_probes(cfg, tokens)
            version = transformers.__version__
            code_load = lambda: load_model_code(tmp, target.hf_class)  # noqa: E731
            loaders = [(f"{CODE_PATH} on transformers {version}", code_load, probes)]
            if native:
                native_load = lambda: hf_class.from_pretrained(tmp, dtype=torch.float32)  # noqa: E731
                loaders.insert(0, (f"transformers' own Mega on transformers {version}", native_load, [tokens]))
            max_diff = 0.0
            reference = copy.deepcopy(model).double()  # float64 on both sides: no float32 rounding in the check
            for how, load, probe_list in loaders:
                reloaded = load().double().eval()
                loader_diff = 0.0
                for probe in probe_list:
                    try:
                        diff = compare(target, reference, reloaded, probe)
                    except ValueError as err:
                        raise ConversionError(f"verification failed ({how}): {err}; nothing written") from err
                    if not diff <= tolerance:
                        raise ConversionError(
                            f"verification failed: {how} outputs differ by {diff:.3g} (> {tolerance:g}) on a probe of "
                            f"length {probe.size(1)}; nothing written"
                        )
                    loader_diff = max(loader_diff, diff)
                max_diff = max(max_diff, loader_diff)
                verified_with.append(f"{how}: max |diff| {loader_diff:.2e}")
            # the same probes in each --verify-with interpreter (e.g. transformers 5.x), before anything is moved
            for how, diff in verify_in_interpreters(pythons, target, config, reference, probes, tmp, tolerance):
                max_diff = max(max_diff, diff)
                verified_with.append(f"{how}: max |diff| {diff:.2e}")
        (tmp / "README.md").write_text(
            model_card(target, cfg, config, checkpoint, max_diff, tokenizer_note, native, verified_with, license),
            encoding="utf-8",
        )
        move_into(tmp, out)
    return max_diff


def check_out_dir(out_dir: str, overwrite: bool):
    """Refuses (ConversionError) an OUT_DIR that is a file, or a non-empty directory without --overwrite."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConversionError(f"OUT_DIR {out} is a file, not a directory: pass a directory to write the export into")
    existing = sorted(out.iterdir()) if out.is_dir() else []
    refuse_to_replace(existing, overwrite, f"exporting into the non-empty directory {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mega-export-hf", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out_dir")
    parser.add_argument(
        "--data", help="data-bin directory with the dictionary (default: the path recorded in the checkpoint)"
    )
    parser.add_argument(
        "--head", help="which head to export where the model has several (a classification head's name, masked_lm, ...)"
    )
    parser.add_argument(
        "--spm", help="sentencepiece model the data was encoded with: also export a tokenizer with the dictionary's ids"
    )
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--license", help="the model card's license (a hub license id, e.g. mit, apache-2.0)")
    parser.add_argument(
        "--verify-with",
        action="append",
        metavar="PYTHON",
        help="also verify the export in this Python interpreter (with torch + transformers, e.g. a transformers 5.x "
        "virtualenv's bin/python) through its model code; repeatable. Default: the interpreters in "
        f"${VERIFY_PYTHONS_ENV} (separated by {os.pathsep!r})",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip reloading with transformers and comparing outputs (also in --verify-with interpreters)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="export into a non-empty OUT_DIR, replacing same-named files"
    )
    args = parser.parse_args(argv)

    try:
        check_out_dir(args.out_dir, args.overwrite)
        diff = export(
            args.checkpoint,
            args.out_dir,
            args.data,
            args.head,
            args.dtype,
            args.spm,
            verify=not args.no_verify,
            license=args.license,
            verify_with=args.verify_with,
        )
    except user_errors() as err:
        print(f"mega-export-hf: error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out_dir}/config.json and model.safetensors"
        + ("" if diff != diff else f"; verified: max |output diff| {diff:.2e}")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
