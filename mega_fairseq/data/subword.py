"""Word -> subword tokenization with character offsets, for the fine-tuning data scripts.

Text is split on whitespace into words; each word becomes one token (no sentencepiece model) or its
sentencepiece pieces (encoded word by word, so a piece never spans two words).  A token's character
offsets are exact when the pieces spell the word (sentencepiece's normalization changed nothing);
otherwise every piece of that word gets the whole word's span.
"""

import re
from typing import List, Optional, Tuple

_WORD = re.compile(r"\S+")
_SPACE = "\u2581"  # sentencepiece's word-start marker


class SubwordTokenizer:
    def __init__(self, spm_model: Optional[str] = None):
        self.processor = None
        if spm_model is not None:
            import sentencepiece as spm

            try:
                self.processor = spm.SentencePieceProcessor(model_file=str(spm_model))
            except (RuntimeError, OSError) as error:
                raise ValueError(
                    f"--spm {spm_model} is not a sentencepiece model ({error}): pass the .model file "
                    "spm_train / scripts/spm_prepare.py wrote"
                ) from None

    def word_pieces(self, word: str) -> List[str]:
        """The tokens of one word (at least one)."""
        if self.processor is None:
            return [word]
        pieces = [p for p in self.processor.encode(word, out_type=str) if p]
        return pieces or [word]

    def word_pieces_with_offsets(self, word: str, start: int) -> List[Tuple[str, int, int]]:
        """[(piece, char start, char end)] of a word that starts at character `start`."""
        pieces = self.word_pieces(word)
        surfaces = [p.replace(_SPACE, "") for p in pieces]
        if "".join(surfaces) != word:
            return [(p, start, start + len(word)) for p in pieces]
        out, pos = [], start
        for piece, surface in zip(pieces, surfaces):
            out.append((piece, pos, pos + len(surface)))
            pos += len(surface)
        return out

    def tokenize_with_offsets(self, text: str) -> Tuple[List[str], List[Tuple[int, int]]]:
        """tokens and their [char start, char end) in `text`."""
        tokens, offsets = [], []
        for match in _WORD.finditer(text):
            for piece, s, e in self.word_pieces_with_offsets(match.group(), match.start()):
                tokens.append(piece)
                offsets.append((s, e))
        return tokens, offsets
