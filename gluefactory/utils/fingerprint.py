"""A cheap fingerprint of data files, so that caches made from other data are not reused.

Only metadata is read (relative path, size and modification time of every file, the
quick check of make and rsync): a file added, removed, resized or rewritten changes the
fingerprint, while moving the whole data folder elsewhere (same relative paths, e.g.
another ``GLUEFACTORY_DATA``) or extracting the same archive again (tar keeps the
archive's times) does not.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path


def _files(path: Path) -> Iterable[Path]:
    if path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in sorted(filenames):
                yield Path(dirpath) / name
    else:
        yield path


def files_fingerprint(root: Path, paths: Iterable[Path]) -> str:
    """Hex digest of (path relative to ``root``, size, mtime) of every file of ``paths``
    (files, or folders taken recursively); a missing file counts as missing."""
    h = hashlib.sha256()
    root = Path(root)
    for path in paths:
        for f in _files(Path(path)):
            try:
                rel = f.relative_to(root).as_posix()
            except ValueError:
                rel = f.as_posix()
            try:
                st = f.stat()
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except FileNotFoundError:
                h.update(f"{rel}\0missing\n".encode())
    return h.hexdigest()[:16]
