"""Writing files so that no fault leaves a half-written or stray file behind.

- :func:`atomic_write_bytes`: a temporary file in the same directory, then a rename; readers
  see the old file or the new one. Temporary names carry the writer's pid, so a later run
  can tell a dead writer's leftovers (``kill -9`` mid-write) from a live writer's file and
  :func:`remove_stale_temporaries` removes only the former.
- :class:`SpaceReserve`: a hidden file of preallocated bytes beside a run's record. When the
  disk fills up mid-run, releasing it makes room to write the record's final state, so a
  full disk never costs the epochs already completed.
- :func:`writing` and :class:`EnvironmentFault`: a failed write is the machine's doing (disk
  full, I/O error), not a bug, and says so in one line with a short reason a record keeps.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import re
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable

from bench.errors import BenchError

TEMP_SUFFIX = ".tmp"
RESERVE_SUFFIX = ".reserve"
LOCK_SUFFIX = ".lock"
# A leftover whose writer ran on this host is stale once that pid is gone; one from another
# host sharing the directory (or from before names carried a writer) once it is this old.
STALE_AFTER_SECONDS = 24 * 3600.0
_WRITER = re.compile(r"\.pid(\d+)h([0-9a-f]{8})\.")


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def writer_tag() -> str:
    """``pid<pid>h<host hash>``: who is writing a temporary file, so leftovers can be judged."""
    return f"pid{os.getpid()}h{_host_tag()}"

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{writer_tag()}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(directory: Path, now: float | None = None) -> list[Path]:
    """Remove the hidden temporaries and reserves of writers that are gone (``kill -9`` in the
    middle of a write leaves them); returns what was removed. A live writer's files stay."""
    now = time.time() if now is None else now
    host = _host_tag()
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if name.startswith(".") and name.endswith(LOCK_SUFFIX) and _remove_if_unlocked(Path(entry.path)):
            removed.append(Path(entry.path))
        if not (name.startswith(".") and name.endswith((TEMP_SUFFIX, RESERVE_SUFFIX))):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        match = _WRITER.search(name)
        if match and match.group(2) == host:
            stale = not _writer_alive(int(match.group(1)))
        else:
            stale = now - info.st_mtime > STALE_AFTER_SECONDS
        if stale:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def _remove_if_unlocked(path: Path) -> bool:
    """A run lock nobody holds any more (its run was killed) is removed."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: its run is alive
    else:
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


class RunLock:
    """Held while a run writes its record and checkpoint, so that two processes resuming
    the same run cannot interleave their epochs in one record (the second is refused)."""

    def __init__(self, directory: Path, run_id: str) -> None:
        self.path = directory / f".{run_id}{LOCK_SUFFIX}"
        while True:  # until the file we hold is the one at the path (a stale one may be removed meanwhile)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                raise BenchError(f"run {run_id} is already running in another process (it holds {self.path}); "
                                 "wait for it or stop it") from exc
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


def prepare_writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """Create ``path`` (with the user's default permissions), prove it is writable, and clear
    a dead writer's leftovers from it. ``flag`` names the option that chose it."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=f".probe.{writer_tag()}.", suffix=TEMP_SUFFIX):
            pass
    except OSError as exc:
        raise BenchError(f"{directory} is not a writable directory ({exc.strerror or exc}); pass {flag} DIR") from exc
    remove_stale_temporaries(directory)
    return directory


def require_free_space(directory: Path, needed: int, what: str) -> None:
    """Refuse to start when ``directory``'s file system cannot hold ``needed`` bytes."""
    try:
        fs = os.statvfs(directory)
        free = fs.f_bavail * fs.f_frsize
    except OSError:
        return  # cannot tell: the reserve still protects the record
    if free < needed:
        raise BenchError(
            f"{directory} has {_mib(free)} free, {what} needs about {_mib(needed)}; free some space or choose "
            "another directory"
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


class SpaceReserve:
    """Preallocated bytes in a hidden file, given back when the disk is full so the final
    record can still be written. Grows with the record it protects (twice its size)."""

    MINIMUM = 1 << 20

    def __init__(self, directory: Path, run_id: str) -> None:
        self.path = directory / f".{run_id}.{writer_tag()}.space{RESERVE_SUFFIX}"
        self.size = 0
        self.ensure(self.MINIMUM)

    def ensure(self, size: int) -> None:
        """Grow to ``size`` bytes (no-op if already that large). Raises OSError when the disk
        cannot hold it: the caller's early warning that space is running out."""
        size = max(size, self.MINIMUM)
        if size <= self.size or not self.path.parent.exists():
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        self.size = size

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
        self.size = 0


class EnvironmentFault(Exception):
    """The machine, not the code, stopped the work: ``reason`` is ``disk full``,
    ``read-only file system``, ``I/O error`` or ``out of memory``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def fault_reason(exc: BaseException) -> str:
    """The short reason for an OSError of a write, or a MemoryError."""
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return "disk full"
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return "read-only file system"
    return "I/O error"


def writing(what: str, path: Path, write: Callable[[], None]) -> None:
    """Run ``write``; an OSError becomes an :class:`EnvironmentFault` naming ``what`` and ``path``."""
    try:
        write()
    except OSError as exc:
        reason = fault_reason(exc)
        raise EnvironmentFault(reason, f"{reason} writing {what} {path} ({exc.strerror or exc})") from exc


def open_regular(path: str | os.PathLike) -> io.BufferedReader:
    """Open ``path`` for reading only if it is a regular file (a FIFO, device or socket named
    like a data file would block or never end); checked on the open descriptor, so a file
    swapped in between a check and the open cannot slip through."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                          f"not a regular file ({file_kind(mode)}); not opened for reading", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, for messages."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a plain file")
