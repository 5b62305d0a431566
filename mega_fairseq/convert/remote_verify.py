"""Verifies a staged HF export under another Python interpreter (`mega-export-hf --verify-with PYTHON`).

    PYTHON /abs/path/mega_fairseq/convert/remote_verify.py EXPORT_DIR PROBES.safetensors
        -> prints one JSON line: {"transformers": VERSION, "class": ..., "lengths": [T_i], "diffs": [d_i],
           "max_diff": max_i d_i}   (or {"transformers": VERSION or null, "error": MESSAGE} and exit code 1)

Standalone: imports only torch, transformers, safetensors and the standard library (no fairseq, no mega_fairseq),
so any interpreter with those three packages runs it (e.g. a transformers 5.x virtualenv).  It loads EXPORT_DIR
with the probe file's Auto class, ``trust_remote_code=True`` (the export's own model code), in float64, runs
every probe and reports max |output - expected| per probe; the exporter compares with its tolerance.

The probe file (safetensors; written by `hf_export.write_probe_file`) holds, for probe i = 0 .. n-1:

    probe{i}.input_ids          (B, T_i) int64
    probe{i}.token_type_ids     (B, T_i) int64        encoder classes with token-type embeddings only
    probe{i}.decoder_input_ids  (B, T'_i) int64       the seq2seq model only (fairseq's prev_output_tokens)
    probe{i}.expected           fairseq's float64 output, shaped as `OUTPUTS[hf_class]` returns

and the metadata ``{"hf_class": ..., "auto_class": ..., "probes": "n"}``.  `OUTPUTS` mirrors
`targets.Target.hf_outputs` (one entry per transformers class an export can have).
"""

import json
import sys
import traceback
from pathlib import Path

if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # run by path: this package's other files (common.py, tokenizer.py, ...) must not shadow modules


def _logits(model, inputs):
    return model(**inputs).logits


def _multiple_choice(model, inputs):
    """transformers scores (B, choices, T); each probe row is one sequence: (B, 1, T) -> (B, 1) logits."""
    return model(**{k: v.unsqueeze(1) for k, v in inputs.items()}).logits


def _question_answering(model, inputs):
    out = model(**inputs)
    return _stack([out.start_logits, out.end_logits])


def _pooler(model, inputs):
    return model(**inputs).pooler_output


def _causal_lm(model, inputs):
    return model(**inputs, use_cache=False).logits


def _seq2seq(model, inputs):
    return model(**inputs, use_cache=False).logits


def _stack(tensors):
    import torch

    return torch.stack(tensors, dim=-1)


# transformers class of the export (config.json "architectures") -> (model, probe inputs) -> comparable output
OUTPUTS = {
    "MegaForCausalLM": _causal_lm,
    "MegaForMaskedLM": _logits,
    "MegaForSequenceClassification": _logits,  # classification and regression
    "MegaForMultipleChoice": _multiple_choice,
    "MegaForTokenClassification": _logits,
    "MegaForQuestionAnswering": _question_answering,  # (B, T, 2): start and end logits
    "MegaModel": _pooler,
    "EncoderDecoderModel": _seq2seq,  # logits on (src, decoder input)
}
INPUT_NAMES = ("input_ids", "token_type_ids", "decoder_input_ids")


def load_float64(export_dir: str, auto_class: str):
    """The export through its own model code, in float64 (``dtype=`` from transformers 4.56, ``torch_dtype=``
    before)."""
    import torch
    import transformers

    auto = getattr(transformers, auto_class)
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    dtype_kwarg = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    model = auto.from_pretrained(export_dir, trust_remote_code=True, **{dtype_kwarg: torch.float64})
    return model.to(torch.float64).eval()


def verify(export_dir: str, probe_file: str) -> dict:
    """{"class", "lengths", "diffs", "max_diff"} of the export in `export_dir` against the probes' expected
    outputs."""
    import torch
    from safetensors import safe_open

    with safe_open(probe_file, framework="pt") as f:
        meta = f.metadata()
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    hf_class = meta["hf_class"]
    if hf_class not in OUTPUTS:
        raise ValueError(f"no verification for transformers class {hf_class!r}; known: {', '.join(sorted(OUTPUTS))}")
    model = load_float64(export_dir, meta["auto_class"])
    result = {"class": type(model).__name__, "lengths": [], "diffs": []}
    for i in range(int(meta["probes"])):
        inputs = {name: tensors[f"probe{i}.{name}"] for name in INPUT_NAMES if f"probe{i}.{name}" in tensors}
        expected = tensors[f"probe{i}.expected"].to(torch.float64)
        with torch.no_grad():
            got = OUTPUTS[hf_class](model, inputs).to(torch.float64)
        if got.shape != expected.shape:
            raise ValueError(
                f"output shapes differ on probe {i}: fairseq {tuple(expected.shape)} vs transformers {tuple(got.shape)}"
            )
        result["lengths"].append(inputs["input_ids"].size(-1))
        result["diffs"].append((got - expected).abs().max().item())
    result["max_diff"] = max(result["diffs"]) if result["diffs"] else 0.0
    return result


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    version = None
    try:
        import transformers

        version = transformers.__version__
        if len(argv) != 2:
            raise ValueError("usage: remote_verify.py EXPORT_DIR PROBES.safetensors")
        result = {"transformers": version, **verify(*argv)}
    except Exception as err:  # reported to the exporter, which refuses the export naming the interpreter
        message = f"{type(err).__name__}: {err}\n" + "".join(traceback.format_exc().splitlines(True)[-12:])
        print(json.dumps({"transformers": version, "error": message}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
