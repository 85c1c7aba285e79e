"""Resumable HTTP(S) downloads with an atomic move into place.

One public entry point, :func:`download`, shared by the weights manager and the dataset
downloaders::

    from gluefactory.utils.http import download
    download(url, dest, expected_size=1234, desc="hpatches")

Protocol:

1. The body streams into ``<dest>.part``. A transfer interrupted while reading the body
   (connection reset, read timeout, short body) is resumed with ``Range: bytes=N-`` up
   to ``max_resumes`` times; a ``.part`` left by an earlier process is resumed too.
   A server that ignores ``Range`` (answers 200) is read again from byte 0.
2. Errors before any body (DNS, connection refused, HTTP 4xx) fail at once; HTTP 5xx,
   429 and connect timeouts are retried ``retries`` times with a short backoff.
3. The complete ``.part`` is checked (announced size, ``expected_size``, the caller's
   ``verify``) and moved onto ``dest`` with ``os.replace``: ``dest`` never holds a
   partial file. A bad file is deleted; a bad file that came from resuming an old
   ``.part`` (which may belong to another version of the file) is downloaded once more
   from scratch before giving up.

Failures raise :class:`DownloadError` (a :class:`~gluefactory.utils.errors.UserError`
and an ``OSError``) whose message says what went wrong; errors writing the local file
(disk full, permissions) propagate as the plain ``OSError`` they are, naming the
``.part`` file, which is removed (CLIs print them as one line: docs/errors.md).
``$GLUEFACTORY_OFFLINE`` (see :func:`offline`) forbids every request
(:class:`OfflineError`); ``$GLUEFACTORY_HTTP_TIMEOUT`` sets the socket timeout.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from .errors import ConfigError, UserError
from .fs import file_lock

logger = logging.getLogger(__name__)

OFFLINE_ENV = "GLUEFACTORY_OFFLINE"
TIMEOUT_ENV = "GLUEFACTORY_HTTP_TIMEOUT"
DEFAULT_TIMEOUT = 15.0
USER_AGENT = "gluefactory/1.0 (+python-urllib)"
CHUNK = 1 << 20
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadError(UserError, OSError):
    """A download failed (unreachable, HTTP error, interrupted too often, rejected).

    ``str(e)`` is ``"<url>: <reason>"``; ``e.url`` and ``e.reason`` hold the parts.
    """

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason = url, reason

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


class OfflineError(DownloadError):
    """A download was requested while ``$GLUEFACTORY_OFFLINE`` forbids it."""


def offline() -> bool:
    """True when ``$GLUEFACTORY_OFFLINE`` is set to anything but ``""/0/false/no``."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in (
        "",
        "0",
        "false",
        "no",
    )


def http_timeout() -> float:
    """Socket timeout (connect, each read) in seconds: ``$GLUEFACTORY_HTTP_TIMEOUT``."""
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_TIMEOUT
    try:
        timeout = float(value)
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise ConfigError(f"${TIMEOUT_ENV}={value!r} is not a positive number")
    return timeout


def part_path(dest: Path) -> Path:
    """Where :func:`download` keeps the partial file of ``dest``."""
    return dest.with_name(dest.name + ".part")


def progress_bar(total: int | None, initial: int, desc: str, enabled: bool | None):
    """A byte-counting tqdm bar on stderr (``enabled=None``: only on a terminal)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=None if enabled is None else not enabled,
        file=sys.stderr,
        leave=False,
    )


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    expected_size: int | None = None,
    desc: str | None = None,
    timeout: float | None = None,
    progress: bool | None = None,
    headers: Mapping[str, str] | None = None,
    verify: Callable[[Path], str | None] | None = None,
    retries: int = 2,
    max_resumes: int = 5,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, atomic); returns ``dest`` as a Path.

    Args:
        expected_size: size in bytes, if known; a server announcing another size is
            rejected before the body is read.
        desc: label of the progress bar (default: the file name).
        timeout: socket timeout in seconds (default ``$GLUEFACTORY_HTTP_TIMEOUT`` or 15).
        progress: show a tqdm bar (None: only when stderr is a terminal).
        headers: extra request headers.
        verify: ``verify(part) -> None`` when the downloaded file is good, else the
            reason it is not (e.g. a checksum mismatch); a rejected file is deleted.
        retries: extra attempts after HTTP 5xx/429 or a connect timeout.
        max_resumes: reconnections with ``Range`` after interrupted transfers.

    Raises:
        OfflineError: ``$GLUEFACTORY_OFFLINE`` is set (no request is made).
        DownloadError: any other failure; nothing is left under ``dest``.
    """
    dest = Path(dest)
    if offline():
        raise OfflineError(url, f"${OFFLINE_ENV} forbids downloads")
    part = part_path(dest)
    desc = desc or dest.name
    timeout = http_timeout() if timeout is None else timeout
    transfer = _Transfer(
        url, part, expected_size, desc, timeout, progress, headers, retries, max_resumes
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    resumed = part.exists() and part.stat().st_size > 0
    transfer.run()
    reason = _check(part, expected_size, verify)
    if reason is not None and resumed:
        # The old partial file may come from another source or version: retry clean.
        logger.warning("resumed download of %s is bad (%s); restarting", desc, reason)
        part.unlink()
        transfer.run()
        reason = _check(part, expected_size, verify)
    if reason is not None:
        part.unlink(missing_ok=True)
        raise DownloadError(url, f"rejected: {reason}")
    os.replace(part, dest)
    return dest


def _check(
    part: Path, expected_size: int | None, verify: Callable[[Path], str | None] | None
) -> str | None:
    size = part.stat().st_size if part.exists() else 0
    if expected_size is not None and size != expected_size:
        return f"size {size} bytes, expected {expected_size}"
    return verify(part) if verify is not None else None


class _Transfer:
    """Streams one URL into a ``.part`` file, resuming interrupted transfers."""

    def __init__(
        self,
        url,
        part,
        expected_size,
        desc,
        timeout,
        progress,
        headers,
        retries,
        resumes,
    ):
        self.url, self.part, self.expected_size = url, part, expected_size
        self.desc, self.timeout, self.progress = desc, timeout, progress
        self.headers = dict(headers or {})
        self.retries, self.max_resumes = retries, resumes

    def fail(self, reason: str, cause: BaseException | None = None):
        raise DownloadError(self.url, reason) from cause

    def run(self) -> None:
        resumes = 0
        while True:
            have = self.part.stat().st_size if self.part.exists() else 0
            if self.expected_size is not None and have > self.expected_size:
                self.part.unlink()
                have = 0
            if self.expected_size is not None and have == self.expected_size:
                return  # complete from an earlier run; the caller verifies it
            resp = self._open(have)
            if resp is None:  # 416: the part is stale or complete
                if self.expected_size is None:
                    return
                logger.info("server refused to resume %s; restarting", self.url)
                self.part.unlink()
                resumes += 1
                if resumes > self.max_resumes:
                    self.fail("HTTP 416 (cannot resume)")
                continue
            with resp:
                error = self._read_body(resp, have)
            if error is None:
                return
            resumes += 1
            if resumes > self.max_resumes:
                self.fail(f"transfer interrupted {resumes} times ({error})")
            logger.warning(
                "download of %s interrupted at byte %d (%s); resuming",
                self.url,
                self.part.stat().st_size if self.part.exists() else 0,
                error,
            )

    def _open(self, have: int):
        """The response to a GET (with Range when resuming); None for HTTP 416."""
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        headers.update(self.headers)
        if have:
            headers["Range"] = f"bytes={have}-"
        attempt = 0
        while True:
            request = urllib.request.Request(self.url, headers=headers)
            try:
                return urllib.request.urlopen(request, timeout=self.timeout)
            except urllib.error.HTTPError as e:
                e.close()
                if e.code == 416 and have:
                    return None
                if e.code not in RETRY_STATUS or attempt >= self.retries:
                    self.fail(f"HTTP {e.code} {e.reason}", e)
                reason = f"HTTP {e.code}"
            except urllib.error.URLError as e:
                if not isinstance(e.reason, TimeoutError) or attempt >= self.retries:
                    self.fail(f"unreachable ({e.reason})", e)
                reason = "connect timeout"
            except TimeoutError as e:
                if attempt >= self.retries:
                    self.fail(f"connection timed out after {self.timeout:g} s", e)
                reason = "connect timeout"
            except (OSError, http.client.HTTPException) as e:
                self.fail(f"connection failed ({e!r})", e)
            attempt += 1
            delay = 0.5 * 2 ** (attempt - 1)
            logger.info("%s: %s; retrying in %.1f s", self.url, reason, delay)
            time.sleep(delay)

    def _read_body(self, resp, have: int) -> str | None:
        """Append (206) or write (200) the body; the read error, if interrupted."""
        mode = "wb"
        if have and resp.status == 206:
            match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                self.fail(
                    f"bad Content-Range {resp.headers.get('Content-Range')!r} "
                    f"for a resume at byte {have}"
                )
            mode = "ab"
        elif have:
            logger.info("server ignored the Range request for %s; restarting", self.url)
            have = 0
        length = resp.headers.get("Content-Length")
        body = int(length) if length and length.isdigit() else None
        total = have + body if body is not None else self.expected_size
        if self.expected_size is not None and total is not None:
            if total != self.expected_size:
                self.part.unlink(missing_ok=True)  # a partial file of something else
                self.fail(
                    f"server announces {total} bytes, expected {self.expected_size}"
                )
        written = 0
        # Read errors mean "resume"; a write error (disk full, read-only, ...) removes
        # the partial file (it holds the space the user must free) and names it.
        try:
            with (
                open(self.part, mode) as f,
                progress_bar(total, have, self.desc, self.progress) as bar,
            ):
                while True:
                    try:
                        chunk = resp.read1(CHUNK)  # what has arrived: kept on a timeout
                    except (OSError, http.client.HTTPException) as e:  # reset, timeout
                        return repr(e)
                    if not chunk:
                        break
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        except OSError as e:
            self.part.unlink(missing_ok=True)
            raise OSError(e.errno, e.strerror or str(e), str(self.part)) from e
        if body is not None and written < body:
            return "connection closed early"
        return None


__all__ = [
    "DownloadError",
    "OFFLINE_ENV",
    "OfflineError",
    "TIMEOUT_ENV",
    "download",
    "file_lock",
    "http_timeout",
    "offline",
    "part_path",
    "progress_bar",
]
