"""Checkpoints: the model's arrays plus the run's progress, one ``.npz`` per run, replaced
atomically at every epoch end so ``--resume`` always finds a complete one.

A checkpoint given to ``--resume`` is untrusted input, checked before anything is trained or
written: :func:`read_checkpoint` checks the archive, the metadata (format version, every field
and its type, a config that validates) and :meth:`Checkpoint.arrays` every array's name,
shape and dtype against the model the config describes, reading each array's header before
its data (a forged header cannot make it allocate more than the model needs) and the CRC of
every entry it reads. Anything wrong is a :class:`BenchError` naming the file and the fault.
"""
from __future__ import annotations

import io
import json
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.storage import atomic_write_bytes, file_kind, open_regular

FORMAT_VERSION = 1
META_KEY = "__meta__"
MAX_META_BYTES = 64 << 20  # a 55-epoch ptb-large history is a few MiB
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # becomes a file name: no path parts

# (type, required) of every metadata field
META_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "checkpoint_version": ((int,), True),
    "run_id": ((str,), True),
    "config": ((dict,), True),
    "started_at": ((str,), True),
    "history": ((list,), True),
    "gradient_norms": ((list,), True),
    "resumed": ((list,), True),
    "preset": ((str, type(None)), False),
    "tag": ((str, type(None)), False),
    "command": ((list,), False),
    "results_dir": ((str, type(None)), False),
    "data_dir": ((str, type(None)), False),
}

# Parsing a damaged or forged archive can raise almost anything (numpy's .npy header parser
# alone raised ValueError, SyntaxError and tokenize.TokenError on flipped bytes): every
# exception from the few library calls that parse it means a damaged file.
_DAMAGE = Exception

ArrayLayout = dict[str, tuple[tuple[int, ...], np.dtype]]


def checkpoint_bytes(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """The ``.npz`` of ``arrays`` and ``meta`` (stamped with the format version)."""
    buffer = io.BytesIO()
    meta = {"checkpoint_version": FORMAT_VERSION, **meta}
    np.savez(buffer, **{META_KEY: np.array(json.dumps(meta))}, **arrays)
    return buffer.getvalue()


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    data = checkpoint_bytes(arrays, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


@dataclass
class Checkpoint:
    """A checkpoint whose archive and metadata have been checked; arrays are read on demand."""

    path: Path
    meta: dict[str, Any]
    entries: tuple[str, ...]  # array names in the archive (without ``.npy``), metadata excluded

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    def fail(self, what: str) -> BenchError:
        return BenchError(f"checkpoint {self.path}: {what}")

    def arrays(self, layout: ArrayLayout) -> dict[str, np.ndarray]:
        """Every array, checked against ``layout`` (name -> (shape, dtype)): the exact set of
        names, each shape and dtype, finite weights."""
        missing = sorted(set(layout) - set(self.entries))
        extra = sorted(set(self.entries) - set(layout))
        if missing:
            raise self.fail(f"lacks {len(missing)} array(s) its config needs: {', '.join(missing[:5])}")
        if extra:
            raise self.fail(f"has {len(extra)} array(s) its config does not know: {', '.join(extra[:5])}")
        out = {}
        try:
            with open_regular(self.path) as f, zipfile.ZipFile(f) as archive:
                for name, (shape, dtype) in layout.items():
                    out[name] = self._read_array(archive, name, shape, dtype)
        except BenchError:
            raise
        except _DAMAGE as exc:
            raise self.fail(f"damaged ({_one_line(exc)})") from exc
        return out

    def _read_array(self, archive: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        with archive.open(name + ".npy") as f:
            got_shape, fortran, got_dtype = _read_header(f)
            if got_dtype != dtype or got_shape != tuple(shape):
                raise self.fail(f"array {name} is {got_dtype} {got_shape}, the model needs {dtype} {tuple(shape)}")
            array = _read_data(f, got_shape, fortran, got_dtype)
        if name.startswith("param/") and not np.isfinite(array).all():
            raise self.fail(f"array {name} holds non-finite values")
        if not name.startswith("param/") and (np.isnan(array).any() or (array < 0).any()):
            raise self.fail(f"array {name} holds negative or NaN values (an accumulator of squares)")
        return array


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Open ``path`` and check its archive and metadata (not yet its arrays)."""
    path = Path(path)
    try:
        file = open_regular(path)
    except OSError as exc:  # nothing there, or not a regular file: say which
        raise BenchError(f"checkpoint {path} {_cannot_open(path, exc)}") from exc
    try:
        with file as f, zipfile.ZipFile(f) as archive:
            names = archive.namelist()
            if f"{META_KEY}.npy" not in names:
                raise BenchError(f"checkpoint {path}: has no metadata ({META_KEY}); not a cellbench checkpoint")
            with archive.open(f"{META_KEY}.npy") as entry:
                text = _read_meta_text(entry, path)
    except BenchError:
        raise
    except zipfile.BadZipFile as exc:
        raise BenchError(f"checkpoint {path}: not a zip archive (truncated, or not a checkpoint): {exc}") from exc
    except _DAMAGE as exc:
        raise BenchError(f"checkpoint {path}: unreadable ({_one_line(exc)})") from exc
    meta = _parse_meta(text, path)
    entries = [n[: -len(".npy")] for n in names if n != f"{META_KEY}.npy"]
    if any(not n.endswith(".npy") for n in names) or len(set(entries)) != len(entries):
        raise BenchError(f"checkpoint {path}: holds entries that are not arrays, or the same array twice")
    return Checkpoint(path, meta, tuple(entries))


def _read_meta_text(entry: Any, path: Path) -> str:
    shape, _, dtype = _read_header(entry)
    if dtype.kind != "U" or shape != ():
        raise BenchError(f"checkpoint {path}: metadata is {dtype} {shape}, not one string")
    if dtype.itemsize > MAX_META_BYTES:
        raise BenchError(f"checkpoint {path}: metadata of {dtype.itemsize:,} bytes is over the {MAX_META_BYTES:,} cap")
    return str(_read_data(entry, shape, False, dtype)[()])


def _parse_meta(text: str, path: Path) -> dict[str, Any]:
    def fail(what: str) -> BenchError:
        return BenchError(f"checkpoint {path}: metadata {what}")

    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise fail(f"is not JSON ({_one_line(exc)})") from exc
    if not isinstance(meta, dict):
        raise fail("is not an object")
    version = meta.get("checkpoint_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise fail(f"says format version {version!r}; this cellbench reads version {FORMAT_VERSION} "
                   "(written by another version: start the run again)")
    for name, (types, required) in META_FIELDS.items():
        if name not in meta:
            if required:
                raise fail(f"lacks {name!r}")
            continue
        if isinstance(meta[name], bool) or not isinstance(meta[name], types):
            raise fail(f"field {name!r} is {type(meta[name]).__name__}, expected {' or '.join(t.__name__ for t in types)}")
    if not RUN_ID.fullmatch(meta["run_id"]):
        raise fail(f"run_id {meta['run_id'][:80]!r} is not a plain file name")
    meta["config"] = _checked_config(meta["config"], fail)
    _check_history(meta, fail)
    return meta


def _checked_config(values: dict[str, Any], fail: Any) -> dict[str, Any]:
    """The settings, which must be exactly this cellbench's for the checkpoint's cell and
    task (their options included), valid, and name a backend, a cell and a task that are
    installed."""
    from bench.config import config_from_values

    try:
        config_from_values(values, exact=True)
    except BenchError as exc:
        raise fail(f"config is invalid: {exc}") from exc
    return values


def _check_history(meta: dict[str, Any], fail: Any) -> None:
    history, norms, config = meta["history"], meta["gradient_norms"], meta["config"]
    for index, entry in enumerate(history):
        if not isinstance(entry, dict) or entry.get("epoch") != index + 1 or not isinstance(entry.get("train"), dict):
            raise fail(f"history entry {index} is not epoch {index + 1} with its training metrics")
    if len(history) > config["epochs"]:
        raise fail(f"holds {len(history)} epochs, more than its config's {config['epochs']}")
    probes = len(history) + 1 if config["grad_probe_windows"] else 0
    if len(norms) != probes or any(not isinstance(m, dict) or m.get("epoch") != k for k, m in enumerate(norms)):
        raise fail(f"gradient_norms has {len(norms)} entries; {len(history)} epochs need {probes}, numbered from 0")
    if any(not isinstance(r, dict) for r in meta["resumed"]):
        raise fail("resumed entries are not objects")


def _read_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"npy format version {version}")
    shape, fortran, dtype = read(f)
    if dtype.hasobject:
        raise ValueError("an array of Python objects")
    return tuple(shape), bool(fortran), dtype


def _read_data(f: Any, shape: tuple[int, ...], fortran: bool, dtype: np.dtype) -> np.ndarray:
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = f.read(size)
    if len(data) != size or f.read(1):  # the read to the end also checks the entry's CRC
        raise ValueError("array data of the wrong length")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C").copy()


def _cannot_open(path: Path, exc: OSError) -> str:
    """What is true of a ``path`` that could not be opened as a checkpoint file, for its
    message: ``does not exist`` only where nothing is (a dangling link, a path under a
    regular file, a directory or a FIFO each say what they are)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "does not exist"
    except NotADirectoryError:
        above = next((p for p in path.parents if os.path.lexists(p)), path.parent)
        try:
            return f"cannot be opened: {above} is {file_kind(os.stat(above).st_mode)}, not a directory"
        except OSError:
            return f"cannot be opened: {above} is not a directory"
    except OSError as error:
        return f"cannot be examined ({error.strerror or error})"
    if isinstance(exc, FileNotFoundError) and stat.S_ISLNK(info.st_mode):
        return f"is a symbolic link to {os.readlink(path)}, which does not exist"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = info.st_mode
    if stat.S_ISREG(mode):  # a regular file that could not be opened: permissions, an I/O error
        return f"cannot be read ({exc.strerror or exc})"
    return f"is {file_kind(mode)}, not a checkpoint file"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
