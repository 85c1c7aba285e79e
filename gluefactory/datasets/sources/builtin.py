"""Built-in offline benchmark sets, generated deterministically from real photographs.

Two sets live under ``<data root>/builtin/``:

* ``hpatches``: HPatches layout (``<seq>/1.ppm .. 6.ppm``, ``H_1_2 .. H_1_6`` in OpenCV's
  integer-centre convention, as the real files) made from scikit-image's bundled photos
  (:mod:`.builtin_hpatches`); read it with the ``hpatches`` dataset,
  ``data_dir: builtin/hpatches``.
* ``posed``: the ``posed_images`` format (:mod:`.builtin_posed`): the Middlebury 2014
  Motorcycle stereo pair with its real disparity and calibration, and ray-traced scenes
  of photo-textured planes with exact depth and poses; read it with the
  ``posed_images`` dataset, ``root: builtin/posed``.

Numbers on these sets are *not comparable* with published HPatches or MegaDepth-1500
results: they check that a pipeline works and rank methods roughly, offline.

Each set holds ``manifest.json`` (generator version, seed, sha256 and size of every
file). :func:`ensure_builtin` builds a missing set (into a temporary folder, then one
atomic rename), rebuilds one made by another generator version, and verifies every
file against the manifest otherwise: a changed or missing file is a :class:`DataError`.

Command line: ``python -m gluefactory.datasets.sources.builtin build [--force] [hpatches|posed]``
and ``... verify``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ... import settings
from ...utils.errors import DataError
from ...utils.http import file_lock
from .download import BUILTIN_DIR

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SEED = 0
NAMES = ("hpatches", "posed")


def _builder(name: str) -> tuple[Callable[[Path, int], dict], int]:
    """(build(dest, seed) -> info, generator version) of a set."""
    if name == "hpatches":
        from . import builtin_hpatches as mod
    elif name == "posed":
        from . import builtin_posed as mod
    else:
        raise DataError(f"Unknown built-in set {name!r}; expected one of {NAMES}.")
    return mod.build, mod.VERSION


def builtin_dir(name: str) -> Path:
    """``<data root>/builtin/<name>`` (may not exist yet)."""
    if name not in NAMES:
        raise DataError(f"Unknown built-in set {name!r}; expected one of {NAMES}.")
    return settings.data_root() / BUILTIN_DIR / name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path, meta: dict) -> dict:
    """Record sha256 and size of every file under ``folder`` in ``manifest.json``."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != MANIFEST:
            files[rel] = {"sha256": _sha256(path), "size": path.stat().st_size}
    manifest = {**meta, "files": files}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, folder / MANIFEST)
    return manifest


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("files"), dict):
            raise ValueError("no 'files' mapping")
    except (OSError, ValueError) as e:
        raise DataError(
            f"The manifest {path} is unreadable ({e}). {_rebuild_hint(folder)}"
        ) from None
    return manifest


def _rebuild_hint(folder: Path) -> str:
    return (
        f"Rebuild the set with: python -m gluefactory.datasets.sources.builtin build --force "
        f"{folder.name}  (data root {folder.parent.parent})"
    )


def verify(folder: Path, manifest: dict | None = None) -> None:
    """Check every file of a built set against its manifest (DataError if not)."""
    manifest = manifest or read_manifest(folder)
    if manifest is None:
        raise DataError(f"{folder} has no {MANIFEST}. {_rebuild_hint(folder)}")
    problems = []
    for rel, entry in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif path.stat().st_size != entry["size"]:
            problems.append(
                f"{rel} has {path.stat().st_size} bytes, not {entry['size']}"
            )
        elif _sha256(path) != entry["sha256"]:
            problems.append(f"{rel} was modified (sha256 differs)")
    if problems:
        shown = "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
        raise DataError(
            f"The built-in set {folder} does not match its manifest: {shown}. "
            f"{_rebuild_hint(folder)}"
        )


def _remove_stale(folder: Path, prefix: str) -> None:
    """Delete temporary folders ``.<prefix>.*`` left by killed runs (call under the
    lock: no other run is using them)."""
    for path in folder.glob(f".{prefix}.*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def build(name: str, force: bool = False, seed: int = SEED) -> Path:
    """Build set ``name`` into the data root (skipped if built and current)."""
    target = builtin_dir(name)
    fn, version = _builder(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{name}.lock"):
        if not force:
            manifest = read_manifest(target) if target.is_dir() else None
            if manifest is not None and manifest.get("version") == version:
                return target
        _remove_stale(target.parent, name)
        logger.info("Building the built-in '%s' set in %s", name, target)
        start = time.time()
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
        try:
            info = fn(tmp, seed)
            write_manifest(
                tmp, {"name": name, "version": version, "seed": seed, **info}
            )
            old = None
            if target.exists():
                old = target.parent / f".{name}.old.{os.getpid()}"
                os.rename(target, old)
            os.rename(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("Built '%s' in %.1f s", name, time.time() - start)
    return target


def ensure_builtin(name: str) -> Path:
    """The folder of built-in set ``name`` (``"hpatches"`` or ``"posed"``), ready to read.

    Built on first use (and when the generator version changed); otherwise every file
    is verified against the manifest (DataError naming the changed files).
    """
    target = builtin_dir(name)
    _, version = _builder(name)
    manifest = read_manifest(target) if target.is_dir() else None
    if manifest is None or manifest.get("version") != version:
        if target.is_dir() and manifest is None and any(target.iterdir()):
            raise DataError(
                f"{target} exists but has no {MANIFEST}: it was not made by the "
                f"builder or is incomplete. {_rebuild_hint(target)}"
            )
        return build(name, force=manifest is not None)
    verify(target, manifest)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gluefactory.datasets.sources.builtin",
        description="Build or verify the built-in offline benchmark sets under "
        f"<data root>/{BUILTIN_DIR}/ (data root: ${settings.DATA_ENV}, default ./data).",
    )
    parser.add_argument("command", choices=("build", "verify"))
    parser.add_argument("names", nargs="*", help=f"sets to process (default: {NAMES})")
    parser.add_argument("--force", action="store_true", help="rebuild even if current")
    args = parser.parse_intermixed_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        parser.error(f"unknown set(s) {unknown}; choose from {list(NAMES)}")
    for name in args.names or NAMES:
        if args.command == "build":
            path = build(name, force=args.force)
        else:
            path = builtin_dir(name)
            verify(path)
        manifest = read_manifest(path) or {}
        done = "verified" if args.command == "verify" else "current"
        print(f"{name}: {path} ({len(manifest.get('files', {}))} files, {done})")
    return 0


if __name__ == "__main__":
    from ...utils.cli import main_wrapper

    raise SystemExit(main_wrapper(main)())
