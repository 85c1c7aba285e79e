"""Sanity of the benchmarks on the built-in HPatches-format set (real photographs).

LightGlue beats mutual NN on the same XFeat features in precision and in the DLT AUC
(RANSAC AUCs can tie on mild homographies: reported, not gated), and the illumination
sequences (identity homography) score near-perfect AUCs.
"""

from __future__ import annotations

import pytest

pytest.importorskip("gluefactory.datasets.sources.builtin_hpatches")

from gluefactory.eval.cli import run_benchmark  # noqa: E402
from gluefactory.eval.hpatches import HPatchesPipeline  # noqa: E402
from gluefactory.eval.results import read_results  # noqa: E402


def hp(conf, *extra):
    return run_benchmark(
        HPatchesPipeline,
        [
            "--conf",
            conf,
            "data.data_dir=builtin/hpatches",
            "eval.progress=false",
            "eval.num_worst=0",
            "eval.workers=1",
            *extra,
        ],
    )


@pytest.mark.slow
def test_lighterglue_beats_nn_on_builtin_hpatches(tmp_path, monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    lg, out = hp("xfeat+lighterglue-official")
    nn, _ = hp("xfeat+NN")
    assert lg["mnum_keypoints"] == nn["mnum_keypoints"] == 1024  # same features
    assert lg["mprec@3px"] > nn["mprec@3px"] + 0.05
    assert lg["H_error_dlt@3px"] > nn["H_error_dlt@3px"] + 0.05
    res = read_results(out / "results.h5")
    i_pairs = [k for k, s in enumerate(res["scenes"]) if s.startswith("i_")]
    assert i_pairs, "the built-in set has illumination sequences"
    i_err = [res["H_error_dlt"][k] for k in i_pairs]
    assert sum(e < 3 for e in i_err) / len(i_err) > 0.9
