"""A full disk at chosen write sites, injected at the write layer.

- :func:`disk_full_at`: the disk fills up when a finished file is moved into place
  (``os.replace`` of :mod:`gluefactory.utils.fs`: every atomic write ends there);
- :func:`disk_full_in_h5`: it fills up in the middle of an HDF5 file (the writes of
  :class:`gluefactory.utils.fs.GuardedFile`, through which every HDF5 file is written);
- :func:`disk_full_in_open`: it fills up in the middle of a plain file that a module
  writes with ``open`` (a download's ``.part``).
"""

from __future__ import annotations

import builtins
import errno
import fnmatch
import os
from pathlib import Path
from types import ModuleType

from gluefactory.utils import fs


def _enospc(path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def disk_full_at(monkeypatch, pattern: str) -> list[str]:
    """Make every atomic write whose destination name matches ``pattern`` fail with
    ENOSPC when it is moved into place (the data was written: the disk filled up on
    the way). Returns the list of refused destinations."""
    refused: list[str] = []
    original = os.replace

    def replace(src, dst, *args, **kwargs):
        if fnmatch.fnmatch(Path(dst).name, pattern):
            refused.append(str(dst))
            raise _enospc(dst)
        return original(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return refused


def disk_full_in_h5(monkeypatch, pattern: str, after: int = 0) -> list[str]:
    """Make the HDF5 file whose destination name matches ``pattern`` meet a full disk
    once ``after`` bytes of it are written (the write layer sees ENOSPC as the OS would
    report it). Returns the refused destinations."""
    refused: list[str] = []
    written: dict[Path, int] = {}
    original = fs.GuardedFile._pwrite

    def pwrite(self, data, offset):
        if fnmatch.fnmatch(self.dest.name, pattern):
            n = written.get(self.path, 0) + len(data)
            if n > after:
                refused.append(str(self.dest))
                raise _enospc(self.path)
            written[self.path] = n
        return original(self, data, offset)

    monkeypatch.setattr(fs.GuardedFile, "_pwrite", pwrite)
    return refused


class _FillingFile:
    """A binary file whose writes fail with ENOSPC past ``room`` bytes."""

    def __init__(self, f, room: int, refused: list[str]):
        self._f, self._room, self._refused = f, room, refused

    def write(self, data) -> int:
        if len(data) > self._room:
            self._refused.append(self._f.name)
            raise OSError(
                errno.ENOSPC, "No space left on device"
            )  # as f.write: no path
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def disk_full_in_open(
    monkeypatch, module: ModuleType, pattern: str, after: int = 0
) -> list[str]:
    """Make files that ``module`` opens for writing, whose name matches ``pattern``,
    meet a full disk after ``after`` bytes. Returns the refused file names."""
    refused: list[str] = []

    def fake_open(file, mode="r", *args, **kwargs):
        f = builtins.open(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax") and fnmatch.fnmatch(Path(file).name, pattern):
            return _FillingFile(f, after, refused)
        return f

    monkeypatch.setattr(module, "open", fake_open, raising=False)
    return refused


def leftovers(folder: Path) -> list[str]:
    """Temporary files of the write layer still in ``folder`` (none after a fault)."""
    return sorted(p.name for p in Path(folder).rglob(".*tmp*"))
