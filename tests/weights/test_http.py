"""Weights manager against a local HTTP server on 127.0.0.1: normal download, resumed
download, checksum mismatch, all sources down, corrupt cache, offline mode, locking."""

from __future__ import annotations

import hashlib
import logging
import threading

import pytest
import torch

from gluefactory.weights import (
    UrlSource,
    WeightsError,
    cache_path,
    get_weights_path,
    load_weights,
    verify,
)


def _leftovers(cache) -> list[str]:
    """Files in the cache besides final weight files (temporaries, locks, parts)."""
    if not cache.exists():
        return []
    return sorted(
        p.name
        for p in cache.iterdir()
        if p.name.startswith(".") or p.name.endswith((".part", ".tmp"))
    )


@pytest.fixture
def add_spec(temp_specs):
    """``add_spec(data, urls, **overrides)``: a temporary spec named test-w."""

    def add(data: bytes, urls, name="test-w", **kw):
        fields = dict(
            name=name,
            filename=f"{name}.pth",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            licence="test",
            sources=tuple(UrlSource(u) for u in urls),
        )
        fields.update(kw)
        return temp_specs(**fields)

    return add


def test_normal_download(cache, server, payload, add_spec):
    state, data = payload
    add_spec(data, [server.serve("/w.pth", data)])
    path = get_weights_path("test-w")
    assert path == cache / "test-w.pth"
    assert path.read_bytes() == data
    assert server.gets("/w.pth") == [None]
    assert _leftovers(cache) == []
    assert verify("test-w").verified
    loaded = load_weights("test-w")
    assert torch.equal(loaded["w"], state["w"])
    # Cached now: no further request.
    get_weights_path("test-w")
    assert len(server.gets("/w.pth")) == 1


def test_interrupted_download_resumes(cache, server, payload, add_spec):
    _, data = payload
    cut = len(data) // 3
    add_spec(data, [server.serve("/w.pth", data, cut_after=cut, cuts=2)])
    path = get_weights_path("test-w")
    assert path.read_bytes() == data
    # First request cut at `cut`, the second resumed there and was cut again.
    assert server.gets("/w.pth") == [None, f"bytes={cut}-", f"bytes={2 * cut}-"]
    assert _leftovers(cache) == []


def test_partial_file_from_earlier_run_is_resumed(cache, server, payload, add_spec):
    _, data = payload
    add_spec(data, [server.serve("/w.pth", data)])
    cache.mkdir()
    (cache / "test-w.pth.part").write_bytes(data[:1000])
    assert get_weights_path("test-w").read_bytes() == data
    assert server.gets("/w.pth") == ["bytes=1000-"]


def test_server_ignoring_range_restarts(cache, server, payload, add_spec):
    _, data = payload
    add_spec(data, [server.serve("/w.pth", data, ignore_range=True)])
    cache.mkdir()
    (cache / "test-w.pth.part").write_bytes(data[:1000])
    assert get_weights_path("test-w").read_bytes() == data
    assert server.gets("/w.pth") == ["bytes=1000-"]  # answered 200: written from 0


def test_stale_partial_from_other_file_is_discarded(cache, server, payload, add_spec):
    _, data = payload
    add_spec(data, [server.serve("/w.pth", data)])
    cache.mkdir()
    (cache / "test-w.pth.part").write_bytes(b"x" * 1000)  # not a prefix of data
    assert get_weights_path("test-w").read_bytes() == data
    assert server.gets("/w.pth") == ["bytes=1000-", None]


def test_checksum_mismatch_rejected_leaves_nothing(cache, server, payload, add_spec):
    _, data = payload
    wrong = bytes(b ^ 0xFF for b in data[:10]) + data[10:]  # same size, other bytes
    url = server.serve("/w.pth", wrong)
    add_spec(data, [url])
    with pytest.raises(WeightsError) as info:
        get_weights_path("test-w")
    msg = str(info.value)
    assert url in msg and "sha256 mismatch" in msg
    assert str(cache / "test-w.pth") in msg
    assert not (cache / "test-w.pth").exists()
    assert _leftovers(cache) == []


def test_size_mismatch_rejected(cache, server, payload, add_spec):
    _, data = payload
    url = server.serve("/w.pth", data + b"extra")
    add_spec(data, [url])
    with pytest.raises(WeightsError, match="expected"):
        get_weights_path("test-w")
    assert list(cache.iterdir()) == []


def test_bad_source_falls_back_to_next(cache, server, payload, add_spec):
    _, data = payload
    bad = server.serve("/bad.pth", b"\0" * len(data))
    good = server.serve("/good.pth", data)
    add_spec(data, [bad, good])
    assert get_weights_path("test-w").read_bytes() == data
    assert server.gets("/bad.pth") == [None] and server.gets("/good.pth") == [None]


def test_all_sources_down_clear_error(
    cache, server, payload, add_spec, closed_port_url
):
    _, data = payload
    missing = server.url("/missing.pth")  # 404
    add_spec(data, [missing, closed_port_url])
    with pytest.raises(WeightsError) as info:
        get_weights_path("test-w")
    msg = str(info.value)
    assert "Could not obtain weights 'test-w'" in msg
    assert f"{missing}: HTTP 404" in msg
    assert closed_port_url in msg and "unreachable" in msg
    assert (
        f"download it by hand from {missing} and put it at {cache / 'test-w.pth'}"
        in msg
    )
    assert "`python -m gluefactory.weights fetch test-w`" in msg
    assert not (cache / "test-w.pth").exists()
    assert _leftovers(cache) == []


def test_corrupt_cached_file_is_replaced(cache, server, payload, add_spec, caplog):
    state, data = payload
    add_spec(data, [server.serve("/w.pth", data)])
    cache.mkdir()
    (cache / "test-w.pth").write_bytes(data[:-10] + b"0123456789")  # same size, corrupt
    assert not verify("test-w").ok
    with caplog.at_level(logging.WARNING, logger="gluefactory.weights"):
        loaded = load_weights("test-w")
    assert torch.equal(loaded["w"], state["w"])
    assert (cache / "test-w.pth.corrupt").exists()
    assert verify("test-w").verified
    # the replacement is logged, naming the file and where it went
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert str(cache / "test-w.pth") in message and "sha256 mismatch" in message
    assert f"moved it to {cache / 'test-w.pth.corrupt'}" in message


def test_truncated_cached_file_is_replaced(cache, server, payload, add_spec):
    _, data = payload
    add_spec(data, [server.serve("/w.pth", data)])
    cache.mkdir()
    (cache / "test-w.pth").write_bytes(data[:500])
    assert verify("test-w").reason.startswith("size 500")
    assert get_weights_path("test-w").read_bytes() == data


def test_corrupt_cached_file_never_loaded_when_refetch_fails(
    cache, closed_port_url, payload, add_spec
):
    _, data = payload
    add_spec(data, [closed_port_url])
    cache.mkdir()
    (cache / "test-w.pth").write_bytes(data[:-1] + b"!")
    with pytest.raises(WeightsError, match="moved to"):
        load_weights("test-w")


def test_user_placed_file_is_accepted(cache, closed_port_url, payload, add_spec):
    _, data = payload
    add_spec(data, [closed_port_url])
    cache.mkdir()
    (cache / "test-w.pth").write_bytes(data)
    assert get_weights_path("test-w") == cache / "test-w.pth"


def test_unknown_checksum_structural_check(cache, server, payload, add_spec):
    """Without a sha256, a truncated torch zip is still rejected (zip structure/CRC)."""
    _, data = payload
    add_spec(
        data, [server.serve("/w.pth", data[: len(data) // 2])], size=None, sha256=None
    )
    with pytest.raises(WeightsError, match="rejected"):
        get_weights_path("test-w")
    server.serve("/w.pth", data)
    path = get_weights_path("test-w")
    assert path.read_bytes() == data
    check = verify("test-w")
    assert check.ok and not check.verified


def test_offline_mode_makes_no_request(cache, server, payload, add_spec, monkeypatch):
    _, data = payload
    add_spec(data, [server.serve("/w.pth", data)])
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    with pytest.raises(WeightsError, match="GLUEFACTORY_OFFLINE"):
        get_weights_path("test-w")
    assert server.log == []


def test_concurrent_fetches_download_once(cache, server, payload, add_spec):
    _, data = payload
    add_spec(data, [server.serve("/w.pth", data)])
    barrier = threading.Barrier(3)
    results, errors = [], []

    def worker():
        barrier.wait()
        try:
            results.append(get_weights_path("test-w").read_bytes())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [data] * 3
    assert server.gets("/w.pth") == [None]
    assert _leftovers(cache) == []


def test_cache_path_follows_env(cache, monkeypatch, tmp_path):
    assert cache_path("aliked-n16") == cache / "aliked-n16.pth"
    monkeypatch.setenv("GLUEFACTORY_WEIGHTS", str(tmp_path / "other"))
    assert cache_path("xfeat") == tmp_path / "other" / "xfeat.pt"


def test_html_error_page_rejected_without_checksum(cache, server, add_spec):
    page = b"<!DOCTYPE html><html><body>Rate limited</body></html>"
    add_spec(page, [server.serve("/w.pth", page)], size=None, sha256=None)
    with pytest.raises(WeightsError, match="not a torch checkpoint"):
        get_weights_path("test-w")
    assert list(cache.iterdir()) == []


def test_unwritable_cache_is_a_clear_error(cache, server, payload, add_spec):
    _, data = payload
    add_spec(data, [server.serve("/w.pth", data)])
    cache.parent.mkdir(exist_ok=True)
    cache.write_bytes(b"")  # a file where the cache folder should be
    with pytest.raises(WeightsError, match="weights cache"):
        get_weights_path("test-w")


def test_official_file_name_stands_for_entry(cache, server, payload, add_spec):
    _, data = payload
    add_spec(data, [server.serve("/w.pth", data)])
    assert get_weights_path("test-w.pth") == cache / "test-w.pth"


def test_stalled_transfer_times_out_and_resumes(
    cache, server, payload, add_spec, monkeypatch
):
    _, data = payload
    monkeypatch.setenv("GLUEFACTORY_HTTP_TIMEOUT", "0.3")
    add_spec(data, [server.serve("/w.pth", data, cut_after=5000, stall=1.0)])
    assert get_weights_path("test-w").read_bytes() == data
    assert server.gets("/w.pth") == [None, "bytes=5000-"]
