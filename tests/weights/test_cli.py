"""CLI ``python -m gluefactory.weights``: list, fetch, verify, path; exit codes."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from gluefactory.weights import UrlSource
from gluefactory.weights.__main__ import main


@pytest.fixture
def served(cache, server, payload, temp_specs, closed_port_url):
    """test-ok (served), test-down (no source answers)."""
    _, data = payload
    common = dict(size=len(data), sha256=hashlib.sha256(data).hexdigest(), licence="T")
    temp_specs(
        name="test-ok",
        filename="ok.pth",
        sources=(UrlSource(server.serve("/ok.pth", data)),),
        **common,
    )
    temp_specs(
        name="test-down",
        filename="down.pth",
        sources=(UrlSource(closed_port_url),),
        **common,
    )
    return data


def test_fetch_then_verify(served, cache, capsys):
    assert main(["-q", "fetch", "test-ok"]) == 0
    out = capsys.readouterr().out
    assert f"test-ok: {cache / 'ok.pth'} (sha256 verified)" in out
    assert main(["verify", "test-ok"]) == 0
    assert "OK  test-ok" in capsys.readouterr().out
    # Corrupt it: verify fails with a non-zero status, fetch repairs it.
    (cache / "ok.pth").write_bytes(b"x" * len(served))
    assert main(["verify", "test-ok"]) == 1
    assert "BAD test-ok" in capsys.readouterr().out
    assert main(["-q", "fetch", "test-ok"]) == 0
    assert (cache / "ok.pth").read_bytes() == served


def test_fetch_failure_message_without_traceback(served, cache, capsys):
    assert main(["-q", "fetch", "test-down", "test-ok"]) == 2
    captured = capsys.readouterr()
    assert "test-ok:" in captured.out  # the other file is still fetched
    assert "error: test-down: Could not obtain weights" in captured.err
    assert "Sources tried:" in captured.err and "put it at" in captured.err
    assert "Traceback" not in captured.err
    assert "1 of 2 failed: test-down" in captured.err


def test_verify_missing_named_file_fails(served, capsys):
    assert main(["verify", "test-down"]) == 1
    assert "missing" in capsys.readouterr().out


def test_unknown_name_is_a_clean_error(cache, capsys, monkeypatch):
    monkeypatch.delenv("GLUEFACTORY_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["verify", "no-such-weights"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown weights 'no-such-weights'")


def test_list_and_path(served, cache, capsys):
    main(["-q", "fetch", "test-ok"])
    capsys.readouterr()
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["test-ok"].rstrip().endswith("verified")
    assert lines["test-down"].rstrip().endswith("missing")
    assert "superpoint-open" in lines and "unknown" in lines["superpoint-open"]
    assert f"cache: {cache}" in out
    assert main(["path", "xfeat"]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "xfeat.pt")


def test_fetch_file_by_hand(served, cache, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GLUEFACTORY_DEBUG", raising=False)
    good = tmp_path / "dl.pth"
    good.write_bytes(served)
    assert main(["fetch", "test-down", "--file", str(good)]) == 0
    assert (cache / "down.pth").read_bytes() == served
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    (cache / "down.pth").unlink()
    with pytest.raises(SystemExit) as info:
        main(["fetch", "test-down", "--file", str(bad)])
    assert info.value.code == 2
    assert "error: " + str(bad) + " is not a valid down.pth" in capsys.readouterr().err
    assert not (cache / "down.pth").exists()


def test_module_entry_point(cache):
    proc = subprocess.run(
        [sys.executable, "-m", "gluefactory.weights", "path", "aliked-lightglue"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(cache / "aliked_lightglue.pth")
