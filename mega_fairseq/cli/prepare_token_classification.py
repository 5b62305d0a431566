"""CoNLL-style token labels -> aligned subword files -> fairseq-preprocess (task mega_token_classification).

    mega-prepare-token-classification --train train.conll --valid valid.conll [--test test.conll] \\
        --destdir data-bin/ner [--spm spm.model] [--srcdict pretrain-data-bin/dict.txt] [--no-binarize]

Input: one token per line, whitespace-separated columns with the token first and the label last
(`--label-column` picks another), a blank line between sentences; `-DOCSTART-` lines are skipped.
Every line of a file must have the same number of columns.

Output in DESTDIR:
  text/{split}.input0  the tokens (whitespace words, or their sentencepiece pieces with --spm), one sentence a line
  text/{split}.label   one label per token: the word's label on its first piece, `<pad>` (not scored) on the others
  text/label.dict.txt  the label set: the labels of the train file (or --labels), in fairseq dict format
  input0/, label/      fairseq-preprocess output (the commands are printed; --no-binarize only prints them)
Fine-tuning a pretrained model needs its input dictionary: pass it as --srcdict.
Labels of valid/test that the train file lacks are an error (name them all with --labels, comma-separated:
--labels B-PER,I-PER,O).
"""

from collections import Counter
from pathlib import Path

from ..data.binarize import preprocess_args, run
from ..data.prepare_cli import build_parser, given_splits, not_utf8, run_main
from ..data.subword import SubwordTokenizer

IGNORED = "<pad>"  # label symbol of non-first subwords; binarizes to the pad index, which the task ignores


def read_conll(path: Path, label_column: int):
    """[(words, labels, line numbers)] of a CoNLL file; ValueError naming file:line on misaligned columns."""
    sentences, words, labels, lines = [], [], [], []
    n_columns = first_line = None
    try:
        with open(path, encoding="utf-8") as f:
            lines_of_file = list(enumerate(f, 1))
    except UnicodeDecodeError as error:
        raise not_utf8(path, error) from None
    for number, line in lines_of_file:
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if words:
                sentences.append((words, labels, lines))
            words, labels, lines = [], [], []
            continue
        if len(columns) < 2:
            raise ValueError(
                f"{path}:{number}: expected 'token ... label' columns, got {len(columns)}: {line.rstrip()!r}"
            )
        if n_columns is None:
            n_columns, first_line = len(columns), number
        elif len(columns) != n_columns:
            raise ValueError(
                f"{path}:{number}: {len(columns)} columns but line {first_line} has {n_columns}; "
                f"the label column is misaligned with the tokens: {line.rstrip()!r}"
            )
        try:
            label = columns[label_column]
        except IndexError:
            raise ValueError(f"{path}:{number}: no column {label_column} in {line.rstrip()!r}") from None
        words.append(columns[0])
        labels.append(label)
        lines.append(number)
    if words:
        sentences.append((words, labels, lines))
    if not sentences:
        raise ValueError(f"{path}: no sentences")
    return sentences


def align(sentences, tokenizer: SubwordTokenizer, known_labels, path: Path):
    """-> (token lines, label lines); ValueError naming file:line for a label outside `known_labels`."""
    token_lines, label_lines = [], []
    for words, labels, lines in sentences:
        tokens, aligned = [], []
        for word, label, number in zip(words, labels, lines):
            if known_labels is not None and label not in known_labels:
                raise ValueError(
                    f"{path}:{number}: unknown label {label!r} (not in the label set of the train file: "
                    f"{' '.join(sorted(known_labels))}); pass every label with --labels, comma-separated: "
                    f"--labels {','.join(sorted(set(known_labels) | {label}))}"
                )
            pieces = tokenizer.word_pieces(word)
            tokens += pieces
            aligned += [label] + [IGNORED] * (len(pieces) - 1)
        token_lines.append(" ".join(tokens))
        label_lines.append(" ".join(aligned))
    return token_lines, label_lines


def add_label_arguments(parser):
    parser.add_argument("--labels", help="comma-separated label set (default: the labels of the train file)")
    parser.add_argument("--label-column", type=int, default=-1, help="column of the label (default: the last)")


def main(argv=None):
    args = build_parser(__doc__, add_label_arguments).parse_args(argv)
    tokenizer = SubwordTokenizer(args.spm)
    splits = given_splits(args)
    data = {name: read_conll(path, args.label_column) for name, path in splits.items()}
    counts = Counter(label for _, labels, _ in data["train"] for label in labels)
    if args.labels:
        known = [label for label in args.labels.split(",") if label]
        missing = set(counts) - set(known)
        if missing:
            raise ValueError(
                f"{args.train}: labels {sorted(missing)} are not in --labels (comma-separated, e.g. "
                f"--labels {','.join(sorted(set(known) | missing))})"
            )
    else:
        known = sorted(counts, key=lambda label: (label != "O", label))
    text = args.destdir / "text"
    text.mkdir(parents=True, exist_ok=True)
    label_dict = text / "label.dict.txt"
    label_dict.write_text("".join(f"{label} {counts.get(label, 0)}\n" for label in known), encoding="utf-8")
    inputs, labels = {}, {}
    for name, path in splits.items():
        token_lines, label_lines = align(data[name], tokenizer, set(known), path)
        inputs[name], labels[name] = text / f"{name}.input0", text / f"{name}.label"
        inputs[name].write_text("\n".join(token_lines) + "\n", encoding="utf-8")
        labels[name].write_text("\n".join(label_lines) + "\n", encoding="utf-8")
        print(f"{name}: {len(token_lines)} sentences, {sum(len(t.split()) for t in token_lines)} tokens", flush=True)
    print(f"labels ({len(known)}): {' '.join(known)}", flush=True)
    run(preprocess_args(inputs, args.destdir / "input0", args.srcdict, args.workers), args.no_binarize)
    run(preprocess_args(labels, args.destdir / "label", label_dict, args.workers), args.no_binarize)


def cli():
    """The console script: `main` on sys.argv, bad input exits with ``error: ...``."""
    run_main(main)


if __name__ == "__main__":
    cli()
