"""Config merge order, strictness, tags and threshold parsing of the eval CLI."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from gluefactory.eval.hpatches import HPatchesPipeline
from gluefactory.eval.io import compose_eval_conf, conf_diff, default_tag
from gluefactory.eval.megadepth1500 import MegaDepth1500Pipeline
from gluefactory.eval.provenance import NON_RESULT_KEYS
from gluefactory.eval.sweep import SWEEP_THRESHOLDS, thresholds_from
from gluefactory.utils.errors import ConfigError

YAML = """
model:
  name: two_view_pipeline
  extractor: {name: extractors.sift, max_num_keypoints: 100}
  matcher: {name: matchers.nearest_neighbor}
data: {batch_size: 99}   # training data: dropped by the eval merge
train: {epochs: 3}
benchmarks:
  hpatches:
    model: {extractor: {max_num_keypoints: 200}}
    eval: {estimator: opencv, ransac_th: 0.5}
  megadepth1500:
    data: {preprocessing: {resize: 1600}}
"""


@pytest.fixture
def conf_file(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text(YAML)
    return str(path)


def test_merge_order(conf_file):
    user = compose_eval_conf("hpatches", conf_file, None, ["eval.ransac_th=2.0"])
    conf = HPatchesPipeline(user).conf
    assert conf.model.extractor.max_num_keypoints == 200  # benchmarks.B.model > model
    assert conf.model.extractor.name == "extractors.sift"
    assert conf.eval.estimator == "opencv"  # benchmarks.B.eval > default
    assert conf.eval.ransac_th == 2.0  # dotlist > everything
    assert conf.data.batch_size == 1  # the file's top-level data is not used
    assert conf.data.preprocessing.resize == 480  # benchmark default kept
    md = MegaDepth1500Pipeline(compose_eval_conf("megadepth1500", conf_file)).conf
    assert md.model.extractor.max_num_keypoints == 100
    assert md.data.preprocessing.resize == 1600 and md.data.preprocessing.side == "long"


@pytest.mark.parametrize(
    "dotlist, match",
    [
        (["foo.bar=1"], "foo"),
        (["eval.no_such_option=1"], "no_such_option"),
        (["eval.ransac_th=abc"], "ransac_th"),
        (["eval.estimator=no_such_estimator"], "no_such_estimator"),
        (["eval.ransac_th=[0.5,-1]"], "positive"),
    ],
)
def test_strict_errors(dotlist, match):
    with pytest.raises(ConfigError, match=match):
        HPatchesPipeline(compose_eval_conf("hpatches", None, None, dotlist))


def test_unknown_benchmark_section_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("benchmarks:\n  hpatches:\n    evaluation: {}\n")
    with pytest.raises(ConfigError, match="evaluation"):
        compose_eval_conf("hpatches", str(path))
    path.write_text("modle: {}\n")
    with pytest.raises(ConfigError, match="modle"):
        compose_eval_conf("hpatches", str(path))


def test_estimator_options_are_forwarded():
    user = OmegaConf.create(
        {"eval": {"estimator": "opencv", "ransac_th": -1, "method": "usac_magsac"}}
    )
    bench = HPatchesPipeline(user)
    assert bench.thresholds == list(SWEEP_THRESHOLDS)
    est = bench.estimator_conf(1.5)
    assert est == {
        "name": "opencv",
        "ransac_th": 1.5,
        "method": "usac_magsac",
    }


def test_thresholds():
    assert thresholds_from(-1) == list(SWEEP_THRESHOLDS)
    assert thresholds_from(0) == list(SWEEP_THRESHOLDS)
    assert thresholds_from(2.0) == [2.0]
    assert thresholds_from(OmegaConf.create([1, 2.5])) == [1.0, 2.5]


def test_default_tag():
    base = default_tag("aliked+lightglue-official", None, [])
    assert base == "aliked+lightglue-official"
    a = default_tag("aliked+lightglue-official", None, ["eval.ransac_th=-1"])
    b = default_tag("aliked+lightglue-official", None, ["eval.ransac_th=2"])
    assert len({base, a, b}) == 3  # different runs never share a folder
    # worker counts do not change results: same folder
    assert (
        default_tag(
            "x", None, ["eval.workers=4", "data.num_workers=2"], NON_RESULT_KEYS
        )
        == "x"
    )
    assert "/" not in default_tag("x", None, ["data.root=builtin/hpatches"])
    long = default_tag("x", None, [f"model.k{i}={i}" for i in range(60)])
    assert len(long) <= 120
    assert (
        default_tag(None, "my_exp", ["eval.ransac_th=1"]) == "my_exp_eval.ransac_th=1"
    )
    assert default_tag("/some/dir/my.yaml", None, []) == "my"


def test_conf_diff():
    old = {"eval": {"estimator": "opencv", "workers": 1}, "data": {"x": 1}}
    new = {"eval": {"estimator": "poselib", "workers": 4}, "data": {"x": 1}}
    assert conf_diff(old, new, NON_RESULT_KEYS) == ["eval.estimator"]


def test_checkpoint_conf_sits_below_conf_and_dotlist(monkeypatch, conf_file):
    """--checkpoint: the experiment's model and benchmarks.<bench> < --conf < dotlist."""
    import sys
    import types

    fake = types.ModuleType("gluefactory.experiments")
    fake.experiment_conf = lambda name: OmegaConf.create(
        {
            "data": {"name": "homographies"},  # training data: ignored
            "train": {"lr": 1e-4},
            "model": {
                "name": "two_view_pipeline",
                "extractor": {"name": "extractors.sift", "max_num_keypoints": 50},
                "matcher": {"name": "matchers.nearest_neighbor", "mutual_check": False},
            },
            "benchmarks": {
                "hpatches": {"eval": {"estimator": "opencv", "ransac_th": 3.0}}
            },
        }
    )
    monkeypatch.setitem(sys.modules, "gluefactory.experiments", fake)
    only_ckpt = HPatchesPipeline(compose_eval_conf("hpatches", None, "exp")).conf
    assert only_ckpt.model.extractor.max_num_keypoints == 50
    assert only_ckpt.eval.ransac_th == 3.0 and only_ckpt.data.name == "hpatches"
    both = HPatchesPipeline(
        compose_eval_conf("hpatches", conf_file, "exp", ["eval.ransac_th=1.5"])
    ).conf
    assert both.model.extractor.max_num_keypoints == 200  # --conf over checkpoint
    assert both.model.matcher.mutual_check is False  # from the checkpoint, kept
    assert both.eval.ransac_th == 1.5  # dotlist over everything
    assert default_tag(conf_file, "exp", []) == "exp+my"


def test_eval_section_is_checked_once_against_pipeline_and_estimator_keys():
    """eval = the pipeline's keys + the chosen estimator's: one check, with hints."""
    with pytest.raises(ConfigError, match="Did you mean 'num_worst'"):
        HPatchesPipeline({"eval": {"num_worts": 2}})
    with pytest.raises(ConfigError, match="Did you mean 'method'"):
        HPatchesPipeline({"eval": {"estimator": "opencv", "methdo": "usac_magsac"}})
    with pytest.raises(ConfigError, match="name"):
        HPatchesPipeline({"eval": {"name": "opencv"}})  # eval.estimator names it


def test_estimator_is_a_registry_lookup():
    """Any module of the estimator registry (or a dotted path) is accepted as it is."""
    path = "gluefactory.robust_estimators.homography.opencv"
    bench = HPatchesPipeline({"eval": {"estimator": path, "method": "usac_magsac"}})
    assert bench.estimator_conf(1.0)["name"] == path
