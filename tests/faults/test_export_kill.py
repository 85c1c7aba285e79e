"""The two feature exports SIGKILLed while they write: what they leave under a final
name is whole, and a rerun ends with the features of an uninterrupted run and no
temporary left (the evaluation's kill tests are in test_eval_kill.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fault_injection import leftovers

from gluefactory.formats.features import FeatureReader
from gluefactory.scripts import export_local_features, export_megadepth

HERE = Path(__file__).resolve().parent
PHOTOS = ("coffee", "astronaut", "chelsea", "rocket", "camera", "immunohistochemistry")
LOCAL = [
    "--method", "xfeat", "--images", "photos", "model.max_num_keypoints=256",
    "data.preprocessing.resize=480",
]  # fmt: skip
MEGADEPTH = [
    "--method", "xfeat", "data.data_dir=megadepth", "data.preprocessing.resize=320",
    "model.max_num_keypoints=256",
]  # fmt: skip
SCRIPTS = {
    "local": (export_local_features, LOCAL, "exports/photos-r480_XFeat-k256.h5"),
    "megadepth": (
        export_megadepth,
        MEGADEPTH,
        "exports/megadepth-undist-depth-r320_XFeat-k256/motorcycle.h5",
    ),  # fmt: skip
}


def _build_data(root: Path, motorcycle_pair) -> Path:
    """Photos for the folder export and a one-scene MegaDepth for the scene export."""
    import posed_motorcycle

    from gluefactory.datasets.sources.megadepth_convert import convert

    skd = pytest.importorskip("skimage.data")
    (root / "photos").mkdir(parents=True)
    for name in PHOTOS:
        img = getattr(skd, name)()
        img = img if img.ndim == 3 else np.stack([img] * 3, -1)
        cv2.imwrite(str(root / "photos" / f"{name}.png"), img[..., ::-1])
    posed_motorcycle.write_posed_motorcycle(root / "posed", motorcycle_pair)
    convert(root / "posed", root / "megadepth", stride=8)
    return root


def _features(path: Path) -> dict:
    with FeatureReader(path) as r:
        assert r.complete
        return {n: r.read(n) for n in r.names()}


def _export(script: str, root: Path, kill_after: float | None = None) -> tuple:
    """Run one export in a process; with ``kill_after``, SIGKILL it that many seconds
    after its feature file's temporary appears. Returns (exit code, seconds the
    temporary existed, or until the kill)."""
    module, args, out = SCRIPTS[script]
    path = root / out
    env = dict(os.environ, GLUEFACTORY_DATA=str(root), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(HERE.parents[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", module.__name__, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=HERE.parents[1],
    )
    try:
        deadline = time.time() + 120
        while not any(path.parent.glob(f".{path.name}.*")):
            assert proc.poll() is None and time.time() < deadline, "no temporary seen"
            time.sleep(0.002)
        start = time.time()
        if kill_after is None:
            proc.wait(timeout=120)
        else:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        return proc.returncode, time.time() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, motorcycle_pair):
    """The data, and for each script the features of an uninterrupted run and how long
    its temporary existed."""
    root = _build_data(tmp_path_factory.mktemp("data"), motorcycle_pair)
    runs = {}
    for script, (_, _, out) in SCRIPTS.items():
        code, seconds = _export(script, root)
        assert code == 0
        runs[script] = _features(root / out), seconds
        (root / out).unlink()
    return root, runs


def _assert_same(found: dict, expected: dict) -> None:
    assert sorted(found) == sorted(expected)
    for name, feats in expected.items():
        assert sorted(found[name]) == sorted(feats)
        for key, value in feats.items():
            np.testing.assert_array_equal(found[name][key], value, err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_sigkill_while_exporting_then_rerun_equals_uninterrupted(
    script, seed, reference
):
    root, runs = reference
    expected, seconds = runs[script]
    path = root / SCRIPTS[script][2]
    # a random point of the write; earlier if the export outran it (a faster moment)
    delay = random.Random(seed).uniform(0.05, 0.7) * seconds
    for _ in range(4):
        code, _ = _export(script, root, kill_after=delay)
        if code == -signal.SIGKILL and not path.exists():
            break
        path.unlink(missing_ok=True)
        delay /= 3
    else:
        pytest.fail(f"{script} was never killed while writing ({seconds:.2f} s write)")
    assert any(path.parent.glob(f".{path.name}.*"))  # the killed run's temporary
    assert _export(script, root)[0] == 0  # removes the stale temporary, exports whole
    _assert_same(_features(path), expected)
    assert leftovers(root) == []
    path.unlink()
