"""revisitop1m / MegaDepth downloaders against a local HTTP server: resume, integrity,
safety, disk-space check; the downloaded revisitop1m layout feeds the homographies set."""

from __future__ import annotations

import functools
import http.server
import io
import shutil
import tarfile
import threading
from collections import namedtuple

import cv2
import numpy as np
import pytest

from gluefactory.datasets import get_dataset
from gluefactory.datasets.sources import training_downloads as td
from gluefactory.utils.errors import DataError, UserError


def _tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _png(seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/www that counts GET requests per path."""
    www = tmp_path / "www"
    (www / "jpg").mkdir(parents=True)
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(www))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}/", hits
    httpd.shutdown()


def _revisitop(www):
    names = []
    for part in (1, 2):
        members = {f"{part}/img{i}.png": _png(10 * part + i) for i in range(3)}
        _tar(www / "jpg" / f"revisitop1m.{part}.tar.gz", members)
        names += list(members)
    (www / "revisitop1m.txt").write_text("\n".join(names) + "\n")


def test_revisitop1m_download_resume_and_dataset(server, tmp_path):
    www, url, hits = server
    _revisitop(www)
    root = tmp_path / "data" / "revisitop1m"
    td.download_revisitop1m(root, parts="1-2", base_url=url, check_space=False)
    assert sorted(p.name for p in (root / "jpg" / "2").iterdir()) == [
        "img0.png", "img1.png", "img2.png"
    ]  # fmt: skip
    assert not list(
        (root / "jpg" / ".archives").glob("*.tar.gz")
    )  # deleted once unpacked
    n = len(hits)
    td.download_revisitop1m(root, parts="1-2", base_url=url, check_space=False)
    assert len(hits) == n  # everything done: no request
    ds = get_dataset("homographies")(
        {"data_dir": str(root), "train_size": 4, "val_size": 2,
         "photometric": {"name": "identity"}}
    )  # fmt: skip
    assert ds.get_dataset("train")[0]["view0"]["image"].shape == (3, 480, 640)


def test_corrupt_and_unsafe_archives_are_rejected(server, tmp_path):
    www, url, _ = server
    _revisitop(www)
    data = (www / "jpg" / "revisitop1m.1.tar.gz").read_bytes()
    (www / "jpg" / "revisitop1m.1.tar.gz").write_bytes(data[: len(data) // 2])
    root = tmp_path / "r"
    with pytest.raises(UserError, match="not a complete .tar.gz"):
        td.download_revisitop1m(root, parts=[1], base_url=url, check_space=False)
    assert not (root / "jpg" / ".revisitop1m.1.tar.gz.done").exists()
    assert not list((root / "jpg" / ".archives").iterdir())
    _tar(www / "jpg" / "revisitop1m.2.tar.gz", {"../evil.png": b"x"})
    with pytest.raises(UserError, match="unsafe member path"):
        td.download_revisitop1m(root, parts=[2], base_url=url, check_space=False)
    assert not (root / "evil.png").exists() and not (tmp_path / "evil.png").exists()


def test_disk_space_is_checked_before_anything(server, tmp_path, monkeypatch, capsys):
    www, url, hits = server
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**12, 0, 100 * td.GB))
    with pytest.raises(DataError, match="needs about 500 GB.*only 100 GB are free"):
        td.download_revisitop1m(tmp_path / "r", base_url=url)
    assert "about 450 GB" in capsys.readouterr().out
    with pytest.raises(DataError, match="MegaDepth needs about 470 GB"):
        td.download_megadepth(tmp_path / "m", base_url=url)
    assert hits == []
    with pytest.raises(DataError, match="parts must be in 1..100"):
        td.parse_parts("0-3")
    assert td.parse_parts("1-3,7") == [1, 2, 3, 7]


def test_megadepth_download(server, tmp_path):
    www, url, _ = server
    for a in td.MEGADEPTH_ARCHIVES:
        _tar(www / f"{a}.tar.gz", {f"{a}/0001/x.txt": a.encode()})
    root = tmp_path / "megadepth"
    td.download_megadepth(root, base_url=url, check_space=False)
    assert (root / "scene_info" / "0001" / "x.txt").read_text() == "scene_info"
    assert (root / ".Undistorted_SfM.tar.gz.done").exists()
