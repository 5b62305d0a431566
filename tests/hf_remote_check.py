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
    out = {}
    for kind, (task, call) in PIPELINES.items():  # question-answering: the export's own pipeline (5.x has none)
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
    tokens, types, mask = ref["tokens"], ref["token_types"], ref["attention_mask"]
    for kind, (export_dir, auto_class, expected) in ref["heads"].items():
        model = getattr(transformers, auto_class).from_pretrained(export_dir, trust_remote_code=True).eval()
        with torch.no_grad():
            if kind == "mc":
                got = model(tokens.unsqueeze(1), mask.unsqueeze(1), token_type_ids=types.unsqueeze(1)).logits
            else:
                result = model(tokens, mask, token_type_ids=types)
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
    # a batch of texts (left-padded by the tokenizer) continues each text as it continues alone
    out["padding_side"] = tokenizer.padding_side
    settings = dict(max_new_tokens=6, do_sample=False, return_full_text=False)
    alone = [generator(line, **settings)[0]["generated_text"] for line in ref["lines"]]
    together = [r[0]["generated_text"] for r in generator(ref["lines"], batch_size=len(ref["lines"]), **settings)]
    out["batch_equal"] = together == alone
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
        if "prompts" in ref:
            causal(model, ref, out)
    print(json.dumps(out))


def same_as_fairseq(generated: list, fairseq: list, max_len: int, eos: int) -> bool:
    """A transformers continuation (BOS dropped) equals fairseq's hypothesis: fairseq ends every hypothesis with
    </s>, forcing it at max_len, where transformers stops at max_new_tokens without it."""
    return generated == fairseq or (len(fairseq) == max_len + 1 and fairseq[-1] == eos and generated == fairseq[:-1])


def causal(model, ref, out):
    """Greedy and beam search per prompt vs fairseq's SequenceGenerator; sampling with top_k=1 vs greedy; and a
    left-padded batch of all prompts vs each prompt alone (tokens and every step's logits)."""
    eos, pad, max_len = 2, model.config.pad_token_id, ref["max_len"]
    common = dict(eos_token_id=eos, pad_token_id=pad, do_sample=False, length_penalty=0.0, early_stopping=True)
    out["greedy_equal"], out["beam_equal"], score_diffs = [], [], []
    for i, prompt in enumerate(ref["prompts"]):
        ids = torch.tensor([prompt])
        new = max_len - (len(prompt) - 1)
        for size, key in ((1, "greedy_equal"), (ref["beam"], "beam_equal")):
            result = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new,
                num_beams=size,
                output_scores=True,
                return_dict_in_generate=True,
                **common,
            )
            generated = result.sequences[0, 1:].tolist()
            fairseq = ref["hypotheses"][size][i]
            out[key].append(same_as_fairseq(generated, fairseq["tokens"], max_len, eos))
            if size > 1:  # transformers' score: the continuation's log-probabilities (fairseq's also count the prompt)
                continuation = sum(fairseq["positional_scores"][len(prompt) - 1 : len(generated)])
                score_diffs.append(abs(result.sequences_scores[0].item() - continuation))
    out["beam_score_diff"] = max(score_diffs)
    # a left-padded batch (transformers' convention for decoder-only generation)
    width = max(len(p) for p in ref["prompts"])
    batch = torch.tensor([[pad] * (width - len(p)) + p for p in ref["prompts"]])
    mask = (torch.arange(width) >= width - torch.tensor([len(p) for p in ref["prompts"]])[:, None]).long()
    new = 12
    steps = dict(max_new_tokens=new, output_logits=True, return_dict_in_generate=True, **common)
    out["left_padded_equal"], logit_diffs = [], []
    for size in (1, ref["beam"]):
        together = model.generate(batch, attention_mask=mask, num_beams=size, **steps)
        for i, prompt in enumerate(ref["prompts"]):
            ids = torch.tensor([prompt])
            alone = model.generate(ids, attention_mask=torch.ones_like(ids), num_beams=size, **steps)
            row = together.sequences[i, width - len(prompt) :]
            same = torch.equal(row[: alone.sequences.size(1)], alone.sequences[0])
            out["left_padded_equal"].append(same and bool((row[alone.sequences.size(1) :] == pad).all()))
            if size == 1:  # every step's logits of row i
                for step_together, step_alone in zip(together.logits, alone.logits):
                    logit_diffs.append((step_together[i] - step_alone[0]).abs().max().item())
    out["left_padded_logit_diff"] = max(logit_diffs)
    greedy = model.generate(batch, attention_mask=mask, max_new_tokens=new, **common)
    torch.manual_seed(0)
    sample = model.generate(batch, attention_mask=mask, max_new_tokens=new, **{**common, "do_sample": True}, top_k=1)
    out["sample_top1_equals_greedy"] = torch.equal(sample, greedy)
    out["sample_shape"] = list(sample.shape)


def seq2seq(model, ref, out):
    """Translation: logits on (src, decoder input), greedy (fixed length) and beam search (with </s>) vs fairseq's."""
    src = ref["src"]
    mask = src.ne(ref["src_pad"]).long()
    logits = model(input_ids=src, attention_mask=mask, decoder_input_ids=ref["tgt_in"]).logits
    out["max_diff"] = (logits - ref["logits"]).abs().max().item()
    start = model.config.decoder_start_token_id
    new = ref["greedy"].size(1) - 1
    # greedy with no --min-len (the reference recomputes argmax, </s> allowed first)
    greedy = model.generate(src, attention_mask=mask, max_new_tokens=new, num_beams=1, min_new_tokens=0)
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
    sample = model.generate(src, attention_mask=mask, max_new_tokens=new, do_sample=True, num_beams=1)
    out["sample_shape"] = list(sample.shape)
    # a bare generate(): the export's generation_config.json holds fairseq-generate's defaults
    default = model.generate(src, attention_mask=mask, output_scores=True, return_dict_in_generate=True)
    tokens = [row[1:][row[1:] != model.config.pad_token_id].tolist() for row in default.sequences]
    out["default_equal"] = tokens == ref["default_tokens"]
    out["default_score_diff"] = (default.sequences_scores - ref["default_scores"]).abs().max().item()


if __name__ == "__main__":
    main(*sys.argv[1:])
