"""Every shipped training config parses, builds, and trains 2 iterations on tiny real data.

Tiny data: 4 scikit-image photographs (homography configs, patches 256 x 192) and a
MegaDepth-layout tree converted from the real Middlebury Motorcycle pair (MegaDepth
configs, long side 256), 64 keypoints per image (forced). Extractors whose weights cannot be had offline (both
SuperPoints) run with random weights: the architecture and the training step are still
exercised, and the test says so in its id.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import cv2
import pytest
import torch
from omegaconf import OmegaConf

from gluefactory.datasets import get_dataset
from gluefactory.datasets.sources.megadepth_convert import convert
from gluefactory.models import get_model

CONFIGS = Path(__file__).parents[1] / "gluefactory" / "configs"
NAMES = sorted(
    p.stem
    for p in CONFIGS.glob("*.yaml")
    if p.stem.endswith(("_homography", "_megadepth"))
)
EXPECTED = {
    f"{f}+lightglue_{s}"
    for f in ("superpoint", "superpoint-open", "xfeat", "aliked", "disk", "sift")
    for s in ("homography", "megadepth")
} | {"xfeat+lighterglue_homography"}
NO_OFFLINE_WEIGHTS = {"gluefactory_nonfree.superpoint", "extractors.superpoint_open"}

_spec = importlib.util.spec_from_file_location(
    "posed_motorcycle", Path(__file__).parent / "datasets" / "posed_motorcycle.py"
)
posed_motorcycle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(posed_motorcycle)


def test_all_configs_are_shipped():
    assert set(NAMES) == EXPECTED


@pytest.mark.parametrize("name", NAMES)
def test_hyperparameters(name):
    """Facts 4.5, with upstream's defects fixed."""
    conf = OmegaConf.load(CONFIGS / f"{name}.yaml")
    m, t = conf.model, conf.train
    assert m.extractor.trainable is False and m.extractor.force_num_keypoints
    assert m.matcher.weights is None and "features" not in m.matcher
    assert (
        t.lr == 1e-4 and t.lr_schedule.type == "exp" and t.lr_schedule.exp_div_10 == 10
    )
    sift = "sift" in name
    if name.endswith("_homography"):
        assert conf.data.name == "homographies" and conf.data.photometric.name == "lg"
        assert (
            conf.data.homography.difficulty == 0.7
            and conf.data.homography.max_angle == 45
        )
        assert list(conf.data.homography.patch_shape) == [640, 480]
        assert m.ground_truth.name == "matchers.homography_matcher"
        assert m.extractor.max_num_keypoints == (1024 if sift else 512)
        assert conf.data.batch_size == (64 if sift else 128)
        assert (t.epochs, t.lr_schedule.start) == (40, 20)
        assert set(conf.benchmarks) == {"hpatches"}
    else:
        assert conf.data.name == "megadepth" and conf.data.preprocessing.resize == 1024
        assert conf.data.val_pairs == "valid_pairs.txt"
        assert (
            m.ground_truth.name == "matchers.depth_matcher"
        )  # DISK too (upstream bug)
        assert m.extractor.max_num_keypoints == 2048  # DISK too (upstream: 512)
        assert (t.epochs, t.lr_schedule.start) == (50, 30)
        assert set(conf.benchmarks) == {"hpatches", "megadepth1500"}
    assert bool(m.matcher.get("add_scale_ori", False)) == sift  # both stages for SIFT
    if "lighterglue" in name:
        assert (m.matcher.descriptor_dim, m.matcher.n_layers, m.matcher.num_heads) == (
            96,
            6,
            1,
        )
        assert m.matcher.input_dim == 64
    else:
        assert (m.matcher.descriptor_dim, m.matcher.n_layers, m.matcher.num_heads) == (
            256,
            9,
            4,
        )


@pytest.fixture(scope="module")
def tiny_photos(tmp_path_factory):
    skd = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("photos")
    for name in ("coffee", "astronaut", "rocket", "chelsea"):
        cv2.imwrite(str(root / f"{name}.png"), getattr(skd, name)()[..., ::-1])
    return root


@pytest.fixture(scope="module")
def tiny_megadepth(tmp_path_factory, motorcycle_pair):
    src = tmp_path_factory.mktemp("posed")
    posed_motorcycle.write_posed_motorcycle(src, motorcycle_pair)
    dst = tmp_path_factory.mktemp("megadepth")
    convert(src, dst, stride=8)
    return dst


def _tiny(name: str, photos: Path, megadepth: Path):
    conf = OmegaConf.load(CONFIGS / f"{name}.yaml")
    if conf.data.name == "homographies":
        tiny = {
            "data_dir": str(photos), "image_dir": "", "image_list": None,
            "train_size": None, "val_size": 1, "batch_size": 2, "num_workers": 0,
            "homography": {"patch_shape": [256, 192]},
        }  # fmt: skip
    else:
        tiny = {
            "data_dir": str(megadepth), "train_split": ["motorcycle"],
            "val_split": ["motorcycle"], "val_pairs": str(megadepth / "pairs.txt"),
            "train_num_per_scene": None, "batch_size": 1, "num_workers": 0,
            "max_overlap": 1.0,  # the stereo pair overlaps more than the configs' 0.7
            "preprocessing": {"resize": 256},
        }  # fmt: skip
    conf.data = OmegaConf.merge(conf.data, tiny)
    conf.model.extractor.max_num_keypoints = 64  # tiny: LightGlue's cost grows with N^2
    random_weights = conf.model.extractor.name in NO_OFFLINE_WEIGHTS
    if random_weights:
        conf.model.extractor.weights = None
    if conf.model.extractor.name == "extractors.sift":
        pytest.importorskip("pycolmap")
    return conf, random_weights


def _two_steps_by_hand(conf) -> None:
    """Without the trainer: dataset -> model -> loss -> Adam, twice."""
    torch.manual_seed(0)
    dataset = get_dataset(conf.data.name)(conf.data)
    model = get_model(conf.model.name)(conf.model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and all(not p.requires_grad for p in model.extractor.parameters())
    opt = torch.optim.Adam(params, lr=conf.train.lr)
    loader = dataset.get_data_loader("train", shuffle=False)
    assert len(loader) > 0
    before = [p.detach().clone() for p in params]
    steps = 0
    while steps < 2:
        for batch in loader:
            pred = model(batch)
            losses, metrics = model.loss(pred, batch)
            loss = losses["total"].mean()
            assert torch.isfinite(loss), losses
            opt.zero_grad()
            loss.backward()
            grads = [p.grad for p in params if p.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads)
            opt.step()
            steps += 1
            if steps == 2:
                break
    assert any(not torch.equal(a, b) for a, b in zip(before, params))
    assert "match_recall" in metrics


def _two_steps_with_trainer(
    conf, name: str, outputs: Path, model_type: str = "TwoViewPipeline"
) -> None:
    """``gluefactory.train`` for 2 optimizer steps (then its final validation)."""
    import json

    from gluefactory.experiments import load_experiment
    from gluefactory.trainer.launch import train

    conf.train = OmegaConf.merge(
        conf.train,
        {"max_steps": 2, "eval_0": False, "log_every_iter": 1, "plot": 0,
         "save_every_iter": 1000, "load_experiment": None, "device": "cpu"},
    )  # fmt: skip
    summary = train(name, OmegaConf.to_container(conf), overwrite=True)
    assert summary["step"] == 2 and summary["status"] == "max_steps", summary
    folder = outputs / "training" / name
    recs = [
        json.loads(ln) for ln in (folder / "metrics.jsonl").read_text().splitlines()
    ]
    train_losses = [r["loss/total"] for r in recs if r["kind"] == "train"]
    assert len(train_losses) == 2 and all(map(math.isfinite, train_losses))
    val = [r for r in recs if r["kind"] == "val"]
    assert val and "match_recall" in val[-1]
    model = load_experiment(folder)
    assert type(model).__name__ == model_type


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_config_trains_two_iterations(
    name, tiny_photos, tiny_megadepth, tmp_path, monkeypatch
):
    conf, random_weights = _tiny(name, tiny_photos, tiny_megadepth)
    try:
        import gluefactory.trainer.launch  # noqa: F401
    except ImportError:  # the trainer is not in this checkout
        _two_steps_by_hand(conf)
    else:
        monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path))
        _two_steps_with_trainer(conf, name, tmp_path)
    if random_weights:
        pytest.skip(
            f"{conf.model.extractor.name}: weights cannot be had offline; the "
            "architecture trained 2 iterations with random weights"
        )


@pytest.mark.slow
def test_triplets_train_with_the_trainer(
    tiny_photos, tiny_megadepth, tmp_path, monkeypatch
):
    """docs/training-data.md's triplet command: a shipped homography config with
    model.name=triplet_pipeline and data.triplet=true (validation on triplets too)."""
    conf, _ = _tiny("xfeat+lightglue_homography", tiny_photos, tiny_megadepth)
    conf.model.name = "triplet_pipeline"
    conf.data.triplet = True
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path))
    _two_steps_with_trainer(conf, "triplets", tmp_path, "TripletPipeline")


def test_learning_benchmark_configs_are_valid():
    """benchmarks/learning.py's two runs build (strict trainer config, model, datasets)."""
    from benchmarks import learning
    from gluefactory.trainer.config import build_train_conf

    variants = [
        ("scratch", {}),
        ("finetune", {}),
        ("scratch", {"triplets": 2}),
        ("scratch", {"n_layers": 3, "step_size": 700}),
        ("scratch", {"train_keypoints": 256}),
        ("scratch", {"max_steps": 4621}),
        ("scratch", {"schedule": "cosine"}),
    ]
    for kind, variant in variants:
        conf = build_train_conf(learning.train_conf(kind, 1.0, **variant))
        if kind == "scratch":
            # the documented recipe: 6 layers, lr halved every 1000 steps
            assert conf.model.matcher.n_layers == variant.get("n_layers", 6)
            if variant.get("schedule") != "cosine":
                assert conf.train.lr_schedule.step_size == variant.get(
                    "step_size", 1000
                )
        cosine = 2200 if variant.get("schedule") == "cosine" else None
        assert conf.train.max_steps == variant.get("max_steps", cosine)
        assert conf.train.max_minutes == 1.0
        kpts = variant.get("train_keypoints", 512)
        assert conf.model.extractor.max_num_keypoints == kpts
        assert list(conf.data.homography.patch_shape) == [480, 360]
    recipe = build_train_conf(learning.train_conf("scratch", 1.0)).model.matcher
    small = get_model("matchers.lightglue")(
        recipe
    )  # the shipped xfeat+lightglue-photos
    assert (small.conf.n_layers, small.conf.descriptor_dim, small.conf.num_heads) == (
        6,
        96,
        1,
    )
