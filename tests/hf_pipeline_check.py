"""Run by tests/test_hf_pipelines.py under each transformers available (4.57.6 here, 5.23 in .venv-hf5, which has no
Mega and no fairseq): runs the pipelines an export ships (pipeline_mega_fairseq.py, ``custom_pipelines``) with
trust_remote_code=True and, beside them, the same computation done by hand on the model.

    python tests/hf_pipeline_check.py EXPORT_DIR SPEC.json   -> prints one JSON line of results

SPEC: {"kind": "qa", "tokenizer": "word" | "export", "examples": [[question, context], ...], "max_seq_len": N}
   or {"kind": "translation", "tokenizer": "word" | "export", "texts": [...], "generate": {generate kwargs}}
"""

import json
import sys
from pathlib import Path

import torch
import transformers
from hf_remote_check import word_tokenizer  # tests/ (this script's directory) is on sys.path

MAX_ANSWER_LEN = 15


def tokenizer_for(export_dir: str, spec: dict):
    if spec["tokenizer"] == "export":
        return transformers.AutoTokenizer.from_pretrained(export_dir, trust_remote_code=True)
    tokenizer = word_tokenizer(export_dir)
    if spec["kind"] == "translation":  # fairseq's translation source: words, then </s>
        from tokenizers import processors

        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 2)]
        )
    return tokenizer


def answer_by_hand(model, tokenizer, question: str, context: str) -> dict:
    """The best span by brute force over (start, end) pairs of context tokens (start <= end, end - start <
    MAX_ANSWER_LEN, the first wins ties), from the model's own start/end logits on the tokenizer's pair."""
    enc = tokenizer(question, context, return_offsets_mapping=True, return_tensors="pt")
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if model.config.add_token_type_embeddings:  # fairseq's types: 0 through the first </s>, 1 after it
        first_sep = enc["input_ids"][0].tolist().index(tokenizer.sep_token_id)
        inputs["token_type_ids"] = (torch.arange(enc["input_ids"].size(1)) > first_sep).long()[None]
    with torch.no_grad():
        out = model(**inputs)
    start, end = out.start_logits[0].double().tolist(), out.end_logits[0].double().tolist()
    positions = [i for i, sid in enumerate(enc.sequence_ids(0)) if sid == 1]
    best = None
    for a, s in enumerate(positions):
        for e in positions[a : a + MAX_ANSWER_LEN]:
            if best is None or start[s] + end[e] > best[0]:
                best = (start[s] + end[e], s, e)
    _, s, e = best
    offsets = enc["offset_mapping"][0].tolist()
    char_start, char_end = offsets[s][0], offsets[e][1]
    while context[char_start].isspace():
        char_start += 1
    return {"answer": context[char_start:char_end], "start": char_start, "end": char_end, "tokens": [s, e]}


def question_answering(export_dir: str, spec: dict) -> dict:
    tokenizer = tokenizer_for(export_dir, spec)
    qa = transformers.pipeline("question-answering", model=export_dir, tokenizer=tokenizer, trust_remote_code=True)
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(export_dir, trust_remote_code=True).eval()
    out = {"pipeline_class": type(qa).__name__, "model_class": type(qa.model).__name__, "examples": []}
    for question, context in spec["examples"]:
        got = qa(question=question, context=context)
        windowed = qa({"question": question, "context": context}, max_seq_len=spec["max_seq_len"], doc_stride=3)
        out["examples"].append(
            {
                "pipeline": got,
                "by_hand": answer_by_hand(model, tokenizer, question, context),
                "windowed": windowed,
                "top2": qa(question, context, top_k=2),
            }
        )
    out["batch"] = qa(question=[q for q, _ in spec["examples"]], context=[c for _, c in spec["examples"]])
    return out


def translation(export_dir: str, spec: dict) -> dict:
    tokenizer = tokenizer_for(export_dir, spec)
    kwargs = spec["generate"]
    out = {"texts": [], "pipelines": {}}
    model = None
    for task, key in (("translation", "translation_text"), ("text2text-generation", "generated_text")):
        pipe = transformers.pipeline(task, model=export_dir, tokenizer=tokenizer, trust_remote_code=True)
        out["pipelines"][task] = {
            "class": type(pipe).__name__,
            "texts": [rows[0][key] for rows in pipe(spec["texts"], **kwargs)],
        }
        model = pipe.model
    out["model_class"] = type(model).__name__
    for text in spec["texts"]:
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(enc["input_ids"], attention_mask=enc["attention_mask"], **kwargs)
        out["texts"].append(
            {"source_ids": enc["input_ids"][0].tolist(), "by_hand": tokenizer.decode(ids[0], skip_special_tokens=True)}
        )
    return out


def main(export_dir: str, spec_file: str):
    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    run = question_answering if spec["kind"] == "qa" else translation
    print(json.dumps({"transformers": transformers.__version__, **run(export_dir, spec)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
