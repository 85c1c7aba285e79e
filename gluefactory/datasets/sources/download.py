"""Find evaluation data, or fetch it on first use: official archives and built-in sets.

Official archives (facts 3.1, 3.2), unpacked into the data root
(:func:`gluefactory.settings.data_root`):

=================  ==========================================================  ========
name               address                                                     folder
=================  ==========================================================  ========
``hpatches``       huggingface.co/datasets/vbalnt/hpatches/.../                ``hpatches-sequences-release``
                   hpatches-sequences-release.zip (about 1.3 GB)
``megadepth1500``  cvg-data.inf.ethz.ch/megadepth/megadepth1500.zip (1.5 GB)  ``megadepth1500``
``eth3d``          cvg-data.inf.ethz.ch/SOLD2/SOLD2_ETH3D_undistorted/         ``ETH3D_undistorted``
                   ETH3D_undistorted.zip (about 6 GB)
=================  ==========================================================  ========

Protocol of :func:`ensure_archive`: under a lock, the zip streams into
``<data>/<file>.zip.part`` (resumed with HTTP ``Range`` after an interruption, also by a
later process; one call of :func:`gluefactory.utils.http.download`), is checked (zip
structure and every member's CRC; sha256 where known), extracted member by member into a
temporary folder next to the destination, checked for the expected layout and moved into
place with one ``os.rename`` (atomic): a failed or interrupted run never leaves a
half-extracted dataset under its final name. The archive is then deleted.

Offline (``$GLUEFACTORY_OFFLINE=1``, or the host unreachable) any failure is one
:class:`DataError` naming the address, the size and the exact layout to place by hand.
``$GLUEFACTORY_DATA_MIRROR`` replaces the host part: ``<mirror>/<file name>`` (used by the
tests with a local server, and by users behind a mirror).

Command line: ``python -m gluefactory.datasets.sources.download hpatches megadepth1500 eth3d``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ... import settings
from ...formats import eth3d, hpatches, posed
from ...utils.errors import DataError
from ...utils.fs import atomic_folder, sha256_of
from ...utils.http import DownloadError, download, file_lock

logger = logging.getLogger(__name__)

MIRROR_ENV = "GLUEFACTORY_DATA_MIRROR"
BUILTIN_DIR = "builtin"


# ------------------------------------------------------------------------- layouts
def _hpatches_problems(folder: Path) -> list[str]:
    seqs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not seqs:
        return [f"no sequence folder (i_* / v_*) in {folder}"]
    problems = []
    for seq in seqs:
        missing = hpatches.missing_files(seq)
        if missing:
            problems.append(f"{seq.name}/ lacks {', '.join(missing)}")
    return problems


def _posed_problems(folder: Path) -> list[str]:
    need = [posed.IMAGES, posed.DEPTHS, posed.VIEWS, posed.PAIRS]
    return [f"missing {folder / n}" for n in need if not (folder / n).exists()]


def _eth3d_problems(folder: Path) -> list[str]:
    scenes = (
        sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    )
    if not scenes:
        return [f"no scene folder in {folder}"]
    return [
        f"{s.name}/ lacks {', '.join(m)}"
        for s in scenes
        if (m := eth3d.missing_files(s))
    ]


@dataclass(frozen=True)
class Archive:
    """An official dataset archive and what it must unpack to."""

    name: str
    url: str
    folder: str  # folder under the data root that the archive yields
    size_text: str  # human-readable size, for messages
    layout: str  # the layout a user can reproduce by hand
    check: Callable[[Path], list[str]]  # problems of an unpacked folder ([] = good)
    size: int | None = None  # exact bytes, where known
    sha256: str | None = None  # where known

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def address(self) -> str:
        """The URL to fetch: the official one, or under ``$GLUEFACTORY_DATA_MIRROR``."""
        mirror = os.environ.get(MIRROR_ENV, "").strip()
        return f"{mirror.rstrip('/')}/{self.filename}" if mirror else self.url

    def manual_steps(self, root: Path) -> str:
        return (
            f"To place it by hand: download {self.url} ({self.size_text}) and unzip it "
            f"into {root}, giving {root / self.folder}/ with {self.layout}."
        )


ARCHIVES: dict[str, Archive] = {
    "hpatches": Archive(
        name="hpatches",
        url="https://huggingface.co/datasets/vbalnt/hpatches/resolve/main/"
        "hpatches-sequences-release.zip",
        folder="hpatches-sequences-release",
        size_text="about 1.3 GB; 1.8 GB free space needed while unpacking",
        layout="116 sequence folders <seq>/ (i_* illumination, v_* viewpoint), each "
        "holding 1.ppm .. 6.ppm and H_1_2 .. H_1_6 (3 x 3 text matrices)",
        check=_hpatches_problems,
    ),
    "megadepth1500": Archive(
        name="megadepth1500",
        url="https://cvg-data.inf.ethz.ch/megadepth/megadepth1500.zip",
        folder="megadepth1500",
        size_text="about 1.5 GB",
        layout="images/*.jpg, depths/*.h5 (dataset 'depth'), views.txt and pairs.txt "
        "(the posed_images format, see docs/datasets.md)",
        check=_posed_problems,
    ),
    "eth3d": Archive(
        name="eth3d",
        url="https://cvg-data.inf.ethz.ch/SOLD2/SOLD2_ETH3D_undistorted/"
        "ETH3D_undistorted.zip",
        folder="ETH3D_undistorted",
        size_text="about 6 GB",
        layout="one folder per scene with images/dslr_images_undistorted/*.JPG, "
        "ground_truth_depth/undistorted_depth/*.png (16-bit, depth * 256, 1/8 "
        "resolution) and dslr_calibration_undistorted/{cameras.txt,images.txt} (COLMAP "
        "text, see docs/datasets.md)",
        check=_eth3d_problems,
    ),
}


# --------------------------------------------------------------------------- HTTP
def _http_download(url: str, dest: Path, verify: Callable[[Path], str | None]) -> Path:
    """One resumable, verified, atomic download (:func:`gluefactory.utils.http.download`).

    The transfer streams into ``<dest>.part`` (resumed with ``Range``, also by a later
    process); ``verify`` rejects a bad file, which is then deleted.
    """
    return download(url, dest, desc=dest.name, verify=verify)


# ----------------------------------------------------------------------------- zip
def check_zip(path: Path, sha256: str | None = None) -> str | None:
    """None if ``path`` is a complete zip whose members' CRCs match, else why not."""
    try:
        if not zipfile.is_zipfile(path):
            return "not a complete zip archive (truncated or not a zip)"
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                return f"corrupt archive: member {bad!r} fails its CRC check"
        if sha256 is not None:
            digest = sha256_of(path)
            if digest != sha256.lower():
                return f"sha256 {digest[:16]}... differs from {sha256[:16]}..."
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, zlib.error) as e:
        return f"corrupt archive ({e})"
    return None


def _extract(zf: zipfile.ZipFile, dest: Path, desc: str) -> None:
    """Extract every member below ``dest``; members escaping it are an error."""
    from tqdm import tqdm

    base = dest.resolve()
    members = zf.infolist()
    for info in tqdm(members, desc=f"unpacking {desc}", unit="file", leave=False):
        target = (base / info.filename).resolve()
        if target != base and base not in target.parents:
            raise DataError(f"Archive member {info.filename!r} escapes {dest}.")
        zf.extract(info, base)


# ------------------------------------------------------------------------ archives
def ensure_archive(name: str) -> Path:
    """The unpacked folder of official archive ``name``, downloaded if missing."""
    if name not in ARCHIVES:
        raise DataError(f"Unknown dataset archive {name!r}; known: {sorted(ARCHIVES)}.")
    spec = ARCHIVES[name]
    root = settings.data_root()
    target = root / spec.folder
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{spec.folder}.lock"):
        if target.is_dir():  # another process finished meanwhile
            return target
        archive = root / spec.filename
        url = spec.address()
        logger.info("Downloading %s (%s) from %s", spec.name, spec.size_text, url)
        if not archive.is_file():
            try:
                _http_download(url, archive, lambda p: check_zip(p, spec.sha256))
            except DownloadError as e:
                raise DataError(
                    f"Dataset {spec.name!r} is missing ({target}) and could not be "
                    f"downloaded: {e}. {spec.manual_steps(root)}"
                ) from None
        else:
            reason = check_zip(archive, spec.sha256)
            if reason is not None:
                archive.unlink()
                raise DataError(
                    f"The archive {archive} is bad ({reason}); it was deleted, run "
                    f"again to download it. {spec.manual_steps(root)}"
                )
        _unpack(spec, archive, target)
        archive.unlink(missing_ok=True)
    return target


def _unpack(spec: Archive, archive: Path, target: Path) -> None:
    """Extract into a temporary folder, check the layout, rename onto ``target``."""
    for stale in target.parent.glob(f".{spec.folder}.*"):  # from killed runs
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(
        prefix=f".{spec.folder}.", suffix=".tmp", dir=target.parent
    ) as stage:
        tmp = Path(stage)
        try:
            with zipfile.ZipFile(archive) as zf:
                _extract(zf, tmp, spec.name)
        except (zipfile.BadZipFile, EOFError, zlib.error) as e:
            archive.unlink(missing_ok=True)
            raise DataError(
                f"Could not unpack {archive} ({e}); it was deleted, run again to "
                f"download it. {spec.manual_steps(target.parent)}"
            ) from None
        except DataError:  # a member escaping the folder: the archive is unusable
            archive.unlink(missing_ok=True)
            raise
        except OSError as e:  # disk full, permissions: the archive is kept
            raise DataError(
                f"Could not unpack {archive} into {tmp} ({e}); free space or fix the "
                f"permissions and run again."
            ) from None
        content = tmp / spec.folder
        if not content.is_dir():  # an archive without the top-level folder
            content = tmp
        problems = spec.check(content)
        if problems:
            archive.unlink(missing_ok=True)
            shown = "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
            raise DataError(
                f"The archive {spec.address()} does not have the expected layout "
                f"({shown}). {spec.manual_steps(target.parent)}"
            )
        with atomic_folder(target) as out:
            os.rename(content, out)  # onto the empty folder: atomic, same file system


def archive_for(path: Path) -> Archive | None:
    """The official archive that unpacks to ``path`` (under the data root), if any."""
    root = settings.data_root()
    for spec in ARCHIVES.values():
        if Path(path).resolve() == (root / spec.folder).resolve():
            return spec
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gluefactory.datasets.sources.download",
        description="Download and unpack official evaluation datasets into the data "
        "root.",
    )
    parser.add_argument("names", nargs="+", choices=sorted(ARCHIVES))
    args = parser.parse_args(argv)
    for name in args.names:
        print(f"{name}: {ensure_archive(name)}")
    return 0


if __name__ == "__main__":
    from ...utils.cli import main_wrapper

    raise SystemExit(main_wrapper(main)())
