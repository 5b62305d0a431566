"""scripts/make_gettext_corpus.py on hand-written .mo catalogs: cleaning, dedup, a leak-free deterministic split."""

import struct
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "scripts" / "make_gettext_corpus.py"


def write_mo(path, messages):
    """A GNU .mo file (little endian, no hash table) holding `messages` {msgid: msgstr} plus a UTF-8 header."""
    entries = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **messages}.items())
    ids = b"".join(k.encode() + b"\0" for k, _ in entries)
    strs = b"".join(v.encode() + b"\0" for _, v in entries)
    n = len(entries)
    start = 28 + 16 * n
    table_ids, table_strs, offset = [], [], start
    for k, _ in entries:
        table_ids += [len(k.encode()), offset]
        offset += len(k.encode()) + 1
    for _, v in entries:
        table_strs += [len(v.encode()), offset]
        offset += len(v.encode()) + 1
    header = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + struct.pack(f"<{4 * n}I", *table_ids, *table_strs) + ids + strs)


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def read(out, split, lang):
    path = out / f"{split}.{lang}"
    return path.read_text(encoding="utf-8").splitlines()


def test_cleaning_dedup_and_split(tmp_path):
    many = {f"Open file number {i}": f"Datei Nummer {i} öffnen" for i in range(300)}
    write_mo(
        tmp_path / "loc/de/LC_MESSAGES/a.mo",
        {
            **many,
            "_Save As": "Speichern _unter",  # accelerators go
            "&Quit": "&Beenden",
            "domain_constraint": "Domänen-Constraint",  # an identifier's underscore stays
            "%s: %d": "%s: %d",  # format only
            "Status": "Status",  # untranslated
            "first line\nsecond line": "erste Zeile\nzweite Zeile",  # multi-line
            "menu\x04Close": "Schließen",  # msgctxt prefix dropped
            "x" * 201: "y" * 201,  # too long
        },
    )
    write_mo(
        tmp_path / "loc/de/LC_MESSAGES/b.mo", {"open file number 7:": "Öffne Datei 7:", "Quit": "Verlassen"}
    )  # duplicates
    (tmp_path / "loc/de/LC_MESSAGES/broken.mo").write_bytes(b"not a catalog")
    proc = run(tmp_path / "out", "--locale-dir", tmp_path / "loc")
    assert proc.returncode == 0, proc.stderr
    assert "skipped unreadable catalogs: broken.mo" in proc.stdout
    out = tmp_path / "out"
    pairs = {split: list(zip(read(out, split, "en"), read(out, split, "de"))) for split in ("train", "valid", "test")}
    everything = dict(p for ps in pairs.values() for p in ps)
    assert everything["Save As"] == "Speichern unter" and everything["Quit"] == "Beenden"
    assert everything["domain_constraint"] == "Domänen-Constraint" and everything["Close"] == "Schließen"
    assert not {"%s: %d", "Status", "x" * 201} & set(everything)
    assert not any("\n" in k or "line" in k for k in everything)
    assert "open file number 7:" not in everything and len(everything) == 304  # the first catalog wins
    assert len(pairs["test"]) > 0 and len(pairs["train"]) > 250
    test_keys = {k.lower().rstrip(":. ") for k, _ in pairs["test"]}
    assert not any(k.lower().rstrip(":. ") in test_keys for k, _ in pairs["train"])
    again = run(tmp_path / "again", "--locale-dir", tmp_path / "loc")
    assert again.returncode == 0 and all(
        (out / f"{s}.{lang}").read_bytes() == (tmp_path / "again" / f"{s}.{lang}").read_bytes()
        for s in ("train", "valid", "test")
        for lang in ("en", "de")
    )


def test_missing_catalogs_is_a_clear_error(tmp_path):
    proc = run(tmp_path / "out", "--locale-dir", tmp_path / "nothing")
    assert proc.returncode != 0
    assert "no gettext catalogs (*.mo)" in proc.stderr and "downloads nothing" in proc.stderr
