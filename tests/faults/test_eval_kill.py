"""An evaluation SIGKILLed at random points of its export and of its evaluation: what
it leaves under a final name is whole, and a rerun ends with the results of an
uninterrupted run (the partial temporaries are never trusted, and are removed)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fault_injection import leftovers

from gluefactory.eval.hpatches import main as hpatches_main
from gluefactory.eval.results import read_results
from gluefactory.formats.features import FeatureReader

HERE = Path(__file__).resolve().parent
ARGS = [
    "--conf", "sift+NN", "data.name=eval_toy_homography", "data.sequences=4",
    "data.images_per_sequence=5", "data.preprocessing.resize=240",
    "model.extractor.max_num_keypoints=256", "eval.progress=false", "eval.num_worst=1",
    "eval.workers=1", "--tag", "t",
]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference") / "outputs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLUEFACTORY_OUTPUTS", str(root))
        summaries = hpatches_main(ARGS)
    return summaries, read_results(root / "results" / "hpatches" / "t" / "results.h5")


def _wait_for(found, proc, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not found():
        assert proc.poll() is None, "the run ended before the kill point"
        assert time.time() < deadline, "kill point not reached"
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("stage", ["export", "evaluation"])
def test_sigkill_at_a_random_point_then_rerun_equals_uninterrupted(
    stage, seed, reference, tmp_path, monkeypatch
):
    outputs = tmp_path / "outputs"
    tag = outputs / "results" / "hpatches" / "t"
    env = dict(os.environ, GLUEFACTORY_OUTPUTS=str(outputs), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE.parents[1]), str(HERE.parent / "eval")]
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gluefactory.eval.hpatches", *ARGS],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=HERE.parents[1],
    )
    try:
        if stage == "export":  # the predictions' temporary is being written
            _wait_for(lambda: any(tag.glob(".predictions.h5.*")), proc)
            time.sleep(random.Random(seed).uniform(0.0, 1.5))
        else:  # the export is in place: records, sweep, result files, figures
            _wait_for(lambda: (tag / "predictions.h5").exists(), proc)
            time.sleep(random.Random(seed).uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    # under its final name, a file is whole (or absent)
    if (tag / "predictions.h5").exists():
        with FeatureReader(tag / "predictions.h5") as r:
            assert r.complete
    if (tag / "results.h5").exists():
        read_results(tag / "results.h5")
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(outputs))
    summaries = hpatches_main(ARGS)
    ref_summaries, ref_results = reference
    assert summaries == ref_summaries
    results = read_results(tag / "results.h5")
    assert results["names"] == ref_results["names"]
    for key, values in ref_results.items():
        if key not in ("names", "scenes", "sweep"):
            np.testing.assert_array_equal(results[key], values)
    assert leftovers(tag.parent) == []
