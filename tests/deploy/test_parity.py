"""Parity of the onnxruntime pipeline with PyTorch on real images and on a trained
checkpoint: at least 99.5 % of PyTorch's matches, with and without early exit and
pruning (the default confidences 0.95 / 0.99)."""

from __future__ import annotations

from pathlib import Path

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


def _photos(folder) -> str:
    """Four photographs (scikit-image) as a homographies data folder."""
    skd = pytest.importorskip("skimage.data")
    folder.mkdir()
    for name in ("coffee", "astronaut", "rocket", "chelsea"):
        cv2.imwrite(str(folder / f"{name}.png"), getattr(skd, name)()[..., ::-1])
    return str(folder)


def _same_summaries(ref: dict, got: dict) -> None:
    """Everything before RANSAC within 0.5 %; RANSAC's summaries within its noise
    (OpenCV's sampling differs run to run: a few pairs cross an error threshold)."""
    assert ref.keys() == got.keys()
    for key, a in ref.items():
        b = got[key]
        if "ransac" in key:
            tol = 0.03 * max(1.0, abs(a))
        else:
            tol = 0.005 * max(1.0, abs(a))
        assert abs(a - b) <= tol, (key, a, b)


@pytest.mark.slow
def test_a_checkpoint_trained_here_end_to_end(hpatches_pairs, tmp_path, monkeypatch):
    """XFeat + LighterGlue fine-tuned here (a few steps on homographies of
    photographs), exported with ``--checkpoint``: the whole pipeline (the extractor
    graph included) finds >= 99.5 % of PyTorch's matches on the built-in HPatches-format
    pairs, full and adaptive, and ``gluefactory.eval.hpatches`` on the export gives
    PyTorch's summaries."""
    from gluefactory.eval.cli import run_benchmark
    from gluefactory.eval.hpatches import HPatchesPipeline
    from gluefactory.experiments import load_experiment
    from gluefactory.export_onnx import export_onnx
    from gluefactory.trainer import train
    from gluefactory.weights import cache_path

    if not cache_path("xfeat").exists() or not cache_path("xfeat-lighterglue").exists():
        pytest.skip("XFeat / LighterGlue weights are not in the cache")
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    conf = OmegaConf.to_container(
        load_conf(
            Path(__file__).parents[2]
            / "gluefactory/configs/xfeat+lightglue_homography.yaml"
        )
    )
    conf["data"].update({
        "data_dir": _photos(tmp_path / "photos"), "image_dir": "", "image_list": None,
        "train_size": None, "val_size": 1, "batch_size": 2, "num_workers": 0,
        "homography": {"patch_shape": [256, 192]}})  # fmt: skip
    conf["model"]["extractor"]["max_num_keypoints"] = 128
    conf["model"]["matcher"] = {"name": "matchers.lightglue", "features": "xfeat"}
    conf["train"].update({"max_steps": 3, "lr": 1e-4, "eval_0": False, "plot": 0,
                          "device": "cpu", "log_every_iter": 1})  # fmt: skip
    assert train("ft", conf)["status"] == "max_steps"
    official = get_model("matchers.lightglue")({"features": "xfeat"}).state_dict()
    trained = load_experiment("ft").matcher.state_dict()
    assert any(not torch.equal(official[k], trained[k]) for k in official)

    extractor = {"force_num_keypoints": False, "max_num_keypoints": 1024}
    out = export_onnx({"model": {"extractor": extractor}}, tmp_path / "x", "ft")
    for options in ({}, ADAPTIVE):
        options = {"depth_confidence": -1, "width_confidence": -1, **options}
        model = load_experiment("ft", {"extractor": extractor, "matcher": options})
        onx = get_model("deploy.onnx")({"path": str(out), **options})
        check_parity(f"trained here {options}", model, onx, hpatches_pairs, 100)

    common = ["data.data_dir=builtin/hpatches", "eval.progress=false",
              "eval.num_worst=0", "eval.workers=1", "eval.estimator=opencv",
              "eval.ransac_th=0.5"]  # fmt: skip
    ref, _ = run_benchmark(HPatchesPipeline, [
        "--checkpoint", "ft", "--tag", "torch", *common,
        *(f"model.extractor.{k}={str(v).lower()}" for k, v in extractor.items())])  # fmt: skip
    got, _ = run_benchmark(HPatchesPipeline, [
        "--tag", "onnx", *common, "model.name=deploy.onnx", f"model.path={out}"])  # fmt: skip
    _same_summaries(ref, got)
