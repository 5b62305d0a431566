"""HF exports carry their own model code (trust_remote_code=True): it loads on transformers 4.57.6 (this env)
and on transformers 5.x (the second env scripts/test.sh builds, .venv-hf5, run as a subprocess with
tests/hf_remote_check.py), matches fairseq, and decodes through generate() with the exact incremental state."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_hf_heads import checkpoint_with_heads, spm_lm  # noqa: F401  (fixtures)

from conftest import LM_TRAIN_ARGS, REPO, fairseq_cli

HF5_PYTHON = os.environ.get("MEGA_HF5_PYTHON") or str(REPO / ".venv-hf5" / "bin" / "python")
LM_ARGS = [a for a in LM_TRAIN_ARGS if a != "mega_lm_tiny"]
LM_ARGS[LM_ARGS.index("--arch") + 1 : LM_ARGS.index("--arch") + 1] = ["mega_lm_hf"]
SMALL = ["--decoder-layers", "2", "--decoder-embed-dim", "32", "--decoder-hidden-dim", "48"]
SMALL += ["--decoder-ffn-embed-dim", "48", "--decoder-z-dim", "16", "--max-update", "2"]


def train(lm_data, save: Path, *extra):
    fairseq_cli("fairseq-train", lm_data, *LM_ARGS, *SMALL, "--save-dir", save, *extra)
    return save / "checkpoint_last.pt"


GENERATION_MAX_LEN = 28  # fairseq's max_len_b: prompt + continuation + </s> (forced at this length)
PROMPT_LENGTHS = (5, 3, 17, 11, 1)  # around and across the chunk (8), with </s> prepended as fairseq's BOS


def reference(checkpoint, data, path: Path, beam: int = 3) -> Path:
    """fairseq's side of the comparison: logits on a probe (length 13: not a multiple of the chunk 8), and for
    each prompt the hypotheses of fairseq's own SequenceGenerator (through the language_modeling task's
    inference_step, i.e. as fairseq-interactive / the hub's sample() decode: </s> as BOS, the prompt forced,
    fairseq's incremental state) with beam 1 (greedy) and `beam` (unnormalised scores: len_penalty 0)."""
    from fairseq.sequence_generator import SequenceGenerator

    from mega_fairseq.convert.hf_export import load_fairseq_model

    model, task = load_fairseq_model(str(checkpoint), str(data))
    dictionary = task.target_dictionary
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, len(dictionary), (2, 13), generator=gen)
    prompts = [
        [dictionary.eos()] + torch.randint(4, len(dictionary), (n,), generator=gen).tolist() for n in PROMPT_LENGTHS
    ]
    hypotheses = {}
    with torch.no_grad():
        logits = model(tokens)[0]
        for size in (1, beam):
            generator = SequenceGenerator(
                [model], dictionary, beam_size=size, max_len_b=GENERATION_MAX_LEN, len_penalty=0.0
            )
            hypotheses[size] = []
            for prompt in prompts:
                src = torch.tensor([prompt])
                sample = {"net_input": {"src_tokens": src, "src_lengths": torch.tensor([src.size(1)])}}
                best = task.inference_step(generator, [model], sample)[0][0]
                hypotheses[size].append(
                    {"tokens": best["tokens"].tolist(), "positional_scores": best["positional_scores"].tolist()}
                )
    torch.save(
        {
            "tokens": tokens,
            "logits": logits,
            "prompts": prompts,
            "max_len": GENERATION_MAX_LEN,
            "hypotheses": hypotheses,
            "beam": beam,
            "auto_class": "AutoModelForCausalLM",
        },
        path,
    )
    return path


def check(python: str, export_dir: Path, ref: Path, script: str = "hf_remote_check.py") -> dict:
    """The JSON line tests/`script` prints when `python` (another transformers env, or this one) runs it on
    `export_dir` with the reference file `ref`."""
    proc = subprocess.run(
        [python, str(REPO / "tests" / script), str(export_dir), str(ref)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def assert_matches(result: dict):
    """generate() reproduces fairseq's SequenceGenerator token for token (greedy and beam), beam scores agree,
    and a left-padded batch decodes every row as it decodes alone (same tokens, same logits at every step)."""
    assert result["max_diff"] <= 1e-5, result
    assert all(result["greedy_equal"]) and all(result["beam_equal"]), result
    assert result["beam_score_diff"] <= 1e-4, result
    assert result["sample_top1_equals_greedy"] and result["sample_shape"][0] == len(PROMPT_LENGTHS), result
    assert all(result["left_padded_equal"]), result
    assert result["left_padded_logit_diff"] <= 1e-5, result


@pytest.fixture(scope="module")
def chunked_lm_export(lm_data, tmp_path_factory):
    from mega_fairseq.convert.hf_export import export

    root = tmp_path_factory.mktemp("remote_lm")
    checkpoint = train(lm_data, root / "ckpt")
    export(str(checkpoint), str(root / "hf"), data=str(lm_data))
    return root / "hf", reference(checkpoint, lm_data, root / "ref.pt")


def test_export_writes_model_code_with_auto_map_and_keeps_the_native_config(chunked_lm_export):
    from mega_fairseq.convert.remote_code import module_files

    export_dir, _ = chunked_lm_export
    config = json.loads((export_dir / "config.json").read_text())
    assert config["model_type"] == "mega" and config["architectures"] == ["MegaForCausalLM"]
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_mega_fairseq.MegaFairseqForCausalLM"
    for path in module_files():  # every building block, copied (imports renamed), none hand-written
        copied = (export_dir / f"mega_{path.name}").read_text()
        assert "from ." not in copied or "from .mega_" in copied
    modeling = (export_dir / "modeling_mega_fairseq.py").read_text()
    imports = {line.split()[1] for line in modeling.splitlines() if line.startswith(("import ", "from "))}
    assert {i.split(".")[0] for i in imports if not i.startswith(".")} <= {"typing", "torch", "transformers"}


def test_model_code_matches_fairseq_and_generates_on_transformers_4(chunked_lm_export):
    export_dir, ref = chunked_lm_export
    result = check(sys.executable, export_dir, ref)
    assert result["transformers"].startswith("4.") and result["class"] == "MegaFairseqForCausalLM"
    assert_matches(result)


def test_native_mega_still_loads_without_trust_remote_code(chunked_lm_export):
    from transformers import AutoModelForCausalLM, MegaForCausalLM

    export_dir, ref = chunked_lm_export
    model = AutoModelForCausalLM.from_pretrained(str(export_dir)).eval()
    assert type(model) is MegaForCausalLM
    with torch.no_grad():
        logits = model(torch.load(ref)["tokens"][:, :8], use_cache=False).logits
    assert (logits - torch.load(ref)["logits"][:, :8]).abs().max() <= 1e-5


def test_a_row_of_padding_only_leaves_the_other_rows_alone(chunked_lm_export):
    """A batch row with no token at all (attention_mask all 0) is computed without error and changes nothing in
    the other rows (a left-padded one and a full one), in a forward pass and while decoding."""
    from transformers import AutoModelForCausalLM

    export_dir, _ = chunked_lm_export
    model = AutoModelForCausalLM.from_pretrained(str(export_dir), trust_remote_code=True).eval()
    ids = torch.tensor([[1, 1, 1, 1, 1], [2, 5, 6, 7, 8], [1, 1, 2, 5, 6]])
    mask = ids.ne(1).long()
    settings = dict(max_new_tokens=4, do_sample=False, pad_token_id=1, eos_token_id=None)
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        together = model.generate(ids, attention_mask=mask, **settings)
        assert logits.isfinite().all()
        for row, start in ((1, 0), (2, 2)):
            alone = ids[row : row + 1, start:]
            assert (logits[row, start:] - model(alone).logits[0]).abs().max() <= 1e-5
            assert torch.equal(together[row, start:], model.generate(alone, **settings)[0])


@pytest.mark.skipif(not Path(HF5_PYTHON).exists(), reason="no transformers 5 env (scripts/test.sh builds .venv-hf5)")
def test_model_code_matches_fairseq_and_generates_on_transformers_5(chunked_lm_export):
    export_dir, ref = chunked_lm_export
    result = check(HF5_PYTHON, export_dir, ref)
    assert result["transformers"].startswith("5."), result
    assert_matches(result)


GENERATION_CONFIGS = {  # the chunked softmax model is `chunked_lm_export`
    "unchunked-laplace": ["--decoder-chunk-size", "-1", "--attention-activation-fn", "laplace"],
    "chunked-relu2-simple-bias": ["--attention-activation-fn", "relu2", "--rel-pos-bias", "simple"],
    "chunked-truncated-ema": ["--truncation-length", "6"],  # model code only (transformers' Mega ignores it)
}


@pytest.mark.parametrize(
    "name",
    [
        "unchunked-laplace",
        pytest.param("chunked-relu2-simple-bias", marks=pytest.mark.slow),
        pytest.param("chunked-truncated-ema", marks=pytest.mark.slow),
    ],
)
def test_generate_reproduces_fairseq_for_other_configurations(lm_data, tmp_path, name):
    """generate() == fairseq's SequenceGenerator (greedy, beam), left-padded batches == rows alone, on every
    transformers env available, for an unchunked laplace model (default run), relu2 with the simple bias and a
    truncated EMA (slow)."""
    from mega_fairseq.convert.hf_export import export

    checkpoint = train(lm_data, tmp_path / "ckpt", *GENERATION_CONFIGS[name])
    export(str(checkpoint), str(tmp_path / "hf"), data=str(lm_data))
    ref = reference(checkpoint, lm_data, tmp_path / "ref.pt")
    for python in [sys.executable] + ([HF5_PYTHON] if Path(HF5_PYTHON).exists() else []):
        assert_matches(check(python, tmp_path / "hf", ref))


@pytest.mark.slow  # ~40 s: trains its own model
def test_rmsnorm_exports_with_model_code_only(lm_data, tmp_path):
    """transformers' MegaRMSNorm does not normalise: such a model gets model_type mega_fairseq (native Mega refuses
    it) and still matches fairseq through its model code, on every transformers env available."""
    from transformers import AutoModelForCausalLM

    from mega_fairseq.convert.hf_export import export

    checkpoint = train(lm_data, tmp_path / "ckpt", "--normalization-type", "rmsnorm")
    export(str(checkpoint), str(tmp_path / "hf"), data=str(lm_data))
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "mega_fairseq" and config["normalization_type"] == "rmsnorm"
    with pytest.raises((ValueError, KeyError, OSError)):
        AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), trust_remote_code=False)
    ref = reference(checkpoint, lm_data, tmp_path / "ref.pt")
    assert_matches(check(sys.executable, tmp_path / "hf", ref))
    if Path(HF5_PYTHON).exists():
        assert_matches(check(HF5_PYTHON, tmp_path / "hf", ref))
    # mega-import-hf takes the model-code export back exactly (verified through the model code)
    from safetensors.torch import load_file

    from mega_fairseq.convert.hf_import import import_hf

    assert import_hf(str(tmp_path / "hf"), str(tmp_path / "ft" / "model.pt")) <= 1e-5
    export(str(tmp_path / "ft" / "model.pt"), str(tmp_path / "hf2"))
    first, second = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("hf", "hf2"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def translation_reference(model, task, path: Path, new_tokens: int = 9, beam: int = 3) -> Path:
    """fairseq's logits, greedy decoding (full recomputation per step; after </s> a row continues with padding)
    and beam search (fairseq's SequenceGenerator, its best hypothesis and score) on a 7-token source (chunk 4), one
    row left-padded."""
    from fairseq.sequence_generator import SequenceGenerator

    tgt_dict = task.target_dictionary
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(4, len(task.source_dictionary), (2, 7), generator=gen)
    tgt_in = torch.randint(4, len(tgt_dict), (2, 6), generator=gen)
    tgt_in[:, 0] = tgt_dict.eos()
    src[1, :2] = task.source_dictionary.pad()  # left-padded, as fairseq's translation batches are
    with torch.no_grad():
        logits = model(src, None, tgt_in)[0]
        seq = torch.full((2, 1), tgt_dict.eos())
        done = torch.zeros(2, dtype=torch.bool)
        for _ in range(new_tokens):
            step = model(src, None, seq)[0][:, -1].argmax(-1)
            step = step.masked_fill(done, tgt_dict.pad())
            done |= step.eq(tgt_dict.eos())
            seq = torch.cat([seq, step[:, None]], 1)
        generator = SequenceGenerator([model], tgt_dict, beam_size=beam, max_len_a=0, max_len_b=new_tokens)
        sample = {"net_input": {"src_tokens": src, "src_lengths": torch.tensor([7, 5])}}
        hyps = generator.generate([model], sample)
        # fairseq-generate's defaults (beam 5, --lenpen 1, --min-len 1, --max-len-b 200): the export's
        # generation_config.json makes a bare generate() decode the same
        from fairseq.dataclass.configs import GenerationConfig

        default_hyps = task.inference_step(task.build_generator([model], GenerationConfig()), [model], sample)
    torch.save(
        {
            "src": src,
            "src_pad": task.source_dictionary.pad(),
            "tgt_in": tgt_in,
            "logits": logits,
            "greedy": seq,
            "beam": beam,
            "beam_max_len": new_tokens,
            "beam_tokens": [h[0]["tokens"].tolist() for h in hyps],
            "beam_scores": torch.stack([h[0]["score"] for h in hyps]),
            "default_tokens": [h[0]["tokens"].tolist() for h in default_hyps],
            "default_scores": torch.stack([h[0]["score"] for h in default_hyps]),
            "auto_class": "AutoModelForSeq2SeqLM",
        },
        path,
    )
    return path


@pytest.mark.slow  # ~55 s: trains a translation model
def test_translation_model_code_generates_like_fairseq(tmp_path):
    """Greedy and beam search through generate() reproduce fairseq's (SequenceGenerator) tokens and scores, with
    the decoder's cross-attention keys/values computed once, on every transformers env available."""
    from test_translation import TRAIN_ARGS, preprocess, write_toy_parallel

    from mega_fairseq.convert.hf_export import export, load_fairseq_model

    write_toy_parallel(tmp_path / "text", {"train": 60, "valid": 8, "test": 8})
    data = preprocess(tmp_path / "text", tmp_path / "bin")
    exportable = ["--no-scale-embedding", "--no-final-norm", "--output-bias", "--max-update", "4"]
    fairseq_cli("fairseq-train", data, *TRAIN_ARGS, *exportable, "--save-dir", tmp_path / "ckpt")
    checkpoint = tmp_path / "ckpt" / "checkpoint_last.pt"
    export(str(checkpoint), str(tmp_path / "hf"), data=str(data))
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSeq2SeqLM"] == "modeling_mega_fairseq.MegaFairseqForConditionalGeneration"
    model, task = load_fairseq_model(str(checkpoint), str(data))
    ref = translation_reference(model, task, tmp_path / "ref.pt")
    for python in [sys.executable] + ([HF5_PYTHON] if Path(HF5_PYTHON).exists() else []):
        result = check(python, tmp_path / "hf", ref)
        assert result["max_diff"] <= 1e-5, result
        assert result["greedy_equal"] and result["beam_equal"], result
        assert result["beam_score_diff"] <= 1e-5, result
        assert result["default_equal"] and result["default_score_diff"] <= 1e-5, result


def test_every_encoder_class_loads_through_model_code_and_matches_fairseq(checkpoint_with_heads, tmp_path):  # noqa: F811
    """Base model (+pooler), masked LM, sequence classification and regression, multiple choice, token
    classification and QA: each export loads with its Auto class and trust_remote_code=True on every
    transformers env available and matches fairseq (sentence pairs of 19 tokens: not a multiple of the chunk 8; one
    row left-padded)."""
    from test_hf_heads import AUTO_CLASSES

    from mega_fairseq.convert.hf_export import export, load_fairseq_model

    checkpoint, data = checkpoint_with_heads
    model, task = load_fairseq_model(str(checkpoint), str(data))
    tokens = torch.randint(4, len(task.source_dictionary), (3, 19), generator=torch.Generator().manual_seed(1))
    tokens[:, 0], tokens[:, 9] = 0, 2
    types = (torch.arange(19) > 9).long().expand(3, 19).contiguous()
    tokens[2, :5] = task.source_dictionary.pad()  # a left-padded row (fairseq's encoder realigns it; so must HF)
    mask = tokens.ne(task.source_dictionary.pad()).long()
    heads = {}
    for kind, auto_class in AUTO_CLASSES.items():
        export(str(checkpoint), str(tmp_path / kind), data=str(data), head=kind)
        with torch.no_grad():
            expected = model(tokens)[0] if kind == "masked_lm" else model(tokens, classification_head_name=kind)[0]
        heads[kind] = (str(tmp_path / kind), auto_class, expected)
    torch.save(
        {"tokens": tokens, "token_types": types, "attention_mask": mask, "heads": heads, "pipelines": True},
        tmp_path / "ref.pt",
    )
    for python in [sys.executable] + ([HF5_PYTHON] if Path(HF5_PYTHON).exists() else []):
        result = check(python, tmp_path, tmp_path / "ref.pt")
        assert set(result["heads"]) == set(AUTO_CLASSES), result
        for kind, found in result["heads"].items():
            assert found["class"].startswith("MegaFairseq") and found["max_diff"] <= 1e-5, (
                result["transformers"],
                kind,
            )
        # pipelines (a word-level tokenizer over dict.txt): fill-mask, text-classification (a label name from
        # id2label), token-classification, question-answering (the export's own pipeline: transformers 5 has none)
        pipes = result["pipelines"]
        assert pipes["masked_lm"]["count"] == 5 and pipes["tok"]["count"] >= 1, result
        assert pipes["cls"]["label"] in pipes["cls"]["id2label"], result
        assert isinstance(pipes["qa"]["answer"], str), result  # on 5.x: the pipeline shipped with the export


def test_model_card_has_hub_front_matter_and_a_snippet_that_runs_as_written(chunked_lm_export):
    import re

    from huggingface_hub import ModelCard

    export_dir, _ = chunked_lm_export
    card = ModelCard.load(export_dir / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-generation"
    assert {"mega", "fairseq"} <= set(card.data.tags)
    assert "trust_remote_code=True" in card.text and "4.57.6" in card.text and "float64" in card.text
    snippet = re.search(r"```python\n(.*?)```", card.text, flags=re.S).group(1)
    for python in [sys.executable] + ([HF5_PYTHON] if Path(HF5_PYTHON).exists() else []):
        proc = subprocess.run([python, "-c", snippet], cwd=export_dir, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "tensor(" in proc.stdout, proc.stderr[-2000:]


def test_causal_tokenizer_and_text_generation_pipeline(spm_lm, tmp_path):  # noqa: F811
    """With --spm: the tokenizer adds no special tokens to a causal LM's text, its model_max_length is the model's
    max positions, it pads on the left, and the text-generation pipeline runs (== generate() on the same ids; a
    batch == each text alone), on every env available."""
    import sentencepiece as spm

    from mega_fairseq.convert.hf_export import export, load_fairseq_model

    data, checkpoint, spm_model, raw_lines = spm_lm
    export(str(checkpoint), str(tmp_path / "hf"), data=str(data), spm=str(spm_model))
    processor = spm.SentencePieceProcessor(model_file=str(spm_model))
    model, task = load_fairseq_model(str(checkpoint), str(data))
    lines = raw_lines[:3]
    ids = [
        task.source_dictionary.encode_line(
            " ".join(processor.encode(line, out_type=str)), append_eos=False, add_if_not_exist=False
        ).tolist()
        for line in lines
    ]
    torch.save({"lines": lines, "ids": ids}, tmp_path / "ref.pt")
    for python in [sys.executable] + ([HF5_PYTHON] if Path(HF5_PYTHON).exists() else []):
        result = check(python, tmp_path / "hf", tmp_path / "ref.pt")
        assert result["ids_equal"] and result["pipeline_equal"] and result["batch_equal"], result
        assert result["padding_side"] == "left", result
        assert result["model_max_length"] == model.max_positions(), result


def test_label_names_skip_fairseq_dictionary_padding():
    from fairseq.data import Dictionary

    from mega_fairseq.convert.hf_export import label_names

    labels = Dictionary()
    for name in ("negative", "positive"):
        labels.add_symbol(name)
    labels.pad_to_multiple_(8)  # fairseq-preprocess pads every dictionary so
    assert len(labels) - labels.nspecial > 2
    assert label_names(labels, 2) == ["negative", "positive"]
    assert label_names(labels, 1) == [] and label_names(None, 2) == [] and label_names(labels, 5) == []
