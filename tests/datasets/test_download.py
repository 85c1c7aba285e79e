"""Dataset downloads against a local HTTP server on 127.0.0.1 serving small archives of
the real layouts: first use, resume, truncated/corrupt/mislaid archives, offline."""

from __future__ import annotations

import http.server
import io
import re
import threading
import zipfile
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from gluefactory.datasets import get_dataset
from gluefactory.datasets.sources import download
from gluefactory.utils.cli import main_wrapper
from gluefactory.utils.errors import DataError

skd = pytest.importorskip("skimage.data")


# ------------------------------------------------------------------ the server
class Server:
    """Serves registered bytes; supports Range; can cut the first response short."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before dropping once
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng:
                    start = int(re.match(r"bytes=(\d+)-", rng).group(1))
                    self.send_response(206)
                    self.send_header(
                        "Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"
                    )
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                cut = server.cut_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def data_root(tmp_path, monkeypatch, server):
    root = tmp_path / "data"
    monkeypatch.setenv("GLUEFACTORY_DATA", str(root))
    monkeypatch.setenv("GLUEFACTORY_DATA_MIRROR", server.url)
    monkeypatch.setenv("GLUEFACTORY_HTTP_TIMEOUT", "5")
    monkeypatch.delenv("GLUEFACTORY_OFFLINE", raising=False)
    return root


def leftovers(root: Path) -> list[str]:
    """Anything but final dataset folders: parts, archives, temporaries, locks."""
    if not root.exists():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.name.startswith(".") or p.suffix in (".zip", ".part")
    )


# ------------------------------------------------------- archives (real layouts)
def _ppm(img) -> bytes:
    return cv2.imencode(".ppm", img[..., ::-1])[1].tobytes()


def hpatches_zip(stored: bool = False) -> bytes:
    """hpatches-sequences-release/{i_,v_}<seq>/1..6.ppm + H_1_k, as the real zip."""
    buf = io.BytesIO()
    mode = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    photo = skd.coffee()[::8, ::8]
    with zipfile.ZipFile(buf, "w", mode) as zf:
        for seq in ("i_ajuntament", "v_graffiti"):
            base = f"hpatches-sequences-release/{seq}"
            for i in range(1, 7):
                zf.writestr(f"{base}/{i}.ppm", _ppm(np.roll(photo, i, 1)))
            for k in range(2, 7):
                zf.writestr(f"{base}/H_1_{k}", f"1 0 {k}\n0 1 0\n0 0 1\n")
    return buf.getvalue()


def megadepth1500_zip() -> bytes:
    """megadepth1500/{images, depths/*.h5 ('depth'), views.txt, pairs.txt}."""
    buf = io.BytesIO()
    photo = skd.astronaut()[::8, ::8]  # 64 x 64
    views = []
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, name in enumerate(["1.jpg", "2.jpg"]):
            jpg = cv2.imencode(".jpg", photo[..., ::-1])[1].tobytes()
            zf.writestr(f"megadepth1500/images/{name}", jpg)
            h5 = io.BytesIO()
            with h5py.File(h5, "w") as f:
                f["depth"] = np.full((64, 64), 5.0, np.float32)
            zf.writestr(f"megadepth1500/depths/{name[:-4]}.h5", h5.getvalue())
            R = " ".join(["1", "0", "0", "0", "1", "0", "0", "0", "1"])
            views.append(f"{name} {R} {i} 0 0 PINHOLE 64 64 60 60 32 32")
        zf.writestr("megadepth1500/views.txt", "\n".join(views) + "\n")
        zf.writestr("megadepth1500/pairs.txt", "1.jpg 2.jpg\n")
    return buf.getvalue()


HP = "/hpatches-sequences-release.zip"
MD = "/megadepth1500.zip"


# ------------------------------------------------------------------------ tests
def test_official_addresses_are_in_the_code(monkeypatch):
    monkeypatch.delenv("GLUEFACTORY_DATA_MIRROR", raising=False)
    assert download.ARCHIVES["hpatches"].address() == (
        "https://huggingface.co/datasets/vbalnt/hpatches/resolve/main/"
        "hpatches-sequences-release.zip"
    )
    assert download.ARCHIVES["megadepth1500"].address() == (
        "https://cvg-data.inf.ethz.ch/megadepth/megadepth1500.zip"
    )


def test_hpatches_downloads_on_first_use(server, data_root):
    server.files[HP] = hpatches_zip()
    (data_root / ".hpatches-sequences-release.killed").mkdir(parents=True)  # old run
    ds = get_dataset("hpatches")()  # upstream default data_dir
    assert ds.sequences == ["i_ajuntament", "v_graffiti"] and len(ds) == 10
    assert ds[9]["H_0to1"].shape == (3, 3)
    assert (data_root / "hpatches-sequences-release" / "v_graffiti" / "H_1_6").is_file()
    assert leftovers(data_root) == []
    assert server.requests == [(HP, None)]
    get_dataset("hpatches")()  # second use: no request
    assert len(server.requests) == 1
    (data_root / "hpatches-sequences-release" / "v_graffiti" / "4.ppm").unlink()
    with pytest.raises(
        DataError, match=r"missing 4.ppm\. Delete .* to download it again"
    ):
        get_dataset("hpatches")()


def test_megadepth1500_downloads_through_posed_images(server, data_root):
    server.files[MD] = megadepth1500_zip()
    from gluefactory.eval.megadepth1500 import MegaDepth1500Pipeline

    conf = dict(MegaDepth1500Pipeline.default_conf["data"])  # upstream's data section
    conf.pop("name")
    conf["preprocessing"] = {"side": "long", "resize": 32}
    ds = get_dataset("posed_images")(conf)  # upstream's MegaDepth-1500 data section
    item = ds[0]
    assert item["name"] == "megadepth1500/1.jpg/2.jpg"
    assert item["view0"]["depth"].shape == (32, 32)
    assert float(item["T_0to1"].t[0]) == pytest.approx(1.0)
    assert leftovers(data_root) == []


def test_interrupted_transfer_is_resumed(server, data_root):
    data = hpatches_zip()
    server.files[HP] = data
    server.cut_after[HP] = len(data) // 3
    path = download.ensure_archive("hpatches")
    assert (path / "i_ajuntament" / "6.ppm").is_file()
    ranges = [r for p, r in server.requests if p == HP]
    assert ranges == [None, f"bytes={len(data) // 3}-"]
    assert leftovers(data_root) == []


def test_a_part_left_by_an_earlier_run_is_resumed(server, data_root):
    data = hpatches_zip()
    server.files[HP] = data
    data_root.mkdir()
    (data_root / "hpatches-sequences-release.zip.part").write_bytes(data[:1000])
    download.ensure_archive("hpatches")
    assert server.requests == [(HP, "bytes=1000-")]
    assert leftovers(data_root) == []


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "not_a_zip"])
def test_bad_archives_leave_nothing_behind(server, data_root, damage):
    data = hpatches_zip(stored=True)
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    elif damage == "corrupt":  # flip bytes inside a stored member: CRC mismatch
        i = data.index(b"P6") + 200
        data = data[:i] + bytes(b ^ 0xFF for b in data[i : i + 50]) + data[i + 50 :]
    else:
        data = b"<html>rate limited</html>"
    server.files[HP] = data
    with pytest.raises(DataError) as e:
        download.ensure_archive("hpatches")
    msg = str(e.value)
    assert {"truncated": "not a complete zip", "corrupt": "CRC", "not_a_zip": "not a"}[
        damage
    ] in msg
    assert "hpatches-sequences-release.zip" in msg and "unzip it into" in msg
    assert not (data_root / "hpatches-sequences-release").exists()
    assert leftovers(data_root) == []


def test_archive_with_the_wrong_layout(server, data_root):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hpatches-sequences-release/v_x/1.ppm", b"P6 1 1 255 abc")
    server.files[HP] = buf.getvalue()
    with pytest.raises(DataError, match=r"expected layout.*v_x/ lacks 2.ppm"):
        download.ensure_archive("hpatches")
    assert not (data_root / "hpatches-sequences-release").exists()
    assert leftovers(data_root) == []


def test_archive_members_may_not_escape(server, data_root):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    server.files[HP] = buf.getvalue()
    with pytest.raises(DataError, match="escapes"):
        download.ensure_archive("hpatches")
    assert not (data_root.parent / "evil.txt").exists()
    assert leftovers(data_root) == []


def test_offline_gives_one_clear_message(server, data_root, monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    server.files[MD] = megadepth1500_zip()
    with pytest.raises(DataError) as e:
        download.ensure_archive("megadepth1500")
    msg = str(e.value)
    assert "GLUEFACTORY_OFFLINE" in msg and "1.5 GB" in msg
    assert "https://cvg-data.inf.ethz.ch/megadepth/megadepth1500.zip" in msg
    assert "views.txt" in msg and "depths/*.h5" in msg
    assert server.requests == []
    assert leftovers(data_root) == []


def test_unreachable_host(data_root, monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_DATA_MIRROR", "http://127.0.0.1:9")  # discard port
    with pytest.raises(DataError, match=r"could not be downloaded.*place it by hand"):
        download.ensure_archive("hpatches")
    assert leftovers(data_root) == []


def test_http_error_and_cli(server, data_root, capsys):
    with pytest.raises(SystemExit) as e:
        main_wrapper(download.main)(["megadepth1500"])  # 404 on the mirror
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Dataset 'megadepth1500' is missing")
    assert "404" in err and "Traceback" not in err
    server.files[MD] = megadepth1500_zip()
    assert main_wrapper(download.main)(["megadepth1500"]) == 0
    assert "megadepth1500" in capsys.readouterr().out


# ------------------------------------------------------------------------ ETH3D
ETH = "/ETH3D_undistorted.zip"


def eth3d_zip(tmp_path: Path, layout_ok: bool = True) -> bytes:
    """ETH3D_undistorted/<scene>/{images/..., ground_truth_depth/..., calibration}."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "eth3d_tiny", Path(__file__).with_name("eth3d_tiny.py")
    )
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    src = tiny.write_tiny_scene(tmp_path / "src" / "ETH3D_undistorted")
    if not layout_ok:
        import shutil

        shutil.rmtree(src / "ground_truth_depth")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.parent.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src.parent.parent).as_posix())
    return buf.getvalue()


def test_eth3d_address_and_resumed_download(server, data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("GLUEFACTORY_DATA_MIRROR", raising=False)
    assert download.ARCHIVES["eth3d"].address() == (
        "https://cvg-data.inf.ethz.ch/SOLD2/SOLD2_ETH3D_undistorted/"
        "ETH3D_undistorted.zip"
    )
    monkeypatch.setenv("GLUEFACTORY_DATA_MIRROR", server.url)
    data = eth3d_zip(tmp_path)
    server.files[ETH] = data
    server.cut_after[ETH] = len(data) // 2
    ds = get_dataset("eth3d")(
        {"min_covisibility": 2, "downsize_factor": 4}
    )  # default root
    assert len(ds) == 2 and ds[0]["view0"]["depth"].shape == (16, 24)
    ranges = [r for p, r in server.requests if p == ETH]
    assert ranges[0] is None and ranges[1] == f"bytes={len(data) // 2}-"
    assert leftovers(data_root) == []


def test_eth3d_archive_with_another_layout(server, data_root, tmp_path):
    server.files[ETH] = eth3d_zip(tmp_path, layout_ok=False)
    with pytest.raises(DataError, match=r"courtyard/ lacks ground_truth_depth"):
        download.ensure_archive("eth3d")
    assert not (data_root / "ETH3D_undistorted").exists()
    assert leftovers(data_root) == []
