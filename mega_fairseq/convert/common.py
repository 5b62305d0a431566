"""What every converter shares: dtypes, the output tolerance, the one conversion error, dictionaries,
staged (atomic) directory writes, probe inputs and the key-pattern compiler of the name tables.

Key patterns: a state-dict key with ``{field}`` placeholders, e.g. ``"layers.{i}.mega_layer.ema.{rest}"``.
`compile_key_pattern` turns one into an anchored regex whose named groups are the fields (``{i}`` a
layer index, ``{rest}`` any suffix, more fields by passing their regexes); `rename_key` applies a table
of (pattern, pattern) pairs in either direction, first match wins.
"""

import contextlib
import json
import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TOLERANCE = 1e-4  # max abs output difference a float32 conversion may show on the probe batch


class ConversionError(ValueError):
    """A model, checkpoint or directory that cannot be converted; the message says why and what to change."""


# ---------------------------------------------------------------- key patterns
KEY_FIELDS = {"i": r"\d+", "rest": r".+"}


@lru_cache(maxsize=None)
def _compile(pattern: str, fields: Tuple[Tuple[str, str], ...]) -> "re.Pattern":
    regexes = dict(fields)
    return re.compile(
        re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m.group(1)}>{regexes[m.group(1)]})", re.escape(pattern)) + "$"
    )


def compile_key_pattern(pattern: str, fields: Mapping[str, str] = KEY_FIELDS) -> "re.Pattern":
    """`pattern` with each ``{name}`` replaced by the named group ``(?P<name>fields[name])``, anchored at both ends."""
    return _compile(pattern, tuple(sorted(fields.items())))


def match_key(
    key: str, table: Sequence[Tuple[str, str]], reverse: bool = False, fields: Mapping[str, str] = KEY_FIELDS
) -> Optional[Tuple[str, Dict[str, str]]]:
    """(target pattern, field values) of the first (source, target) pair of `table` whose source matches `key`
    (with reverse=True the pairs are read as (target, source)); None if none does."""
    for left, right in table:
        source, target = (right, left) if reverse else (left, right)
        match = compile_key_pattern(source, fields).match(key)
        if match:
            return target, match.groupdict()
    return None


def rename_key(
    key: str, table: Sequence[Tuple[str, str]], reverse: bool = False, fields: Mapping[str, str] = KEY_FIELDS
) -> Optional[str]:
    """`key` renamed by the first matching pair of `table` (see `match_key`); None if none matches."""
    found = match_key(key, table, reverse, fields)
    return None if found is None else found[0].format(**found[1])


# ---------------------------------------------------------------- dictionaries
def build_dictionary(hf_dir: Path, vocab_size: int, file_name: str = "dict.txt"):
    """fairseq Dictionary of exactly `vocab_size` entries: `hf_dir/file_name` if it exists (plus the <mask>
    a masked LM's task adds), else a tokenizer's vocabulary in `hf_dir`, else placeholder symbols."""
    from fairseq.data import Dictionary

    dict_file = hf_dir / file_name
    if dict_file.is_file():
        try:
            dictionary = Dictionary.load(str(dict_file))
        except (ValueError, RuntimeError) as err:  # a malformed line (named with file and line by reliability)
            raise ConversionError(str(err)) from err
        if len(dictionary) == vocab_size - 1:  # a masked LM's dictionary gains <mask> in the task
            dictionary.add_symbol("<mask>")
    else:
        dictionary = Dictionary()
        tokens = tokenizer_vocabulary(hf_dir)
        for i in range(dictionary.nspecial, vocab_size):
            symbol = tokens[i] if tokens and i < len(tokens) and tokens[i] else f"<hf_{i}>"
            dictionary.add_symbol(symbol if symbol not in dictionary.indices else f"<hf_{i}>")
    if len(dictionary) != vocab_size:
        raise ConversionError(
            f"the dictionary has {len(dictionary)} entries but the model's vocab_size is {vocab_size}"
        )
    return dictionary


def tokenizer_vocabulary(hf_dir: Path) -> List[str]:
    """Tokens by id from a tokenizer in `hf_dir` if it uses fairseq's special layout, else []."""
    if not (hf_dir / "tokenizer.json").is_file() and not (hf_dir / "tokenizer_config.json").is_file():
        return []
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    except Exception:
        return []
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return tokens if tokens[:4] == ["<s>", "<pad>", "</s>", "<unk>"] else []


def task_dictionary(task):
    """The dictionary of a single-vocabulary model's inputs: the task's source dictionary, else its target one."""
    return task.source_dictionary if task.source_dictionary is not None else task.target_dictionary


# ---------------------------------------------------------------- staged writes
@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A temporary directory next to `out` (created with its parents), removed on exit: write there,
    then move the finished files into place, so that a failure leaves nothing partial behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.tmp") as tmp_name:
        yield Path(tmp_name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def move_into(tmp: Path, out: Path):
    """Moves the files of `tmp` into `out` (created if needed), replacing same-named files.

    Each file is fsync'ed, given the mode any new file gets (0666 / 0777 for a directory, less the umask: the
    staging directory's files are private) and renamed into place with ``os.replace`` (atomic per file: a kill
    leaves each file old or new, never truncated)."""
    out.mkdir(parents=True, exist_ok=True)
    mask = _umask()
    for item in sorted(tmp.iterdir()):
        dest = out / item.name
        if item.is_dir():
            for path in [item, *item.rglob("*")]:
                os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
            if dest.is_dir():
                shutil.rmtree(dest)
            shutil.move(str(item), str(dest))
            continue
        with open(item, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(item, 0o666 & ~mask)
        os.replace(item, dest)
    with contextlib.suppress(OSError):
        fd = os.open(out, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def refuse_to_replace(paths, overwrite: bool, what: str, data_dictionaries: bool = False):
    """Raises ConversionError naming the existing files among `paths` (the files a tool is about to write),
    unless `overwrite` (the user passed --overwrite).  data_dictionaries: say why a dict*.txt matters (imports)."""
    existing = [Path(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        dictionaries = [
            p for p in existing if data_dictionaries and p.name.startswith("dict") and p.name.endswith(".txt")
        ]
        note = (
            f" ({', '.join(p.name for p in dictionaries)} beside binarized data must stay the dictionary that data "
            "was binarized with)"
            if dictionaries
            else ""
        )
        raise ConversionError(
            f"{what} would replace {', '.join(map(str, existing))}{note}; nothing written. Pass --overwrite to "
            f"replace {'them' if len(existing) > 1 else 'it'}, or choose another output path"
        )


def read_config_json(path: Path) -> dict:
    """config.json as a dict; ConversionError naming the file when it is not a JSON object."""
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ConversionError(
            f"{path} is not a JSON file ({err}): pass a directory written by save_pretrained"
        ) from err
    if not isinstance(config, dict):
        raise ConversionError(f"{path} holds a JSON {type(config).__name__}, not the object of a transformers config")
    for where, section in [("", config)] + [(f"{k}.", config.get(k)) for k in ("encoder", "decoder")]:
        if isinstance(section, dict) and section.get("model_type") == "mega":
            _check_mega_field_types(section, path, where)
    return config


def _check_mega_field_types(section: dict, path: Path, where: str):
    """ConversionError naming a numeric or boolean MegaConfig field given as another JSON type."""
    from transformers import MegaConfig

    for name, default in MegaConfig().to_dict().items():
        value = section.get(name)
        if value is None or default is None:
            continue
        expected = bool if isinstance(default, bool) else (int, float) if isinstance(default, (int, float)) else None
        wrong = expected is not None and not isinstance(value, expected)
        if wrong or (expected not in (None, bool) and isinstance(value, bool)):
            raise ConversionError(
                f"{path}: {where}{name} is {value!r} but must be a {'boolean' if expected is bool else 'number'} "
                f"(MegaConfig's default: {default!r})"
            )


def check_finite(tensors: Mapping[str, torch.Tensor], source, dtype: Optional[torch.dtype] = None):
    """Raises ConversionError naming the tensors of `tensors` holding NaN or inf (after a cast to `dtype`, which
    may overflow: float16 holds at most 65504)."""
    bad = []
    for name, value in tensors.items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            continue
        cast = value.to(dtype) if dtype is not None else value
        if not bool(torch.isfinite(cast).all()):
            source_bad = not bool(torch.isfinite(value).all())
            bad.append(f"{name} ({'NaN/inf' if source_bad else f'overflows {dtype}'.replace('torch.', '')})")
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise ConversionError(
            f"{source}: {len(bad)} of {len(tensors)} tensors are not finite: {shown}. Nothing written; the weights "
            "are broken (a diverged training run or a corrupt file) or too large for the --dtype asked for"
        )


# ---------------------------------------------------------------- probe inputs
def probe_tokens(cfg, dictionary, batch: int = 2) -> torch.Tensor:
    """(batch, T) random ids spanning two chunks (or T = 32 tokens); an encoder's probe is a sentence pair
    `<s> A </s> B`."""
    length = 2 * cfg.chunk_size if cfg.chunked else min(32, cfg.max_positions)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(dictionary.nspecial, len(dictionary), (batch, length), generator=gen)
    if not cfg.causal and length >= 4:
        tokens[:, 0], tokens[:, length // 2] = dictionary.bos(), dictionary.eos()
    return tokens


def hf_token_types_for_probe(hf, tokens: torch.Tensor) -> Optional[torch.Tensor]:
    """(B, T) segment ids as fairseq's mega_encoder derives them (0 up to the first </s>, 1 after), or None
    for a transformers model without token-type embeddings."""
    if not hf.config.add_token_type_embeddings:
        return None
    from ..models.mega_encoder import segments_from_separator

    return segments_from_separator(tokens, hf.config.eos_token_id).clamp_(max=hf.config.type_vocab_size - 1)


def decoder_inputs(tokens: torch.Tensor) -> torch.Tensor:
    """fairseq's prev_output_tokens for a probe (B, T): </s> followed by all but the last token."""
    prev = tokens.roll(1, dims=1)
    prev[:, 0] = 2
    return prev


def user_errors() -> tuple:
    """The exceptions a converter's `main()` reports as one `error:` line (the user's input is at fault, and the
    message says what to do): conversion refusals, unreadable checkpoints, dictionary mismatches."""
    from ..models.dictionary_fingerprint import DictionaryMismatchError
    from ..reliability import CheckpointReadError

    return (ConversionError, CheckpointReadError, DictionaryMismatchError)
