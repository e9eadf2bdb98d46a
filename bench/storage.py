"""Writing files so that no fault leaves a half-written or stray file behind, and no link
placed in a results directory sends a write anywhere else.

- :func:`atomic_write_bytes`: a temporary file in the same directory, then a rename; readers
  see the old file or the new one. Temporary names carry the writer's pid, so a later run
  can tell a dead writer's leftovers (``kill -9`` mid-write) from a live writer's file and
  :func:`remove_stale_temporaries` removes only the former.
- :class:`SpaceReserve`: a hidden file of preallocated bytes beside a run's record. When the
  disk fills up mid-run, releasing it makes room to write the record's final state, so a
  full disk never costs the epochs already completed.
- :func:`writing` and :class:`EnvironmentFault`: a failed write is the machine's doing (disk
  full, I/O error), not a bug, and says so in one line with a short reason a record keeps.

Links: the names the tool writes at (a record, a checkpoint, the reserve, a lock, a report
file, and the directory each goes in) are predictable, so a symbolic link placed at one could
make a write land outside. Every file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` in a
directory opened with ``O_NOFOLLOW`` (:func:`open_directory`), and a link found at a final
name, file or directory, is refused in one line (:func:`refuse_link`). The directories above
the one written into are the user's to choose and may be links. A rename onto a link would
replace the link itself, which is harmless, but is refused all the same: one rule (never a
link at a name we write) is what a user can predict, and a link there is never ours, so
replacing it silently would hide whatever put it there. Cleaning leftovers never follows a
link either: only regular files are removed, and only from a directory that is not a link.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import re
import secrets
import socket
import stat
import time
from pathlib import Path
from typing import Callable, Iterable

from bench.errors import BenchError

TEMP_SUFFIX = ".tmp"
RESERVE_SUFFIX = ".reserve"
LOCK_SUFFIX = ".lock"
# A leftover whose writer ran on this host is stale once that pid is gone; one from another
# host sharing the directory (or from before names carried a writer) once it is this old.
STALE_AFTER_SECONDS = 24 * 3600.0
_WRITER = re.compile(r"\.pid(\d+)h([0-9a-f]{8})\.")
LINK_REFUSAL = "is a symbolic link; refusing to write through it"
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def writer_tag() -> str:
    """``pid<pid>h<host hash>``: who is writing a temporary file, so leftovers can be judged."""
    return f"pid{os.getpid()}h{_host_tag()}"

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def refuse_link(path: str | os.PathLike, advice: str = "") -> None:
    """A BenchError when ``path`` itself is a symbolic link (a dangling one too); ``advice``
    (``"; pass --out DIR"``) ends the message. A missing path is fine: it will be created."""
    if os.path.islink(path):
        raise BenchError(f"{path} {LINK_REFUSAL}{advice}")


def open_directory(path: str | os.PathLike) -> int:
    """A descriptor of the directory ``path`` that was not reached through a link at its last
    component (a link there is refused); files are then created relative to it, so swapping
    the directory for a link after a check cannot redirect them. Other failures: OSError."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # Linux says ENOTDIR for a link with O_DIRECTORY
            refuse_link(path)
        raise


def _is_link_at(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except FileNotFoundError:
        return False


def _token() -> str:
    return secrets.token_hex(4)


def _new_temporary(dir_fd: int, directory: Path, stem: str, mode: int = 0o666) -> tuple[str, int]:
    """``(name, descriptor)`` of a new hidden temporary ``.<stem>.<writer>.<random>.tmp`` in
    the directory of ``dir_fd``, never an existing file or link (``O_EXCL | O_NOFOLLOW``);
    ``mode`` before the umask, which the kernel applies."""
    for _ in range(100):
        name = f".{stem}.{writer_tag()}.{_token()}{TEMP_SUFFIX}"
        try:
            return name, os.open(name, _NEW_FILE, mode, dir_fd=dir_fd)
        except FileExistsError:
            if _is_link_at(dir_fd, name):
                raise BenchError(f"{directory / name} {LINK_REFUSAL}") from None
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(directory / f".{stem}.*{TEMP_SUFFIX}"))


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename. A link at ``path``
    or at its directory is refused (BenchError) and nothing is written; the file gets the
    user's default permissions."""
    path = Path(path)
    dir_fd = open_directory(path.parent)
    try:
        if _is_link_at(dir_fd, path.name):  # a link placed after this check is replaced, not followed
            raise BenchError(f"{path} {LINK_REFUSAL}")
        name, fd = _new_temporary(dir_fd, path.parent, path.name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(name, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            _unlink_quietly(name, dir_fd)
            raise
    finally:
        os.close(dir_fd)


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
    middle of a write leaves them) and run locks nobody holds; returns what was removed. A
    live writer's files stay, and so does anything that is not a regular file: a link is
    never followed, nor is a directory that is a link searched."""
    now = time.time() if now is None else now
    host = _host_tag()
    removed: list[Path] = []
    try:
        dir_fd = open_directory(directory)
    except (OSError, BenchError):
        return removed
    try:
        try:
            entries = list(os.scandir(dir_fd))
        except OSError:
            return removed
        for entry in entries:
            name = entry.name
            if not name.startswith("."):
                continue
            if name.endswith(LOCK_SUFFIX) and _remove_if_unlocked(dir_fd, name):
                removed.append(Path(directory) / name)
            if not name.endswith((TEMP_SUFFIX, RESERVE_SUFFIX)):
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
            if stale and _unlink_if_same(dir_fd, name, info):
                removed.append(Path(directory) / name)
    finally:
        os.close(dir_fd)
    return removed


def _unlink_if_same(dir_fd: int, name: str, info: os.stat_result) -> bool:
    """Remove ``name`` only if it is still the file ``info`` describes (not one swapped in)."""
    try:
        if not os.path.samestat(os.lstat(name, dir_fd=dir_fd), info):
            return False
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        return False
    return True


def _remove_if_unlocked(dir_fd: int, name: str) -> bool:
    """A run lock nobody holds any more (its run was killed) is removed; a link or anything
    but a regular file named like a lock is left alone."""
    try:
        fd = os.open(name, os.O_RDWR | os.O_NONBLOCK | _NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: its run is alive
    else:
        return _unlink_if_same(dir_fd, name, info)
    finally:
        os.close(fd)


def reserve_path(directory: Path, run_id: str) -> Path:
    """Where this process keeps the space reserve of run ``run_id`` in ``directory``."""
    return directory / f".{run_id}.{writer_tag()}.space{RESERVE_SUFFIX}"


class RunLock:
    """Held while a run writes its record and checkpoint, so that two processes resuming
    the same run cannot interleave their epochs in one record (the second is refused).

    Taking it claims the run's names: a link at the lock's, the space reserve's or any of
    ``guards`` (the record and the checkpoint, whose names a resumed run reuses) is refused
    here, before a record is written, rather than by the write that would meet it."""

    def __init__(self, directory: Path, run_id: str, guards: Iterable[Path] = ()) -> None:
        self.path = directory / f".{run_id}{LOCK_SUFFIX}"
        while True:  # until the file we hold is the one at the path (a stale one may be removed meanwhile)
            try:
                # O_NONBLOCK: a FIFO or device put at the name must not hang the open
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | _NOFOLLOW, 0o600)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    refuse_link(self.path)
                raise
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise BenchError(f"{self.path} is {file_kind(info.st_mode)}, not a run lock; move it away")
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                raise BenchError(f"run {run_id} is already running in another process (it holds {self.path}); "
                                 "wait for it or stop it") from exc
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.path.samestat(info, os.lstat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self.fd, self._info = fd, info
                break
            os.close(fd)
        try:
            for path in (reserve_path(directory, run_id), *guards):
                refuse_link(path)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        try:
            if os.path.samestat(os.lstat(self.path), self._info):  # never another process's new lock
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)


def prepare_writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """Create ``path`` (with the user's default permissions), prove it is writable, and clear
    a dead writer's leftovers from it. ``flag`` names the option that chose it. A refusal
    says what is true of the path: a symbolic link, missing and not creatable, not a
    directory (or under something that is not one), or a directory that cannot be written."""
    directory = Path(path)
    advice = f"; pass {flag} DIR"
    refuse_link(directory, advice)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _probe(directory)
    except OSError as exc:
        why = _why_not_writable(directory, exc)
        raise BenchError(f"{directory} is not a writable directory ({why}){advice}") from exc
    remove_stale_temporaries(directory)
    return directory


def check_writable_file(path: str | os.PathLike, option: str) -> Path:
    """Prove ``path`` can be written by :func:`atomic_write_bytes` (a file there is replaced),
    creating nothing: ``option`` (``--out``) names the flag in the one-line refusal."""
    target = Path(path)
    refuse_link(target, "; choose another file")
    cannot = f"{option} {target} cannot be written"
    try:
        mode = os.lstat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # new, or under a file: the directory's probe says which
        mode = None
    except OSError as exc:
        raise BenchError(f"{cannot} ({exc.strerror or exc}); choose another file") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise BenchError(f"{option} {target} is {file_kind(mode)}, not a file it can replace; choose another file")
    try:
        _probe(target.parent)
    except OSError as exc:
        why = _why_not_writable(target.parent, exc, str(target.parent), creates=False)
        raise BenchError(f"{cannot} ({why}); choose another file") from None
    return target


def _probe(directory: Path) -> None:
    """Create and remove a temporary in ``directory``: OSError if it cannot be written,
    BenchError if it is a link."""
    dir_fd = open_directory(directory)
    try:
        name, fd = _new_temporary(dir_fd, directory, "probe")
        os.close(fd)
        os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _why_not_writable(directory: Path, exc: OSError, subject: str = "it", creates: bool = True) -> str:
    """What is true of ``directory`` that ``exc`` (from creating it or a file in it) met: the
    nearest existing path decides (a file, a dangling link, a directory one cannot write).
    ``subject`` names ``directory`` itself (``it`` where the message has just named it);
    ``creates``: whether the caller would have created a missing ``directory``."""
    child = None
    for current in (directory, *directory.parents):
        try:
            info = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):  # missing, or under a file: look further up
            child = current
            continue
        except OSError as error:
            return f"{current}: {error.strerror or error}"
        if stat.S_ISLNK(info.st_mode):
            if current == directory:
                return f"{current} {LINK_REFUSAL}"
            try:
                info = os.stat(current)  # above the directory a link is the user's to have
            except OSError:
                return f"{current} is a symbolic link to {os.readlink(current)}, which does not exist"
        if not stat.S_ISDIR(info.st_mode):
            return f"{subject if current == directory else current} is {file_kind(info.st_mode)}, not a directory"
        reason = exc.strerror or str(exc)
        if child is None:
            return f"{subject} is a directory, but cannot be written: {reason}"
        if not creates:
            return f"{child} does not exist"
        return f"{child} cannot be created in {current}: {reason}"
    return exc.strerror or str(exc)


def not_a_directory(path: str | os.PathLike) -> str:
    """What is true of a ``path`` that a caller needed as an existing directory, for its
    message: ``does not exist``, ``is a regular file, not a directory``, or ``is a symbolic
    link to X, which does not exist`` (a link to a directory is a directory here: reading
    through one is fine)."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        for above in Path(path).parents:  # the nearest that exists: a file there is why
            if os.path.isdir(above):
                return "does not exist"
            if os.path.exists(above):
                return f"does not exist ({above} is {file_kind(os.stat(above).st_mode)}, not a directory)"
        return "does not exist"
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory"
    return f"is {file_kind(info.st_mode)}, not a directory"


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
    record can still be written. Grows with the record it protects (twice its size).

    The file is created once (``O_EXCL | O_NOFOLLOW``: a link at its predictable name is
    refused, never grown) and grown through the descriptor kept from then on, so nothing
    put at the name later is ever extended."""

    MINIMUM = 1 << 20

    def __init__(self, directory: Path, run_id: str) -> None:
        self.path = reserve_path(directory, run_id)
        self.size = 0
        self._fd: int | None = None
        self.ensure(self.MINIMUM)

    def ensure(self, size: int) -> None:
        """Grow to ``size`` bytes (no-op if already that large). Raises OSError when the disk
        cannot hold it: the caller's early warning that space is running out."""
        size = max(size, self.MINIMUM)
        if size <= self.size:
            return
        if self._fd is None:
            self._fd = self._create()
        os.posix_fallocate(self._fd, 0, size)
        self.size = size

    def _create(self) -> int:
        dir_fd = open_directory(self.path.parent)
        try:
            for _ in range(2):
                try:
                    return os.open(self.path.name, _NEW_FILE, 0o600, dir_fd=dir_fd)
                except FileExistsError:
                    info = os.lstat(self.path.name, dir_fd=dir_fd)
                    if not stat.S_ISREG(info.st_mode):
                        refuse_link(self.path)
                        raise BenchError(f"{self.path} is {file_kind(info.st_mode)}, not a space reserve; "
                                         "move it away") from None
                    # our run and our pid: left by a dead process whose pid we now have, and
                    # the run lock we hold says no live one writes this run
                    _unlink_if_same(dir_fd, self.path.name, info)
            raise FileExistsError(errno.EEXIST, "the space reserve keeps reappearing", str(self.path))
        finally:
            os.close(dir_fd)

    def release(self) -> None:
        """Give the bytes back (idempotent): the file is removed only if it is still ours."""
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.lstat(self.path), os.fstat(self._fd)):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd, self.size = None, 0


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
    """What kind of file ``mode`` describes, for messages."""
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a plain file")
