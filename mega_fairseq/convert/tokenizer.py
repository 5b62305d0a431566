"""A transformers tokenizer whose ids are a fairseq dictionary's ids, from the sentencepiece model
the data was encoded with.

fairseq's pipeline is: sentencepiece pieces -> `Dictionary` ids (specials <s>=0, <pad>=1, </s>=2,
<unk>=3, then symbols in dict.txt order, which is by frequency, not sentencepiece's order).
transformers' `XLMRobertaTokenizer` (slow and fast) maps a sentencepiece model to exactly
that special layout with an offset of one: id = sentencepiece id + 1.  So we write a copy of the
sentencepiece model whose pieces are re-ordered to dict.txt's order ([<unk>, <s>, </s>] first,
then dictionary symbol k at position k-1), keeping each piece's score: segmentation is
unchanged, and `AutoTokenizer.from_pretrained(OUT_DIR)` gives fairseq's ids.

Encoding templates are XLM-R's, which are fairseq's RoBERTa conventions: ``<s> A </s>`` and
``<s> A </s> </s> B </s>`` (sentence_prediction with --init-token 0 --separator-token 2); the
masked LM's ``<mask>`` is the id after the dictionary, as fairseq's masked_lm task adds it.
A causal LM consumes bare pieces: its tokenizer adds no special tokens (`bare_post_processor`).  A translation
model's source is ``A </s>`` (fairseq's translation task appends </s>, no <s>): its tokenizer adds that
(`translation_post_processor`) and decodes the target with the same pieces, so source and target must share one
dictionary (``fairseq-preprocess --joined-dictionary``); other translation models are refused (`check_joined`).

Sentencepiece pieces that are not in the dictionary (never seen in the training data) are left
out: fairseq would map such a piece to <unk>, the exported tokenizer segments around it.
The export reports how many there are (usually none).
"""

import tempfile
from pathlib import Path
from typing import List, Tuple

from .common import ConversionError

FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
UNUSED_SCORE = -1e4  # dictionary-only symbols (fairseq's madeupword padding): never chosen by segmentation


def dictionary_symbols(dictionary) -> List[str]:
    """The dictionary's symbols after the four specials, without a trailing <mask> (XLM-R adds its own)."""
    specials = tuple(dictionary.symbols[:4])
    if specials != FAIRSEQ_SPECIALS or dictionary.nspecial != 4:
        raise ConversionError(
            f"the dictionary starts with {specials} (nspecial {dictionary.nspecial}); a transformers tokenizer with "
            f"matching ids needs fairseq's default specials {FAIRSEQ_SPECIALS}"
        )
    symbols = list(dictionary.symbols[4:])
    if symbols and symbols[-1] == "<mask>":
        symbols.pop()
    if "<mask>" in symbols:
        raise ConversionError("<mask> must be the dictionary's last symbol (as fairseq's masked_lm task adds it)")
    return symbols


def reordered_spm_model(spm_path: str, symbols: List[str]) -> Tuple[bytes, int, List[str]]:
    """A serialized sentencepiece model with pieces [<unk>, <s>, </s>] + `symbols`.

    Returns (model bytes, number of sentencepiece pieces left out, dictionary symbols that are
    not sentencepiece pieces)."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(Path(spm_path).read_bytes())
    if proto.trainer_spec.model_type != model_pb2.TrainerSpec.UNIGRAM:
        raise ConversionError(f"{spm_path} is not a unigram sentencepiece model; only unigram models are exported")
    pieces = {p.piece: p for p in proto.pieces}
    Piece = model_pb2.ModelProto.SentencePiece
    new_pieces = [
        Piece(piece="<unk>", score=0.0, type=Piece.UNKNOWN),
        Piece(piece="<s>", score=0.0, type=Piece.CONTROL),
        Piece(piece="</s>", score=0.0, type=Piece.CONTROL),
    ]
    not_pieces = []
    for symbol in symbols:
        source = pieces.get(symbol)
        if source is None or source.type != Piece.NORMAL:
            not_pieces.append(symbol)
            new_pieces.append(Piece(piece=symbol, score=UNUSED_SCORE, type=Piece.UNUSED))
        else:
            new_pieces.append(Piece(piece=symbol, score=source.score, type=Piece.NORMAL))
    kept = set(symbols)
    left_out = sum(1 for p in proto.pieces if p.type == Piece.NORMAL and p.piece not in kept)
    del proto.pieces[:]
    proto.pieces.extend(new_pieces)
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id, proto.trainer_spec.eos_id, proto.trainer_spec.pad_id = (
        0,
        1,
        2,
        -1,
    )
    return proto.SerializeToString(), left_out, not_pieces


def _set_post_processor(out_dir: Path, eos_after_each: bool) -> None:
    """tokenizer.json's post-processor -> ``$A`` / ``$A $B`` (eos_after_each: ``$A </s>`` / ``$A </s> $B </s>``),
    loaded as ``PreTrainedTokenizerFast`` (transformers 4.x and 5.x alike, also with use_fast=False)."""
    import json

    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    # the generic fast class keeps tokenizer.json's post-processor (transformers 5.x's XLMRobertaTokenizer rebuilds
    # its own, which adds <s> ... </s>); the sentencepiece model stays beside it
    config.update(tokenizer_class="PreTrainedTokenizerFast", add_bos_token=False, add_eos_token=eos_after_each)
    config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
    path = out_dir / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    eos = [{"SpecialToken": {"id": "</s>", "type_id": 0}}] if eos_after_each else []
    eos_b = [{"SpecialToken": {"id": "</s>", "type_id": 1}}] if eos_after_each else []
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, *eos],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, *eos, {"Sequence": {"id": "B", "type_id": 1}}, *eos_b],
        "special_tokens": {"</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}} if eos_after_each else {},
    }
    path.write_text(json.dumps(spec, ensure_ascii=False, indent=2), encoding="utf-8")


def bare_post_processor(out_dir: Path) -> None:
    """tokenizer.json's post-processor -> one that adds no special tokens (``$A`` / ``$A $B``): a causal LM's."""
    _set_post_processor(out_dir, eos_after_each=False)


def translation_post_processor(out_dir: Path) -> None:
    """tokenizer.json's post-processor -> ``$A </s>`` (fairseq's translation source: pieces, then </s>)."""
    _set_post_processor(out_dir, eos_after_each=True)


def check_joined(dictionary, target_dictionary) -> None:
    """Refuses (ConversionError) a translation model whose target dictionary is not its source dictionary."""
    if target_dictionary is not None and list(target_dictionary.symbols) != list(dictionary.symbols):
        raise ConversionError(
            "--spm: this translation model's source and target dictionaries differ (the export writes "
            "dict.target.txt), and one transformers tokenizer cannot encode the source with one and decode the "
            "target with the other; export without --spm, or binarize with `fairseq-preprocess --joined-dictionary` "
            "(and train on that data) to export a tokenizer"
        )


def save_tokenizer(
    spm_path: str,
    dictionary,
    out_dir: str,
    model_max_length: int = None,
    add_special_tokens: bool = True,
    target_dictionary=None,
) -> dict:
    """Writes an XLM-R style tokenizer (slow + fast) for `dictionary` into `out_dir`; returns a summary.

    model_max_length: the model's longest input (pipelines truncate to it).  add_special_tokens=False (a causal LM,
    which consumes bare pieces): the fast tokenizer's post-processor adds nothing, so ``tokenizer(text)`` gives
    the pieces' ids as fairseq's language_modeling task reads them, and pads on the left (transformers' convention
    for decoder-only generation, which the model code decodes exactly).  target_dictionary (a translation model's): the
    fast tokenizer encodes a text as fairseq's translation source (pieces + </s>) and decodes the target; refused
    (`check_joined`) unless it is `dictionary` itself."""
    from transformers import XLMRobertaTokenizer, XLMRobertaTokenizerFast

    check_joined(dictionary, target_dictionary)
    if not Path(spm_path).is_file():
        raise ConversionError(f"sentencepiece model {spm_path} does not exist")
    symbols = dictionary_symbols(dictionary)
    model_bytes, left_out, not_pieces = reordered_spm_model(spm_path, symbols)
    real_symbols = [s for s in symbols if not s.startswith("madeupword")]
    missing = [s for s in not_pieces if not s.startswith("madeupword")]
    if len(missing) > len(real_symbols) // 2:
        raise ConversionError(
            f"{len(missing)} of {len(real_symbols)} dictionary symbols (e.g. {missing[:5]}) are not pieces of "
            f"{spm_path}: "
            "pass the sentencepiece model the data was encoded with"
        )
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "sentencepiece.bpe.model"
        vocab_file.write_bytes(model_bytes)
        kwargs = {"model_max_length": model_max_length} if model_max_length else {}
        if not add_special_tokens and target_dictionary is None:  # a causal LM: batches of prompts pad on the left
            kwargs["padding_side"] = "left"
        slow = XLMRobertaTokenizer(vocab_file=str(vocab_file), **kwargs)
        fast = XLMRobertaTokenizerFast(vocab_file=str(vocab_file), **kwargs)
        fast.save_pretrained(out_dir)  # tokenizer.json + tokenizer_config.json + special tokens
        slow.save_pretrained(out_dir)  # adds sentencepiece.bpe.model for the slow class
    if target_dictionary is not None:
        translation_post_processor(Path(out_dir))
    elif not add_special_tokens:
        bare_post_processor(Path(out_dir))
    return {"symbols": len(symbols), "spm_pieces_left_out": left_out, "symbols_not_in_spm": missing}
