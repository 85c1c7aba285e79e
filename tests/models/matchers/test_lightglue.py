"""LightGlue: official weights, parity with the reference, batching, adaptivity, training.

The reference implementation is kornia's LightGlue (kornia 0.9.0, installed in CI through
the ``reference`` extra); its matches are bit-identical to the LightGlue repository's.
Both models get the *same* keypoint numbers (kornia's detectors, centre convention), so
the comparison is of the matchers alone. Official weights come from
``gluefactory.weights`` (tests skip when they cannot be had).
"""

from __future__ import annotations

import re

import pytest
import torch

from gluefactory.models import get_model
from gluefactory.models.base_model import MissingDataError
from gluefactory.models.matchers.lightglue import LightGlue, normalize_keypoints
from gluefactory.models.utils.losses import nll_weights, weighted_nll
from gluefactory.models.utils.metrics import (
    accuracy,
    average_precision,
    match_precision,
    match_recall,
)
from gluefactory.utils.conf import ConfigError


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread in this module: its inputs are small, and on a busy 2-core machine
    every parallel op can stall for milliseconds at the OpenMP barrier (measured: 6 ms per
    op, 10x slower tests). Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ADAPTIVE = {"depth_confidence": 0.95, "width_confidence": 0.99}
FULL = {"depth_confidence": -1, "width_confidence": -1}
WEIGHTS = {
    "aliked": "aliked-lightglue",
    "disk": "disk-lightglue",
    "xfeat": "xfeat-lighterglue",
}


def need_weights(*names: str) -> None:
    """Skip the test when official weights cannot be had (offline, no cache)."""
    from gluefactory.weights import WeightsError, get_weights_path

    for name in names:
        try:
            get_weights_path(name)
        except WeightsError as e:
            pytest.skip(f"weights {name} unavailable: {e}")


_MODELS: dict = {}


def official(features: str, **conf) -> LightGlue:
    """Official-weight model (weights loaded once per session, then copied)."""
    need_weights(WEIGHTS[features])
    if features not in _MODELS:
        _MODELS[features] = LightGlue({"features": features}).state_dict()
    model = _build(features, conf)
    model.load_state_dict(_MODELS[features])
    return model.eval()


def _build(features: str, conf: dict) -> LightGlue:
    """Same architecture as the preset, random init (no file read)."""
    from gluefactory.models.matchers.lightglue import FEATURES

    arch = {k: v for k, v in FEATURES[features].items() if k != "weights"}
    return LightGlue({**arch, **conf})


def synthetic_pair(m, n, noise, dim=128, seed=0, dtype=torch.float64):
    """Random keypoints in 640x480; 3/4 of image 1's points are noisy copies of image 0's.

    ``noise`` (descriptor noise norm) sets the difficulty, hence the exit layer.
    """
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([640.0, 480.0], dtype=torch.float64)
    k0 = torch.rand(m, 2, generator=g, dtype=torch.float64) * size
    d0 = torch.nn.functional.normalize(
        torch.randn(m, dim, generator=g, dtype=torch.float64), dim=-1
    )
    common = min(m, n) * 3 // 4
    idx = torch.randperm(m, generator=g)[:common]
    k1 = torch.rand(n, 2, generator=g, dtype=torch.float64) * size
    d1 = torch.nn.functional.normalize(
        torch.randn(n, dim, generator=g, dtype=torch.float64), dim=-1
    )
    k1[:common] = (
        k0[idx] * 0.9 + 20 + torch.randn(common, 2, generator=g, dtype=torch.float64)
    ).clamp(0, 479)
    d1[:common] = torch.nn.functional.normalize(
        d0[idx]
        + noise / dim**0.5 * torch.randn(common, dim, generator=g, dtype=torch.float64),
        dim=-1,
    )
    perm = torch.randperm(n, generator=g)
    gt0 = torch.full((m,), -1)
    gt0[idx] = torch.argsort(perm)[:common]
    return {
        "keypoints0": k0.to(dtype),
        "descriptors0": d0.to(dtype),
        "keypoints1": k1[perm].to(dtype),
        "descriptors1": d1[perm].to(dtype),
        "gt_matches0": gt0,
        "size": size.to(dtype),
    }


def pad_batch(pairs: list[dict], garbage: bool = True) -> dict:
    """Stack pairs of different sizes, padding with random points flagged by masks."""
    b = len(pairs)
    M = max(p["keypoints0"].shape[0] for p in pairs)
    N = max(p["keypoints1"].shape[0] for p in pairs)
    dtype = pairs[0]["keypoints0"].dtype
    dim = pairs[0]["descriptors0"].shape[-1]
    g = torch.Generator().manual_seed(123)
    out = {
        "keypoints0": torch.rand(b, M, 2, generator=g, dtype=dtype) * 400,
        "keypoints1": torch.rand(b, N, 2, generator=g, dtype=dtype) * 400,
        "descriptors0": torch.randn(b, M, dim, generator=g, dtype=dtype),
        "descriptors1": torch.randn(b, N, dim, generator=g, dtype=dtype),
        "keypoint_mask0": torch.zeros(b, M, dtype=torch.bool),
        "keypoint_mask1": torch.zeros(b, N, dtype=torch.bool),
        "view0": {"image_size": torch.stack([p["size"] for p in pairs])},
        "view1": {"image_size": torch.stack([p["size"] for p in pairs])},
    }
    if not garbage:
        for k in ("keypoints0", "keypoints1", "descriptors0", "descriptors1"):
            out[k].zero_()
    for i, p in enumerate(pairs):
        for j in "01":
            n = p[f"keypoints{j}"].shape[0]
            out[f"keypoints{j}"][i, :n] = p[f"keypoints{j}"]
            out[f"descriptors{j}"][i, :n] = p[f"descriptors{j}"]
            out[f"keypoint_mask{j}"][i, :n] = True
    return out


def as_input(p: dict) -> dict:
    return {
        "keypoints0": p["keypoints0"][None],
        "keypoints1": p["keypoints1"][None],
        "descriptors0": p["descriptors0"][None],
        "descriptors1": p["descriptors1"][None],
        "view0": {"image_size": p["size"][None]},
        "view1": {"image_size": p["size"][None]},
    }


# ----------------------------------------------------------------------------- weights


@pytest.mark.parametrize("features", ["aliked", "disk", "xfeat"])
def test_official_weights_load_strictly(features):
    from gluefactory.weights import load_weights

    need_weights(WEIGHTS[features])
    model = LightGlue({"features": features})
    raw = load_weights(WEIGHTS[features])
    prefix = "matcher." if features == "xfeat" else ""
    matcher_keys = [k for k in raw if k.startswith(prefix)]
    own = model.state_dict()
    stray = [k for k in matcher_keys if re.fullmatch(r"log_assignment\.\d+\.r", k)]
    assert len(own) == len(matcher_keys) - len(stray)  # every tensor is used
    assert len(stray) == (9 if features == "disk" else 0)
    wr = raw[f"{prefix}posenc.Wr.weight"]
    assert torch.equal(own["posenc.Wr.weight"], wr)
    layer3 = "self_attn.3" if features == "disk" else "transformers.3.self_attn"
    qkv = raw[f"{prefix}{layer3}.Wqkv.weight"]
    assert torch.equal(own["transformers.3.self_attn.Wqkv.weight"], qkv)
    if features == "xfeat":
        assert model.arch == {
            "input_dim": 64,
            "descriptor_dim": 96,
            "n_layers": 6,
            "num_heads": 1,
            "add_scale_ori": False,
        }


def test_bad_weights_fail_naming_the_keys(tmp_path):
    model = LightGlue(
        {"input_dim": 32, "descriptor_dim": 64, "n_layers": 2, "num_heads": 2}
    )
    good = model.state_dict()
    bad_shape = dict(good)
    bad_shape["transformers.1.cross_attn.to_v.weight"] = torch.zeros(3, 3)
    with pytest.raises(ConfigError, match=r"transformers\.1\.cross_attn\.to_v\.weight"):
        model.load_weights(bad_shape)
    unknown = {**good, "transformers.0.self_attn.extra": torch.zeros(1)}
    with pytest.raises(
        ConfigError, match=r"unexpected keys: transformers\.0\.self_attn\.extra"
    ):
        model.load_weights(unknown)
    missing = {k: v for k, v in good.items() if k != "log_assignment.1.final_proj.bias"}
    with pytest.raises(
        ConfigError, match=r"missing keys: log_assignment\.1\.final_proj\.bias"
    ):
        model.load_weights(missing)
    # the stray scalars are only skipped for the exact legacy names and shapes
    with pytest.raises(ConfigError, match="stray"):
        model.load_weights({**good, "log_assignment.0.r": torch.zeros(4)})
    # from a file, legacy names, with the matcher. prefix of training checkpoints
    legacy = {
        re.sub(r"^transformers\.(\d+)\.(self_attn|cross_attn)\.", r"\2.\1.", k): v
        for k, v in good.items()
    }
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {f"matcher.{k}": v for k, v in legacy.items()}}, path)
    other = LightGlue(
        {
            "input_dim": 32,
            "descriptor_dim": 64,
            "n_layers": 2,
            "num_heads": 2,
            "weights": str(path),
        }
    )
    for k, v in other.state_dict().items():
        assert torch.equal(v, good[k]), k
    torch.save({"matcher.posenc.Wr.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ConfigError, match=f"Weights {re.escape(str(path))}"):
        LightGlue(
            {
                "input_dim": 32,
                "descriptor_dim": 64,
                "n_layers": 2,
                "num_heads": 2,
                "weights": str(path),
            }
        )


@pytest.mark.parametrize(
    "features, pos_dim, proj",
    [
        ("superpoint", 2, None),
        ("sift", 4, 128),
        ("doghardnet", 4, 128),
        ("xfeat", 2, 64),
    ],
)
def test_preset_architectures(features, pos_dim, proj):
    """Presets whose weights are not needed here: the shapes the official files have."""
    model = _build(features, {})
    assert model.posenc.Wr.in_features == pos_dim
    if proj is None:
        assert isinstance(model.input_proj, torch.nn.Identity)
    else:
        assert model.input_proj.in_features == proj
    if pos_dim == 4:
        assert {"scales0", "oris1"} <= set(model.required_data_keys)


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown features"):
        LightGlue({"features": "orb"})
    with pytest.raises(ConfigError, match="contradicts features"):
        LightGlue({"features": "xfeat", "n_layers": 3})
    with pytest.raises(ConfigError, match="do not fit features"):
        LightGlue({"features": "disk", "weights": "aliked"})
    with pytest.raises(ConfigError, match="Unknown configuration key"):
        LightGlue({"n_layer": 3})
    assert get_model("matchers.lightglue") is LightGlue


# ----------------------------------------------------------------- inference behaviour


def test_outputs_and_consistency():
    model = official("aliked")
    p = synthetic_pair(80, 60, 0.5, dtype=torch.float32)
    with torch.no_grad():
        out = model(as_input(p))
    m0, m1 = out["matches0"][0], out["matches1"][0]
    assert out["log_assignment"].shape == (1, 81, 61)
    assert out["ref_descriptors0"].shape == (1, 9, 80, 256)
    assert out["ref_descriptors1"].shape == (1, 9, 60, 256)
    valid = m0 > -1
    assert valid.sum() > 20
    assert torch.equal(m1[m0[valid]], torch.nonzero(valid)[:, 0])  # matches are mutual
    assert (out["matching_scores0"][0][valid] > 0.1).all()
    assert (out["matching_scores0"][0][~valid] <= 0.1).all()
    assert out["stop"].tolist() == [9] and (out["prune0"] == 9).all()
    # rows of the assignment sum to at most 1 (probabilities incl. dustbin)
    assert (out["log_assignment"][0, :-1].exp().sum(-1) <= 1 + 1e-5).all()


def test_missing_inputs_and_bad_shapes():
    sift = LightGlue({"input_dim": 128, "add_scale_ori": True, "n_layers": 2})
    p = as_input(synthetic_pair(20, 20, 0.5, dtype=torch.float32))
    with pytest.raises(MissingDataError, match="scales0"):
        sift(p)
    p.update(
        scales0=torch.rand(1, 20),
        scales1=torch.rand(1, 20),
        oris0=torch.rand(1, 20),
        oris1=torch.rand(1, 20),
    )
    assert sift(p)["matches0"].shape == (1, 20)
    model = LightGlue({"input_dim": 64, "n_layers": 2})
    with pytest.raises(ValueError, match=r"descriptors0 must be \(B, N, 64\)"):
        model(p)


def test_normalization_without_image_size():
    kpts = torch.tensor([[[0.0, 0.0], [99.0, 49.0], [500.0, 500.0]]])
    mask = torch.tensor([[True, True, False]])
    out = normalize_keypoints(kpts, None, mask)
    # extent of the real points + 1 = (100, 50): shift (50, 25), scale 50
    assert torch.allclose(out[0, :2], torch.tensor([[-1.0, -0.5], [0.98, 0.48]]))
    assert torch.allclose(
        normalize_keypoints(kpts, torch.tensor([1000.0, 500.0]))[0, 2],
        torch.tensor([0.0, 0.5]),
    )


@pytest.mark.parametrize(
    "settings", [FULL, ADAPTIVE, {"depth_confidence": 0.95}, {"width_confidence": 0.99}]
)
def test_batched_equals_single(settings):
    """A batch of pairs with unequal keypoint counts (padded, masked) gives each pair's
    single-pair matches, including per-pair early exit at different layers and pruning."""
    model = official("aliked", **settings).double()
    pairs = [
        synthetic_pair(150, 120, 0.1, seed=1),
        synthetic_pair(70, 140, 1.0, seed=2),
        synthetic_pair(130, 50, 3.0, seed=3),
    ]
    with torch.no_grad():
        singles = [model(as_input(p)) for p in pairs]
        batch = model(pad_batch(pairs))
    stops = [s["stop"].item() for s in singles]
    if settings.get("depth_confidence", -1) > 0:
        assert len(set(stops)) == 3, stops  # the pairs exit at different layers
    for i, (p, s) in enumerate(zip(pairs, singles)):
        m, n = p["keypoints0"].shape[0], p["keypoints1"].shape[0]
        assert torch.equal(batch["matches0"][i, :m], s["matches0"][0])
        assert torch.equal(batch["matches1"][i, :n], s["matches1"][0])
        assert (batch["matches0"][i, m:] == -1).all() and (
            batch["matches1"][i, n:] == -1
        ).all()
        assert torch.allclose(
            batch["matching_scores0"][i, :m], s["matching_scores0"][0], atol=1e-9
        )
        assert batch["stop"][i] == s["stop"][0]
        assert torch.equal(batch["prune0"][i, :m], s["prune0"][0])
        assert (batch["prune0"][i, m:] == 0).all()
        rows, cols = torch.arange(m).tolist() + [-1], torch.arange(n).tolist() + [-1]
        la_b = batch["log_assignment"][i][rows][:, cols]
        assert torch.allclose(la_b, s["log_assignment"][0], atol=1e-9)
        assert (s["matches0"] > -1).sum() > (10 if i < 2 else -1)
    if settings.get("width_confidence", -1) > 0:
        assert (batch["pruned_fraction"] > 0).any()


def test_batched_equals_single_float32():
    model = official("aliked", **ADAPTIVE)
    pairs = [
        synthetic_pair(200, 150, 0.3, seed=4, dtype=torch.float32),
        synthetic_pair(90, 180, 1.0, seed=5, dtype=torch.float32),
    ]
    with torch.no_grad():
        batch = model(pad_batch(pairs, garbage=False))
        for i, p in enumerate(pairs):
            single = model(as_input(p))
            m = p["keypoints0"].shape[0]
            same = batch["matches0"][i, :m] == single["matches0"][0]
            assert same.float().mean() >= 0.995
            assert batch["stop"][i] == single["stop"][0]


def test_adaptive_edge_cases_never_crash():
    model = official("aliked", **ADAPTIVE).double()
    empty = synthetic_pair(50, 40, 0.5, seed=6)
    few = synthetic_pair(3, 2, 0.1, seed=7)
    hard = synthetic_pair(40, 30, 0.3, seed=8)
    batch = pad_batch([empty, few, hard])
    batch["keypoint_mask1"][0] = False  # image 1 of pair 0 has no points
    with torch.no_grad():
        out = model(batch)
        assert (out["matches0"][0] == -1).all() and out["stop"][0] == 0
        assert out["stop"][1] >= 1 and out["stop"][2] >= 1
        # every point pruned after the first layer: no crash, no match
        prune_all = official("aliked", width_confidence=1e-9).double()
        out = prune_all(as_input(hard))
        assert (out["matches0"] == -1).all() and out["stop"].item() == 1
        assert out["pruned_fraction"].item() == 1.0
        # exit right after the first layer
        exit_first = official(
            "aliked", depth_confidence=1e-9, width_confidence=0.99
        ).double()
        out = exit_first(as_input(hard))
        assert out["stop"].item() == 1 and (out["matches0"] > -1).any()
        # no keypoints at all
        none = {
            k: v[:, :0] if k.startswith(("keyp", "desc")) else v
            for k, v in as_input(hard).items()
        }
        out = model(none)
        assert out["matches0"].shape == (1, 0) and out["matches1"].shape == (1, 0)


def test_mixed_precision_bfloat16_cpu():
    model = official("aliked", mp="bfloat16")
    p = as_input(synthetic_pair(90, 70, 0.3, seed=9, dtype=torch.float32))
    with torch.no_grad():
        ref = official("aliked")(p)["matches0"]
        out = model(p)
    assert out["matching_scores0"].dtype == torch.float32
    agree = ((out["matches0"] == ref) & (ref > -1)).sum() / (ref > -1).sum()
    assert agree > 0.95
    # training under autocast: the loss re-runs the heads in the same precision
    small = LightGlue(
        {"input_dim": 128, "descriptor_dim": 64, "n_layers": 2, "mp": True}
    )
    data = {
        **p,
        "gt_matches0": torch.full((1, 90), -1),
        "gt_matches1": torch.full((1, 70), -1),
    }
    losses, _ = small.train().loss(small(data), data)
    losses["total"].sum().backward()
    assert all(torch.isfinite(q.grad).all() for q in small.parameters())


# ------------------------------------------------------------------------------ training


def gt_from_matches(gt0: torch.Tensor, n: int) -> dict:
    """gt_matches0 (B, M) -> gt_matches1 and gt_assignment; a few points ignored (-2)."""
    b, m = gt0.shape
    gt1 = torch.full((b, n), -1)
    for i in range(b):
        ok = gt0[i] >= 0
        gt1[i, gt0[i][ok]] = torch.nonzero(ok)[:, 0]
    assignment = torch.zeros(b, m, n, dtype=torch.bool)
    for i in range(b):
        ok = gt0[i] >= 0
        assignment[i, torch.nonzero(ok)[:, 0], gt0[i][ok]] = True
    gt0, gt1 = gt0.clone(), gt1.clone()
    gt0[:, :3] = torch.where(gt0[:, :3] == -1, -2, gt0[:, :3])
    return {"gt_matches0": gt0, "gt_matches1": gt1, "gt_assignment": assignment}


def test_overfit_one_pair_and_gradients():
    """Loss decreases when overfitting a synthetic pair (padded batch, checkpointing); no
    parameter gets a NaN or missing gradient."""
    torch.manual_seed(0)
    model = LightGlue(
        {
            "input_dim": 32,
            "descriptor_dim": 64,
            "n_layers": 3,
            "num_heads": 2,
            "checkpointed": True,
        }
    ).train()
    pairs = [
        synthetic_pair(40, 30, 1.0, dim=32, seed=10, dtype=torch.float32),
        synthetic_pair(25, 35, 1.0, dim=32, seed=11, dtype=torch.float32),
    ]
    data = pad_batch(pairs)
    gt0 = torch.full(data["keypoint_mask0"].shape, -1)
    for i, p in enumerate(pairs):
        gt0[i, : p["gt_matches0"].shape[0]] = p["gt_matches0"]
    data.update(gt_from_matches(gt0, data["keypoint_mask1"].shape[1]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for step in range(40):
        pred = model(data)
        losses, metrics = model.loss(pred, data)
        assert set(losses) >= {
            "total",
            "last",
            "assignment_nll",
            "nll_pos",
            "nll_neg",
            "num_matchable",
            "num_unmatchable",
            "confidence",
            "row_norm",
        }
        assert all(v.shape == (2,) for v in losses.values())
        opt.zero_grad()
        losses["total"].mean().backward()
        if step == 0:
            for name, p in model.named_parameters():
                assert p.grad is not None, f"{name} has no gradient"
                assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        opt.step()
        history.append(losses["total"].mean().item())
    assert all(torch.isfinite(torch.tensor(history)))
    assert history[-1] < 0.5 * history[0], history
    assert metrics["match_recall"].min() > 0.5


def test_nll_by_hand():
    # 2 x 2 problem: (0 -> 1) positive, row 1 unmatched, column 0 unmatched
    la = torch.log(torch.tensor([[[0.1, 0.6, 0.3], [0.2, 0.1, 0.7], [0.4, 0.5, 0.0]]]))
    data = {
        "gt_matches0": torch.tensor([[1, -1]]),
        "gt_matches1": torch.tensor([[-1, 0]]),
    }
    w = nll_weights(la, data)
    nll, parts = weighted_nll(la, w, 0.5)
    pos = -torch.log(torch.tensor(0.6))
    neg = -(torch.log(torch.tensor(0.7)) + torch.log(torch.tensor(0.4))) / 2
    assert torch.allclose(parts["nll_pos"], pos[None]) and torch.allclose(
        parts["nll_neg"], neg[None]
    )
    assert torch.allclose(nll, (0.5 * pos + 0.5 * neg)[None])
    # ignored (-2) and padded points carry no weight; -inf entries stay out of the sum
    la[0, 1, 0] = -torch.inf
    data = {
        "gt_matches0": torch.tensor([[1, -2]]),
        "gt_matches1": torch.tensor([[-1, 0]]),
        "keypoint_mask1": torch.tensor([[False, True]]),
    }
    nll, parts = weighted_nll(la, nll_weights(la, data), 0.5)
    assert torch.isfinite(nll).all()
    assert parts["num_unmatchable"].item() == 0 and parts["nll_neg"].item() == 0


def test_metrics_by_hand():
    m = torch.tensor([[1, -1, 2, 0, -1]])
    gt = torch.tensor([[1, 3, 0, -1, -2]])
    scores = torch.tensor([[0.9, 0.0, 0.8, 0.7, 0.0]])
    assert torch.allclose(match_recall(m, gt), torch.tensor([1 / 3]))
    assert torch.allclose(match_precision(m, gt), torch.tensor([1 / 3]))
    assert torch.allclose(accuracy(m, gt), torch.tensor([1 / 4]))
    # ranked: TP (p=1, r=1/3), FP, FP -> AP = 1/3
    assert torch.allclose(average_precision(m, gt, scores), torch.tensor([1 / 3]))
    scores = torch.tensor([[0.5, 0.0, 0.8, 0.7, 0.0]])  # TP last: p=1/3 at r=1/3
    assert torch.allclose(average_precision(m, gt, scores), torch.tensor([1 / 9]))


# --------------------------------------------------------------------- reference parity

_FEATURES: dict = {}


def kornia_features(extractor: str, pair: dict, name: str, num: int):
    """Keypoints/descriptors of kornia's own extractors with the official weights."""
    key = (extractor, name, num)
    if key in _FEATURES:
        return _FEATURES[key]
    kf = pytest.importorskip("kornia.feature")
    from gluefactory.weights import load_weights

    need_weights(
        {"aliked": "aliked-n16", "disk": "disk-depth", "xfeat": "xfeat"}[extractor]
    )
    out = []
    with torch.inference_mode():
        if extractor == "aliked":
            net = kf.ALIKED(
                model_name="aliked-n16", max_num_keypoints=num, detection_threshold=0.0
            )
            net.load_state_dict(load_weights("aliked-n16"), strict=False)
        elif extractor == "disk":
            net = kf.DISK()
            net.load_state_dict(load_weights("disk-depth")["extractor"])
        else:
            from kornia.feature.xfeat import XFeat

            net = XFeat(top_k=num)
            net.net.load_state_dict(load_weights("xfeat"))
        net.eval()
        for img in (pair["image0"], pair["image1"]):
            if extractor == "aliked":
                f = net(img)[0]
                k, d = f.keypoints, f.descriptors
            elif extractor == "disk":
                f = net(img, n=num, pad_if_not_divisible=True)[0]
                k, d = f.keypoints, f.descriptors
            else:
                f = net.detectAndCompute(img)[0]
                k, d = f["keypoints"], f["descriptors"]
            size = torch.tensor([img.shape[-1], img.shape[-2]], dtype=torch.float32)
            out.append((k.clone(), d.clone(), size))
    _FEATURES[key] = out
    return out


def kornia_lightglue(features: str, settings: dict):
    """kornia's LightGlue, loaded from the same file with kornia's own key mapping."""
    kf = pytest.importorskip("kornia.feature")
    from gluefactory.weights import load_weights

    presets = {
        "aliked": {"input_dim": 128},
        "disk": {"input_dim": 128},
        "xfeat": {"input_dim": 64, "descriptor_dim": 96, "n_layers": 6, "num_heads": 1},
    }
    ref = kf.LightGlue(
        features=None, filter_threshold=0.1, **presets[features], **settings
    )
    state = load_weights(WEIGHTS[features])
    if features == "xfeat":
        state = {k[8:]: v for k, v in state.items() if k.startswith("matcher.")}
    state = {
        re.sub(r"^(self_attn|cross_attn)\.(\d+)\.", r"transformers.\2.\1.", k): v
        for k, v in state.items()
        if not re.fullmatch(r"log_assignment\.\d+\.r", k)
    }
    res = ref.load_state_dict(state, strict=False)
    assert not res.unexpected_keys and set(res.missing_keys) <= {
        "confidence_thresholds"
    }
    # kornia prunes only above a keypoint count on some devices: always, as on CPU
    ref.pruning_keypoint_thresholds = dict.fromkeys(ref.pruning_keypoint_thresholds, -1)
    return ref.eval()


def run_both(features, feats, settings, dtype=torch.float32):
    (k0, d0, s0), (k1, d1, s1) = feats
    ours = official(features, **settings).to(dtype)
    ref = kornia_lightglue(features, settings).to(dtype)
    with torch.inference_mode():
        r = ref(
            {
                "image0": {
                    "keypoints": k0[None].to(dtype),
                    "descriptors": d0[None].to(dtype),
                    "image_size": s0[None],
                },
                "image1": {
                    "keypoints": k1[None].to(dtype),
                    "descriptors": d1[None].to(dtype),
                    "image_size": s1[None],
                },
            }
        )
        o = ours(
            {
                "keypoints0": k0[None].to(dtype),
                "keypoints1": k1[None].to(dtype),
                "descriptors0": d0[None].to(dtype),
                "descriptors1": d1[None].to(dtype),
                "view0": {"image_size": s0[None]},
                "view1": {"image_size": s1[None]},
            }
        )
    return r, o


def check_parity(features, feats, settings, exact: bool = True):
    """Parity of our model with the reference on one pair.

    float32, as used: match sets >= 99.5% shared with counts within 0.5%; matching
    scores of >= 99.5% of the shared matches within 1e-4, or within twice the
    reference's own float32 rounding error (|float32 - float64| of kornia) where that is
    larger (LighterGlue: up to ~3e-4, see docs/lightglue.md), and none off by 1e-2.
    float64 (``exact``): the same function, so identical matches, scores within 1e-9.
    """
    r, o = run_both(features, feats, settings)
    r64 = None
    if exact:
        r64, o64 = run_both(features, feats, settings, torch.float64)
        assert torch.equal(r64["matches0"], o64["matches0"])
        assert torch.allclose(
            r64["matching_scores0"], o64["matching_scores0"], atol=1e-9
        )

    a, b = r["matches0"][0], o["matches0"][0]
    na, nb = int((a > -1).sum()), int((b > -1).sum())
    shared = (a == b) & (a > -1)
    assert na > 100
    assert abs(na - nb) <= 0.005 * na, (na, nb)
    assert shared.sum() >= 0.995 * max(na, nb), (int(shared.sum()), na, nb)
    diff = (r["matching_scores0"][0] - o["matching_scores0"][0]).abs()[shared]
    tol = 1e-4
    if (diff > tol).float().mean() > 0.005:  # compare with the reference's own error
        if r64 is None:
            r64 = run_both(features, feats, settings, torch.float64)[0]
        own_error = (
            (r["matching_scores0"] - r64["matching_scores0"]).abs()[0][shared].max()
        )
        tol = max(tol, 2 * own_error.item())
    assert (diff > tol).float().mean() <= 0.005, (diff.max(), tol)
    assert diff.max() < 1e-2
    assert r["stop"] == int(o["stop"][0])


@pytest.mark.parametrize("settings", [FULL, ADAPTIVE], ids=["full", "adaptive"])
def test_parity_xfeat_lighterglue(homography_pair, settings):
    feats = kornia_features("xfeat", homography_pair, "homography", 512)
    check_parity("xfeat", feats, settings)


@pytest.mark.slow
@pytest.mark.parametrize("pair_name", ["motorcycle_pair", "homography_pair"])
@pytest.mark.parametrize("features", ["aliked", "disk", "xfeat"])
def test_parity_real_photographs(features, pair_name, request):
    pair = request.getfixturevalue(pair_name)
    feats = kornia_features(features, pair, pair_name, 1024)
    check_parity(features, feats, FULL)
    check_parity(features, feats, ADAPTIVE, exact=False)


def test_real_pair_loss_and_metrics(homography_pair):
    """End to end on a real photo pair: XFeat features, ground truth from the known
    homography, official LighterGlue; the metrics and loss are those of a good matcher."""
    homography_matcher = pytest.importorskip(
        "gluefactory.models.matchers.homography_matcher"
    )
    from gluefactory.geometry.coordinates import from_center_convention

    (k0, d0, s0), (k1, d1, s1) = kornia_features(
        "xfeat", homography_pair, "homography", 512
    )
    data = {
        "keypoints0": from_center_convention(k0)[None],
        "descriptors0": d0[None],
        "keypoints1": from_center_convention(k1)[None],
        "descriptors1": d1[None],
        "view0": {"image_size": s0[None]},
        "view1": {"image_size": s1[None]},
        "H_0to1": homography_pair["H_0to1"][None],
    }
    data.update(homography_matcher.HomographyMatcher({})(data))
    model = official("xfeat")
    with torch.no_grad():
        pred = model(data)
        losses, metrics = model.loss(pred, data)
    # measured: precision 0.89, recall 0.98, AP 0.97, accuracy 0.95
    assert metrics["match_precision"].item() > 0.8, metrics
    assert metrics["match_recall"].item() > 0.85, metrics
    assert metrics["average_precision"].item() > 0.85, metrics
    assert losses["total"].item() < 1.5 and losses["last"] <= losses["total"] + 1e-6


# ------------------------------------------------------- config contract and ranges


@pytest.mark.parametrize(
    "conf, want",
    [
        ({}, (256, False)),
        ({"features": "aliked"}, (128, False)),
        ({"features": "disk"}, (128, False)),
        ({"features": "sift"}, (128, True)),
        ({"features": "doghardnet"}, (128, True)),
        ({"features": "xfeat"}, (64, False)),
        ({"weights": "superpoint"}, (256, False)),
        ({"input_dim": 96, "add_scale_ori": True}, (96, True)),
    ],
)
def test_requires_from_config_without_weights(conf, want, monkeypatch, tmp_path):
    """Computed from the config alone: works offline with an empty weights cache,
    where building the model fails on its weights."""
    from gluefactory.weights import WeightsError

    monkeypatch.setenv("GLUEFACTORY_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    dim, scale_ori = want
    assert LightGlue.requires(conf) == {
        "descriptor_dim": dim,
        "scales": scale_ori,
        "orientations": scale_ori,
    }
    if "features" in conf or "weights" in conf:
        with pytest.raises(WeightsError, match="GLUEFACTORY_OFFLINE"):
            LightGlue(conf)


def test_requires_checks_the_config():
    with pytest.raises(ConfigError, match="Unknown configuration key"):
        LightGlue.requires({"input_dimm": 128})
    with pytest.raises(ConfigError, match="filter_threshold"):
        LightGlue.requires({"filter_threshold": 2})
    with pytest.raises(ConfigError, match="contradicts features"):
        LightGlue.requires({"features": "aliked", "input_dim": 64})


@pytest.mark.parametrize(
    "key, value",
    [
        ("filter_threshold", 2),
        ("filter_threshold", -0.1),
        ("filter_threshold", "0.1"),
        ("depth_confidence", 0),
        ("depth_confidence", 1.5),
        ("depth_confidence", -0.5),
        ("width_confidence", 0),
        ("width_confidence", 2),
        ("n_layers", 0),
        ("num_heads", 0),
        ("input_dim", 0),
        ("descriptor_dim", 100),  # 4 heads of 25: not even
        ("mp", "fp8"),
        ("flash", "yes"),
        ("loss.nll_balancing", 1.5),
    ],
)
def test_out_of_range_values_name_the_key(key, value):
    conf = {"n_layers": 2}
    sub = conf
    *parents, leaf = key.split(".")
    for p in parents:
        sub = sub.setdefault(p, {})
    sub[leaf] = value
    with pytest.raises(ConfigError, match=re.escape(f"{leaf}={value!r}")):
        LightGlue(conf)


@pytest.mark.parametrize(
    "conf",
    [
        {"filter_threshold": 0},
        {"filter_threshold": 1},
        {"depth_confidence": 1, "width_confidence": 1},
        {"depth_confidence": -1, "width_confidence": 0.99},
        {"descriptor_dim": 96, "num_heads": 3},
        {"mp": "bfloat16"},
    ],
)
def test_values_in_range_are_accepted(conf):
    LightGlue({"input_dim": 32, "n_layers": 1, **conf})


def test_flash_is_accepted_and_has_no_effect():
    torch.manual_seed(0)
    base = {"input_dim": 32, "descriptor_dim": 64, "n_layers": 2, "num_heads": 2}
    on, off = LightGlue({**base, "flash": True}), LightGlue({**base, "flash": False})
    off.load_state_dict(on.state_dict())
    p = as_input(synthetic_pair(30, 25, 0.3, dim=32, dtype=torch.float32))
    with torch.no_grad():
        a, b = on.eval()(p), off.eval()(p)
    assert torch.equal(a["log_assignment"], b["log_assignment"])


# --------------------------------------------------------------- padded keypoints


def _small_model(seed: int = 0) -> LightGlue:
    torch.manual_seed(seed)
    return LightGlue(
        {"input_dim": 32, "descriptor_dim": 64, "n_layers": 3, "num_heads": 2}
    ).double()


def _with_gt(p: dict) -> dict:
    gt = gt_from_matches(p["gt_matches0"][None], p["keypoints1"].shape[0])
    return {**as_input(p), **gt}


def test_loss_with_masks_equals_loss_of_unpadded_pairs():
    """Padded points (random, with ground truth -1 that would be supervised if they
    counted) carry no weight: each pair's losses and metrics in the padded batch equal
    those of the pair alone, in train mode (every term, confidence included)."""
    model = _small_model().train()
    pairs = [
        synthetic_pair(40, 30, 1.0, dim=32, seed=20),
        synthetic_pair(25, 35, 1.0, dim=32, seed=21),
    ]
    data = pad_batch(pairs)
    M, N = data["keypoint_mask0"].shape[1], data["keypoint_mask1"].shape[1]
    gt0 = torch.full((2, M), -1)  # padded points labelled "unmatched"
    for i, p in enumerate(pairs):
        gt0[i, : p["gt_matches0"].shape[0]] = p["gt_matches0"]
    data.update(gt_from_matches(gt0, N))
    losses, metrics = model.loss(model(data), data)
    for i, p in enumerate(pairs):
        single = _with_gt(p)
        # the same -2 labels as in the batch (gt_from_matches marks the first 3 rows)
        s_losses, s_metrics = model.loss(model(single), single)
        for k, v in s_losses.items():
            assert torch.allclose(losses[k][i], v[0], atol=1e-10), k
        for k, v in s_metrics.items():
            assert torch.allclose(metrics[k][i], v[0], atol=1e-10), k
    # without the masks the padded points would count: the loss differs
    unmasked = {k: v for k, v in data.items() if not k.startswith("keypoint_mask")}
    other, _ = model.loss(model(unmasked), unmasked)
    assert not torch.allclose(other["total"], losses["total"])


def test_all_true_masks_give_the_unmasked_loss():
    """Forced keypoint counts come with all-True masks: the loss takes the unmasked
    (faster) path and every term equals the loss without masks."""
    model = _small_model().train()
    data = _with_gt(synthetic_pair(30, 25, 1.0, dim=32, seed=24))
    masked = {
        **data,
        "keypoint_mask0": torch.ones(1, 30, dtype=torch.bool),
        "keypoint_mask1": torch.ones(1, 25, dtype=torch.bool),
    }
    torch.manual_seed(0)
    a, ma = model.loss(model(data), data)
    b, mb = model.loss(model(masked), masked)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-6)
    for k in ma:
        torch.testing.assert_close(ma[k], mb[k], atol=1e-6, rtol=1e-6)


def test_padded_copies_of_real_points_are_never_matched():
    """Padding that duplicates real points of the other image (the easiest possible
    matches) is ignored: masked points get no match, real points keep theirs."""
    model = _small_model(1).eval()
    p = synthetic_pair(30, 30, 0.1, dim=32, seed=22)
    data = pad_batch([p, synthetic_pair(40, 40, 0.1, dim=32, seed=23)])
    # pad pair 0's image 1 with exact copies of the keypoints/descriptors of image 0
    extra = data["keypoints1"].shape[1] - 30
    data["keypoints1"][0, 30:] = p["keypoints0"][:extra]
    data["descriptors1"][0, 30:] = p["descriptors0"][:extra]
    with torch.no_grad():
        out = model(data)
        single = model(as_input(p))
    assert (out["matches1"][0, 30:] == -1).all()
    assert (out["matches0"][0] < 30).all()
    assert torch.equal(out["matches0"][0, :30], single["matches0"][0])
    assert (out["matching_scores1"][0, 30:] == 0).all()
