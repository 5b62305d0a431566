"""Crash safety and failure handling for stock ``fairseq-train`` / ``fairseq-preprocess`` (fairseq 0.12).

Five fairseq behaviours are changed, each only where fairseq loses data, crashes or stays silent:

1. **fp16 overflow on the CPU.**  On a gradient overflow fairseq's ``Trainer.train_step`` sets
   ``grad_norm = torch.tensor(0.0).cuda()``, which raises "Torch not compiled with CUDA enabled" on a
   CPU run (``--cpu --fp16`` / ``--memory-efficient-fp16``).  That one expression becomes
   ``torch.tensor(0.0, device=self.device)`` when the trainer is not on CUDA, so the overflow is handled
   as on a GPU: the update is skipped, the loss scale lowered, training goes on.  (The method is
   recompiled from fairseq's own source with that single substitution; if the line is not found, e.g. a
   different fairseq version, nothing is patched.)
2. **Atomic checkpoint writes.**  ``checkpoint_utils.torch_persistent_save`` (every checkpoint the
   trainer writes) and the copies ``save_checkpoint`` makes of it (``checkpoint_last.pt``,
   ``checkpoint_best.pt``, ...) go to a temporary file in the same directory, are flushed and fsync'ed,
   then renamed over the target with ``os.replace`` (and the directory fsync'ed).  A kill at any point
   leaves either the old or the new file, never a truncated one; a failing write (e.g. a full disk,
   ``ENOSPC``) removes its temporary file, leaves the previous checkpoint intact and raises an error that
   says so.
3. **Resume from an unreadable ``checkpoint_last.pt``** (truncated or corrupt, e.g. written by a fairseq
   without this patch): ``checkpoint_utils.load_checkpoint`` resumes from the newest intact checkpoint in
   ``--save-dir`` (newest file first) with a warning naming both files, or stops with a clear error when
   there is none.
4. **Re-running a finished command** trained one more update past ``--max-update`` on every rerun (and
   overwrote the final checkpoints).  Now a run whose checkpoint has reached ``--max-update`` (or whose
   last epoch is ``--max-epoch``) logs "training already finished" and exits 0 without training or
   writing anything.
5. **``fairseq-preprocess -s SRC -t TGT``** with source and target files of different line counts
   stops with an error naming both files and their counts (fairseq would binarize both and fail, or
   misalign, at training time).  Active when ``--user-dir`` loads this package.

Failures named in the user's terms (instead of a raw error from deep inside fairseq, torch or numpy):

6. **A file that is not a checkpoint** (empty, truncated, text, random bytes, a safetensors file, a pickle of
   something else) given to ``--restore-file`` / ``--path`` / the converters: ``checkpoint_utils.
   load_checkpoint_to_cpu`` raises `CheckpointReadError` naming the file and what to pass instead.
7. **Dictionary refusals name the checkpoint.**  `mega_fairseq.models.dictionary_fingerprint` refuses weights
   trained with another dictionary; ``load_model_ensemble_and_task`` and ``Trainer.load_checkpoint`` re-raise that
   refusal with the checkpoint's path (fairseq's trainer would hide it behind "please ensure that the
   architectures match").  ``Dictionary.add_from_file`` records the file a dictionary came from
   (``DICTIONARY_FILE_ATTR``) and names a malformed, duplicate or non-UTF-8 line with file and line number.
8. **Binarized splits** (``indexed_dataset.make_dataset``): an unreadable ``.idx``/``.bin``, a truncated ``.bin``
   and token ids past the dictionary (a split binarized with another dictionary) are named
   (`check_binarized`).  ``TokenBlockDataset``: ``--tokens-per-sample 0`` is named, not a ZeroDivisionError.

Testing hook: with the environment variable ``MEGA_FAIRSEQ_DISK_LIMIT_BYTES=N`` a process may write at
most N bytes of checkpoints through these writers; the next write fails with ``ENOSPC`` as a full disk
would (``scripts/fault_injection.py`` uses it).

``apply()`` is idempotent; `mega_fairseq.plugin` runs it after `fairseq_patches.apply()`.
"""

import ast
import contextlib
import errno
import inspect
import logging
import os
import shutil
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

from .data.prepare_cli import count_lines
from .fairseq_patches import PATCH_MARK, patch_once

logger = logging.getLogger(__name__)

DISK_LIMIT_ENV = "MEGA_FAIRSEQ_DISK_LIMIT_BYTES"
_written = [0]  # bytes written through atomic_write in this process (for the DISK_LIMIT_ENV hook)


# ----------------------------------------------------------------------------- atomic writes
class _WriteFile:
    """Binary file wrapper that remembers a failed write (torch.save turns it into a RuntimeError) and, with
    DISK_LIMIT_ENV set, raises ENOSPC once the process has written more than that many bytes."""

    def __init__(self, f, limit=None):
        self._f, self._limit, self.error = f, limit, None

    def write(self, data):
        try:
            size = len(memoryview(data).cast("B"))
            if self._limit is not None and _written[0] + size > self._limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + f" (simulated: {DISK_LIMIT_ENV}={self._limit})")
            _written[0] += size
            return self._f.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def _fsync_dir(directory):
    with contextlib.suppress(OSError):  # not every file system allows opening a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path):
    """Yields a binary file object; on success its content replaces ``path`` in one step.

    The data goes to a hidden temporary file beside ``path`` (same file system, so the rename is atomic),
    which is flushed, fsync'ed and renamed over ``path`` with ``os.replace``.  On any error the temporary
    file is removed and ``path`` keeps its previous content.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    limit = os.environ.get(DISK_LIMIT_ENV)
    out = None
    try:
        with os.fdopen(fd, "wb") as f:
            out = _WriteFile(f, int(limit) if limit else None)
            yield out
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        cause = err if isinstance(err, OSError) else getattr(out, "error", None)
        if cause is not None and cause.errno == errno.ENOSPC:
            previous = f"{path} keeps its previous content" if os.path.exists(path) else f"{path} was not written"
            raise OSError(
                errno.ENOSPC,
                f"no space left on the device writing {path} ({cause.strerror}); the partial file was removed and "
                f"{previous}. Free space (or pass --save-dir on another disk) and run the same command again "
                f"to resume from the last checkpoint",
            ) from err
        raise
    _fsync_dir(directory)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_copy(src, dst):
    """Copies ``src`` to ``dst`` through :func:`atomic_write` (``dst`` is never left half-written)."""
    with open(src, "rb") as fin, atomic_write(dst) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return True


def _is_local(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and "://" not in os.fspath(path)


def _atomic_persistent_save(original):
    def torch_persistent_save(obj, filename, async_write: bool = False):
        if async_write or not _is_local(filename):
            return original(obj, filename, async_write=async_write)
        import torch

        with atomic_write(filename) as f:
            torch.save(obj, f)

    return torch_persistent_save


def _atomic_path_manager(path_manager):
    class PathManager(path_manager):
        """fairseq's PathManager whose ``copy`` of local files is atomic (used by checkpoint_utils)."""

        @staticmethod
        def copy(src_path, dst_path, overwrite=False):
            if not (_is_local(src_path) and _is_local(dst_path)) or (not overwrite and os.path.exists(dst_path)):
                return path_manager.copy(src_path, dst_path, overwrite=overwrite)
            return atomic_copy(src_path, dst_path)

    return PathManager


# ----------------------------------------------------------------------------- resume
def checkpoint_is_intact(path) -> bool:
    """False for an empty file or a torch zip checkpoint that is truncated or fails its CRC check.

    Files in torch's legacy (non-zip) format are not inspected (True): loading them tells.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if not magic:
            return False
        if magic != b"PK\x03\x04":
            return True
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def newest_intact_checkpoint(save_dir, suffix="", exclude=()):
    """The most recently written intact ``checkpoint*{suffix}.pt`` in save_dir (None if there is none)."""
    excluded = {os.path.abspath(p) for p in exclude}
    candidates = [
        p for p in Path(save_dir).glob(f"checkpoint*{suffix}.pt") if str(p.absolute()) not in excluded and p.is_file()
    ]
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        if checkpoint_is_intact(path):
            return str(path)
    return None


def _resume_fallback(load_checkpoint):
    def wrapped_load_checkpoint(cfg, trainer, **passthrough_args):
        _patch_train_loop()
        suffix = getattr(trainer, "checkpoint_suffix", "") or ""
        last = os.path.join(cfg.save_dir, f"checkpoint_last{suffix}.pt")
        if cfg.restore_file != "checkpoint_last.pt" or not os.path.exists(last) or checkpoint_is_intact(last):
            extra_state, epoch_itr = load_checkpoint(cfg, trainer, **passthrough_args)
            _report_finished(trainer, epoch_itr, cfg.restore_file if cfg.restore_file != "checkpoint_last.pt" else last)
            return extra_state, epoch_itr
        fallback = newest_intact_checkpoint(cfg.save_dir, suffix, exclude=[last])
        if fallback is None:
            raise RuntimeError(
                f"{last} is unreadable (truncated or corrupt) and --save-dir {cfg.save_dir} holds no other intact "
                f"checkpoint to resume from. Move {last} away to start training from scratch, or pass "
                f"--restore-file with a good checkpoint."
            )
        logger.warning(
            f"{last} is unreadable (truncated or corrupt); resuming from the newest intact checkpoint {fallback} "
            f"instead (the next save replaces {os.path.basename(last)})"
        )
        saved = cfg.restore_file, cfg.finetune_from_model  # finetune_from_model only applies without checkpoint_last
        try:
            cfg.restore_file, cfg.finetune_from_model = fallback, None
            extra_state, epoch_itr = load_checkpoint(cfg, trainer, **passthrough_args)
        finally:
            cfg.restore_file, cfg.finetune_from_model = saved
        _report_finished(trainer, epoch_itr, fallback)
        return extra_state, epoch_itr

    return wrapped_load_checkpoint


# ----------------------------------------------------------------------------- finished runs
def _limits(trainer):
    optimization = trainer.cfg.optimization
    return optimization.max_update or 0, optimization.max_epoch or 0


def _report_finished(trainer, epoch_itr, path):
    max_update, max_epoch = _limits(trainer)
    updates = trainer.get_num_updates()
    if max_update and updates >= max_update:
        reason = f"it is at {updates} updates and --max-update is {max_update}"
    elif max_epoch and epoch_itr.next_epoch_idx > max_epoch:
        reason = f"it completed epoch {epoch_itr.next_epoch_idx - 1} and --max-epoch is {max_epoch}"
    else:
        return
    logger.info(
        f"training already finished: {path} {reason}; nothing to train, no checkpoint is written. "
        f"To train longer, raise --max-update / --max-epoch."
    )


def _stop_when_finished(train):
    def wrapped_train(cfg, trainer, task, epoch_itr):
        max_update = cfg.optimization.max_update or 0
        if max_update and trainer.get_num_updates() >= max_update:
            return [None], True  # should_stop: fairseq's loop ends without a train step or a save
        return train(cfg, trainer, task, epoch_itr)

    return wrapped_train


def _patch_train_loop():
    """Patches fairseq_cli.train.train when that module is loaded (importing it would configure logging)."""
    module = sys.modules.get("fairseq_cli.train")
    if module is not None:
        patch_once(
            module,
            "train",
            _stop_when_finished,
            params=("cfg", "trainer", "task", "epoch_itr"),
            purpose="a finished run exits without training",
        )


# ----------------------------------------------------------------------------- fp16 overflow on the CPU
_CUDA_ZERO = "torch.tensor(0.0).cuda()"
_DEVICE_ZERO = "(torch.tensor(0.0).cuda() if self.cuda else torch.tensor(0.0, device=self.device))"


def _patch_cpu_overflow():
    from fairseq import metrics, trainer

    method = trainer.Trainer.train_step
    if getattr(method, PATCH_MARK, False):
        return
    inner = getattr(method, "__wrapped__", None)
    try:
        lines, first = inspect.getsourcelines(inner)
    except (TypeError, OSError):
        return
    source = textwrap.dedent("".join(lines))
    if source.count(_CUDA_ZERO) != 1 or inner.__code__.co_freevars:
        logger.debug("fairseq's Trainer.train_step has no single %s: not patched", _CUDA_ZERO)
        return
    tree = ast.parse(source.replace(_CUDA_ZERO, _DEVICE_ZERO))
    tree.body[0].decorator_list = []
    ast.increment_lineno(tree, first - 1)  # tracebacks keep pointing at fairseq's trainer.py lines
    namespace = {}
    exec(compile(tree, inspect.getsourcefile(inner), "exec"), trainer.__dict__, namespace)  # noqa: S102  (fairseq's own source)
    patched = metrics.aggregate("train")(namespace["train_step"])
    setattr(patched, PATCH_MARK, True)
    patched.__wrapped__ = method
    trainer.Trainer.train_step = patched


# ----------------------------------------------------------------------------- parallel data


def check_parallel_files(pairs, fix="make both files hold one sentence per line, aligned"):
    """Raises ValueError naming both files and their line counts for the first (source, target) pair that differ."""
    for source, target in pairs:
        if not (os.path.isfile(source) and os.path.isfile(target)):
            continue  # the tool's own "file not found" is clear
        n_source, n_target = count_lines(source), count_lines(target)
        if n_source != n_target:
            raise ValueError(
                f"parallel files differ in length: {source} has {n_source} lines but {target} has {n_target}; "
                f"line i of one must be the translation of line i of the other ({fix})"
            )


def _checked_preprocess(main):
    def wrapped_main(args):
        if not args.only_source and args.source_lang and args.target_lang:
            prefixes = [args.trainpref] if args.trainpref else []
            for many in (args.validpref, args.testpref):
                prefixes += many.split(",") if many else []
            check_parallel_files(
                ((f"{p}.{args.source_lang}", f"{p}.{args.target_lang}") for p in prefixes),
                fix="fix the data before fairseq-preprocess",
            )
        return main(args)

    return wrapped_main


# ----------------------------------------------------------------------------- files named in errors
DICTIONARY_FILE_ATTR = "source_file"
"""Set on a fairseq Dictionary loaded from a file (models.dictionary_fingerprint names it in its refusals)."""

_loading = [None]  # the checkpoint file fairseq read last (named in dictionary refusals)


class CheckpointReadError(RuntimeError):
    """A file given as a checkpoint that is not one (empty, truncated, random bytes, text, another format)."""


def _first_line(err) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _dictionary_line_problem(path):
    """(line number, line, reason) of the first line of a dictionary file fairseq cannot read, else None."""
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    seen = set()
    for number, raw in enumerate(raw_lines, 1):
        if not raw.strip() and number == len(raw_lines):
            break
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return number, raw[:60], f"not UTF-8 text ({err.reason} at byte {err.start})"
        if number == 1 and line.startswith("#fairseq:"):
            continue
        parts = line.rstrip().rsplit(" ", 1)
        overwrite = len(parts) == 2 and parts[1] == "#fairseq:overwrite"
        if overwrite:
            parts = parts[0].rsplit(" ", 1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            return number, line[:60], "expected '<symbol> <count>'"
        if parts[0] in seen and not overwrite:
            return number, line[:60], f"duplicate symbol {parts[0]!r}"
        seen.add(parts[0])
    return None


def _named_dictionary_load(add_from_file):
    def wrapped_add_from_file(self, f):
        if not isinstance(f, (str, os.PathLike)):
            return add_from_file(self, f)
        path = os.fspath(f)
        try:
            add_from_file(self, path)
        except OSError:  # not found, not a directory, no permission: named by the OS error itself
            raise
        except Exception as err:  # fairseq: ValueError / RuntimeError / a bare Exception for bad encodings
            if os.path.isdir(path):
                raise ValueError(f"{path} is a directory, not a dictionary file") from err
            problem = _dictionary_line_problem(path) if os.path.isfile(path) else None
            where = f"{path}, line {problem[0]}: {problem[2]}, got {problem[1]!r}" if problem else f"{path}: {err}"
            raise ValueError(
                f"{where}. A fairseq dictionary (dict.txt) has one '<symbol> <count>' line per symbol: fix the "
                "file or rebuild it with fairseq-preprocess"
            ) from err
        setattr(self, DICTIONARY_FILE_ATTR, path)

    return wrapped_add_from_file


def _looks_like_safetensors(path) -> bool:
    """A safetensors file starts with an 8-byte little-endian header length and a JSON header."""
    with contextlib.suppress(OSError, TypeError):
        with open(path, "rb") as f:
            head = f.read(9)
        return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30)
    return False


def _named_checkpoint_read(load_checkpoint_to_cpu):
    def wrapped_load_checkpoint_to_cpu(path, *args, **kwargs):
        _loading[0] = path
        try:
            return load_checkpoint_to_cpu(path, *args, **kwargs)
        except (FileNotFoundError, PermissionError, IsADirectoryError, MemoryError):
            raise
        except Exception as err:  # torch.load / fairseq's upgrade of a file that is not a checkpoint
            if _looks_like_safetensors(path):
                raise CheckpointReadError(
                    f"{path} is a safetensors file (transformers weights), not a fairseq checkpoint: convert its "
                    "directory with mega-import-hf HF_DIR OUT_CHECKPOINT first"
                ) from err
            if "Weights only load failed" in str(err):
                raise CheckpointReadError(
                    f"{path} is not a checkpoint torch can load safely: its weights-only loader refused it (not a "
                    "checkpoint at all, or it pickles objects other than tensors and fairseq's config, which could run "
                    "code). Pass a checkpoint written by fairseq-train, mega-import-hf or mega-import-original, from a "
                    "source you trust"
                ) from err
            raise CheckpointReadError(
                f"{path} is not a readable fairseq checkpoint ({_first_line(err)}): it is empty, truncated, or "
                "not a checkpoint. Pass a checkpoint written by fairseq-train, mega-import-hf or mega-import-original"
            ) from err

    return wrapped_load_checkpoint_to_cpu


def _dictionary_refusal(err):
    """The dictionary-fingerprint refusal (models.dictionary_fingerprint) in err's chain, else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if type(err).__name__ == "DictionaryMismatchError" and hasattr(err, "checkpoint"):
            return err
        err = err.__cause__ or err.__context__
    return None


def _refusal_names_checkpoint(load):
    def wrapped(*args, **kwargs):
        try:
            return load(*args, **kwargs)
        except Exception as err:
            refusal = _dictionary_refusal(err)
            if refusal is None:
                raise
            refusal.checkpoint = _loading[0]  # fairseq's trainer would hide it behind "architectures must match"
            raise refusal from None

    return wrapped


# ----------------------------------------------------------------------------- binarized data
def check_binarized(dataset, path, dictionary=None) -> None:
    """Raises ValueError when an mmap-binarized split is truncated or holds token ids its dictionary lacks.

    ``{path}.bin`` must hold every token its index points at; with a dictionary, every id must be < its size (a
    split binarized with a bigger or another dictionary would index past the embedding, an IndexError deep in the
    model).  Scans the split once with numpy (about a second per GB)."""
    import numpy as np

    index, buffer = getattr(dataset, "_index", None), getattr(dataset, "_bin_buffer", None)
    if index is None or buffer is None or not len(index):
        return
    itemsize = np.dtype(index.dtype).itemsize
    end = int(index._pointers[-1]) + int(index._sizes[-1]) * itemsize
    if end > len(buffer):
        raise ValueError(
            f"{path}.bin is truncated: {path}.idx points at {end} bytes but the file has {len(buffer)}. Copy it "
            "again or re-run fairseq-preprocess"
        )
    if dictionary is None:
        return
    ids = np.frombuffer(buffer, dtype=index.dtype, count=end // itemsize)
    largest = int(ids.max()) if ids.size else -1
    if largest >= len(dictionary):
        where = getattr(dictionary, DICTIONARY_FILE_ATTR, None) or "the task's dictionary"
        raise ValueError(
            f"{path}.bin holds token id {largest} but {where} has only {len(dictionary)} symbols: the split was "
            f"binarized with another dictionary. Re-run fairseq-preprocess with --srcdict {where} (or use the "
            "dictionary it was binarized with)"
        )


def _checked_make_dataset(make_dataset):
    def wrapped_make_dataset(path, impl, *args, **kwargs):
        try:
            dataset = make_dataset(path, impl, *args, **kwargs)
        except (FileNotFoundError, PermissionError, MemoryError):
            raise
        except Exception as err:  # fairseq asserts on a bad header; numpy / mmap fail on empty or short files
            raise ValueError(
                f"{path}.idx / {path}.bin is not a readable fairseq binarized split ({_first_line(err)}): it is "
                "empty, truncated or not fairseq-preprocess output. Re-run fairseq-preprocess"
            ) from err
        if dataset is not None:
            check_binarized(dataset, path, kwargs.get("dictionary", args[1] if len(args) > 1 else None))
        return dataset

    return wrapped_make_dataset


def _checked_block_size(init):
    def wrapped_init(self, dataset, sizes, block_size, *args, **kwargs):
        if (
            block_size is not None
            and block_size < 1
            and kwargs.get("break_mode", args[2] if len(args) > 2 else None)
            in (
                None,
                "none",
                "complete",
                "complete_doc",
            )
        ):
            raise ValueError(
                f"--tokens-per-sample must be a positive number of tokens (block size {block_size}; masked LM "
                "tasks take one for <s>)"
            )
        return init(self, dataset, sizes, block_size, *args, **kwargs)

    return wrapped_init


# ----------------------------------------------------------------------------- apply
def apply() -> None:
    """Installs the patches (idempotent; each guarded by `fairseq_patches.patch_once`)."""
    from fairseq import checkpoint_utils, trainer
    from fairseq.data import Dictionary, TokenBlockDataset, indexed_dataset

    _patch_cpu_overflow()
    patch_once(
        checkpoint_utils,
        "torch_persistent_save",
        _atomic_persistent_save,
        params=("obj", "filename"),
        purpose="atomic checkpoint writes",
    )
    patch_once(
        checkpoint_utils,
        "PathManager",
        _atomic_path_manager,
        params=("self",),
        purpose="atomic copies to checkpoint_last.pt / checkpoint_best.pt",
    )
    patch_once(
        checkpoint_utils,
        "load_checkpoint",
        _resume_fallback,
        params=("cfg", "trainer"),
        purpose="resuming from the newest intact checkpoint",
    )
    patch_once(
        checkpoint_utils,
        "load_checkpoint_to_cpu",
        _named_checkpoint_read,
        params=("path",),
        purpose="a file that is not a checkpoint named as such",
    )
    patch_once(
        checkpoint_utils,
        "load_model_ensemble_and_task",
        _refusal_names_checkpoint,
        params=("filenames",),
        purpose="dictionary refusals name the checkpoint",
    )
    patch_once(
        trainer.Trainer,
        "load_checkpoint",
        _refusal_names_checkpoint,
        params=("self", "filename"),
        purpose="dictionary refusals name the checkpoint",
    )
    patch_once(
        indexed_dataset,
        "make_dataset",
        _checked_make_dataset,
        params=("path", "impl"),
        purpose="a truncated or foreign binarized split named as such",
    )
    patch_once(
        TokenBlockDataset,
        "__init__",
        _checked_block_size,
        params=("self", "dataset", "sizes", "block_size"),
        purpose="--tokens-per-sample 0 named (not a ZeroDivisionError)",
    )
    patch_once(
        Dictionary,
        "add_from_file",
        _named_dictionary_load,
        params=("self", "f"),
        purpose="dictionaries remember their file; bad dict.txt lines named with file and line",
    )
    _patch_train_loop()
    preprocess = sys.modules.get("fairseq_cli.preprocess")
    if preprocess is not None:
        patch_once(
            preprocess,
            "main",
            _checked_preprocess,
            params=("args",),
            purpose="fairseq-preprocess: parallel files of different line counts refused",
        )
