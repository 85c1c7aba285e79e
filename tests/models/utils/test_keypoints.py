"""Unit tests of the shared keypoint utilities (NMS, selection, padding, sampling)."""

from __future__ import annotations

import pytest
import torch

from gluefactory.models.utils import keypoints as K


def _brute_strict_maxima(s: torch.Tensor, window: int) -> torch.Tensor:
    r = window // 2
    b, h, w = s.shape
    out = torch.zeros_like(s, dtype=torch.bool)
    for bi in range(b):
        for j in range(r, h - r):
            for i in range(r, w - r):
                win = s[bi, j - r : j + r + 1, i - r : i + r + 1].flatten().clone()
                centre = win[len(win) // 2].item()
                win[len(win) // 2] = float("-inf")
                out[bi, j, i] = centre > win.max()
    return out


@pytest.mark.parametrize("window", [3, 5])
def test_strict_local_maxima_matches_brute_force(window):
    g = torch.Generator().manual_seed(0)
    s = torch.rand(2, 23, 31, generator=g)
    s[0, 10, 10] = s[0, 10, 11] = 2.0  # a tie: neither is a strict maximum
    mask = K.strict_local_maxima(s, window)
    assert torch.equal(mask, _brute_strict_maxima(s, window))
    assert not mask[0, 10, 10] and not mask[0, 10, 11]


def test_strict_local_maxima_rejects_even_window():
    with pytest.raises(ValueError, match="odd"):
        K.strict_local_maxima(torch.rand(1, 8, 8), 4)


def test_simple_nms_keeps_isolated_peaks_and_suppresses_neighbours():
    s = torch.zeros(1, 20, 20)
    s[0, 5, 5] = 1.0
    s[0, 5, 6] = 0.9  # neighbour of a stronger peak: suppressed
    s[0, 15, 15] = 0.5  # isolated: kept
    out = K.simple_nms(s, radius=2)
    assert out[0, 5, 5] == 1.0 and out[0, 15, 15] == 0.5
    assert out[0, 5, 6] == 0
    assert (out > 0).sum() == 2


def test_simple_nms_second_round_recovers_flank_maximum():
    # A point 3 px from a strong peak (radius 2) is not a maximum of its window (the
    # peak is inside), but becomes one once the peak's neighbourhood is suppressed.
    s = torch.zeros(1, 1, 12)
    s[0, 0, 3] = 1.0
    s[0, 0, 5] = 0.8  # within radius of the peak: suppressed
    s[0, 0, 6] = 0.7  # outside the peak's window, but sees 0.8 in its own window
    out = K.simple_nms(s, radius=2)
    assert out[0, 0, 3] == 1.0 and out[0, 0, 5] == 0
    assert out[0, 0, 6] == pytest.approx(0.7)


def test_remove_borders_with_image_size():
    s = torch.ones(2, 10, 12)
    out = K.remove_borders(s, 2, image_size=torch.tensor([[12, 10], [8, 6]]))
    assert out[0].sum() == (12 - 4) * (10 - 4)
    assert out[1].sum() == (8 - 4) * (6 - 4)
    assert out[1, 2:4, 2:6].eq(1).all()
    assert K.remove_borders(s, 0).sum() == s.sum()


@pytest.mark.parametrize("fill", [False, True])
def test_remove_borders_of_boolean_masks(fill):
    """Boolean masks go through logical operators (they trace into ONNX graphs): the
    same result as masked_fill."""
    mask = torch.rand(2, 7, 9, generator=torch.Generator().manual_seed(0)) > 0.5
    size = torch.tensor([[9, 7], [6, 5]])
    want = K.remove_borders(mask.float(), 2, size, fill=float(fill)).bool()
    got = K.remove_borders(mask, 2, size, fill=fill)
    assert got.dtype == torch.bool and torch.equal(got, want)


def test_top_k_keypoints():
    kpts = torch.arange(10.0).repeat(2, 1).T
    scores = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.0, 0.5, 0.2, 0.7, 0.6, 0.4])
    k, s = K.top_k_keypoints(kpts, scores, 3)
    assert s.tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert k[:, 0].tolist() == [1, 3, 7]
    k2, s2 = K.top_k_keypoints(kpts, scores, -1)
    assert k2 is kpts and s2 is scores


def test_select_keypoints_convention_threshold_and_topk():
    s = torch.zeros(1, 16, 16)
    s[0, 4, 7] = 0.9  # row 4, column 7 -> (7.5, 4.5)
    s[0, 10, 12] = 0.3
    s[0, 12, 3] = 0.05
    s[0, 0, 0] = 1.0  # in the border
    kpts, scores = K.select_keypoints(s, 2, 0.1, None, remove_borders=1)
    assert kpts[0].tolist() == [[7.5, 4.5], [12.5, 10.5]]
    assert scores[0].tolist() == pytest.approx([0.9, 0.3])
    # threshold <= 0: top-k regardless of score
    kpts, scores = K.select_keypoints(s, 2, -1, 3, remove_borders=1)
    assert len(kpts[0]) == 3 and scores[0][0] == pytest.approx(0.9)
    assert [12.5, 10.5] in kpts[0].tolist()


def test_pad_keypoints_pads_with_random_in_image_points_deterministically():
    kpts = torch.tensor([[1.5, 2.5], [10.5, 3.5]])
    scores = torch.tensor([0.4, 0.9])
    g1 = torch.Generator().manual_seed(3)
    g2 = torch.Generator().manual_seed(3)
    k1, s1, v1, idx = K.pad_keypoints(kpts, scores, 50, (20, 10), g1, True)
    k2, _, _ = K.pad_keypoints(kpts, scores, 50, (20, 10), g2)
    assert k1.shape == (50, 2) and s1.shape == (50,) and v1.shape == (50,)
    assert torch.equal(k1, k2)
    assert torch.equal(k1[:2], kpts) and v1[:2].all() and not v1[2:].any()
    assert (s1[2:] == 0).all() and idx[:2].tolist() == [0, 1] and (idx[2:] == -1).all()
    pad = k1[2:]
    assert (pad[:, 0] >= 0.5).all() and (pad[:, 0] <= 19.5).all()
    assert (pad[:, 1] >= 0.5).all() and (pad[:, 1] <= 9.5).all()
    assert pad.unique(dim=0).shape[0] == 48


def test_pad_keypoints_truncates_to_best():
    kpts = torch.rand(10, 2) * 5
    scores = torch.linspace(0, 1, 10)
    k, s, v, idx = K.pad_keypoints(kpts, scores, 4, (5, 5), return_indices=True)
    assert idx.tolist() == [9, 8, 7, 6] and v.all()
    assert torch.equal(k, kpts[[9, 8, 7, 6]])


def test_sample_descriptors_at_pixel_centres_is_exact():
    g = torch.Generator().manual_seed(0)
    dmap = torch.randn(2, 8, 6, 9, generator=g)
    j = torch.tensor([0, 3, 5, 2])
    i = torch.tensor([0, 4, 8, 7])
    # descriptor map at stride 4: the centre of cell (i, j) is 4 * (i + 0.5)
    kpts = torch.stack([(i + 0.5) * 4, (j + 0.5) * 4], -1)[None].repeat(2, 1, 1)
    d = K.sample_descriptors(dmap, kpts, stride=4, normalize=False)
    expected = dmap[:, :, j, i].transpose(1, 2)
    torch.testing.assert_close(d, expected)
    d2 = K.sample_descriptors(dmap, kpts, image_size=(36, 24))
    torch.testing.assert_close(d2, torch.nn.functional.normalize(expected, dim=-1))
    with pytest.raises(ValueError, match="exactly one"):
        K.sample_descriptors(dmap, kpts)


def test_stack_features():
    f = [
        {"keypoints": torch.rand(5, 2), "name": "a"},
        {"keypoints": torch.rand(5, 2), "name": "b"},
    ]
    out = K.stack_features(f)
    assert out["keypoints"].shape == (2, 5, 2) and out["name"] == ["a", "b"]
    f[1]["keypoints"] = torch.rand(4, 2)
    with pytest.raises(ValueError, match="force_num_keypoints"):
        K.stack_features(f)


def test_stack_features_pad_adds_keypoint_mask():
    f = [
        {"keypoints": torch.rand(3, 2), "descriptors": torch.rand(3, 4), "image": "a"},
        {"keypoints": torch.rand(5, 2), "descriptors": torch.rand(5, 4), "image": "b"},
    ]
    out = K.stack_features(f, pad=True)
    assert out["keypoints"].shape == (2, 5, 2) and out["descriptors"].shape == (2, 5, 4)
    assert out["keypoint_mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert torch.equal(out["descriptors"][0, :3], f[0]["descriptors"])
    assert (out["descriptors"][0, 3:] == 0).all() and out["image"] == ["a", "b"]


def _conf(**kw):
    from omegaconf import OmegaConf

    base = dict(
        max_num_keypoints=-1,
        detection_threshold=0.1,
        nms_radius=2,
        remove_borders=0,
        force_num_keypoints=False,
        seed=None,
        trainable=False,
    )
    return OmegaConf.create({**base, **kw})


def test_check_extractor_conf():
    from gluefactory.utils.conf import ConfigError

    assert K.check_extractor_conf(_conf(), "M") == -1
    assert K.check_extractor_conf(_conf(max_num_keypoints=None), "M") == -1
    assert K.check_extractor_conf(_conf(max_num_keypoints=0), "M") == -1
    assert K.check_extractor_conf(_conf(max_num_keypoints=7), "M") == 7
    assert K.check_extractor_conf(_conf(detection_threshold=None), "M") == -1
    bad = [
        (dict(force_num_keypoints=True), "M: force_num_keypoints needs max_num"),
        (dict(max_num_keypoints=2.0), "M: max_num_keypoints"),
        (dict(detection_threshold="x"), "M: detection_threshold"),
        (dict(detection_threshold=True), "M: detection_threshold"),
        (dict(nms_radius=None), "M: nms_radius"),
        (dict(nms_radius=0), "M: nms_radius must be an integer >= 1"),
        (dict(remove_borders=-2), "M: remove_borders"),
        (dict(seed=1.5), "M: seed must be an integer or null"),
        (dict(trainable="yes"), "M: trainable must be true or false"),
        (dict(force_num_keypoints=1), "M: force_num_keypoints must be true or false"),
        (dict(detection_threshold=1.0), "M: detection_threshold must be below 1.0"),
    ]
    for kw, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            K.check_extractor_conf(
                _conf(**kw), "M", min_nms_radius=1, threshold_max=1.0
            )
    assert K.check_extractor_conf(_conf(nms_radius=None), "M", nms_optional=True) == -1
    # unbounded scores (logits): any threshold
    assert K.check_extractor_conf(_conf(detection_threshold=5.0), "M") == -1


def test_check_range_names_the_key_and_range():
    from omegaconf import OmegaConf

    from gluefactory.utils.errors import ConfigError

    conf = OmegaConf.create({"a": 0, "b": 0.5, "c": None, "d": True})
    K.check_range(conf, "a", "M", low=0, integer=True)
    K.check_range(conf, "b", "M", low=0, high=1)
    K.check_range(conf, "c", "M", low=1, allow_none=True)
    with pytest.raises(ConfigError, match=r"M: a must be an integer >= 1, got 0"):
        K.check_range(conf, "a", "M", low=1, integer=True)
    with pytest.raises(ConfigError, match=r"M: b must be a number > 0.5 and <= 1"):
        K.check_range(conf, "b", "M", low=0.5, high=1, low_open=True)
    with pytest.raises(ConfigError, match="M: d must be a number"):
        K.check_range(conf, "d", "M")  # booleans are not numbers


def test_resolve_threshold():
    for value in (None, -1, -0.5):
        assert K.resolve_threshold(value) is None
        assert K.resolve_threshold(value, logits=True) is None
    assert K.resolve_threshold(0) is None  # probabilities: 'score > 0' keeps all
    assert K.resolve_threshold(0, logits=True) == 0.0  # logits: probability 0.5
    assert K.resolve_threshold(0.2) == 0.2


def test_border_mask_matches_remove_borders_at_pixel_centres():
    w, h, b = 9, 7, 2
    jj, ii = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centres = torch.stack([ii, jj], -1).reshape(-1, 2).float() + 0.5
    expected = K.remove_borders(torch.ones(1, h, w), b)[0].reshape(-1) > 0
    assert torch.equal(K.border_mask(centres, b, (w, h)), expected)
    pts = torch.tensor([[0.0, 0.0], [8.99, 6.99], [9.0, 3.0], [-0.01, 3.0]])
    assert K.border_mask(pts, 0, (w, h)).tolist() == [True, True, False, False]


def test_batch_features_force_topk_fields_and_describe():
    kpts = [torch.tensor([[1.5, 1.5], [3.5, 2.5], [5.5, 4.5]]), torch.rand(1, 2) * 4]
    scores = [torch.tensor([0.2, 0.9, 0.5]), torch.tensor([0.7])]
    fields = [
        {"scales": torch.tensor([1.0, 2.0, 3.0])},
        {"scales": torch.tensor([4.0])},
    ]
    calls = []

    def describe(b, k):
        calls.append((b, len(k)))
        return {"descriptors": k.sum(-1, keepdim=True)}

    out = K.batch_features(
        kpts, scores, (6, 8), 2, True, None, 0, describe, fields, {"scales": -1.0}
    )
    assert calls == [(0, 2), (1, 2)]  # described at the final keypoints
    torch.testing.assert_close(
        out["keypoint_scores"], torch.tensor([[0.9, 0.5], [0.7, 0.0]])
    )
    assert out["scales"].tolist() == [[2.0, 3.0], [4.0, -1.0]]
    assert out["keypoint_mask"].tolist() == [[True, True], [True, False]]
    torch.testing.assert_close(out["descriptors"][..., 0], out["keypoints"].sum(-1))
    pad = out["keypoints"][1, 1]
    assert 0.5 <= pad[0] <= 7.5 and 0.5 <= pad[1] <= 5.5  # inside the 8 x 6 image
    # without force: at most max_num (the best), no keypoint_mask
    out = K.batch_features(kpts[:1], scores[:1], (6, 8), 2, fields=fields[:1])
    torch.testing.assert_close(out["keypoint_scores"], torch.tensor([[0.9, 0.5]]))
    assert "keypoint_mask" not in out
    assert out["scales"].tolist() == [[2.0, 3.0]]
    with pytest.raises(ValueError, match="force_num_keypoints"):
        K.batch_features(kpts, scores, (6, 8), -1)
