"""Downloaders of the large training sets: revisitop1m (homographies) and MegaDepth.

Both are multi-hundred-gigabyte sets of ``.tar.gz`` archives (facts 3.4):

- revisitop1m (Oxford-Paris 1M distractors): ``revisitop1m.txt`` and 100 archives
  ``jpg/revisitop1m.{1..100}.tar.gz`` under ``http://ptak.felk.cvut.cz/revisitop/revisitop1m/``;
  about 450 GB of images, plus about 50 GB while an archive is unpacked;
- MegaDepth (undistorted, D2-Net preprocessing): ``scene_info``, ``depth_undistorted``
  and ``Undistorted_SfM`` ``.tar.gz`` under ``https://cvg-data.inf.ethz.ch/megadepth/``;
  about 420 GB.

Before anything is fetched the size is printed and checked against the free disk space
of the target (``--no_space_check`` to override). Archives are fetched one at a time
with :func:`gluefactory.utils.http.download` (resumable: an interrupted transfer, also by
a later process, continues from its ``.part``), checked (the whole gzip stream is read,
so its CRC is verified, and every member must stay inside the target), unpacked and
deleted; a marker file per archive lets a re-run skip what is done. Set
``$GLUEFACTORY_DATA_MIRROR`` (or ``base_url``) to fetch from a mirror.

Command line::

    python -m gluefactory.datasets.sources.training_downloads revisitop1m [--parts 1-10]
    python -m gluefactory.datasets.sources.training_downloads megadepth
"""

from __future__ import annotations

import argparse
import os
import shutil
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from ... import settings
from ...utils.errors import DataError
from ...utils.fs import atomic_write_text

GB = 1000**3
MIRROR_ENV = "GLUEFACTORY_DATA_MIRROR"
REVISITOP_URL = "http://ptak.felk.cvut.cz/revisitop/revisitop1m/"
REVISITOP_PARTS = 100
REVISITOP_BYTES = 450 * GB  # images (glue-factory README)
REVISITOP_EXTRA = 50 * GB  # while unpacking (glue-factory#14)
MEGADEPTH_URL = "https://cvg-data.inf.ethz.ch/megadepth/"
MEGADEPTH_ARCHIVES = ("scene_info", "depth_undistorted", "Undistorted_SfM")
MEGADEPTH_BYTES = 420 * GB  # glue-factory README
MEGADEPTH_EXTRA = 50 * GB  # margin for the archive being unpacked (not measured)


def _base(default: str, base_url: str | None) -> str:
    base = base_url or os.environ.get(MIRROR_ENV, "").strip() or default
    return base.rstrip("/") + "/"


def check_free_space(path: Path, need: int, what: str) -> None:
    """DataError if the file system of ``path`` has less than ``need`` bytes free."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        raise DataError(
            f"{what} needs about {need / GB:.0f} GB of free disk space in {path}, but "
            f"only {free / GB:.0f} GB are free. Free space, choose another "
            f"$GLUEFACTORY_DATA, download fewer parts, or pass --no_space_check."
        )


def verify_tar(path: Path) -> str | None:
    """None if ``path`` is a complete, safe .tar.gz (CRC read to the end), else why not."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                name = Path(m.name)
                if name.is_absolute() or ".." in name.parts:
                    return f"unsafe member path {m.name!r}"
                if m.issym() or m.islnk():
                    target = Path(m.linkname)
                    if target.is_absolute() or ".." in target.parts:
                        return f"unsafe link {m.name!r} -> {m.linkname!r}"
                if m.isfile():
                    f = tar.extractfile(m)
                    while f is not None and f.read(1 << 20):
                        pass
    except (tarfile.TarError, OSError, EOFError) as e:
        return f"not a complete .tar.gz archive ({e})"
    return None


def _extract(path: Path, dest: Path) -> None:
    with tarfile.open(path, "r:gz") as tar:
        try:
            tar.extractall(dest, filter="data")  # Python >= 3.12 (and patched 3.10+)
        except TypeError:  # pragma: no cover - old Python: members were checked
            tar.extractall(dest)


def fetch_archives(
    urls: Sequence[str], dest: Path, marker_dir: Path, keep_archives: bool = False
) -> list[Path]:
    """Download, verify, unpack into ``dest`` and delete each archive (resumable)."""
    from ...utils.http import download

    done = []
    marker_dir.mkdir(parents=True, exist_ok=True)
    archives = dest / ".archives"
    for i, url in enumerate(urls):
        name = url.rsplit("/", 1)[-1]
        marker = marker_dir / f".{name}.done"
        if marker.exists():
            done.append(marker)
            continue
        archive = archives / name
        if not archive.exists():
            download(
                url, archive, desc=f"[{i + 1}/{len(urls)}] {name}", verify=verify_tar
            )
        else:
            reason = verify_tar(archive)
            if reason is not None:
                archive.unlink()
                raise DataError(
                    f"{archive}: {reason}; deleted, run again to re-download."
                )
        _extract(archive, dest)
        atomic_write_text(marker, url + "\n")
        if not keep_archives:
            archive.unlink()
        done.append(marker)
    return done


def parse_parts(spec: str | Iterable[int] | None) -> list[int]:
    """'1-10,15' -> [1..10, 15] (archive numbers of revisitop1m)."""
    if spec is None:
        return list(range(1, REVISITOP_PARTS + 1))
    if not isinstance(spec, str):
        parts = [int(p) for p in spec]
    else:
        parts = []
        for chunk in spec.split(","):
            a, _, b = chunk.strip().partition("-")
            parts += list(range(int(a), int(b or a) + 1))
    bad = [p for p in parts if not 1 <= p <= REVISITOP_PARTS]
    if bad:
        raise DataError(
            f"revisitop1m parts must be in 1..{REVISITOP_PARTS}, got {bad}."
        )
    return sorted(set(parts))


def download_revisitop1m(
    root: str | Path | None = None,
    parts: str | Iterable[int] | None = None,
    base_url: str | None = None,
    check_space: bool = True,
    keep_archives: bool = False,
) -> Path:
    """revisitop1m into ``root`` (default ``<data>/revisitop1m``); returns ``root``."""
    from ...utils.http import download

    root = Path(root) if root is not None else settings.data_root() / "revisitop1m"
    parts = parse_parts(parts)
    base = _base(REVISITOP_URL, base_url)
    todo = [
        p
        for p in parts
        if not (root / "jpg" / f".revisitop1m.{p}.tar.gz.done").exists()
    ]
    need = int(REVISITOP_BYTES * len(todo) / REVISITOP_PARTS) + (
        REVISITOP_EXTRA if todo else 0
    )
    print(
        f"revisitop1m: {len(parts)} of {REVISITOP_PARTS} archives ({len(todo)} to fetch) "
        f"into {root}; the whole set is about 450 GB of images and needs about 50 GB "
        f"more while an archive is unpacked (this selection: about {need / GB:.0f} GB)."
    )
    if check_space and todo:
        check_free_space(root, need, "revisitop1m")
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "revisitop1m.txt").exists():
        download(
            base + "revisitop1m.txt", root / "revisitop1m.txt", desc="revisitop1m.txt"
        )
    urls = [f"{base}jpg/revisitop1m.{p}.tar.gz" for p in todo]
    fetch_archives(urls, root / "jpg", root / "jpg", keep_archives)
    return root


def download_megadepth(
    root: str | Path | None = None,
    base_url: str | None = None,
    check_space: bool = True,
    keep_archives: bool = False,
    archives: Sequence[str] = MEGADEPTH_ARCHIVES,
) -> Path:
    """MegaDepth (scene_info, depth, images) into ``root`` (default ``<data>/megadepth``)."""
    root = Path(root) if root is not None else settings.data_root() / "megadepth"
    unknown = set(archives) - set(MEGADEPTH_ARCHIVES)
    if unknown:
        raise DataError(
            f"Unknown MegaDepth archives {sorted(unknown)}; known: {MEGADEPTH_ARCHIVES}."
        )
    todo = [a for a in archives if not (root / f".{a}.tar.gz.done").exists()]
    print(
        f"MegaDepth: {len(todo)} of {len(archives)} archives to fetch into {root}; "
        f"about 420 GB once unpacked, plus the archive being unpacked."
    )
    if check_space and todo:
        check_free_space(root, MEGADEPTH_BYTES + MEGADEPTH_EXTRA, "MegaDepth")
    base = _base(MEGADEPTH_URL, base_url)
    fetch_archives([f"{base}{a}.tar.gz" for a in todo], root, root, keep_archives)
    return root


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m gluefactory.datasets.sources.training_downloads",
        description="Download revisitop1m or MegaDepth (hundreds of GB; resumable).",
    )
    p.add_argument("dataset", choices=["revisitop1m", "megadepth"])
    p.add_argument("--root", help="target folder (default: <data root>/<dataset>)")
    p.add_argument(
        "--parts", help="revisitop1m archives, e.g. 1-10,15 (default: all 100)"
    )
    p.add_argument("--base_url", help="mirror of the official address")
    p.add_argument("--no_space_check", action="store_true")
    p.add_argument("--keep_archives", action="store_true")
    args = p.parse_args(argv)
    kw = dict(
        base_url=args.base_url,
        check_space=not args.no_space_check,
        keep_archives=args.keep_archives,
    )
    if args.dataset == "revisitop1m":
        out = download_revisitop1m(args.root, args.parts, **kw)
    else:
        out = download_megadepth(args.root, **kw)
    print(f"Done: {out}")


if __name__ == "__main__":
    from ...utils.cli import main_wrapper

    main_wrapper(main)()
