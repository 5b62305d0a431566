"""Export a fairseq `mega_lm` checkpoint to transformers' `MegaForCausalLM` (config.json + model.safetensors).

    mega-export-hf CHECKPOINT OUT_DIR [--data DIR] [--dtype float32|float16|bfloat16] [--no-verify]

Lossless or refused: structures transformers' Mega cannot express are refused with the option
to change (see `exportability_problems`).  After writing, the export is loaded back with
transformers and its logits are compared with the fairseq model's on a probe batch; above
1e-4 the files are removed and the command fails, so a wrong model is never left behind.
Other heads (masked LM, classification, ...) are not exported yet.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import List

import torch

from .hf_names import lm_state_dict_to_hf, to_hf_config_kwargs

TOLERANCE = 1e-4
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ExportError(ValueError):
    pass


def load_fairseq_lm(checkpoint: str, data: str = None):
    """(model, task) from a fairseq checkpoint (torch.load stays weights_only; the plugin allowlists Namespace)."""
    from fairseq import checkpoint_utils

    from .models.mega_lm import MegaLanguageModel

    if not Path(checkpoint).is_file():
        raise ExportError(f"checkpoint {checkpoint} does not exist")
    overrides = {"data": data} if data else None
    try:
        models, _, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides=overrides)
    except FileNotFoundError as err:
        raise ExportError(f"{err}; pass --data DIR with the data-bin directory holding the dictionary") from err
    model = models[0].eval()
    if not isinstance(model, MegaLanguageModel):
        raise ExportError(f"{checkpoint} holds a {type(model).__name__}, not a mega_lm model; only mega_lm exports to MegaForCausalLM so far")
    return model, task


def exportability_problems(model) -> List[str]:
    """Why transformers' MegaForCausalLM cannot hold this model exactly (empty: exportable)."""
    decoder, problems = model.decoder, []
    stack, cfg = decoder.stack, decoder.stack.cfg
    fix = "; the mega_lm_hf preset has the exportable structure"
    if stack.embed_scale != 1.0:
        problems.append("embeddings are scaled by sqrt(D): train with --no-scale-embedding" + fix)
    if stack.embed_norm is not None:
        problems.append("--normalize-embedding adds a norm HF Mega does not have" + fix)
    if stack.final_norm is not None:
        problems.append("a final norm after the last layer (from --normalize-before): add --no-final-norm" + fix)
    if decoder.adaptive_softmax is not None or not isinstance(stack.embed_tokens, torch.nn.Embedding):
        problems.append("adaptive input/softmax cannot be expressed by HF Mega")
    if cfg.normalization_type == "rmsnorm":
        problems.append("HF's MegaRMSNorm does not normalize (a known transformers bug), so an rmsnorm model would compute differently")
    if cfg.norm_eps != 1e-5:
        problems.append(f"norm epsilon {cfg.norm_eps} (HF Mega fixes 1e-5)")
    if cfg.truncation is not None:
        problems.append("--truncation-length: HF's decoder ignores truncation when use_cache=True (its default); train without truncation")
    if cfg.rel_pos_bias == "simple" and not cfg.chunked and cfg.max_positions < 2:
        problems.append("a simple relative bias needs max_positions >= 2")
    return problems


def hf_config(model, task):
    from transformers import MegaConfig

    decoder, dictionary = model.decoder, task.target_dictionary
    cfg = decoder.stack.cfg
    tied = decoder.output_projection.weight is decoder.stack.embed_tokens.weight
    kwargs = to_hf_config_kwargs(cfg, len(decoder.stack.layers), len(dictionary), dictionary.pad())
    return MegaConfig(
        **kwargs, add_lm_hidden_dense_layer=False, tie_word_embeddings=tied, use_cache=True,
        bos_token_id=dictionary.bos(), eos_token_id=dictionary.eos(), architectures=["MegaForCausalLM"],
    )


def probe_tokens(model, task, batch: int = 2) -> torch.Tensor:
    cfg = model.decoder.stack.cfg
    length = 2 * cfg.chunk_size if cfg.chunked else min(32, cfg.max_positions)
    gen = torch.Generator().manual_seed(0)
    dictionary = task.target_dictionary
    return torch.randint(dictionary.nspecial, len(dictionary), (batch, length), generator=gen)


def model_card(model, checkpoint: str, max_diff: float) -> str:
    cfg = model.decoder.stack.cfg
    notes = []
    if cfg.chunked:
        notes.append(f"Chunked (chunk {cfg.chunk_size}): transformers needs inputs whose length is <= the chunk or a multiple of it, "
                     "and its chunked incremental decoding crashes; decode with fairseq (mega_fairseq) instead.")
    if cfg.attention_activation != "softmax":
        notes.append(f"{cfg.attention_activation} attention: transformers' incremental decoding uses a wrong length normalizer "
                     "for it; its full forward is exact, fairseq's decoding is the reference.")
    return (
        "# Mega causal LM exported from fairseq\n\n"
        f"Exported by `mega-export-hf` from `{checkpoint}`. Load with `transformers==4.57.6`:\n\n"
        "```python\nfrom transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained(OUT_DIR)\n```\n\n"
        f"Verified after export: max |logits difference| {max_diff:.2e} against the fairseq model on a probe batch.\n\n"
        + "".join(f"- {n}\n" for n in notes)
        + "\nSource layer configuration:\n\n```json\n" + json.dumps(vars(cfg), indent=2, default=str) + "\n```\n"
    )


def export(checkpoint: str, out_dir: str, data: str = None, dtype: str = "float32", verify: bool = True) -> float:
    """Writes the export; returns the verified max abs logits difference (nan when not verified)."""
    from transformers import MegaForCausalLM

    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; choose {', '.join(DTYPES)}")
    model, task = load_fairseq_lm(checkpoint, data)
    problems = exportability_problems(model)
    if problems:
        raise ExportError("cannot export losslessly to transformers' MegaForCausalLM:\n  - " + "\n  - ".join(problems))
    config = hf_config(model, task)
    hf = MegaForCausalLM(config).eval()
    state = lm_state_dict_to_hf(model.decoder.state_dict(), model.decoder.stack.cfg)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if unexpected or set(missing) - allowed_missing:
        raise ExportError(f"name mapping incomplete: missing {sorted(set(missing) - allowed_missing)}, unexpected {sorted(unexpected)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf.to(DTYPES[dtype]).save_pretrained(out, safe_serialization=True)
    max_diff = float("nan")
    if verify:
        try:
            reloaded = MegaForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
            tokens = probe_tokens(model, task)
            with torch.no_grad():
                ours = model(tokens)[0].float()
                theirs = reloaded(tokens, use_cache=False).logits
            max_diff = (ours - theirs).abs().max().item()
            tolerance = TOLERANCE if dtype == "float32" else 1e-2 * max(1.0, ours.abs().max().item())
            if not max_diff <= tolerance:
                raise ExportError(f"verification failed: transformers' logits differ by {max_diff:.3g} (> {tolerance:g}); export removed")
        except Exception:
            for name in ("config.json", "model.safetensors", "generation_config.json", "README.md"):
                (out / name).unlink(missing_ok=True)
            raise
    (out / "README.md").write_text(model_card(model, checkpoint, max_diff), encoding="utf-8")
    return max_diff


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mega-export-hf", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out_dir")
    parser.add_argument("--data", help="data-bin directory with the dictionary (default: the path recorded in the checkpoint)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--no-verify", action="store_true", help="skip reloading with transformers and comparing logits")
    args = parser.parse_args(argv)
    import mega_fairseq  # noqa: F401  registers the models so the checkpoint can be built

    try:
        diff = export(args.checkpoint, args.out_dir, args.data, args.dtype, verify=not args.no_verify)
    except ExportError as err:
        print(f"mega-export-hf: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir}/config.json and model.safetensors" + ("" if diff != diff else f"; verified: max |logits diff| {diff:.2e}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
