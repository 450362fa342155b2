"""Files that hold personal data: created owner-only, never through a symlink, replaced
atomically.

Reports, journals, summaries and snapshots name users and (before-images) hold their values,
so every file the tool writes is created ``0600`` and every folder it creates ``0700``, the way
OpenSSH and git treat their private files. A file that is replaced (a summary, a compacted
journal, a Parquet report) is written to an unpredictable temporary name in the same folder
(``tempfile.mkstemp``) and renamed over the target, so a reader sees the old file or the new
one, never half of one, and nobody who can write to the folder can point a fixed temporary
name at another file. ``O_NOFOLLOW`` refuses a symlink planted at the target itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def private_dir(path: Path) -> None:
    """Create ``path`` and missing parents as ``0700``; existing folders are left as they are."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=DIR_MODE)


def open_private(path: Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """Open for writing (``w``/``a``, text or ``b``): created ``0600``, a symlink refused."""
    flags = os.O_WRONLY | os.O_CREAT | _NOFOLLOW
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    private_dir(path.parent)
    fd = os.open(path, flags, FILE_MODE)
    try:
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def create_private(path: Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """A new, empty ``0600`` file at ``path`` for writing. Whatever was there (a file, a
    symlink, a hard link to another file) is unlinked first and the file created ``O_EXCL``:
    nothing that was at the name is ever written through or truncated."""
    private_dir(path.parent)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, FILE_MODE)
    try:
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def reopen_private(path: Path, size: int, mode: str = "a", **kwargs: Any) -> IO[Any]:
    """This user's own file at ``path``, cut to ``size`` bytes and open to append (a resumed
    spool). Refused, before any byte changes, when ``path`` is a symlink (``ELOOP``), not a
    regular file, another user's, or has a second hard link: its bytes would be someone
    else's."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | _NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.getuid():
            raise PermissionError(errno.EPERM, "not a private file of this user (a link, or "
                                  "another user's): left as it is", str(path))
        os.ftruncate(fd, size)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A fresh ``0600`` temporary path beside ``path``; renamed over it when the block ends
    without an exception, removed otherwise. For writers that want a path (pyarrow)."""
    private_dir(path.parent)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Write a whole file at once: to a ``0600`` temporary beside it, fsync'd, then renamed."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | _NOFOLLOW)
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def remove_stale_temporaries(path: Path) -> int:
    """Remove what ``atomic_path`` left beside ``path`` when a process died before renaming
    (``kill -9`` in the middle of a journal's compaction or a Parquet report): they hold the
    same personal data as the file. Call it only while no other writer of ``path`` runs."""
    removed = 0
    if path.parent.is_dir():
        # mkstemp's random part is 8 characters: the pattern matches this file's only.
        for stale in path.parent.glob(f".{glob_escape(path.name)}.{'?' * 8}.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
                removed += 1
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)
