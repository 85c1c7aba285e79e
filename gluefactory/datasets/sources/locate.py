"""Where a dataset's folder comes from: a built-in set, an official archive or the user.

The datasets call :func:`resolve_dataset_dir` with their configured folder and get it
back ready to read: ``builtin/<name>`` is built (or verified) by :mod:`.builtin`, the
folder of an official archive is downloaded by :mod:`.download` when missing, any other
missing folder is a :class:`~gluefactory.utils.errors.DataError` naming it. This module
sits above both so that neither imports the other.
"""

from __future__ import annotations

import os
from pathlib import Path

from ... import settings
from ...utils.errors import DataError
from .builtin import NAMES as BUILTIN_NAMES
from .builtin import ensure_builtin
from .download import ARCHIVES, BUILTIN_DIR, archive_for, ensure_archive


def builtin_name(path: Path) -> str | None:
    """``"hpatches"``/``"posed"``/``"eth3d"`` when ``path`` is ``<data>/builtin/<name>``."""
    root = (settings.data_root() / BUILTIN_DIR).resolve()
    path = Path(path).resolve()
    if path.parent == root and path.name in BUILTIN_NAMES:
        return path.name
    return None


def refetch_hint(folder: Path) -> str:
    """How to get a complete copy of ``folder`` again (for incomplete-data errors)."""
    spec = archive_for(folder)
    if spec is not None:
        return (
            f" Delete {folder} to download it again on next use, or place it by hand: "
            f"{spec.manual_steps(folder.parent)}"
        )
    if builtin_name(folder) is not None:
        return (
            " Rebuild it: python -m gluefactory.datasets.sources.builtin build --force "
            f"{folder.name}"
        )
    return ""


def data_root_dir(what: str) -> Path:
    """The data root (``$GLUEFACTORY_DATA``); a file there is a :class:`DataError`."""
    root = settings.data_root()
    if root.exists() and not root.is_dir():
        raise DataError(
            f"{what}: the data root {root} is a file, expected a folder (set "
            f"${settings.DATA_ENV} to a folder)."
        )
    return root


def resolve_dataset_dir(path: str | os.PathLike, what: str) -> Path:
    """The folder ``path`` (relative to the data root, or absolute), made available.

    ``builtin/<name>`` is built (or verified) by :func:`.builtin.ensure_builtin`; the
    folder of an official archive is downloaded when missing; any other missing folder
    is a :class:`DataError` naming it.
    """
    if path is None or str(path) == "":
        raise DataError(f"{what}: no data folder configured.")
    p = Path(path).expanduser()
    full = p if p.is_absolute() else data_root_dir(what) / p
    if full.exists() and not full.is_dir():
        raise DataError(f"{what}: data folder {full} is a file, expected a folder.")
    name = builtin_name(full)
    if name is not None:
        return ensure_builtin(name)
    if full.is_dir():
        return full
    spec = archive_for(full)
    if spec is not None:
        return ensure_archive(spec.name)
    raise DataError(
        f"{what}: data folder {full} does not exist (data root: {settings.data_root()}, "
        f"set ${settings.DATA_ENV} to change it). "
        f"Built-in offline sets: {', '.join('builtin/' + n for n in BUILTIN_NAMES)}; "
        "official archives: "
        f"{', '.join(s.folder for s in ARCHIVES.values())}."
    )
