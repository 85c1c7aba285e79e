"""gluefactory.utils.http.download against a local HTTP server on 127.0.0.1: atomic
move, resume with Range, retries of 5xx only, rejection by size or ``verify``, offline."""

from __future__ import annotations

import logging
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gluefactory.utils import http
from gluefactory.utils.errors import ConfigError, UserError

DATA = bytes(range(256)) * 2000  # 512 000 bytes


class _Server:
    """Serves DATA at /f; ``plan`` is a list of per-request behaviours, popped in order:
    an int status, ("cut", n) to send n body bytes and drop the line, or None (normal)."""

    def __init__(self):
        self.plan: list = []
        self.ranges: list[str | None] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                state.ranges.append(rng)
                step = state.plan.pop(0) if state.plan else None
                if isinstance(step, int):
                    self.send_response(step)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if match:
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header(
                        "Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"
                    )
                else:
                    self.send_response(200)
                body = DATA[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if isinstance(step, tuple):
                    self.wfile.write(body[: step[1]])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/f"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv(http.OFFLINE_ENV, raising=False)
    monkeypatch.setenv(http.TIMEOUT_ENV, "5")
    s = _Server()
    thread = threading.Thread(target=s.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_download_is_atomic_and_complete(server, tmp_path):
    dest = tmp_path / "sub" / "f.bin"
    assert http.download(server.url, dest, progress=False) == dest
    assert dest.read_bytes() == DATA
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]
    assert server.ranges == [None]


def test_interrupted_transfer_resumes_with_range(server, tmp_path, caplog):
    server.plan = [("cut", 1000), ("cut", 5000)]
    dest = tmp_path / "f.bin"
    with caplog.at_level(logging.WARNING, logger="gluefactory.utils.http"):
        http.download(server.url, dest, expected_size=len(DATA), progress=False)
    assert dest.read_bytes() == DATA
    assert server.ranges == [None, "bytes=1000-", "bytes=6000-"]
    assert "interrupted at byte 1000" in caplog.text


def test_part_from_earlier_process_is_resumed(server, tmp_path):
    dest = tmp_path / "f.bin"
    http.part_path(dest).write_bytes(DATA[:777])
    http.download(server.url, dest, progress=False)
    assert dest.read_bytes() == DATA and server.ranges == ["bytes=777-"]


def test_too_many_interruptions_fail(server, tmp_path):
    server.plan = [("cut", 10)] * 3
    with pytest.raises(http.DownloadError, match="interrupted 3 times"):
        http.download(server.url, tmp_path / "f.bin", max_resumes=2, progress=False)
    assert not (tmp_path / "f.bin").exists()


def test_5xx_is_retried_but_404_is_not(server, tmp_path):
    server.plan = [503, None]
    http.download(server.url, tmp_path / "a", progress=False)
    assert (tmp_path / "a").read_bytes() == DATA and len(server.ranges) == 2
    server.ranges.clear()
    server.plan = [404]
    with pytest.raises(http.DownloadError) as info:
        http.download(server.url, tmp_path / "b", progress=False)
    assert info.value.url == server.url and info.value.reason.startswith("HTTP 404")
    assert isinstance(info.value, UserError) and isinstance(info.value, OSError)
    assert len(server.ranges) == 1 and not (tmp_path / "b").exists()


def test_rejected_by_size_or_verify_leaves_nothing(server, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(http.DownloadError, match=f"announces {len(DATA)} bytes"):
        http.download(server.url, dest, expected_size=10, progress=False)
    with pytest.raises(http.DownloadError, match="rejected: bad checksum"):
        http.download(server.url, dest, verify=lambda p: "bad checksum", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_stale_part_is_downloaded_again_when_rejected(server, tmp_path):
    dest = tmp_path / "f.bin"
    http.part_path(dest).write_bytes(b"x" * 100)  # not a prefix of DATA

    def verify(path):
        return None if path.read_bytes() == DATA else "content differs"

    http.download(server.url, dest, verify=verify, progress=False)
    assert dest.read_bytes() == DATA and server.ranges == ["bytes=100-", None]


def test_unreachable_host_fails_fast(tmp_path, monkeypatch):
    monkeypatch.delenv(http.OFFLINE_ENV, raising=False)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(http.DownloadError, match="unreachable"):
        http.download(f"http://127.0.0.1:{port}/x", tmp_path / "x", progress=False)


def test_offline_makes_no_request(server, tmp_path, monkeypatch):
    monkeypatch.setenv(http.OFFLINE_ENV, "1")
    assert http.offline()
    with pytest.raises(http.OfflineError, match="GLUEFACTORY_OFFLINE"):
        http.download(server.url, tmp_path / "f", progress=False)
    assert server.ranges == []
    for value in ("0", "false", "", "No"):
        monkeypatch.setenv(http.OFFLINE_ENV, value)
        assert not http.offline()


def test_timeout_env_is_checked(monkeypatch):
    monkeypatch.setenv(http.TIMEOUT_ENV, "2.5")
    assert http.http_timeout() == 2.5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv(http.TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match="GLUEFACTORY_HTTP_TIMEOUT"):
            http.http_timeout()


def test_file_lock_serialises_and_cleans_up(tmp_path):
    lock = tmp_path / "sub" / ".f.lock"
    inside, overlaps = [], []

    def worker():
        with http.file_lock(lock):
            if inside:
                overlaps.append(True)
            inside.append(1)
            threading.Event().wait(0.05)
            inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [] and not lock.exists()
