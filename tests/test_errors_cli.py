"""User errors through the real command line: exit code 2 and one message, no traceback.

Each case runs ``python -m gluefactory.demo`` in a subprocess (this worktree on
``PYTHONPATH``, offline) with a config mistake that is found before any image is read or
weights are loaded, so each takes only the interpreter's start-up time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "GLUEFACTORY_OFFLINE": "1",
        "GLUEFACTORY_OUTPUTS": str(tmp_path / "outputs"),
        "OMP_NUM_THREADS": "1",
        **env,
    }
    environ.pop("GLUEFACTORY_DEBUG", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=120,
    )


def assert_one_message(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[str]:
    cv2 = pytest.importorskip("cv2")
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(2):
        img = np.random.default_rng(i).integers(0, 255, (64, 80, 3), dtype=np.uint8)
        path = folder / f"im{i}.png"
        cv2.imwrite(str(path), img)
        paths.append(str(path))
    return paths


DEMO = ["-m", "gluefactory.demo"]


def test_demo_rejects_top_level_typos(tmp_path):
    # both typos in one run (one message listing both): each run costs a start-up
    proc = run_cli([*DEMO, "preprocesing.resize=100", "modle.matcher.x=0.9"], tmp_path)
    assert_one_message(
        proc,
        "'preprocesing'. Did you mean 'preprocessing'",
        "'modle'. Did you mean 'model'",
    )


def test_demo_rejects_estimator_typo_without_ground_truth(tmp_path, image_files):
    # with --images there is no pose to estimate, but the estimator is still checked
    proc = run_cli(
        [*DEMO, "--images", *image_files, "estimator.ransac_thr=2"], tmp_path
    )
    assert_one_message(proc, "in estimator:", "'ransac_thr'", "'ransac_th'")


def test_demo_without_matcher_says_what_it_needs(tmp_path):
    # GLUEFACTORY_DEBUG=0 means off (it used to turn tracebacks on)
    proc = run_cli([*DEMO, "model.matcher=null"], tmp_path, GLUEFACTORY_DEBUG="0")
    err = assert_one_message(proc, "model.matcher.name", "matchers.lightglue")
    assert "'matches0'" not in err


def test_debug_1_shows_the_traceback(tmp_path):
    proc = run_cli([*DEMO, "modle.x=1"], tmp_path, GLUEFACTORY_DEBUG="1")
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_a_bug_keeps_its_traceback_and_exit_1(tmp_path):
    code = (
        "from gluefactory.utils.cli import main_wrapper\n"
        "main_wrapper(lambda: {}['matches0'])()\n"
    )
    proc = run_cli(["-c", code], tmp_path)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "KeyError: 'matches0'" in proc.stderr
    assert "error: " not in proc.stderr
