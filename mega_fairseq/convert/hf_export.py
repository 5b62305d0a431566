"""Export a fairseq Mega checkpoint to transformers (config.json + model.safetensors).

    mega-export-hf CHECKPOINT OUT_DIR [--data DIR] [--head HEAD] [--spm SPM_MODEL]
                   [--dtype float32|float16|bfloat16] [--no-verify]

Lossless or refused: structures transformers' Mega cannot express are refused with the option
to change (`targets.stack_problems`).  The export is written to a temporary directory,
loaded back with transformers and compared with the fairseq model on a probe batch; only if
the outputs agree (max abs difference <= 1e-4 in float32) is it moved to OUT_DIR, so a wrong
or partial model is never left behind.  The fairseq dictionary is saved as `dict.txt` next to
the weights (so `mega-import-hf` restores it exactly), and with `--spm` a transformers tokenizer
with the dictionary's ids (`tokenizer`).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from .. import plugin  # noqa: F401  registers the models so the checkpoint can be built
from .common import (
    DTYPES,
    TOLERANCE,
    ConversionError,
    check_finite,
    move_into,
    probe_tokens,
    refuse_to_replace,
    staging_dir,
    task_dictionary,
)
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


def compare(target: Target, model, hf_model, tokens: torch.Tensor) -> float:
    """Max abs difference between the fairseq and transformers outputs on `tokens`."""
    with torch.no_grad():
        ours = target.fairseq_outputs(model, tokens).float()
        theirs = target.hf_outputs(hf_model, tokens).float()
    if ours.shape != theirs.shape:
        raise ValueError(f"output shapes differ: fairseq {tuple(ours.shape)} vs transformers {tuple(theirs.shape)}")
    return (ours - theirs).abs().max().item()


def model_card(target: Target, cfg, config, checkpoint: str, max_diff: float, tokenizer_note: str) -> str:
    notes = []
    if getattr(config, "add_token_type_embeddings", False):
        notes.append(
            "Token types: fairseq's mega_encoder uses type 0 up to the first `</s>` and 1 after it when given no ids; "
            "transformers uses 0 everywhere unless you pass `token_type_ids` — pass them (0 for the first segment, "
            "1 for the second) to get fairseq's outputs."
        )
    if cfg.chunked:
        notes.append(
            f"Chunked (chunk {cfg.chunk_size}): transformers needs inputs whose length is <= the chunk or a multiple "
            "of it"
            + (
                ", and its chunked incremental decoding crashes; decode with fairseq (mega_fairseq) instead."
                if cfg.causal
                else "."
            )
        )
    if cfg.causal and cfg.attention_activation != "softmax":
        notes.append(
            f"{cfg.attention_activation} attention: transformers' incremental decoding uses a wrong length normalizer "
            "for it; its full forward is exact, fairseq's decoding is the reference."
        )
    if tokenizer_note:
        notes.append(tokenizer_note)
    return (
        f"# Mega ({target.hf_class}) exported from fairseq\n\n"
        f"Exported by `mega-export-hf` from `{checkpoint}`. Load with `transformers==4.57.6`:\n\n"
        f"```python\nfrom transformers import AutoConfig, {target.hf_class}\nmodel = "
        f"{target.hf_class}.from_pretrained(OUT_DIR)\n```\n\n"
        f"Verified after export: max |output difference| {max_diff:.2e} against the fairseq model on a probe batch.\n"
        "`dict.txt` is the fairseq dictionary (ids = rows of the embedding); `mega-import-hf` reads it back.\n\n"
        + "".join(f"- {n}\n" for n in notes)
        + "\nSource layer configuration:\n\n```json\n"
        + json.dumps(vars(cfg), indent=2, default=str)
        + "\n```\n"
    )


def _tied(hf_model, key: str, missing) -> bool:
    """Whether `key` is a tied copy of a parameter that was loaded (e.g. lm_head.weight = word embeddings)."""
    params = dict(hf_model.named_parameters(remove_duplicate=False))
    return key in params and any(
        params[key] is value for name, value in params.items() if name != key and name not in missing
    )


def export(
    checkpoint: str,
    out_dir: str,
    data: str = None,
    head: str = None,
    dtype: str = "float32",
    spm: str = None,
    verify: bool = True,
) -> float:
    """Writes the export; returns the verified max abs output difference (nan when not verified)."""
    import transformers

    from .tokenizer import save_tokenizer

    if dtype not in DTYPES:
        raise ConversionError(f"unknown dtype {dtype!r}; choose {', '.join(DTYPES)}")
    model, task = load_fairseq_model(checkpoint, data)
    check_finite(model.state_dict(), checkpoint, DTYPES[dtype])
    try:
        target = target_for_fairseq_model(model, head)
    except ValueError as err:
        raise ConversionError(str(err)) from err
    problems = target.problems(model)
    if problems:
        raise ConversionError(
            f"cannot export losslessly to transformers' {target.hf_class}:\n  - " + "\n  - ".join(problems)
        )
    dictionary = task_dictionary(task)
    cfg = target.layer_cfg(model)
    hf_class = getattr(transformers, target.hf_class)
    config = target.make_config(model, task)
    config.architectures = [target.hf_class]
    labels = getattr(task, "label_dictionary", None)
    if (
        labels is not None and getattr(config, "num_labels", 0) == len(labels) - labels.nspecial > 1
    ):  # class names for id2label
        config.id2label = dict(enumerate(labels.symbols[labels.nspecial :]))
        config.label2id = {name: i for i, name in config.id2label.items()}
    hf = hf_class(config).eval()
    missing, unexpected = hf.load_state_dict(target.to_hf(model), strict=False)
    missing = [key for key in missing if not _tied(hf, key, missing)]
    if unexpected or missing:
        raise ConversionError(f"name mapping incomplete: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    probe_dictionary = (
        dictionary
        if task.target_dictionary is None or len(task.target_dictionary) >= len(dictionary)
        else task.target_dictionary
    )

    out = Path(out_dir)
    with staging_dir(out) as tmp:
        hf.to(DTYPES[dtype]).save_pretrained(tmp, safe_serialization=True)
        dictionary.save(str(tmp / "dict.txt"))
        if (
            task.target_dictionary is not None
            and task.target_dictionary is not dictionary
            and task.target_dictionary != dictionary
        ):
            task.target_dictionary.save(str(tmp / "dict.target.txt"))
        tokenizer_note = ""
        if spm:
            summary = save_tokenizer(spm, dictionary, str(tmp))
            tokenizer_note = f"Tokenizer: XLM-R style from `{Path(spm).name}` with the fairseq dictionary's ids" + (
                "; a causal LM takes `add_special_tokens=False`." if cfg.causal else "."
            )
            if summary["spm_pieces_left_out"]:
                tokenizer_note += (
                    f" {summary['spm_pieces_left_out']} sentencepiece pieces are not in the dictionary and were left "
                    "out "
                    "(fairseq maps them to <unk>; the tokenizer segments around them)."
                )
        max_diff = float("nan")
        if verify:
            reloaded = hf_class.from_pretrained(tmp, dtype=torch.float32).eval()
            tokens = probe_tokens(cfg, probe_dictionary)
            try:
                max_diff = compare(target, model, reloaded, tokens)
            except ValueError as err:
                raise ConversionError(f"verification failed: {err}; nothing written") from err
            scale = target.fairseq_outputs(model, tokens).abs().max().item()
            tolerance = TOLERANCE if dtype == "float32" else 1e-2 * max(1.0, scale)
            if not max_diff <= tolerance:
                raise ConversionError(
                    f"verification failed: transformers' outputs differ by {max_diff:.3g} (> {tolerance:g}); nothing "
                    "written"
                )
        (tmp / "README.md").write_text(
            model_card(target, cfg, config, checkpoint, max_diff, tokenizer_note), encoding="utf-8"
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
    parser.add_argument(
        "--no-verify", action="store_true", help="skip reloading with transformers and comparing outputs"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="export into a non-empty OUT_DIR, replacing same-named files"
    )
    args = parser.parse_args(argv)

    try:
        check_out_dir(args.out_dir, args.overwrite)
        diff = export(
            args.checkpoint, args.out_dir, args.data, args.head, args.dtype, args.spm, verify=not args.no_verify
        )
    except ConversionError as err:
        print(f"mega-export-hf: error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out_dir}/config.json and model.safetensors"
        + ("" if diff != diff else f"; verified: max |output diff| {diff:.2e}")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
