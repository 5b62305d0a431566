"""English->German parallel text from the machine's gettext catalogs (no download).

    python scripts/make_gettext_corpus.py OUT_DIR [--locale-dir /usr/share/locale] [--lang de]

Reads every `LC_MESSAGES/*.mo` of the language with Python's `gettext` module (msgid = English,
msgstr = translation), cleans the pairs and writes OUT_DIR/{train,valid,test}.{en,de}.

Cleaning: the context prefix of `msgctxt` entries and the plural forms beyond the first are dropped;
keyboard accelerators (`_File`, `&Open`) are removed; multi-line, very long (> 200 characters),
format-only (`%s: %s`) and untranslated (msgstr == msgid) messages are skipped; messages are
deduplicated on a normalized form (case, spacing, trailing `:`/`.`/`...`), the first catalog in
name order winning.  The split is by a hash of that normalized form (2% test, 1% valid), so it is
deterministic, independent of which other catalogs are installed, and no test message (nor a
variant differing only in case, spacing or trailing punctuation) is in train.
"""

import argparse
import gettext
import hashlib
import re
import sys
from pathlib import Path

MAX_CHARS = 200
FORMAT = re.compile(r"%(\d+\$)?[-+ #0']*\d*(\.\d+)?(hh|h|ll|l|L|z|j|t)?[a-zA-Z%]|\{[^{}]*\}|\$\{?\w+\}?|<[^<>]+>")
ACCELERATOR = re.compile(r"(?:(?<=^)|(?<=[\s(\[\"']))[_&](?=\w)")


def clean(text: str) -> str:
    return " ".join(ACCELERATOR.sub("", text).split())


def normalized(text: str) -> str:
    return re.sub(r"[\s:.\u2026]+$", "", text.lower())


def pairs_from_catalog(path: Path):
    """(msgid, msgstr) pairs of one .mo file; raises OSError/UnicodeDecodeError for unreadable catalogs."""
    with open(path, "rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog
    for key, value in catalog.items():
        if isinstance(key, tuple):  # plural entry: (msgid, n); keep the singular form
            key, index = key
            if index != 0:
                continue
        if not key:  # the header
            continue
        yield key.split("\x04", 1)[-1], value


def keep(src: str, tgt: str) -> bool:
    if not src or not tgt or src == tgt or len(src) > MAX_CHARS or len(tgt) > MAX_CHARS:
        return False
    letters = sum(ch.isalpha() for ch in FORMAT.sub("", src))
    return letters >= 2


def split_of(key: str) -> str:
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "test" if bucket < 2 else "valid" if bucket < 3 else "train"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--locale-dir", type=Path, default=Path("/usr/share/locale"))
    parser.add_argument("--lang", default="de")
    args = parser.parse_args()

    catalog_dir = args.locale_dir / args.lang / "LC_MESSAGES"
    catalogs = sorted(catalog_dir.glob("*.mo")) if catalog_dir.is_dir() else []
    if not catalogs:
        sys.exit(
            f"make_gettext_corpus: no gettext catalogs (*.mo) in {catalog_dir}. This demo needs the {args.lang!r} "
            "message "
            f"catalogs that Debian/Ubuntu install with the 'language-pack-{args.lang}' or '*-l10n'/'locales' packages "
            "(or pass "
            "--locale-dir); it downloads nothing."
        )
    seen, splits, skipped = set(), {"train": [], "valid": [], "test": []}, []
    raw = 0
    for path in catalogs:
        try:
            entries = list(pairs_from_catalog(path))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            skipped.append(f"{path.name} ({type(err).__name__})")
            continue
        for msgid, msgstr in entries:
            raw += 1
            if "\n" in msgid.strip() or "\n" in msgstr.strip():
                continue
            src, tgt = clean(msgid), clean(msgstr)
            key = normalized(src)
            if not keep(src, tgt) or key in seen:
                continue
            seen.add(key)
            splits[split_of(key)].append((src, tgt))
    test_keys = {normalized(src) for src, _ in splits["test"]}
    assert not any(normalized(src) in test_keys for src, _ in splits["train"])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        for side, lang in ((0, "en"), (1, args.lang)):
            (args.out_dir / f"{split}.{lang}").write_text(
                "".join(pair[side] + "\n" for pair in pairs), encoding="utf-8"
            )
    print(
        f"{len(catalogs)} catalogs in {catalog_dir}, {raw} messages -> {len(seen)} clean pairs: "
        + ", ".join(f"{split} {len(pairs)}" for split, pairs in splits.items())
    )
    if skipped:
        print(f"skipped unreadable catalogs: {', '.join(skipped)}")


if __name__ == "__main__":
    main()
