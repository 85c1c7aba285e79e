"""Parity of the onnxruntime pipeline with PyTorch on real images and on a trained
checkpoint: at least 99.5 % of PyTorch's matches, with and without early exit and
pruning (the default confidences 0.95 / 0.99)."""

from __future__ import annotations

import cv2
import pytest
import torch
from omegaconf import OmegaConf

from gluefactory.deploy.export import export_pipeline
from gluefactory.models import get_model
from gluefactory.utils.conf import load_conf

ADAPTIVE = {"depth_confidence": 0.95, "width_confidence": 0.99}
PAIRS = [("v_astronaut", 2), ("v_coffee", 4), ("i_camera", 3), ("v_brick", 6)]
PRESETS = {  # shipped config -> keypoints (the HPatches benchmark's 1024)
    "aliked+lightglue-official": 1024,
    "xfeat+lighterglue-official": 1024,
    "disk+lightglue-official": 1024,
}


def _image(path) -> torch.Tensor:
    img = cv2.imread(str(path))[..., ::-1].copy()
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def hpatches_pairs():
    from gluefactory.datasets.sources.builtin import ensure_builtin

    root = ensure_builtin("hpatches")
    out = []
    for seq, k in PAIRS:
        views = [_image(root / seq / f"{i}.ppm") for i in (1, k)]
        out.append({f"view{i}": {"image": v} for i, v in enumerate(views)})
    return out


def matched_points(pred: dict) -> torch.Tensor:
    """The matches as keypoint coordinates (M, 4): x0, y0, x1, y1."""
    k0, k1, m0 = pred["keypoints0"][0], pred["keypoints1"][0], pred["matches0"][0]
    ok = m0 >= 0
    return torch.cat([k0[ok], k1[m0[ok]]], 1).double()


def common_matches(ref: torch.Tensor, got: torch.Tensor, px: float = 0.05) -> int:
    """How many of ``ref``'s matches ``got`` has, both points within ``px``: keypoint
    order may differ after top-k, and the extractor graphs' float rounding moves
    sub-pixel keypoints by ~1e-3 px."""
    if len(ref) == 0 or len(got) == 0:
        return 0
    d0 = torch.cdist(
        ref[:, :2], got[:, :2], compute_mode="donot_use_mm_for_euclid_dist"
    )
    d1 = torch.cdist(
        ref[:, 2:], got[:, 2:], compute_mode="donot_use_mm_for_euclid_dist"
    )
    return int(((d0 < px) & (d1 < px)).any(1).sum())


def check_parity(label: str, reference, onnx, pairs: list, min_matches: int) -> None:
    """At least 99.5 % of PyTorch's matches found by ONNX, counts within 0.5 %, and at
    least ``min_matches`` matches per pair (real, not empty, matches)."""
    n_ref = n_got = n_common = 0
    for data in pairs:
        with torch.no_grad():
            ref = matched_points(reference(data))
        got = matched_points(onnx(data))
        n_ref, n_got = n_ref + len(ref), n_got + len(got)
        n_common += common_matches(ref, got)
    common, count = n_common / n_ref, n_got / n_ref
    print(f"{label}: {n_ref} matches, common {common:.4f}, count {count:.4f}")
    assert common >= 0.995 and abs(count - 1) <= 0.005, (label, common, count)
    assert n_ref > min_matches * len(pairs)


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_official_pipelines_on_builtin_hpatches(preset, hpatches_pairs, tmp_path):
    conf = OmegaConf.to_container(load_conf(preset).model)
    conf["extractor"]["max_num_keypoints"] = PRESETS[preset]
    model = get_model(conf["name"])(conf).eval()
    out = export_pipeline(model, tmp_path / "x")
    for options in ({}, ADAPTIVE):
        options = {"depth_confidence": -1, "width_confidence": -1, **options}
        conf["matcher"].update(options)
        ref_model = get_model(conf["name"])(conf).eval()
        onx = get_model("deploy.onnx")({"path": str(out), **options})
        check_parity(f"{preset} {options}", ref_model, onx, hpatches_pairs, 400)


def _batched(item: dict) -> dict:
    """A toy item's views as a batch of one."""
    one = lambda v: (
        v[None] if torch.is_tensor(v) else {k: x[None] for k, x in v.items()}
    )  # noqa: E731
    return {
        f"view{i}": {k: one(v) for k, v in item[f"view{i}"].items()} for i in (0, 1)
    }


@pytest.mark.slow
def test_trained_checkpoint(tmp_path, monkeypatch):
    """A LightGlue trained here (toy data), exported with --checkpoint."""
    from toy_training import ToyPairs, _Items, toy_conf

    from gluefactory.experiments import load_experiment
    from gluefactory.export_onnx import export_onnx
    from gluefactory.trainer import train

    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    train("toy", toy_conf({"epochs": 6, "eval_0": False}, num_train=64))
    items = _Items(OmegaConf.create({**ToyPairs.default_conf, "seed": 0}), "test")
    pairs = [items[i] for i in range(8)]
    for options in ({}, ADAPTIVE):
        model = load_experiment("toy", {"matcher": options})
        out = export_onnx({"model": {"matcher": options}}, tmp_path / "x", "toy")
        onx = get_model("deploy.onnx")({"path": str(out)})
        data = [_batched(item) for item in pairs]
        check_parity(f"checkpoint {options}", model, onx, data, 5)
