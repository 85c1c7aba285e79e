"""Version-independent pixel operations of the built-in sets: they compute what OpenCV's
counterparts compute (to OpenCV's fixed-point precision), and encode exact files."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from gluefactory.datasets.sources import builtin_pixels as bp


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.uniform(0, 255, (61, 83, 3)), (0, 0), 2)
    return np.clip(smooth, 0, 255).astype(np.uint8)


def test_bilinear_is_opencv_remap_with_reflect101(image):
    H = np.array([[1.1, 0.05, 3], [0.02, 0.95, -2], [1e-4, 2e-4, 1]])
    ys, xs = np.mgrid[-5:70, -5:90] + 0.5
    x, y = bp.apply_homography(H, xs, ys)
    ours = bp.bilinear(image, x, y)
    ref = cv2.remap(
        image.astype(np.float32),
        (x - 0.5).astype(np.float32),
        (y - 0.5).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    assert ours.dtype == np.float64
    assert np.abs(ours - ref).max() < 255 / 32  # OpenCV: 1/32 px fixed point
    assert np.abs(ours - ref).mean() < 0.2
    centres = bp.bilinear(image, *np.meshgrid(np.arange(83) + 0.5, np.arange(61) + 0.5))
    np.testing.assert_array_equal(centres, image)  # exact at pixel centres


def test_reflect101():
    np.testing.assert_array_equal(
        bp.reflect101(np.arange(-4, 9), 4), [2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]
    )
    np.testing.assert_array_equal(bp.reflect101(np.array([-1, 0, 3]), 1), [0, 0, 0])


@pytest.mark.parametrize("size", [(40, 30), (83, 61), (17, 50), (1, 1)])
def test_resize_area_is_opencv_inter_area(image, size):
    ours = bp.resize_area(image, *size)
    ref = cv2.resize(image.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(ours, ref.reshape(ours.shape), atol=1e-3)
    with pytest.raises(ValueError, match="shrinks only"):
        bp.resize_area(image, 100, 10)


def test_resize_cubic_is_opencv_inter_cubic():
    coarse = np.random.default_rng(1).normal(size=(4, 5))
    ours = bp.resize_cubic(coarse, 64, 48)
    ref = cv2.resize(coarse.astype(np.float32), (64, 48), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_small_linear_algebra():
    M = np.random.default_rng(2).normal(size=(3, 3))
    np.testing.assert_allclose(bp.inv3(M), np.linalg.inv(M), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bp.matmul3(M, M.T), M @ M.T, atol=1e-14)
    np.testing.assert_allclose(bp.matvec3(M, M[0]), M @ M[0], atol=1e-14)
    assert bp.norm3(M[1]) == pytest.approx(np.linalg.norm(M[1]), rel=1e-15)


def test_quantize_rounds_half_up_and_clips():
    x = np.array([-0.1, 0.0, 0.5 / 255, 1.49 / 255, 127.5 / 255, 1.0, 2.0])
    np.testing.assert_array_equal(bp.quantize(x), [0, 0, 1, 1, 128, 255, 255])


@pytest.mark.parametrize("shape", [(61, 83, 3), (61, 83), (300, 400, 3)])
def test_encoders_round_trip_through_opencv_and_pillow(shape):
    img = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    png = bp.encode_png(img)  # 300 x 400 x 3: several stored deflate blocks
    mode = cv2.IMREAD_UNCHANGED
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), mode)
    decoded = decoded[..., ::-1] if decoded.ndim == 3 else decoded
    np.testing.assert_array_equal(decoded, img)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), img)
    assert bp.encode_png(img) == png
    if img.ndim == 3:
        ppm = bp.encode_ppm(img)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(ppm))), img)
        assert ppm.startswith(b"P6\n%d %d\n255\n" % (shape[1], shape[0]))


def test_16_bit_png_round_trips_through_opencv_and_the_depth_reader(tmp_path):
    from gluefactory.formats.depth import png_values, read_depth

    depth = np.random.default_rng(0).uniform(0, 200, (7, 5)).astype(np.float32)
    depth[0, 0] = 0  # unknown
    raw = png_values(depth)
    path = tmp_path / "d.png"
    path.write_bytes(bp.encode_png(raw))
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_ANYDEPTH), raw)
    np.testing.assert_allclose(read_depth(path, (5, 7)), depth, atol=0.5 / 256)
    with pytest.raises(ValueError, match="uint16 grey"):
        bp.encode_png(raw[..., None].repeat(3, -1))
