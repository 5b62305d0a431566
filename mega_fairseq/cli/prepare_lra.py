"""Long Range Arena raw data -> fairseq binarized data for the `lra-text` / `lra-image` tasks.

    mega-prepare-lra TASK RAW_DIR OUT_DIR [--max-length N] [...]

TASK and the RAW_DIR it expects (paths inside the public `lra_release/` archive of
google-research/long-range-arena, or the data set's own release):

  listops        lra_release/listops-1000/: basic_train.tsv, basic_val.tsv, basic_test.tsv
                 (`Source<TAB>Target` header; `mega-make-listops` writes the same files).
                 Parentheses are dropped; tokens are [MAX [MIN [MED [SM ] and the digits.
  imdb           aclImdb/ (Stanford IMDB release): train/{pos,neg}/*.txt, test/{pos,neg}/*.txt.
                 Byte level (UTF-8 bytes), first --max-length (4000) bytes; valid = test as in LRA.
  aan            lra_release/tsv_data/: new_aan_pairs.{train,eval,test}.tsv, rows
                 `label<TAB>id1<TAB>id2<TAB>text1<TAB>text2`; byte level, 4000 bytes per document.
  cifar10        cifar-10-batches-py/: data_batch_1..5, test_batch (python pickles).
                 Grayscale (0.2989 R + 0.5870 G + 0.1140 B, rounded) -> 1024 pixels.
                 valid = test as in LRA, or the last --valid-size training images.
  pathfinder32   lra_release/pathfinder32/ (Pathfinder) and
  pathfinder128  lra_release/pathfinder128/ (Path-X): DIFFICULTY/metadata/*.npy (text lines
                 `imgs/K sample_J.png _ LABEL ...`) and DIFFICULTY/imgs/K/sample_J.png;
                 --difficulty curv_contour_length_14 (LRA's "hard", default), curv_contour_length_9
                 or curv_baseline.  Split 80/10/10 in metadata order.

OUT_DIR layout (the original fork's, so its processed `lra.zip` data loads the same way):
  src-bin/{train,valid,test}.{bin,idx} + dict.txt   inputs (tokens + </s>; pixels as uint8 0..255)
  src1-bin/...                                       second documents (aan only)
  label-bin/{train,valid,test}.{bin,idx} + dict.txt  labels "0".."C-1" (class i = label i)

PNG files are read with Pillow when it is installed (`pip install -c constraints.txt pillow`,
much faster on the full Path-X), else by a small built-in decoder (8-bit, non-interlaced).
"""

import argparse
import io
import pickle
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

NUM_CLASSES = {"listops": 10, "imdb": 2, "aan": 2, "cifar10": 10, "pathfinder32": 2, "pathfinder128": 2}
IMAGE_SIDE = {"cifar10": 32, "pathfinder32": 32, "pathfinder128": 128}
LISTOPS_VOCAB = ("[MAX", "[MIN", "[MED", "[SM", "]") + tuple(str(d) for d in range(10))
BYTE_VOCAB = tuple(str(b) for b in range(256))  # symbol of byte b is its decimal value


# ----------------------------------------------------------------------------- writing
def fixed_dictionary(symbols):
    from fairseq.data import Dictionary

    d = Dictionary()
    for s in symbols:
        d.add_symbol(s)
    return d


def write_split(out_dir: Path, name: str, split: str, rows, dictionary=None, dtype=None):
    """Binarize `rows` (lists of symbols when `dictionary` is given, else uint8 arrays) to
    out_dir/name/split.{bin,idx}."""
    from fairseq.data import indexed_dataset

    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    prefix = str(folder / split)
    if dictionary is not None:
        builder = indexed_dataset.make_builder(prefix + ".bin", impl="mmap", vocab_size=len(dictionary))
        for symbols in rows:
            ids = [dictionary.index(s) for s in symbols] + [dictionary.eos()]
            builder.add_item(torch.IntTensor(ids))
        dictionary.save(str(folder / "dict.txt"))
    else:
        builder = indexed_dataset.MMapIndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
        for array in rows:
            builder.add_item(torch.from_numpy(np.ascontiguousarray(array)))
    builder.finalize(prefix + ".idx")


def write_labels(out_dir: Path, split: str, labels, num_classes: int, where: str):
    for i, label in enumerate(labels):
        if not 0 <= label < num_classes:
            raise ValueError(f"{where}: example {i} has label {label}, outside 0..{num_classes - 1}")
    write_split(
        out_dir,
        "label-bin",
        split,
        [[str(label)] for label in labels],
        fixed_dictionary(str(c) for c in range(num_classes)),
    )


def utf8_text(path: Path) -> io.StringIO:
    """The text of a UTF-8 input file (universal newlines); ValueError naming file:line when it is not UTF-8."""
    data = path.read_bytes()
    try:
        return io.StringIO(data.decode("utf-8"), newline=None)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 text ({err.reason}); convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def byte_symbols(text: str, max_length: int):
    return [BYTE_VOCAB[b] for b in text.encode("utf-8")[:max_length]]


# ----------------------------------------------------------------------------- text tasks
def read_listops_tsv(path: Path):
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: listops expects RAW_DIR with basic_train.tsv, basic_val.tsv, basic_test.tsv "
            "(lra_release/listops-1000/ or the output of mega-make-listops)"
        )
    sources, labels = [], []
    with utf8_text(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["Source", "Target"]:
            raise ValueError(f"{path}:1: expected the header 'Source<TAB>Target', got {header!r}")
        for lineno, line in enumerate(f, start=2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 2 tab-separated columns, got {len(parts)}")
            tokens = [t for t in parts[0].split() if t not in ("(", ")")]
            unknown = sorted(set(tokens) - set(LISTOPS_VOCAB))
            if unknown:
                raise ValueError(f"{path}:{lineno}: unknown ListOps tokens {unknown}")
            try:
                labels.append(int(parts[1]))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: label {parts[1]!r} is not an integer") from None
            sources.append(tokens)
    return sources, labels


def prepare_listops(raw: Path, out: Path, args):
    vocab = fixed_dictionary(LISTOPS_VOCAB)
    for split, name in (("train", "train"), ("valid", "val"), ("test", "test")):
        path = raw / f"basic_{name}.tsv"
        sources, labels = read_listops_tsv(path)
        write_split(out, "src-bin", split, [s[: args.max_length or None] for s in sources], vocab)
        write_labels(out, split, labels, NUM_CLASSES["listops"], str(path))
        print(f"listops {split}: {len(labels)} examples", file=sys.stderr)


def prepare_imdb(raw: Path, out: Path, args):
    vocab = fixed_dictionary(BYTE_VOCAB)
    max_length = args.max_length or 4000
    for split, folder in (("train", "train"), ("valid", "test"), ("test", "test")):
        docs, labels = [], []
        for label, sentiment in ((0, "neg"), (1, "pos")):
            directory = raw / folder / sentiment
            if not directory.is_dir():
                raise FileNotFoundError(
                    f"{directory} not found: imdb expects RAW_DIR = aclImdb/ with train/{{pos,neg}} and "
                    f"test/{{pos,neg}}"
                )
            for path in sorted(directory.glob("*.txt")):
                docs.append(byte_symbols(utf8_text(path).read(), max_length))
                labels.append(label)
        order = np.random.RandomState(args.seed).permutation(len(docs))  # interleave pos/neg
        write_split(out, "src-bin", split, [docs[i] for i in order], vocab)
        write_labels(out, split, [labels[i] for i in order], 2, str(raw / folder))
        print(f"imdb {split}: {len(docs)} examples", file=sys.stderr)


def prepare_aan(raw: Path, out: Path, args):
    vocab = fixed_dictionary(BYTE_VOCAB)
    max_length = args.max_length or 4000
    for split, name in (("train", "train"), ("valid", "eval"), ("test", "test")):
        path = raw / f"new_aan_pairs.{name}.tsv"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: aan expects RAW_DIR = lra_release/tsv_data/ with "
                f"new_aan_pairs.{{train,eval,test}}.tsv"
            )
        first, second, labels = [], [], []
        with utf8_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 5:
                    raise ValueError(
                        f"{path}:{lineno}: expected 5 tab-separated columns (label, id1, id2, text1, text2), got "
                        f"{len(parts)}"
                    )
                try:
                    labels.append(int(float(parts[0])))
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: label {parts[0]!r} is not a number") from None
                first.append(byte_symbols(parts[3], max_length))
                second.append(byte_symbols(parts[4], max_length))
        write_split(out, "src-bin", split, first, vocab)
        write_split(out, "src1-bin", split, second, vocab)
        write_labels(out, split, labels, 2, str(path))
        print(f"aan {split}: {len(labels)} pairs", file=sys.stderr)


# ----------------------------------------------------------------------------- image tasks
def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint8 luma (TF's rgb_to_grayscale weights, rounded)."""
    gray = rgb.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140])
    return np.clip(np.round(gray), 0, 255).astype(np.uint8)


def write_images(out: Path, split: str, images, labels, side: int, num_classes: int, where: str):
    flat = []
    for i, image in enumerate(images):
        if image.shape != (side, side):
            raise ValueError(
                f"{where}: image {i} is {'x'.join(map(str, image.shape))}, expected {side}x{side} grayscale"
            )
        flat.append(image.reshape(-1))
    write_split(out, "src-bin", split, flat, dtype=np.uint8)
    write_labels(out, split, labels, num_classes, where)


# what unpickling a CIFAR-10 python batch needs: numpy arrays, dtypes and scalars, and bytes written by
# Python 3 with protocol 2 (`_codecs.encode`). None of these runs code; any other global is refused.
CIFAR_PICKLE_GLOBALS = {
    (module, name)
    for core in ("numpy.core", "numpy._core")
    for module, name in (
        (f"{core}.multiarray", "_reconstruct"),
        (f"{core}.multiarray", "scalar"),
        (f"{core}.numeric", "_frombuffer"),
    )
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle.Unpickler that resolves only the globals in CIFAR_PICKLE_GLOBALS.

    A pickle can name any importable callable (os.system, builtins.eval, ...) and have it called while it
    loads; the CIFAR-10 batches are plain dicts of bytes, lists and numpy arrays, so anything else is refused.
    """

    def __init__(self, file, path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        if (module, name) in CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"{self.path}: refusing to unpickle {module}.{name}: a CIFAR-10 python batch holds only dicts, lists, "
            f"bytes and numpy arrays, and loading this file could run code. Use the batches of the original "
            f"cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html)."
        )


def load_cifar_batch(path: Path) -> dict:
    """One CIFAR-10 python batch (dict with b"data", b"labels") through RestrictedUnpickler."""
    with open(path, "rb") as f:
        try:
            batch = RestrictedUnpickler(f, path).load()
        except pickle.UnpicklingError as err:
            if str(err).startswith(str(path)):
                raise
            raise pickle.UnpicklingError(f"{path}: not a CIFAR-10 python batch ({err})") from err
        except (EOFError, ValueError, TypeError, IndexError, AttributeError) as err:
            raise pickle.UnpicklingError(
                f"{path}: not a CIFAR-10 python batch (truncated or corrupt pickle: {err!r})"
            ) from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path}: not a CIFAR-10 python batch (expected a dict with b'data' and b'labels')")
    return batch


def prepare_cifar10(raw: Path, out: Path, args):
    def load(name):
        path = raw / name
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: cifar10 expects RAW_DIR = cifar-10-batches-py/ with data_batch_1..5 and test_batch"
            )
        batch = load_cifar_batch(path)
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{path}: expected data of shape (N, 3072) (32x32 RGB), got {data.shape}")
        rgb = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return list(to_gray(rgb)), list(batch[b"labels"])

    train_x, train_y = [], []
    for k in range(1, 6):
        x, y = load(f"data_batch_{k}")
        train_x += x
        train_y += y
    test_x, test_y = load("test_batch")
    if args.valid_size:
        splits = {
            "train": (train_x[: -args.valid_size], train_y[: -args.valid_size]),
            "valid": (train_x[-args.valid_size :], train_y[-args.valid_size :]),
        }
    else:
        splits = {"train": (train_x, train_y), "valid": (test_x, test_y)}
    splits["test"] = (test_x, test_y)
    for split, (x, y) in splits.items():
        write_images(out, split, x, y, 32, 10, str(raw))
        print(f"cifar10 {split}: {len(y)} images", file=sys.stderr)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def decode_png(data: bytes, where: str = "PNG") -> np.ndarray:
    """8-bit non-interlaced PNG -> (H, W) uint8 grayscale (color is converted to luma)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{where}: not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{where}: PNG without IHDR")
    width, height, depth, color, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        raise ValueError(
            f"{where}: only 8-bit non-interlaced gray/RGB(A) PNGs are supported without Pillow "
            f"(got depth {depth}, color type {color}, interlace {interlace}); install Pillow"
        )
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows = np.zeros((height, stride), dtype=np.int64)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=start + 1).astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) % 256
        elif kind in (1, 3, 4):
            cur = line.copy()
            for x in range(stride):
                left = cur[x - channels] if x >= channels else 0
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + prev[x]) // 2
                else:
                    pred = paeth(left, prev[x], prev[x - channels] if x >= channels else 0)
                cur[x] = (cur[x] + pred) % 256
        else:
            raise ValueError(f"{where}: unknown PNG filter type {kind} in row {y}")
        rows[y] = prev = cur
    pixels = rows.reshape(height, width, channels).astype(np.uint8)
    if channels in (1, 2):
        return pixels[..., 0]
    return to_gray(pixels[..., :3])


def read_png(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        return decode_png(path.read_bytes(), str(path))
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def prepare_pathfinder(raw: Path, out: Path, args, side: int):
    root = raw / args.difficulty
    metadata = sorted((root / "metadata").glob("*.npy"), key=lambda p: (len(p.stem), p.stem))
    if not metadata:
        raise FileNotFoundError(
            f"no {root}/metadata/*.npy: pathfinder expects RAW_DIR = lra_release/pathfinder{side}/ "
            f"with {args.difficulty}/metadata/*.npy and {args.difficulty}/imgs/ (choose another --difficulty?)"
        )
    images, labels = [], []
    for meta in metadata:
        for lineno, line in enumerate(meta.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 4:
                raise ValueError(f"{meta}:{lineno}: expected 'imgs/K sample_J.png _ LABEL ...', got {line!r}")
            images.append(root / fields[0] / fields[1])
            labels.append(int(fields[3]))
    n = len(images)
    n_train, n_valid = int(0.8 * n), int(0.1 * n)
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, n)}
    for split, (lo, hi) in bounds.items():
        pixels = [read_png(p) for p in images[lo:hi]]
        write_images(out, split, pixels, labels[lo:hi], side, 2, str(root))
        print(f"pathfinder{side} {split}: {hi - lo} images", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(NUM_CLASSES))
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="keep the first N tokens/bytes of each input (imdb/aan default 4000)",
    )
    parser.add_argument(
        "--valid-size",
        type=int,
        default=0,
        help="cifar10: hold out the last N training images as valid (default: valid = test, as LRA)",
    )
    parser.add_argument("--difficulty", default="curv_contour_length_14", help="pathfinder subfolder")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.raw_dir.is_dir():
        parser.error(f"RAW_DIR {args.raw_dir} is not a directory")
    if args.task == "listops":
        prepare_listops(args.raw_dir, args.out_dir, args)
    elif args.task == "imdb":
        prepare_imdb(args.raw_dir, args.out_dir, args)
    elif args.task == "aan":
        prepare_aan(args.raw_dir, args.out_dir, args)
    elif args.task == "cifar10":
        prepare_cifar10(args.raw_dir, args.out_dir, args)
    else:
        prepare_pathfinder(args.raw_dir, args.out_dir, args, IMAGE_SIDE[args.task])


if __name__ == "__main__":
    main()
