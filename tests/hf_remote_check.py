"""Run by tests/test_hf_remote_code.py under another transformers (e.g. .venv-hf5 with transformers 5.23, which has
no Mega and no fairseq): loads an export with trust_remote_code=True and compares with reference tensors.

    python tests/hf_remote_check.py EXPORT_DIR REFERENCE.pt   -> prints one JSON line of results
"""

import json
import sys

import torch
import transformers


def word_tokenizer(export_dir: str):
    """A word-level fast tokenizer over the export's dict.txt (+ <mask> last), RoBERTa templates: enough for
    the pipelines on the tests' word-level data (real exports ship a sentencepiece tokenizer with --spm)."""
    from pathlib import Path

    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    symbols = ["<s>", "<pad>", "</s>", "<unk>"] + [
        line.rsplit(" ", 1)[0] for line in (Path(export_dir) / "dict.txt").read_text(encoding="utf-8").splitlines()
    ]
    if "<mask>" not in symbols:
        symbols.append("<mask>")
    backend = Tokenizer(models.WordLevel({s: i for i, s in enumerate(symbols)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


PIPELINES = {
    "masked_lm": ("fill-mask", lambda run: run("w1 w2 <mask> w3")),
    "cls": ("text-classification", lambda run: run("w1 w2 w3")),
    "tok": ("token-classification", lambda run: run("w1 w2 w3 w4")),
    "qa": ("question-answering", lambda run: run(question="w1 w2", context="w3 w4 w5 w6 w7")),
}


def pipelines(ref) -> dict:
    """{kind: what the pipeline returned (label names, counts)} for the encoder exports with a pipeline."""
    from transformers.pipelines import SUPPORTED_TASKS

    out = {}
    for kind, (task, call) in PIPELINES.items():
        if task not in SUPPORTED_TASKS:  # transformers 5 removed question-answering (and translation)
            out[kind] = {"removed_from_transformers": task}
            continue
        export_dir = ref["heads"][kind][0]
        runner = transformers.pipeline(
            task, model=export_dir, tokenizer=word_tokenizer(export_dir), trust_remote_code=True
        )
        result = call(runner)
        if task == "text-classification":
            out[kind] = {"label": result[0]["label"], "id2label": list(runner.model.config.id2label.values())}
        elif task == "question-answering":
            out[kind] = {"answer": result["answer"]}
        else:
            out[kind] = {"count": len(result)}
    return out


def heads(ref) -> dict:
    """Encoder classes: {kind: max |difference|} of each export's outputs against fairseq's."""
    out = {}
    tokens, types = ref["tokens"], ref["token_types"]
    for kind, (export_dir, auto_class, expected) in ref["heads"].items():
        model = getattr(transformers, auto_class).from_pretrained(export_dir, trust_remote_code=True).eval()
        with torch.no_grad():
            if kind == "mc":
                got = model(tokens.unsqueeze(1), token_type_ids=types.unsqueeze(1)).logits
            else:
                result = model(tokens, token_type_ids=types)
                if kind == "qa":
                    got = torch.stack([result.start_logits, result.end_logits], dim=-1)
                else:
                    got = result.pooler_output if kind == "pool" else result.logits
        out[kind] = {"class": type(model).__name__, "max_diff": (got - expected).abs().max().item()}
    return out


def tokenizer_and_pipeline(export_dir: str, ref) -> dict:
    """A causal LM export with a tokenizer: ids of raw text (no special tokens added), model_max_length, and the
    text-generation pipeline (greedy) continuing a text like generate() on its ids."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(export_dir, trust_remote_code=True)  # 5.x reads config.json
    out = {"ids_equal": [tokenizer(line).input_ids for line in ref["lines"]] == ref["ids"]}
    out["model_max_length"] = tokenizer.model_max_length
    generator = transformers.pipeline("text-generation", model=export_dir, tokenizer=tokenizer, trust_remote_code=True)
    text = generator(ref["lines"][0], max_new_tokens=6, do_sample=False, return_full_text=False)[0]["generated_text"]
    ids = torch.tensor([ref["ids"][0]])
    model = generator.model
    expected = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
    out["pipeline_equal"] = text == tokenizer.decode(expected[0, ids.size(1) :], skip_special_tokens=True)
    return out


def main(export_dir: str, reference: str):
    ref = torch.load(reference, weights_only=True)
    if "lines" in ref:
        print(json.dumps({"transformers": transformers.__version__, **tokenizer_and_pipeline(export_dir, ref)}))
        return
    if "heads" in ref:
        result = {"transformers": transformers.__version__, "heads": heads(ref)}
        if ref.get("pipelines"):
            result["pipelines"] = pipelines(ref)
        print(json.dumps(result))
        return
    auto = getattr(transformers, ref["auto_class"])
    model = auto.from_pretrained(export_dir, trust_remote_code=True).eval()
    out = {"transformers": transformers.__version__, "class": type(model).__name__}
    with torch.no_grad():
        if "src" in ref:
            seq2seq(model, ref, out)
            print(json.dumps(out))
            return
        logits = model(ref["tokens"]).logits
        out["max_diff"] = (logits - ref["logits"]).abs().max().item()
        if "greedy" in ref:
            prompt = ref["greedy"][:, : ref["prompt_len"]]
            common = dict(attention_mask=torch.ones_like(prompt), eos_token_id=None, pad_token_id=1)
            new = ref["greedy"].size(1) - prompt.size(1)
            greedy = model.generate(prompt, max_new_tokens=new, do_sample=False, **common)
            out["greedy_equal"] = torch.equal(greedy, ref["greedy"])
            beam = model.generate(
                prompt,
                max_new_tokens=new,
                num_beams=3,
                do_sample=False,
                length_penalty=0.0,
                output_scores=True,
                return_dict_in_generate=True,
                **common,
            )
            full = torch.log_softmax(model(beam.sequences).logits.float(), -1)
            picked = full[:, prompt.size(1) - 1 : -1].gather(-1, beam.sequences[:, prompt.size(1) :, None])
            out["beam_score_diff"] = (picked.sum((1, 2)) - beam.sequences_scores).abs().max().item()
            sample = model.generate(prompt, max_new_tokens=new, do_sample=True, top_k=5, **common)
            out["sample_shape"] = list(sample.shape)
    print(json.dumps(out))


def seq2seq(model, ref, out):
    """Translation: logits on (src, decoder input), greedy (fixed length) and beam search (with </s>) vs fairseq's."""
    src = ref["src"]
    mask = torch.ones_like(src)
    logits = model(input_ids=src, attention_mask=mask, decoder_input_ids=ref["tgt_in"]).logits
    out["max_diff"] = (logits - ref["logits"]).abs().max().item()
    start = model.config.decoder_start_token_id
    new = ref["greedy"].size(1) - 1
    greedy = model.generate(src, attention_mask=mask, max_new_tokens=new, do_sample=False)
    pad = model.config.pad_token_id  # rows that ended with </s> continue with padding; all ended: generation stops
    greedy = torch.nn.functional.pad(greedy, (0, ref["greedy"].size(1) - greedy.size(1)), value=pad)
    out["greedy_equal"] = torch.equal(greedy, ref["greedy"])
    beam = model.generate(
        src,
        attention_mask=mask,
        num_beams=ref["beam"],
        max_new_tokens=ref["beam_max_len"],
        length_penalty=1.0,
        early_stopping=True,
        output_scores=True,
        return_dict_in_generate=True,
    )
    tokens = [row[1:][row[1:] != model.config.pad_token_id].tolist() for row in beam.sequences]
    out["beam_equal"] = tokens == ref["beam_tokens"] and start == beam.sequences[0, 0].item()
    out["beam_score_diff"] = (beam.sequences_scores - ref["beam_scores"]).abs().max().item()
    out["sample_shape"] = list(model.generate(src, attention_mask=mask, max_new_tokens=new, do_sample=True).shape)


if __name__ == "__main__":
    main(*sys.argv[1:])
