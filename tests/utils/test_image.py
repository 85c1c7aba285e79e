import cv2
import numpy as np
import pytest
import torch

from gluefactory.utils.conf import ConfigError
from gluefactory.utils.image import (
    MIN_IMAGE_SIDE,
    ImagePreprocessor,
    ImageReadError,
    numpy_image_to_torch,
    read_image,
    read_image_size,
)


@pytest.fixture
def png(tmp_path):
    img = np.zeros((20, 30, 3), np.uint8)
    img[..., 0] = 255  # pure red in RGB
    img[5, 7] = (10, 20, 30)  # and one pixel whose channel order is visible
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), img[..., ::-1])
    return path


def test_read_image_rgb_and_gray(png):
    rgb = read_image(png)
    assert rgb.shape == (20, 30, 3) and rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[5, 7].tolist() == [10, 20, 30] and rgb.flags.c_contiguous
    assert read_image(png, grayscale=True).shape == (20, 30)


@pytest.mark.parametrize("reader", [read_image, read_image_size])
def test_read_image_errors_name_the_path(tmp_path, reader):
    with pytest.raises(ImageReadError, match="missing.png"):
        reader(tmp_path / "missing.png")
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match="corrupt.jpg"):
        reader(bad)
    with pytest.raises(ImageReadError, match="Not a file"):
        reader(tmp_path)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((MIN_IMAGE_SIDE - 1, 40), np.uint8))
    with pytest.raises(ImageReadError, match="small.png"):
        reader(small)


@pytest.mark.parametrize("h,w", [(1, 1), (15, 200), (200, 15)])
def test_an_image_below_the_minimum_side_is_refused(tmp_path, h, w):
    """Was silently upscaled (a 1 x 1 image became a uniform 480 x 480 one)."""
    path = tmp_path / "tiny.png"
    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))
    with pytest.raises(ImageReadError) as e:
        read_image(path, grayscale=True)
    assert str(e.value).startswith(f"Image {path} is {w}x{h} px (WxH): images must be ")
    assert f"at least {MIN_IMAGE_SIDE} px on each side" in str(e.value)
    cv2.imwrite(str(path), np.full((16, 16, 3), 128, np.uint8))
    assert read_image(path).shape == (16, 16, 3)


@pytest.mark.parametrize(
    "conf,expected",
    [
        ({"resize": 480, "side": "short"}, (480, 600)),
        ({"resize": 1024, "side": "long"}, (819, 1024)),
        ({"resize": [100, 200]}, (100, 200)),
        ({"resize": None}, (680, 850)),
    ],
)
def test_preprocessor_sizes_and_scales(conf, expected):
    out = ImagePreprocessor(conf)(torch.rand(3, 680, 850))
    h, w = expected
    assert out["image"].shape == (3, h, w)
    assert out["image_size"].tolist() == [w, h]
    assert torch.allclose(out["scales"], torch.tensor([w / 850, h / 680]))
    assert out["original_image_size"].tolist() == [850, 680]


def test_preprocessor_divisible_grayscale_and_pad():
    out = ImagePreprocessor(
        {"resize": 500, "divisible_by": 32, "grayscale": True, "square_pad": True}
    )(torch.rand(3, 300, 400))
    assert out["image"].shape == (1, 480, 480)
    assert out["image_size"].tolist() == [480, 352]


@pytest.mark.parametrize(
    "conf",
    [
        {"resize": 480, "side": "short"},
        {"resize": 500, "divisible_by": 32, "square_pad": True},
        {"resize": None, "divisible_by": 8},
    ],
)
def test_sizes_without_an_image_equal_those_of_the_call(conf):
    """``sizes(h, w)`` (used when cached features replace the image) records exactly
    what preprocessing the image would."""
    pre = ImagePreprocessor(conf)
    out = pre(torch.rand(3, 301, 403))
    sizes = pre.sizes(301, 403)
    assert sizes.keys() == {"scales", "image_size", "original_image_size"}
    for k, v in sizes.items():
        assert torch.equal(v, out[k]), k


def test_scales_map_keypoints_exactly():
    """A feature at a pixel centre stays at the corresponding centre after resizing by 2."""
    img = torch.zeros(1, 10, 10)
    img[0, 3, 7] = 1.0  # pixel centre (7.5, 3.5) in the library convention
    out = ImagePreprocessor(
        {"resize": 20, "antialias": False, "interpolation": "nearest"}
    )(img)
    ys, xs = torch.nonzero(out["image"][0] > 0, as_tuple=True)
    centre = torch.tensor([xs.float().mean() + 0.5, ys.float().mean() + 0.5])
    assert torch.allclose(centre / out["scales"], torch.tensor([7.5, 3.5]))


def test_preprocessor_unknown_key():
    with pytest.raises(ConfigError, match="resise"):
        ImagePreprocessor({"resise": 3})


def test_numpy_image_to_torch():
    t = numpy_image_to_torch(np.full((4, 5, 3), 255, np.uint8))
    assert t.shape == (3, 4, 5) and float(t.max()) == 1.0
    rng = np.random.default_rng(0)
    for a in (
        rng.integers(0, 256, (6, 7, 3), dtype=np.uint8),
        rng.integers(0, 256, (6, 7), dtype=np.uint8),
        rng.random((6, 7, 3), dtype=np.float32),
        rng.random((6, 7), dtype=np.float32),
    ):
        chw = a.transpose(2, 0, 1) if a.ndim == 3 else a[None]
        expected = torch.from_numpy(chw.astype(np.float32))
        expected = expected / 255.0 if a.dtype == np.uint8 else expected
        t = numpy_image_to_torch(a)
        assert t.dtype == torch.float32 and t.is_contiguous()
        assert torch.equal(t, expected)
        t += 1  # a copy, never a view of the caller's array
        assert not np.shares_memory(t.numpy(), a)


@pytest.mark.parametrize("bad", [0, -3, "x", [0, 4], [1, 2, 3], 2.5, True])
def test_resize_out_of_range_names_the_key(bad):
    from gluefactory.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="resize"):
        ImagePreprocessor({"resize": bad})


def test_other_side_truncated_as_upstream():
    # HPatches-like 722 x 451 image, short side 480: upstream gives int(480 * 722 / 451)
    prep = ImagePreprocessor({"resize": 480, "side": "short"})
    assert prep.target_size(451, 722) == (480, int(480 * 722 / 451))
    prep = ImagePreprocessor({"resize": 1600, "side": "long"})
    assert prep.target_size(1063, 1600 + 7) == (int(1600 / (1607 / 1063)), 1600)


@pytest.mark.parametrize(
    "suffix, orientation",
    [(".png", 1), (".ppm", 1), (".jpg", 1), (".jpg", 6), (".jpg", 8)],
)
def test_read_image_size_is_the_decoded_size(tmp_path, suffix, orientation):
    """From the header alone, the (w, h) of what read_image decodes, EXIF orientation
    (a quarter turn swaps w and h: OpenCV applies it) included."""
    from PIL import Image

    path = tmp_path / f"im{suffix}"
    image = Image.fromarray(np.zeros((40, 60, 3), np.uint8))
    if suffix == ".jpg":
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, exif=exif.tobytes())
    else:
        image.save(path)
    h, w = read_image(path).shape[:2]
    assert read_image_size(path) == (w, h)
    assert (w, h) == ((40, 60) if orientation in (6, 8) else (60, 40))
