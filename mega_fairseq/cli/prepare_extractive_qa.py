"""SQuAD-style JSON -> question/context token files + answer spans -> fairseq-preprocess (task mega_extractive_qa).

    mega-prepare-extractive-qa --train train.json --valid dev.json [--test test.json] \\
        --destdir data-bin/squad [--spm spm.model] [--srcdict pretrain-data-bin/dict.txt] [--no-binarize]

Input: {"data": [{"paragraphs": [{"context": str, "qas": [{"id", "question", "answers": [{"text",
"answer_start"}, ...]}]}]}]} (SQuAD v1.1; questions without answers get no span).
Tokens are whitespace words, or their sentencepiece pieces with --spm; each answer's character span
becomes the context tokens it overlaps.  An answer outside its context, or whose text differs from
the context at answer_start, is an error naming the question id.

Output in DESTDIR:
  text/{split}.question, text/{split}.context   tokens, one question (and its context) a line
  text/dict.source                              train questions + contexts (input dictionary source)
  input0/, input1/                              fairseq-preprocess output (one shared dictionary)
  label/{split}.jsonl                           {"id", "spans", "answers", "context", "offsets"} a line
The fairseq-preprocess commands are printed (--no-binarize only prints them).  Fine-tuning a
pretrained model needs its input dictionary: pass it as --srcdict.
"""

import json
from pathlib import Path

from ..data.binarize import preprocess_args, run
from ..data.prepare_cli import build_parser, given_splits, run_main
from ..data.subword import SubwordTokenizer


def answer_span(offsets, start: int, end: int):
    """Context tokens overlapping characters [start, end): (first, last) or None."""
    inside = [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
    return (inside[0], inside[-1]) if inside else None


def read_squad(path: Path, tokenizer: SubwordTokenizer):
    """[(question tokens, context tokens, label record)]; ValueError naming the question on bad answers."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not SQuAD-style JSON with a top-level 'data' list ({error})") from None
    try:
        examples = squad_examples(path, data, tokenizer)
    except (KeyError, TypeError, AttributeError) as error:
        what = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        raise ValueError(
            f"{path}: not SQuAD-style JSON ({what}): expected {{'data': [{{'paragraphs': [{{'context': str, "
            "'qas': [{'id', 'question', 'answers': [{'text', 'answer_start'}]}]}]}]}"
        ) from None
    if not examples:
        raise ValueError(f"{path}: no questions")
    return examples


def squad_examples(path: Path, data, tokenizer: SubwordTokenizer):
    """The examples of read_squad from the parsed 'data' list."""
    examples = []
    for article in data:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            tokens, offsets = tokenizer.tokenize_with_offsets(context)
            for qa in paragraph["qas"]:
                qid = qa.get("id", "?")
                question = tokenizer.tokenize_with_offsets(qa["question"])[0]
                if not question:
                    raise ValueError(f"{path}: question {qid}: empty question")
                spans, texts = [], []
                for k, answer in enumerate(qa.get("answers", [])):
                    text, start = answer["text"], int(answer["answer_start"])
                    end = start + len(text)
                    if start < 0 or end > len(context):
                        raise ValueError(
                            f"{path}: question {qid}: answer {k} span [{start}, {end}) lies outside its context of "
                            f"{len(context)} characters"
                        )
                    if context[start:end] != text:
                        raise ValueError(
                            f"{path}: question {qid}: answer {k} text {text!r} does not match the context at "
                            f"answer_start {start}: {context[start:end]!r}"
                        )
                    span = answer_span(offsets, start, end)
                    if span is None:
                        raise ValueError(f"{path}: question {qid}: answer {k} {text!r} covers no context token")
                    if span not in spans:
                        spans.append(span)
                    texts.append(text)
                record = {"id": qid, "spans": spans, "answers": texts, "context": context, "offsets": offsets}
                examples.append((question, tokens, record))
    return examples


def main(argv=None):
    args = build_parser(__doc__).parse_args(argv)
    tokenizer = SubwordTokenizer(args.spm)
    splits = given_splits(args)
    text, labels = args.destdir / "text", args.destdir / "label"
    text.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    questions, contexts = {}, {}
    for name, path in splits.items():
        examples = read_squad(path, tokenizer)
        questions[name], contexts[name] = text / f"{name}.question", text / f"{name}.context"
        questions[name].write_text("".join(" ".join(q) + "\n" for q, _, _ in examples), encoding="utf-8")
        contexts[name].write_text("".join(" ".join(c) + "\n" for _, c, _ in examples), encoding="utf-8")
        with open(labels / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for _, _, record in examples:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        if name == "train":
            unique = list(dict.fromkeys(" ".join(c) for _, c, _ in examples))
            (text / "dict.source").write_text(
                "".join(" ".join(q) + "\n" for q, _, _ in examples) + "".join(c + "\n" for c in unique),
                encoding="utf-8",
            )
        answered = sum(1 for _, _, r in examples if r["spans"])
        print(f"{name}: {len(examples)} questions ({answered} with answers)", flush=True)
    srcdict = args.srcdict
    if srcdict is None:
        cmd = preprocess_args({"train": text / "dict.source"}, text, None, args.workers) + ["--dict-only"]
        run(cmd, args.no_binarize)
        srcdict = text / "dict.txt"
    run(preprocess_args(questions, args.destdir / "input0", srcdict, args.workers), args.no_binarize)
    run(preprocess_args(contexts, args.destdir / "input1", srcdict, args.workers), args.no_binarize)


def cli():
    """The console script: `main` on sys.argv, bad input exits with ``error: ...``."""
    run_main(main)


if __name__ == "__main__":
    cli()
