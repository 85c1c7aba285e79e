"""Built-in offline benchmark sets, generated deterministically from real photographs.

Three sets live under ``<data root>/builtin/``:

* ``hpatches``: HPatches layout (``<seq>/1.ppm .. 6.ppm``, ``H_1_2 .. H_1_6`` in OpenCV's
  integer-centre convention, as the real files) made from scikit-image's bundled photos
  (:mod:`.builtin_hpatches`); read it with the ``hpatches`` dataset,
  ``data_dir: builtin/hpatches``.
* ``posed``: the ``posed_images`` format (:mod:`.builtin_posed`): the Middlebury 2014
  Motorcycle stereo pair with its real disparity and calibration, and ray-traced scenes
  of photo-textured planes with exact depth and poses; read it with the
  ``posed_images`` dataset, ``root: builtin/posed``.
* ``eth3d``: the ETH3D undistorted layout (:mod:`.builtin_eth3d`): ray-traced rooms
  (straight edges: line segments) with exact depth, poses and a sparse model of 3D
  point ids; read it with the ``eth3d`` dataset, ``root: builtin/eth3d``,
  ``downsize_factor: 1``.

Numbers on these sets are *not comparable* with published HPatches or MegaDepth-1500
results: they check that a pipeline works and rank methods roughly, offline.

Each set holds ``manifest.json`` (generator version, seed, sha256 and size of every
file). The sha256 of every file of every set, as the package's generators make them with
the default seed, ship with the package (``builtin_checksums.json``): every pixel
operation of the generators is version-independent (:mod:`.builtin_pixels`), so the
same files come out on every installation, and a build whose files differ is refused
(:class:`DataError` naming the files and the libraries that differ from those the
checksums were made with) instead of becoming a silently different benchmark.

:func:`ensure_builtin` builds a missing set (into a temporary folder, checked, then one
atomic rename), rebuilds one made by another generator version, and otherwise verifies
every file against the manifest and the manifest against the shipped checksums: a
changed or missing file is a :class:`DataError`.

Command line: ``python -m gluefactory.datasets.sources.builtin build [--force] [hpatches|posed|eth3d]``,
``... verify``, and, after a change of a generator (with its ``VERSION``),
``... checksums [names]`` to regenerate the shipped checksums (of those sets).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from ... import settings
from ...utils.errors import DataError
from ...utils.fs import (
    atomic_folder,
    atomic_write_text,
    remove_stale_temporaries,
    sha256_of,
)
from ...utils.http import file_lock
from .download import BUILTIN_DIR

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SEED = 0
NAMES = ("hpatches", "posed", "eth3d")
#: expected sha256 and size of every generated file, shipped with the package
CHECKSUMS = Path(__file__).with_name("builtin_checksums.json")
#: distributions whose versions are recorded with the checksums (those the generators
#: use; OpenCV is not one of them)
LIBRARIES = ("numpy", "scikit-image", "imageio", "pillow", "h5py", "torch")


def _builder(name: str) -> tuple[Callable[[Path, int], dict], int]:
    """(build(dest, seed) -> info, generator version) of a set."""
    if name == "hpatches":
        from . import builtin_hpatches as mod
    elif name == "posed":
        from . import builtin_posed as mod
    elif name == "eth3d":
        from . import builtin_eth3d as mod
    else:
        raise DataError(f"Unknown built-in set {name!r}; expected one of {NAMES}.")
    return mod.build, mod.VERSION


def builtin_dir(name: str) -> Path:
    """``<data root>/builtin/<name>`` (may not exist yet)."""
    if name not in NAMES:
        raise DataError(f"Unknown built-in set {name!r}; expected one of {NAMES}.")
    return settings.data_root() / BUILTIN_DIR / name


def file_entries(folder: Path) -> dict[str, dict]:
    """relative path -> {"sha256", "size"} of every file under ``folder`` (but the
    manifest)."""
    return {
        path.relative_to(folder).as_posix(): {
            "sha256": sha256_of(path),
            "size": path.stat().st_size,
        }
        for path in sorted(p for p in folder.rglob("*") if p.is_file())
        if path.relative_to(folder).as_posix() != MANIFEST
    }


def write_manifest(folder: Path, meta: dict) -> dict:
    """Record sha256 and size of every file under ``folder`` in ``manifest.json``."""
    manifest = {**meta, "files": file_entries(folder)}
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _read_json(path: Path, key: str, what: str, hint: str) -> dict:
    """A JSON object with a mapping under ``key``, or a DataError naming ``what``."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data.get(key), dict):
            raise ValueError(f"no '{key}' mapping")
    except (OSError, ValueError) as e:
        raise DataError(f"The {what} {path} is unreadable ({e}). {hint}") from None
    return data


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    return _read_json(path, "files", "manifest", _rebuild_hint(folder))


def _rebuild_hint(folder: Path) -> str:
    return (
        f"Rebuild the set with: python -m gluefactory.datasets.sources.builtin build --force "
        f"{folder.name}  (data root {folder.parent.parent})"
    )


# ------------------------------------------------------------ shipped checksums
def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries the generators use (HDF5 included)."""
    versions = {"python": platform.python_version()}
    for dist in LIBRARIES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    try:
        import h5py

        versions["hdf5"] = h5py.version.hdf5_version
    except ImportError:  # pragma: no cover - a dependency
        pass
    return versions


def source_digests() -> dict[str, str]:
    """sha256 of the decoded source photographs (pixels, shape and type), to tell
    whether a difference comes from decoding them (scikit-image, Pillow)."""
    import skimage.data

    from .builtin_hpatches import ILLUMINATION, VIEWPOINT, load_photo
    from .builtin_posed import PHOTOS, SURFACES

    names = sorted({*VIEWPOINT, *ILLUMINATION, *PHOTOS, *SURFACES})
    arrays = {name: load_photo(name) for name in names}
    stereo = skimage.data.stereo_motorcycle()
    arrays |= dict(
        zip(("motorcycle_left", "motorcycle_right", "motorcycle_disp"), stereo)
    )
    return {
        name: hashlib.sha256(
            f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()
        ).hexdigest()
        for name, a in arrays.items()
    }


def read_checksums(path: Path = CHECKSUMS) -> dict:
    """The shipped checksums: ``{"libraries": {...}, "sets": {name: {"version",
    "seed", "files"}}}``."""
    return _read_json(path, "sets", "shipped checksums", "Reinstall gluefactory.")


def expected_files(name: str, version: int, seed: int) -> dict[str, dict] | None:
    """The shipped sha256/size of every file of set ``name`` as generator ``version``
    makes it with ``seed``; None for a seed other than the shipped one (a custom set,
    not checked). A generator version without shipped checksums is a DataError."""
    entry = read_checksums()["sets"].get(name)
    if entry is not None and seed != entry["seed"]:
        return None
    if entry is None or entry["version"] != version:
        shipped = None if entry is None else entry["version"]
        raise DataError(
            f"No shipped checksums for version {version} of the built-in '{name}' "
            f"generator ({CHECKSUMS.name} has version {shipped}). After changing a "
            "generator, regenerate them: python -m gluefactory.datasets.sources.builtin "
            "checksums"
        )
    return entry["files"]


def differences(
    actual: dict[str, dict], expected: dict[str, dict], changed: str
) -> list[str]:
    """What differs between two ``{path: {"sha256", "size"}}`` maps, one line per
    file; ``changed`` says how to call other bytes of the same size."""
    problems = [f"{rel} is missing" for rel in expected if rel not in actual]
    problems += [f"{rel} is not expected" for rel in actual if rel not in expected]
    for rel in expected.keys() & actual.keys():
        a, e = actual[rel], expected[rel]
        if a["size"] != e["size"]:
            problems.append(f"{rel} has {a['size']} bytes, not {e['size']}")
        elif a["sha256"] != e["sha256"]:
            problems.append(f"{rel} {changed}")
    return sorted(problems)


def _summary(problems: list[str], total: int) -> str:
    shown = "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
    return f"{len(problems)} of {total} files differ: {shown}"


def check_against_shipped(name: str, manifest: dict) -> None:
    """DataError if the files a manifest records are not the shipped ones."""
    expected = expected_files(name, manifest.get("version"), manifest.get("seed"))
    if expected is None:
        return
    problems = differences(
        manifest["files"], expected, "has other bytes (sha256 differs)"
    )
    if not problems:
        return
    shipped = read_checksums()
    here = library_versions()
    libs = ", ".join(
        f"{lib} {here.get(lib)} (checksums made with {v})"
        for lib, v in shipped.get("libraries", {}).items()
        if here.get(lib) != v
    )
    digests = source_digests()
    sources = sorted(
        n for n, d in shipped.get("sources", {}).items() if digests.get(n) != d
    )
    raise DataError(
        f"The built-in set '{name}' generated here is not the one gluefactory ships "
        f"checksums for ({CHECKSUMS.name}): {_summary(problems, len(expected))}. "
        "Numbers measured on it would not be comparable, so it is not used. "
        + (
            f"Libraries that differ from those of the checksums: {libs}. "
            if libs
            else "The library versions are those of the checksums. "
        )
        + (
            f"These source photographs decode to other pixels here: {sources}. "
            if sources
            else "The source photographs decode to the same pixels. "
        )
        + "Please report this (with this message) as a bug of the generator."
    )


# ------------------------------------------------------------ build / verify
def verify(folder: Path, manifest: dict | None = None) -> None:
    """Check every file of a built set against its manifest, and the manifest against
    the shipped checksums (DataError if not)."""
    manifest = manifest or read_manifest(folder)
    if manifest is None:
        raise DataError(f"{folder} has no {MANIFEST}. {_rebuild_hint(folder)}")
    recorded = manifest["files"]
    actual = {}
    for rel, entry in recorded.items():
        path = folder / rel
        if path.is_file():
            size = path.stat().st_size
            sha = sha256_of(path) if size == entry["size"] else None
            actual[rel] = {"sha256": sha, "size": size}
    problems = differences(actual, recorded, "was modified (sha256 differs)")
    if problems:
        raise DataError(
            f"The built-in set {folder} does not match its manifest: "
            f"{_summary(problems, len(recorded))}. {_rebuild_hint(folder)}"
        )
    _, version = _builder(folder.name)
    if manifest.get("version") != version:
        raise DataError(
            f"The built-in set {folder} was made by version {manifest.get('version')} "
            f"of its generator, this gluefactory's is {version}. {_rebuild_hint(folder)}"
        )
    check_against_shipped(folder.name, manifest)


def build(name: str, force: bool = False, seed: int = SEED) -> Path:
    """Build set ``name`` into the data root (skipped if built and current), checked
    against the shipped checksums before it replaces anything."""
    target = builtin_dir(name)
    fn, version = _builder(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{name}.lock"):
        if not force:
            manifest = read_manifest(target) if target.is_dir() else None
            if manifest is not None and manifest.get("version") == version:
                return target
        remove_stale_temporaries(target.parent, name)
        logger.info("Building the built-in '%s' set in %s", name, target)
        start = time.time()
        with atomic_folder(target) as tmp:
            info = fn(tmp, seed)
            manifest = write_manifest(
                tmp, {"name": name, "version": version, "seed": seed, **info}
            )
            check_against_shipped(name, manifest)
        logger.info("Built '%s' in %.1f s", name, time.time() - start)
    return target


def ensure_builtin(name: str) -> Path:
    """The folder of built-in set ``name`` (one of :data:`NAMES`), ready to read.

    Built on first use (and when the generator version changed); otherwise every file
    is verified against the manifest and the shipped checksums (DataError naming the
    changed files).
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


def write_checksums(
    path: Path = CHECKSUMS, seed: int = SEED, names: tuple[str, ...] = NAMES
) -> dict:
    """Generate the sets ``names`` in a temporary folder and record their files'
    checksums in ``path``, keeping the entries of the other sets (for maintainers,
    after a generator changed)."""
    sets = read_checksums(path)["sets"] if path.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            fn, version = _builder(name)
            fn(Path(tmp) / name, seed)
            files = file_entries(Path(tmp) / name)
            sets[name] = {"version": version, "seed": seed, "files": files}
    data = {"libraries": library_versions(), "sources": source_digests(), "sets": sets}
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gluefactory.datasets.sources.builtin",
        description="Build or verify the built-in offline benchmark sets under "
        f"<data root>/{BUILTIN_DIR}/ (data root: ${settings.DATA_ENV}, default ./data).",
    )
    parser.add_argument("command", choices=("build", "verify", "checksums"))
    parser.add_argument("names", nargs="*", help=f"sets to process (default: {NAMES})")
    parser.add_argument("--force", action="store_true", help="rebuild even if current")
    args = parser.parse_intermixed_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        parser.error(f"unknown set(s) {unknown}; choose from {list(NAMES)}")
    if args.command == "checksums":
        data = write_checksums(CHECKSUMS, names=tuple(args.names) or NAMES)
        counts = {n: len(e["files"]) for n, e in data["sets"].items()}
        print(f"{CHECKSUMS}: {counts} files")
        return 0
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
