"""The GlueStick configs: upstream's evaluation preset, the two training stages (facts
4.5) for SuperPoint-open, ALIKED and XFeat points, and their matchers.

The whole pipelines (wireframe + matcher) are built and run by tests/test_configs.py,
which skips them while ``gluefactory.models.lines`` is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from gluefactory.models import get_model
from gluefactory.models.matchers.gluestick import GlueStick

CONFIGS = Path(__file__).parents[3] / "gluefactory" / "configs"
FEATURES = {"superpoint": 256, "aliked": 128, "xfeat": 64}
NAMES = [
    f"{f}+lsd+gluestick{s}" for f in FEATURES for s in ("", "-homography", "-megadepth")
]
TRAINING = [n for n in NAMES if n.endswith(("-homography", "-megadepth"))]
#: the small CPU recipe (docs/lines.md, learning results)
PHOTOS = "xfeat+lsd+gluestick-photos"


def load(name: str):
    return OmegaConf.load(CONFIGS / f"{name}.yaml")


def test_all_gluestick_configs_are_shipped():
    shipped = {p.stem for p in CONFIGS.glob("*+lsd+gluestick*.yaml")}
    assert shipped == {*NAMES, PHOTOS}


def test_photos_recipe_is_small_and_holds_out_its_benchmark_images():
    conf = load(PHOTOS)
    m = conf.model.matcher
    assert (m.descriptor_dim, len(m.GNN_layers), m.input_dim) == (96, 6, 64)
    assert conf.train.max_minutes == 30
    held_out = set(conf.data.val_images)
    assert set(conf.data_val.val_images) == held_out
    assert set(conf.benchmarks.homographies.data.glob) == held_out


def test_upstream_evaluation_preset():
    conf = load("superpoint+lsd+gluestick")
    ex, b = conf.model.extractor, conf.benchmarks
    assert ex.name == "lines.wireframe"
    assert ex.point_extractor.name == "gluefactory_nonfree.superpoint"
    assert ex.point_extractor.max_num_keypoints == 2048
    assert (ex.line_extractor.name, ex.line_extractor.max_num_lines) == (
        "lines.lsd",
        512,
    )
    assert ex.line_extractor.min_length == 15 and ex.wireframe_params.nms_radius == 3
    assert conf.model.matcher.weights == "gluestick-md"
    assert (b.hpatches.eval.estimator, b.hpatches.eval.ransac_th) == (
        "homography_est",
        -1,
    )
    assert b.megadepth1500.data.preprocessing.resize == 1600
    assert (b.megadepth1500.eval.estimator, b.megadepth1500.eval.ransac_th) == (
        "poselib",
        -1,
    )
    assert (
        b.eth3d.eval.eval_lines and "ground_truth" not in b.eth3d
    )  # upstream's defect


@pytest.mark.parametrize("name", TRAINING)
def test_training_hyperparameters(name):
    """Facts 4.5 (GlueStick row)."""
    conf = load(name)
    m, t, d = conf.model, conf.train, conf.data
    ex = m.extractor
    assert ex.name == "lines.wireframe" and ex.trainable is False
    assert ex.point_extractor.max_num_keypoints == 1000
    assert ex.point_extractor.force_num_keypoints and not ex.point_extractor.trainable
    lines = ex.line_extractor
    assert (lines.name, lines.max_num_lines, lines.min_length) == ("lines.lsd", 250, 15)
    assert lines.force_num_lines and ex.wireframe_params.nms_radius == 4
    assert m.ground_truth.use_lines
    assert (m.ground_truth.th_positive, m.ground_truth.th_negative) == (3, 5)
    assert m.matcher.input_dim == FEATURES[name.split("+")[0]]
    assert m.matcher.descriptor_dim == 256 and len(m.matcher.GNN_layers) == 18
    assert m.matcher.checkpointed and m.matcher.weights is None
    assert d.batch_size == 160 and d.num_workers == 15
    assert (t.epochs, t.lr, t.eval_every_iter, t.save_every_iter) == (
        200,
        1e-4,
        700,
        1400,
    )
    sc = t.lr_schedule
    assert (sc.type, sc.on_epoch, sc.start, sc.exp_div_10) == (
        "exp",
        False,
        200000,
        200000,
    )
    if name.endswith("-homography"):
        assert d.name == "homographies" and (d.train_size, d.val_size) == (900000, 1000)
        assert (d.photometric.name, d.photometric.p) == ("dark", 0.75)
        assert m.ground_truth.name == "matchers.homography_matcher"
        assert list(m.matcher.inter_supervision) == [2, 5]
        assert "load_experiment" not in t
        assert set(conf.benchmarks) == {"hpatches"}
    else:
        assert d.name == "megadepth" and d.preprocessing.resize == 640
        assert d.preprocessing.square_pad
        assert m.ground_truth.name == "matchers.depth_matcher"
        assert m.matcher.inter_supervision is None
        # the experiment that the homography config's training command writes
        stage1 = CONFIGS / f"{name.replace('-megadepth', '-homography')}.yaml"
        assert f"gluefactory.train {t.load_experiment} " in stage1.read_text()
        assert set(conf.benchmarks) == {"hpatches", "megadepth1500"}


@pytest.mark.parametrize("name", NAMES)
def test_matcher_section_builds_and_matches(name):
    """The matcher of every config (weights left out: not offline) runs on a wireframe
    shaped like its extractor's output."""
    mconf = OmegaConf.to_container(load(name).model.matcher)
    mconf["weights"] = None
    matcher = get_model(mconf["name"])(mconf).eval()
    assert isinstance(matcher, GlueStick)
    assert matcher.conf.keypoint_encoder == [32, 64, 128, 256]
    assert matcher.conf.num_heads == 4 and matcher.conf.filter_threshold == 0.2
    b, n, nl, d = 1, 60, 20, matcher.conf.input_dim
    data = {}
    for i in (0, 1):
        kpts = torch.rand(b, n, 2) * 100
        junc = torch.arange(2 * nl).view(1, nl, 2)
        data.update(
            {
                f"keypoints{i}": kpts,
                f"descriptors{i}": torch.randn(b, n, d),
                f"keypoint_scores{i}": torch.rand(b, n),
                f"lines{i}": kpts[:, : 2 * nl].reshape(b, nl, 2, 2),
                f"line_scores{i}": torch.rand(b, nl),
                f"lines_junc_idx{i}": junc,
                f"view{i}": {"image_size": torch.tensor([[100.0, 100.0]])},
            }
        )
    with torch.no_grad():
        pred = matcher(data)
    assert pred["line_matches0"].shape == (b, nl)


@pytest.mark.parametrize(
    "bench,data",
    [("hpatches", "eval_toy_homography"), ("megadepth1500", "eval_toy_posed")],
)
def test_upstream_command_without_weights_says_where_to_get_them(
    bench, data, tmp_path, monkeypatch, capsys
):
    """``python -m gluefactory.eval.{hpatches,megadepth1500} --conf
    gluefactory/configs/superpoint+lsd+gluestick.yaml`` verbatim (on a toy data set:
    the real ones would be downloaded first) where the official weights cannot be had:
    one line from the weights manager, exit 2."""
    import importlib

    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "eval"))  # toy data
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    monkeypatch.setenv("GLUEFACTORY_WEIGHTS", str(tmp_path / "weights"))  # empty
    main = importlib.import_module(f"gluefactory.eval.{bench}").main
    conf = str(CONFIGS / "superpoint+lsd+gluestick.yaml")
    with pytest.raises(SystemExit) as e:
        main(["--conf", conf, f"data.name={data}", "eval.progress=false"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err, err
    assert (
        "Weights 'superpoint-magicleap' (superpoint_v1.pth) are not in the cache" in err
    )
    assert "download it by hand from https://github.com/magicleap/" in err
