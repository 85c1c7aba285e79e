"""Files written whole or not at all, and their checksums: the one write layer.

Every file the library produces (predictions, results, checkpoints, exports, built-in
sets, downloads, configs) is written to a temporary name in the destination folder and
moved into place with :func:`os.replace`, so a killed process leaves either the previous
file or none, never a truncated one that a rerun would trust. Temporaries are named
``.<name>.<random>.tmp<suffix>`` so that :func:`remove_stale_temporaries` finds them.

- :func:`atomic_path`: a temporary path for any writer (h5py, ``torch.save``, savefig);
- :func:`atomic_write_text` / :func:`atomic_write_bytes`: the common cases;
- :func:`atomic_folder`: a folder built in a temporary sibling, then renamed;
- :func:`atomic_h5`: an HDF5 file written the same way through a :class:`GuardedFile`,
  so that a full disk is one ``OSError`` naming the file, never a crash of HDF5;
- :func:`check_output_file`: a file path given by the user (``--output``) checked
  before any work: not a folder, not under a file, in a writable folder;
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
from typing import TYPE_CHECKING

from .errors import ConfigError, LockedError

if TYPE_CHECKING:
    import h5py

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


class GuardedFile:
    """A file for writers that must not see a write fail: HDF5 (2.0) crashes with a
    segfault on the next operation after a failed write, once it has printed an
    ``Exception ignored`` traceback per open object.

    The first ``OSError`` of a write (disk full, quota, I/O error) is kept in
    :attr:`error` instead of being raised; that write and the later ones go to memory,
    and reads see them, so the writer stays consistent until it is closed. The caller
    asks :meth:`check` (after each entry and after closing the writer), which raises
    the error naming ``dest``. Implements what h5py's ``fileobj`` driver calls.
    """

    def __init__(self, path: str | Path, dest: str | Path | None = None):
        self.path = Path(path)
        self.dest = Path(dest) if dest is not None else self.path
        self._raw = open(self.path, "w+b", buffering=0)  # noqa: SIM115 (closed by close)
        self._pos = 0
        self._size = 0
        self._held: list[tuple[int, bytes]] = []  # (offset, data) written after a fault
        self.error: OSError | None = None

    def _pwrite(self, data: memoryview, offset: int) -> int:
        """One write at ``offset`` (the point where fault tests make the disk full)."""
        self._raw.seek(offset)
        return self._raw.write(data)

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        n = len(data)
        if self.error is None:
            try:
                view, offset = data, self._pos
                while view:
                    done = self._pwrite(view, offset)
                    view, offset = view[done:], offset + done
            except OSError as e:
                self.error = e
        if self.error is not None:
            self._held.append((self._pos, bytes(data)))
        self._pos += n
        self._size = max(self._size, self._pos)
        return n

    def readinto(self, buf) -> int:
        buf = memoryview(buf).cast("B")
        n, start = len(buf), self._pos
        self._raw.seek(start)
        got = (self._raw.readinto(buf) or 0) if n else 0
        buf[got:] = bytes(n - got)  # holes and the held tail read as zeros
        for offset, data in self._held:
            lo, hi = max(offset, start), min(offset + len(data), start + n)
            if lo < hi:
                buf[lo - start : hi - start] = data[lo - offset : hi - offset]
        self._pos += n
        return n

    def read(self, n: int = -1) -> bytes:
        buf = bytearray(max(self._size - self._pos, 0) if n < 0 else n)
        self.readinto(buf)
        return bytes(buf)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}
        self._pos = base[whence] + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                self._raw.truncate(size)
            except OSError as e:
                self.error = e
        self._size = size
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._raw.close()

    def check(self) -> None:
        """Raise the kept write error, if any, as an ``OSError`` naming ``dest``."""
        if self.error is not None:
            e = self.error
            raise OSError(e.errno, e.strerror or str(e), str(self.dest)) from e


@contextlib.contextmanager
def atomic_h5(path: str | Path, **kwargs) -> Iterator[tuple[h5py.File, GuardedFile]]:
    """An HDF5 file (``h5py.File(..., "w", **kwargs)``) written atomically like
    :func:`atomic_path`, through a :class:`GuardedFile`: yields the file and its guard
    (call ``guard.check()`` between entries of a long write, to stop at the first fault).
    A write fault raises one ``OSError`` naming ``path``; nothing of it is left."""
    import h5py

    path = Path(path)
    with atomic_path(path, ".h5") as tmp:
        guard = GuardedFile(tmp, path)
        try:
            f = h5py.File(guard, "w", **kwargs)
            try:
                yield f, guard
            finally:
                f.close()  # after a fault its writes go to memory: no crash
            guard.check()
        finally:
            guard.close()


def check_output_file(
    path: str | Path, what: str = "--output", suffix: str = ""
) -> Path:
    """``path`` as a file to write, or a :class:`ConfigError` naming ``what`` and the
    path: a folder there, a file where one of its folders should be, or a folder that
    is not writable. Call it before the work whose result goes there; ``suffix`` (e.g.
    ``.h5``) completes the example of the message."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{what} {path} is a folder: give the path of a file (e.g. "
            f"{path / ('NAME' + suffix)})."
        )
    for parent in path.parents:
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise ConfigError(
                f"{what} {path}: {parent} is a file, not a folder; choose another path."
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{what} {path}: the folder {parent} is not writable; choose another "
                "path or fix its permissions."
            )
        break
    return path


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
    "check_output_file",
    "file_lock",
    "GuardedFile",
    "atomic_folder",
    "atomic_h5",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "checksums",
    "remove_stale_temporaries",
    "sha256_of",
]
