"""Nearest-neighbour matcher against a brute-force NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gluefactory.models import get_model
from gluefactory.utils.conf import ConfigError


def brute_force(d0, d1, ratio=None, dist_th=None, mutual=True):
    """Loops over every point; d0 (M, D), d1 (N, D) numpy -> matches0, matches1."""

    def one_way(a, b):
        out = np.full(len(a), -1)
        for i, x in enumerate(a):
            dist = np.sqrt(((b - x) ** 2).sum(-1))
            order = np.argsort(dist, kind="stable")
            if len(order) == 0:
                continue
            best = dist[order[0]]
            if ratio is not None and len(order) > 1 and best > ratio * dist[order[1]]:
                continue
            if dist_th is not None and best > dist_th:
                continue
            out[i] = order[0]
        return out

    m0, m1 = one_way(d0, d1), one_way(d1, d0)
    if mutual:
        m0_ = np.array([j if j >= 0 and m1[j] == i else -1 for i, j in enumerate(m0)])
        m1_ = np.array([i if i >= 0 and m0[i] == j else -1 for j, i in enumerate(m1)])
        m0, m1 = m0_, m1_
    return m0, m1


def random_pair(m, n, d=32, seed=0):
    """Normalised descriptors; part of image 1 are noisy copies of image 0's."""
    g = torch.Generator().manual_seed(seed)
    d0 = torch.nn.functional.normalize(
        torch.randn(m, d, generator=g, dtype=torch.float64), dim=-1
    )
    d1 = torch.nn.functional.normalize(
        torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1
    )
    k = min(m, n) // 2
    noise = torch.linspace(0.1, 1.5, k, dtype=torch.float64)[:, None] / d**0.5
    noisy = d0[:k] + noise * torch.randn(k, d, generator=g, dtype=torch.float64)
    d1[:k] = torch.nn.functional.normalize(noisy, dim=-1)
    return d0, d1[torch.randperm(n, generator=g)]


CONFS = [
    {},
    {"ratio_thresh": 0.8},
    {"distance_thresh": 0.9},
    {"ratio_thresh": 0.9, "distance_thresh": 1.0, "mutual_check": False},
    {"mutual_check": False},
]


@pytest.mark.parametrize("conf", CONFS)
def test_matches_brute_force(conf):
    model = get_model("matchers.nearest_neighbor")(conf)
    d0, d1 = random_pair(60, 45)
    pred = model({"descriptors0": d0[None], "descriptors1": d1[None]})
    ref0, ref1 = brute_force(
        d0.numpy(),
        d1.numpy(),
        conf.get("ratio_thresh"),
        conf.get("distance_thresh"),
        conf.get("mutual_check", True),
    )
    np.testing.assert_array_equal(pred["matches0"][0].numpy(), ref0)
    np.testing.assert_array_equal(pred["matches1"][0].numpy(), ref1)
    filtered = conf.get("mutual_check", True) or len(conf) > 1
    assert (
        5 < (ref0 > -1).sum() < (45 if filtered else 61)
    )  # some matches, some rejected
    sim = (d0 @ d1.T).numpy()
    s0 = pred["matching_scores0"][0].numpy()
    np.testing.assert_allclose(s0[ref0 > -1], sim[ref0 > -1, ref0[ref0 > -1]])
    assert (s0[ref0 == -1] == 0).all()


@pytest.mark.parametrize("conf", CONFS[:4])
def test_batched_with_masks_equals_single(conf):
    model = get_model("matchers.nearest_neighbor")(conf)
    sizes = [(40, 30), (25, 50), (50, 10)]
    M, N = max(s[0] for s in sizes), max(s[1] for s in sizes)
    # padding holds descriptors equal to real ones: only the mask keeps them out
    d0 = torch.zeros(3, M, 32, dtype=torch.float64)
    d1 = torch.zeros(3, N, 32, dtype=torch.float64)
    v0 = torch.zeros(3, M, dtype=torch.bool)
    v1 = torch.zeros(3, N, dtype=torch.bool)
    singles = []
    for i, (m, n) in enumerate(sizes):
        a, b = random_pair(m, n, seed=i)
        d0[i, :m], d1[i, :n], v0[i, :m], v1[i, :n] = a, b, True, True
        d0[i, m:], d1[i, n:] = b[0], a[0]
        singles.append(model({"descriptors0": a[None], "descriptors1": b[None]}))
    pred = model(
        {
            "descriptors0": d0,
            "descriptors1": d1,
            "keypoint_mask0": v0,
            "keypoint_mask1": v1,
        }
    )
    for i, (m, n) in enumerate(sizes):
        assert torch.equal(pred["matches0"][i, :m], singles[i]["matches0"][0])
        assert torch.equal(pred["matches1"][i, :n], singles[i]["matches1"][0])
        assert (pred["matches0"][i, m:] == -1).all() and (
            pred["matches1"][i, n:] == -1
        ).all()
        assert (pred["matches0"][i, :m] < n).all()


def test_empty_and_bad_inputs():
    model = get_model("matchers.nearest_neighbor")({"ratio_thresh": 0.8})
    pred = model(
        {"descriptors0": torch.randn(1, 5, 8), "descriptors1": torch.randn(1, 0, 8)}
    )
    assert pred["matches0"].shape == (1, 5) and (pred["matches0"] == -1).all()
    one = model(
        {"descriptors0": torch.randn(1, 3, 8), "descriptors1": torch.randn(1, 1, 8)}
    )
    assert one["matches0"].shape == (1, 3)
    with pytest.raises(ValueError, match="descriptors0/1"):
        model(
            {"descriptors0": torch.randn(1, 5, 8), "descriptors1": torch.randn(1, 4, 7)}
        )
    with pytest.raises(ConfigError, match="ratio_thresh"):
        get_model("matchers.nearest_neighbor")({"ratio_thresh": 0})


def test_requires_any_descriptor():
    cls = get_model("matchers.nearest_neighbor")
    want = {"descriptor_dim": None, "scales": False, "orientations": False}
    assert cls.requires({}) == want
    assert cls.requires({"ratio_thresh": 0.9}) == want
    with pytest.raises(ConfigError, match="ratio_thresh=2"):
        cls.requires({"ratio_thresh": 2})


@pytest.mark.parametrize(
    "key, value",
    [
        ("ratio_thresh", 0),
        ("ratio_thresh", 1.5),
        ("ratio_thresh", -0.8),
        ("distance_thresh", 0),
        ("distance_thresh", -1.0),
        ("mutual_check", "yes"),
    ],
)
def test_out_of_range_config_names_the_key(key, value):
    with pytest.raises(ConfigError, match=f"{key}={value!r}"):
        get_model("matchers.nearest_neighbor")({key: value})


def test_mask_of_wrong_shape_is_an_input_error():
    from gluefactory.utils.errors import InputError

    model = get_model("matchers.nearest_neighbor")({})
    data = {
        "descriptors0": torch.randn(2, 5, 8),
        "descriptors1": torch.randn(2, 4, 8),
        "keypoint_mask0": torch.ones(2, 4, dtype=torch.bool),
    }
    with pytest.raises(InputError, match=r"keypoint_mask0 must be \(2, 5\)"):
        model(data)
