"""The offline photograph folder: scikit-image's photos plus unpacked Debian packages."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gluefactory.datasets.sources import photos
from gluefactory.utils.errors import DataError


def _jpg(path, w, h, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def fake_skimage(monkeypatch):
    """Two small 'scikit-image photos' (the real loaders are tested by the datasets)."""
    images = {
        "astronaut": np.zeros((40, 50, 3), np.uint8),
        "camera": np.ones((30, 30), np.uint8),
    }
    monkeypatch.setattr(photos, "skimage_photos", lambda: dict(images))
    monkeypatch.delenv(photos.OPENCV_DOC_ENV, raising=False)
    monkeypatch.delenv(photos.WALLPAPERS_ENV, raising=False)


def _wallpaper_tree(root, n=3):
    for i, rel in enumerate(photos.WALLPAPER_PHOTOS[:n]):
        _jpg(root / rel, 2048, 1152, seed=i)
    # rendered artwork in the same packages is not taken
    _jpg(root / "usr/share/wallpapers/Altai/contents/images/1920x1080.jpg", 64, 36)
    return root


def test_wallpapers_are_reduced_and_named(tmp_path, fake_skimage):
    src = _wallpaper_tree(tmp_path / "debs", n=len(photos.WALLPAPER_PHOTOS))
    out = photos.ensure_photos(tmp_path / "photos", wallpapers=src)
    walls = sorted(p.name for p in out.glob("wallpaper_*"))
    assert len(walls) == len(photos.WALLPAPER_PHOTOS) == 35  # names are unique
    assert "wallpaper_Altai.jpg" not in walls
    assert (
        "wallpaper_Bridge_by_Sander_Klootwijk.jpg" in walls
        and "wallpaper_ColdRipple.jpg" in walls
    )
    im = cv2.imread(str(out / "wallpaper_Bridge_by_Sander_Klootwijk.jpg"))
    assert max(im.shape[:2]) == photos.WALLPAPER_SIZE and im.shape[:2] == (576, 1024)
    assert {p.name for p in out.glob("skimage_*")} == {
        "skimage_astronaut.png",
        "skimage_camera.png",
    }


def test_dropping_a_source_removes_its_photos(tmp_path, fake_skimage):
    src = _wallpaper_tree(tmp_path / "debs")
    out = photos.ensure_photos(tmp_path / "photos", wallpapers=src)
    assert len(list(out.glob("wallpaper_*"))) == 3
    photos.ensure_photos(tmp_path / "photos")  # same folder, scikit-image only
    assert not list(out.glob("wallpaper_*"))
    assert len(list(out.glob("skimage_*"))) == 2


def test_opencv_doc_and_environment(tmp_path, fake_skimage, monkeypatch):
    data = tmp_path / "ocv" / photos.OPENCV_DOC_SUBDIR
    _jpg(data / "lena.jpg", 512, 512)
    _jpg(data / "tiny.jpg", 100, 80)  # thumbnails are left out
    monkeypatch.setenv(photos.OPENCV_DOC_ENV, str(tmp_path / "ocv"))
    out = photos.ensure_photos(tmp_path / "photos")
    assert [p.name for p in out.glob("opencv_*")] == ["opencv_lena.jpg"]


def test_missing_packages_say_how_to_get_them(tmp_path, fake_skimage):
    with pytest.raises(DataError, match="apt-get download lomiri-wallpapers-16.04"):
        photos.ensure_photos(tmp_path / "photos", wallpapers=tmp_path / "nothing")
    with pytest.raises(DataError, match="apt-get download opencv-doc"):
        photos.ensure_photos(tmp_path / "p2", opencv_doc=tmp_path / "nothing")


def test_interrupted_write_is_redone(tmp_path, fake_skimage):
    out = photos.ensure_photos(tmp_path / "photos")
    (out / photos._MARKER).unlink()
    (out / "skimage_camera.png").unlink()
    photos.ensure_photos(tmp_path / "photos")
    assert (out / "skimage_camera.png").exists()
