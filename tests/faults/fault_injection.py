"""A full disk at chosen write sites, injected at the one write layer (utils.fs)."""

from __future__ import annotations

import errno
import fnmatch
import os
from pathlib import Path


def disk_full_at(monkeypatch, pattern: str) -> list[str]:
    """Make every atomic write whose destination name matches ``pattern`` fail with
    ENOSPC when it is moved into place (the data was written: the disk filled up on
    the way). Returns the list of refused destinations."""
    refused: list[str] = []
    original = os.replace

    def replace(src, dst, *args, **kwargs):
        if fnmatch.fnmatch(Path(dst).name, pattern):
            refused.append(str(dst))
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return original(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return refused


def leftovers(folder: Path) -> list[str]:
    """Temporary files of the write layer still in ``folder`` (none after a fault)."""
    return sorted(p.name for p in Path(folder).rglob(".*tmp*"))
