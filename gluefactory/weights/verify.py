"""Checking weight files: size and sha256, else a structural check.

``check_file`` never raises: it says whether a file is good and why not. The sha256 of
a file is memoised in :data:`checksums` (per path, inode, size and mtime), so asking
for the same cached file again in one process costs a ``stat`` only.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..utils.fs import ChecksumMemo, checksums, sha256_of
from .registry import WeightSpec

CHUNK = 1 << 20


@dataclass(frozen=True)
class Check:
    """Result of checking a file against its spec."""

    ok: bool
    verified: bool  # True when the sha256 matched (not just a structural check)
    reason: str


def looks_like_checkpoint(head: bytes) -> bool:
    """Zip (torch >= 1.6), legacy pickle (protocol 2-5) or tar (old torch ``.tar``)."""
    return (
        head[:4] == b"PK\x03\x04"
        or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)
        or head[257:262] == b"ustar"
    )


def check_file(spec: WeightSpec, path: Path) -> Check:
    """Check ``path`` against ``spec`` (size, sha256, else structure). Never raises."""
    try:
        if not path.is_file():
            return Check(False, False, "missing")
        size = path.stat().st_size
        if size == 0:
            return Check(False, False, "empty file")
        if spec.size is not None and size != spec.size:
            return Check(False, False, f"size {size} bytes, expected {spec.size}")
        if spec.sha256 is not None:
            digest = sha256_of(path)
            if digest != spec.sha256.lower():
                return Check(
                    False,
                    False,
                    f"sha256 mismatch: got {digest[:16]}..., "
                    f"expected {spec.sha256[:16]}...",
                )
            return Check(True, True, "sha256 verified")
        # No checksum known: the file must at least look like a torch checkpoint
        # (not, say, an HTML error page), and torch's zip format has per-member CRCs.
        with open(path, "rb") as f:
            head = f.read(512)
        if not looks_like_checkpoint(head):
            return Check(False, False, f"not a torch checkpoint (starts {head[:16]!r})")
        if head[:4] == b"PK\x03\x04" and not zipfile.is_zipfile(path):
            return Check(False, False, "truncated zip (no central directory)")
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            if bad is not None:
                return Check(False, False, f"corrupt zip member {bad!r}")
            return Check(True, False, "no checksum known; zip CRCs ok")
        return Check(True, False, "no checksum known; not checked")
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        return Check(False, False, f"unreadable: {e}")


__all__ = ["Check", "ChecksumMemo", "check_file", "checksums", "sha256_of"]
