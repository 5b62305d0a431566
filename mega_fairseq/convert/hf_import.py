"""Import a transformers Mega model directory as a fairseq checkpoint.

    mega-import-hf HF_DIR OUT_CHECKPOINT [--head HF_CLASS] [--dtype float32|float16|bfloat16] [--no-verify]

Reads `config.json` and the weights (`model.safetensors`; a pickled `pytorch_model.bin` only
with `torch.load(weights_only=True)`), rebuilds the matching fairseq model (MegaForCausalLM ->
`mega_lm`; MegaForMaskedLM and the head classes -> `mega_encoder` with the head registered
under its task's default name; EncoderDecoderModel of Mega models -> `mega`), loads the
converted weights with every key accounted for, compares the fairseq model's outputs with
transformers' on a probe batch (<= 1e-4), and writes OUT_CHECKPOINT with `dict.txt` (a
translation model: `dict.src.txt`, `dict.tgt.txt`) beside it.  The dictionary is the export's `dict.txt`
when present, else the tokenizer's vocabulary, else placeholder symbols.  The checkpoint works with
`fairseq-train --restore-file`, `fairseq-generate` and `fairseq-eval-lm` (pass your data-bin
directory as usual; its dictionary must have the same size).  Nothing is written on failure.
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict

import torch

from .. import plugin  # noqa: F401  registers the models
from ..models.dictionary_fingerprint import FINGERPRINT_KEY
from .common import (
    DTYPES,
    TOLERANCE,
    ConversionError,
    build_dictionary,
    check_finite,
    probe_tokens,
    read_config_json,
    refuse_to_replace,
    staging_dir,
    user_errors,
)
from .remote_code import CODE_MODEL_TYPE
from .targets import target_for_hf_class


def read_hf_weights(hf_dir: Path) -> Dict[str, torch.Tensor]:
    """The state dict from model.safetensors, or pytorch_model.bin loaded with weights_only=True."""
    safetensors_file, pickle_file = hf_dir / "model.safetensors", hf_dir / "pytorch_model.bin"
    if safetensors_file.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(safetensors_file))
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise ConversionError(f"{safetensors_file} is not a readable safetensors file: {err}") from err
    if pickle_file.is_file():
        try:
            return torch.load(str(pickle_file), map_location="cpu", weights_only=True)
        except Exception as err:
            raise ConversionError(f"{pickle_file} could not be loaded safely (weights_only=True): {err}") from err
    raise ConversionError(f"{hf_dir} has neither model.safetensors nor pytorch_model.bin")


def fairseq_setup(
    arch: str, options: Dict[str, Any], task_name: str, data_dir: str, task_options: Dict[str, Any] = None
):
    """(cfg, task, model) as fairseq-train builds them for `--arch arch` with `options` set on top
    (set on the parsed namespace, so that a preset's True cannot override an explicit False).
    `task_options` (e.g. --source-lang) are set the same way but belong to the task, not the model."""
    from fairseq import options as fairseq_options
    from fairseq import tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    user_dir = Path(__file__).resolve().parents[2] / "user_dir"
    argv = [data_dir, "--task", task_name, "--arch", arch, "--cpu"]
    if user_dir.is_dir():
        argv += ["--user-dir", str(user_dir)]
    parser = fairseq_options.get_training_parser()
    args = fairseq_options.parse_args_and_arch(parser, argv)
    for name, value in {**(task_options or {}), **options}.items():
        setattr(args, name, value)
    cfg = convert_namespace_to_omegaconf(args)
    lost = {
        name: value for name, value in options.items() if cfg.model.get(name, cfg.task.get(name, "<absent>")) != value
    }
    if lost:
        raise AssertionError(f"options did not reach the {arch} config: {lost}")
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    return cfg, task, model


def import_hf(hf_dir: str, out_checkpoint: str, head: str = None, dtype: str = "float32", verify: bool = True) -> float:
    """Writes OUT_CHECKPOINT (+ dict.txt); returns the verified max abs output difference (nan if not verified)."""
    from fairseq import checkpoint_utils
    from transformers import MegaConfig

    from .hf_export import compare, load_model_code

    source = Path(hf_dir)
    if not (source / "config.json").is_file():
        raise ConversionError(
            f"{source}/config.json does not exist: pass a directory written by save_pretrained or mega-export-hf"
        )
    if dtype not in DTYPES:
        raise ConversionError(f"unknown dtype {dtype!r}; choose {', '.join(DTYPES)}")
    config_dict = read_config_json(source / "config.json")
    model_type = config_dict.get("model_type")
    code_only = model_type in (CODE_MODEL_TYPE, CODE_MODEL_TYPE + "_seq2seq")  # mega-export-hf's model-code exports
    if model_type == "encoder-decoder" or model_type == CODE_MODEL_TYPE + "_seq2seq":
        hf_config = _encoder_decoder_config(source, config_dict)
        hf_class = head or "EncoderDecoderModel"
        special_ids = hf_config.decoder
    elif model_type in ("mega", CODE_MODEL_TYPE):
        hf_config = (
            MegaConfig.from_dict(_as_native(config_dict)) if code_only else MegaConfig.from_pretrained(str(source))
        )
        hf_class = head or (hf_config.architectures or [None])[0]
        special_ids = hf_config
    else:
        raise ConversionError(
            f"{source}/config.json describes model_type {model_type!r}, not 'mega' (or an encoder-decoder of Mega "
            f"models, or a mega-export-hf model-code export, {CODE_MODEL_TYPE!r})"
        )
    for side in [hf_config, getattr(hf_config, "encoder", None), getattr(hf_config, "decoder", None)]:
        if side is not None and getattr(side, "norm_eps", 1e-5) != 1e-5:
            raise ConversionError(
                f"{source}/config.json: norm_eps {side.norm_eps}; fairseq Mega models use 1e-5 (no option changes it)"
            )
    if hf_class is None:
        raise ConversionError(
            "config.json names no architecture: pass --head with the transformers class (e.g. MegaForCausalLM)"
        )
    try:
        target = target_for_hf_class(hf_class)
        arch, options = target.fairseq_options(hf_config, native=not code_only)
    except ValueError as err:
        raise ConversionError(f"cannot import {hf_class}: {err}") from err
    if (special_ids.pad_token_id, special_ids.bos_token_id, special_ids.eos_token_id) != (1, 0, 2):
        raise ConversionError(
            f"special ids pad={special_ids.pad_token_id} bos={special_ids.bos_token_id} "
            f"eos={special_ids.eos_token_id}: "
            "fairseq dictionaries use <s>=0, <pad>=1, </s>=2, <unk>=3"
        )
    hf_state = read_hf_weights(source)
    check_finite(hf_state, source / "model.safetensors" if (source / "model.safetensors").is_file() else source)
    if model_type == "encoder-decoder":
        dictionary = build_dictionary(source, hf_config.encoder.vocab_size)
        target_file = "dict.target.txt" if (source / "dict.target.txt").is_file() else "dict.txt"
        dictionaries = {
            "dict.src.txt": dictionary,
            "dict.tgt.txt": build_dictionary(source, hf_config.decoder.vocab_size, target_file),
        }
    else:
        dictionary = build_dictionary(source, hf_config.vocab_size)
        dictionaries = {"dict.txt": dictionary}

    out = Path(out_checkpoint)
    with staging_dir(out) as tmp:
        for name, dictionary_ in dictionaries.items():
            dictionary_.save(str(tmp / name))
        try:
            cfg, task, model = fairseq_setup(arch, options, target.fairseq_task, str(tmp))
        except (ValueError, TypeError) as err:
            raise ConversionError(f"{source}/config.json describes a model fairseq cannot build: {err}") from err
        try:
            target.prepare_import(model, hf_config)
            state = target.from_hf(hf_state, model)
        except KeyError as err:
            raise ConversionError(
                f"cannot import {source}: its weights lack {err}, which the model its config.json describes needs "
                "(config.json and the weights file belong to different models?)"
            ) from err
        except ValueError as err:
            raise ConversionError(f"cannot import {source}: {err}") from err
        state.setdefault(FINGERPRINT_KEY, model.state_dict()[FINGERPRINT_KEY])  # of the dictionaries written
        load_exactly(model, state, source)
        model.eval()
        max_diff = float("nan")
        if verify:
            import transformers

            loaders = []  # transformers' own Mega classes, and the export's model code when it has one
            if not code_only:
                loaders.append(
                    lambda: getattr(transformers, target.hf_class).from_pretrained(str(source), dtype=torch.float32)
                )
            if "auto_map" in config_dict:
                loaders.append(lambda: load_model_code(source, target.hf_class))
            max_diff = 0.0
            for load in loaders:
                hf_model = load().float().eval()
                try:
                    diff = compare(target, model, hf_model, probe_tokens(target.layer_cfg(model), dictionary))
                except ValueError as err:
                    raise ConversionError(f"verification failed: {err}") from err
                if not diff <= TOLERANCE:
                    raise ConversionError(
                        f"verification failed: the fairseq model's outputs differ from transformers' by {diff:.3g}; "
                        "nothing written"
                    )
                max_diff = max(max_diff, diff)
        cfg.task.data = str(out.parent.resolve())
        check_finite(model.state_dict(), source, DTYPES[dtype])  # --dtype float16 may overflow
        weights = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
        checkpoint = checkpoint_dict(cfg, weights, hf_source={"dir": str(source.resolve()), "class": target.hf_class})
        checkpoint_utils.torch_persistent_save(checkpoint, str(tmp / out.name))
        os.replace(tmp / out.name, out)
        for name in dictionaries:
            os.replace(tmp / name, out.parent / name)
    return max_diff


def checkpoint_dict(cfg, weights: Dict[str, torch.Tensor], **extra) -> Dict[str, Any]:
    """A fairseq checkpoint of imported weights: no optimizer state, training (--restore-file) starts at
    update 0 of epoch 1; `extra` records where the weights came from."""
    from omegaconf import OmegaConf

    return {
        "args": None,
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "model": weights,
        "criterion": None,
        "optimizer_history": [
            {
                "criterion_name": "CrossEntropyCriterion",
                "optimizer_name": "none",
                "lr_scheduler_state": {"best": None},
                "num_updates": 0,
            }
        ],
        "task_state": {},
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},  # training starts at epoch 1
        "last_optimizer_state": None,
        **extra,
    }


def _as_native(config_dict: dict) -> dict:
    """A model-code export's config dict as transformers' MegaConfig reads it (model_type mega, no auto_map)."""
    out = {k: v for k, v in config_dict.items() if k != "auto_map"}
    out["model_type"] = "mega"
    return out


def _encoder_decoder_config(source: Path, config_dict: dict):
    from transformers import EncoderDecoderConfig

    sides = {side: config_dict.get(side, {}).get("model_type") for side in ("encoder", "decoder")}
    if set(sides.values()) - {"mega", CODE_MODEL_TYPE}:
        raise ConversionError(
            f"{source} is an encoder-decoder of {sides}; only Mega encoder + Mega decoder models import"
        )
    native = {k: v for k, v in config_dict.items() if k != "auto_map"}
    native.update(
        model_type="encoder-decoder", encoder=_as_native(native["encoder"]), decoder=_as_native(native["decoder"])
    )
    return EncoderDecoderConfig.from_dict(native)


def load_exactly(model, state: Dict[str, torch.Tensor], source: Path):
    """load_state_dict that names every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        lines = [f"missing {missing}"] * bool(missing) + [f"unexpected {unexpected}"] * bool(unexpected) + shapes
        raise ConversionError(
            f"the weights in {source} do not fit the model its config.json describes:\n  - " + "\n  - ".join(lines)
        )
    model.load_state_dict(state, strict=True)


def output_files(hf_dir: str, out_checkpoint: str):
    """The files mega-import-hf writes: OUT_CHECKPOINT and the dictionaries beside it."""
    out = Path(out_checkpoint)
    try:
        model_type = json.loads((Path(hf_dir) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    names = ["dict.src.txt", "dict.tgt.txt"] if model_type == "encoder-decoder" else ["dict.txt"]
    return [out] + [out.parent / name for name in names]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mega-import-hf", description=__doc__.split("\n\n")[0])
    parser.add_argument("hf_dir")
    parser.add_argument("out_checkpoint")
    parser.add_argument("--head", help="transformers class to import as (default: config.json's architectures[0])")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="dtype of the saved weights")
    parser.add_argument("--no-verify", action="store_true", help="skip comparing outputs with transformers")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT_CHECKPOINT or dictionary beside it (a data-bin's dict.txt must match its data)",
    )
    args = parser.parse_args(argv)

    try:
        if Path(args.out_checkpoint).is_dir():
            raise ConversionError(f"OUT_CHECKPOINT {args.out_checkpoint} is a directory: pass a file name (model.pt)")
        refuse_to_replace(output_files(args.hf_dir, args.out_checkpoint), args.overwrite, "mega-import-hf", True)
        diff = import_hf(args.hf_dir, args.out_checkpoint, args.head, args.dtype, verify=not args.no_verify)
    except user_errors() as err:
        print(f"mega-import-hf: error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out_checkpoint} and {Path(args.out_checkpoint).parent / 'dict.txt'}"
        + ("" if diff != diff else f"; verified: max |output diff| {diff:.2e}")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
