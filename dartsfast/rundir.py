"""A run's output directory, held by one writer at a time.

``run_directory(path)`` is what ``search`` and ``train`` wrap a run in:

* the path is checked before anything is created (a file, or a path under a file, is a
  ValueError naming it);
* ``OUT/.lock`` is locked with ``flock`` for the whole run, and holds the writer's PID. A
  second run on the same directory gets :class:`RunDirectoryBusy` naming that PID. The
  kernel drops the lock when its process dies, so a killed run's lock is simply taken over;
* temp files a killed atomic write left behind (``.<name>.<random>.tmp``, see
  :func:`dartsfast._io.atomic_write`) are removed, which is safe while we hold the lock;
* a run that fails before writing anything leaves no empty directory behind.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from typing import Iterator, Optional

from dartsfast._io import is_temp_file_name

LOCK_FILE = ".lock"


class RunDirectoryBusy(ValueError):
    """Another process is writing to the run directory."""


def check_output_dir(path: str, flag: str = "--out") -> None:
    """ValueError unless ``path`` is a directory or could be made one (no file in the way)."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a file, not a directory; pick another {flag}")
    _check_parents(path, flag)


def check_output_file(path, flag: str = "--out") -> None:
    """ValueError unless ``path`` can be written as a file: not a directory, no file among
    its parents. Checked before a long run, so its result is not lost at the end."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a directory; give a file name")
    _check_parents(path, flag)


def _check_parents(path: str, flag: str) -> None:
    parent = path
    while parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
        if os.path.exists(parent):
            if not os.path.isdir(parent):
                raise ValueError(f"{flag} {path} lies under {parent}, which is a file; pick another {flag}")
            break


def _holder(lock_path: str) -> str:
    try:
        with open(lock_path) as f:
            pid = f.read().strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "a process that has not written its PID yet"


def _acquire(lock_path: str) -> int:
    """An fd holding the exclusive lock on ``lock_path`` (the file at the path, not an unlinked one)."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunDirectoryBusy(
                    f"{os.path.dirname(lock_path)} is in use by another dartsfast run ({_holder(lock_path)}); "
                    "wait for it to finish or pick another --out") from None
            raise
        # The previous holder unlinks the file before releasing it: if we locked a file that
        # is no longer at the path, a newcomer could lock a fresh one beside us. Try again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def remove_stale_temp_files(path: str) -> None:
    """Delete the temp files of writes that never finished."""
    for name in os.listdir(path):
        if is_temp_file_name(name) and os.path.isfile(os.path.join(path, name)):
            os.unlink(os.path.join(path, name))


@contextlib.contextmanager
def run_directory(path: Optional[str], *, hold: bool = True, flag: str = "--out") -> Iterator[Optional[str]]:
    """Create and lock ``path`` for the block (nothing for None; ``hold=False``: only check it,
    for the processes of a distributed run that do not write)."""
    if path is None:
        yield None
        return
    check_output_dir(path, flag)
    if not hold:
        yield path
        return
    created = not os.path.exists(path)
    os.makedirs(path, exist_ok=True)
    lock_path = os.path.join(path, LOCK_FILE)
    try:
        fd = _acquire(lock_path)
    except BaseException:
        _remove_if_empty(path, created)
        raise
    try:
        remove_stale_temp_files(path)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)  # while still holding it: see _acquire
        os.close(fd)
        _remove_if_empty(path, created)


def _remove_if_empty(path: str, created: bool) -> None:
    """A directory this run created and left empty goes (a failed start leaves nothing)."""
    if created:
        with contextlib.suppress(OSError):
            os.rmdir(path)  # fails, as meant, when the run wrote anything
