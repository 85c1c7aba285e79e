"""lines.lsd: both backends, the coordinate convention, scores, padding, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gluefactory.models import get_model
from gluefactory.models.lines import lsd as lsd_module
from gluefactory.utils.errors import ConfigError

BACKENDS = [
    pytest.param(
        "pytlsd",
        marks=pytest.mark.skipif(
            not lsd_module.has_pytlsd(), reason="pytlsd not installed"
        ),
    ),
    "opencv",
]


def _lsd(**conf):
    return get_model("lines.lsd")(conf)


@pytest.mark.parametrize("backend", BACKENDS)
def test_finds_many_lines_on_a_textured_photo(photos, backend):
    pred = _lsd(backend=backend)({"image": photos[:1]})
    lines, mask = pred["lines"][0], pred["line_mask"][0]
    assert mask.all() and len(lines) >= 100
    length = (lines[:, 1] - lines[:, 0]).norm(dim=-1)
    assert (length >= 15).all()
    assert ((lines >= 0) & (lines <= torch.tensor([640.0, 480.0]))).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_endpoints_follow_the_pixel_convention(backend):
    """A step edge between columns 99 and 100 lies at x = 100 (pixel centres at +0.5);
    LSD's default scale 0.8 leaves a bias of about 0.1 px."""
    image = torch.zeros(1, 1, 200, 200)
    image[..., 50:150, 100:] = 1.0
    pred = _lsd(backend=backend, min_length=30)({"image": image})
    lines = pred["lines"][0]
    vertical = lines[(lines[:, 0, 0] - lines[:, 1, 0]).abs() < 0.5]
    assert len(vertical) == 1
    assert (vertical[0, :, 0] - 100).abs().max() < 0.2
    horizontal = lines[(lines[:, 0, 1] - lines[:, 1, 1]).abs() < 0.5]
    ys = sorted(horizontal[:, 0, 1].tolist())
    assert np.allclose(ys, [50, 150], atol=0.2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_score_is_precision_times_sqrt_length_best_first(photos, backend):
    pred = _lsd(backend=backend)({"image": photos[:1]})
    lines, scores = pred["lines"][0], pred["line_scores"][0]
    assert (scores[:-1] >= scores[1:]).all()
    precision = scores / (lines[:, 1] - lines[:, 0]).norm(dim=-1).sqrt()
    # LSD's angle precision p = 1/8, halved for refined segments
    allowed = torch.tensor([0.125, 0.0625, 0.03125])
    assert ((precision[:, None] - allowed).abs().min(1).values < 1e-5).all()


def test_force_num_lines_pads_with_a_mask_and_cuts(photos):
    model = _lsd(backend="opencv", max_num_lines=2000, force_num_lines=True)
    pred = model({"image": photos[:2]})
    assert pred["lines"].shape == (2, 2000, 2, 2)
    mask = pred["line_mask"]
    n = mask.sum(1)
    assert (n < 2000).all() and (n >= 100).all()
    for i in range(2):  # real lines first, padding is zero lines with score 0
        assert mask[i, : n[i]].all() and not mask[i, n[i] :].any()
        assert (pred["lines"][i, n[i] :] == 0).all()
        assert (pred["line_scores"][i, n[i] :] == 0).all()
    top = _lsd(backend="opencv", max_num_lines=50, force_num_lines=True)(
        {"image": photos[:2]}
    )
    assert top["lines"].shape == (2, 50, 2, 2) and top["line_mask"].all()
    assert torch.equal(top["lines"], pred["lines"][:, :50])


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_of_four_equals_four_single_calls(photos, backend):
    model = _lsd(backend=backend, num_threads=4)
    batch = model({"image": photos})
    for i in range(4):
        single = model({"image": photos[i : i + 1]})
        n = int(single["line_mask"].sum())
        assert int(batch["line_mask"][i].sum()) == n
        assert torch.equal(batch["lines"][i, :n], single["lines"][0, :n])
        assert torch.equal(batch["line_scores"][i, :n], single["line_scores"][0, :n])
    again = _lsd(backend=backend, num_threads=1)({"image": photos})
    for key in ("lines", "line_scores", "line_mask"):  # deterministic, any threads
        assert torch.equal(again[key], batch[key])


def test_image_size_restricts_detection_to_the_valid_part(photos):
    model = _lsd(backend="opencv")
    padded = torch.zeros(1, 3, 480, 640)
    padded[..., :300, :400] = photos[:1, :, :300, :400]
    size = torch.tensor([[400.0, 300.0]])
    pred = model({"image": padded, "image_size": size})
    crop = model({"image": photos[:1, :, :300, :400]})
    assert torch.equal(pred["lines"], crop["lines"])


def test_opencv_4_and_5_output_shapes(monkeypatch):
    """OpenCV 4 returns (N, 1, 4) segments, OpenCV 5 (N, 4): both read alike."""
    segs = np.array([[10.0, 20.0, 60.0, 20.0], [5.0, 5.0, 5.0, 80.0]], np.float32)
    prec = np.array([[0.125], [0.125]])

    class Fake:
        def __init__(self, shape):
            self.shape = shape

        def detect(self, image):
            return segs.reshape(self.shape), None, prec, None

    cv2 = pytest.importorskip("cv2")
    grey = np.zeros((100, 100))
    out = []
    for shape in ((-1, 1, 4), (-1, 4)):
        monkeypatch.setattr(cv2, "createLineSegmentDetector", lambda s=shape: Fake(s))
        out.append(lsd_module.detect_segments(grey, "opencv", 15, None))
    for a, b in zip(*out, strict=True):
        np.testing.assert_array_equal(a, b)
    lines, scores = out[0]
    np.testing.assert_allclose(lines[0], [[5.5, 5.5], [5.5, 80.5]])  # longest first
    np.testing.assert_allclose(scores, 0.125 * np.sqrt([75.0, 50.0]))


def test_no_line_at_all():
    pred = _lsd(backend="opencv")({"image": torch.full((2, 1, 64, 64), 0.5)})
    assert pred["lines"].shape == (2, 0, 2, 2) and pred["line_mask"].shape == (2, 0)
    forced = _lsd(backend="opencv", max_num_lines=8, force_num_lines=True)(
        {"image": torch.full((1, 1, 64, 64), 0.5)}
    )
    assert forced["lines"].shape == (1, 8, 2, 2) and not forced["line_mask"].any()


@pytest.mark.parametrize(
    "conf,match",
    [
        ({"backend": "lsd"}, "backend"),
        ({"force_num_lines": True}, "max_num_lines"),
        ({"max_num_lines": 0}, "max_num_lines"),
        ({"min_length": -1}, "min_length"),
        ({"num_threads": 0}, "num_threads"),
    ],
)
def test_bad_configs(conf, match):
    with pytest.raises(ConfigError, match=match):
        get_model("lines.lsd").build_conf(conf)


def test_auto_backend_and_describe(monkeypatch):
    cls = get_model("lines.lsd")
    assert cls.describe({}) == {"descriptor_dim": None, "lines": True}
    expect = "pytlsd" if lsd_module.has_pytlsd() else "opencv"
    assert cls({}).backend == expect
    monkeypatch.setattr(lsd_module, "has_pytlsd", lambda: False)
    assert cls({}).backend == "opencv"
    with pytest.raises(ConfigError, match="pytlsd"):
        cls.build_conf({"backend": "pytlsd"})
