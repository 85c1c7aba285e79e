"""Files written whole or not at all, and their checksums: the one write layer.

Every file the library produces (predictions, results, checkpoints, exports, built-in
sets, downloads, configs) is written to a temporary name in the destination folder and
moved into place with :func:`os.replace`, so a killed process leaves either the previous
file or none, never a truncated one that a rerun would trust. Temporaries are named
``.<name>.<random>.tmp<suffix>`` so that :func:`remove_stale_temporaries` finds them.

- :func:`atomic_path`: a temporary path for any writer (h5py, ``torch.save``, savefig);
- :func:`atomic_write_text` / :func:`atomic_write_bytes`: the common cases;
- :func:`atomic_folder`: a folder built in a temporary sibling, then renamed;
- :func:`sha256_of`: a file's digest, memoised per (path, inode, size, mtime);
- :func:`file_lock`: one process at a time on a file or folder (waiting for its turn,
  or refusing at once with the holder's PID and host: one writer per run folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import LockedError

CHUNK = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` on success only.

    ``suffix`` ends the temporary name (``.h5``, ``.png``) for writers that choose the
    format from it. On any exception the temporary is removed and ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (``fsync`` before the rename if asked)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path``
    (an existing folder there is moved aside first and removed after), on failure it is
    removed and ``path`` untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    )
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old.tmp")
            os.rename(path, old)
        os.rename(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temporaries(folder: str | Path, name: str = "*") -> None:
    """Delete temporaries of :func:`atomic_path`/:func:`atomic_folder` left in
    ``folder`` by a killed process (those of ``name`` only, if given)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in folder.glob(f".{name}.*tmp*"):
        with contextlib.suppress(OSError):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


class ChecksumMemo:
    """sha256 digests of files, memoised per (path, inode, size, mtime_ns).

    One instance per process (:data:`checksums`); a file rewritten in place gets a new
    mtime (and usually inode), so a stale digest is never returned.
    """

    def __init__(self) -> None:
        self._digests: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def sha256(self, path: str | Path) -> str:
        st = os.stat(path)
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._digests:
                return self._digests[key]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        with self._lock:
            self._digests[key] = h.hexdigest()
        return h.hexdigest()

    def clear(self) -> None:
        with self._lock:
            self._digests.clear()

    def __len__(self) -> int:
        return len(self._digests)


#: the process-wide memo of :func:`sha256_of`
checksums = ChecksumMemo()


def sha256_of(path: str | Path) -> str:
    """sha256 (hex) of a file, memoised in :data:`checksums`."""
    return checksums.sha256(path)


@contextlib.contextmanager
def file_lock(path: str | Path, wait: bool = True, what: str = "") -> Iterator[None]:
    """Exclusive inter-process lock on the file ``path`` (created; removed on release).

    ``wait=True``: wait for the holder (processes that download into a shared cache
    fetch a file once). ``wait=False``: one writer per run folder; if another process
    holds the lock, raise :class:`LockedError` naming ``what``, the holder's PID and
    host. The lock is the kernel's (``flock``): a killed holder releases it, so a stale
    lock file is simply taken over. After locking, the file must still be the one at
    ``path`` (a previous holder may have removed it); otherwise locking starts over.
    No-op where fcntl is missing (Windows): atomic writes still protect readers.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a+b")
        try:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                f.seek(0)
                holder = f.read().decode(errors="replace").strip() or "another process"
                raise LockedError(
                    f"{what or path.parent} is in use by {holder} (lock {path}): wait "
                    "for it to finish, or stop it."
                ) from None
            try:
                same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
        except BaseException:
            f.close()
            raise
        f.close()
    try:
        f.seek(0)
        f.truncate()
        f.write(f"PID {os.getpid()} on {socket.gethostname()}".encode())
        f.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        f.close()  # releases the lock


__all__ = [
    "ChecksumMemo",
    "file_lock",
    "atomic_folder",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "checksums",
    "remove_stale_temporaries",
    "sha256_of",
]
