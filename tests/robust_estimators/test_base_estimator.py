"""The template method shared by every robust estimator (BaseEstimator._forward)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from gluefactory.geometry.wrappers import Camera, Pose
from gluefactory.robust_estimators import get_estimator, list_estimators
from gluefactory.robust_estimators.base_estimator import (
    BaseEstimator,
    EstimationFailure,
)
from gluefactory.utils.conf import ConfigError


def _points(n=20, seed=0):
    rng = np.random.default_rng(seed)
    p0 = torch.from_numpy(rng.uniform(0, 100, (n, 2)))
    return p0, p0 + 3.0  # a pure translation


class Fake(BaseEstimator):
    """Returns what it is told to, records the calls."""

    default_conf = {"behaviour": "ok"}
    library_call = "fake.estimate"
    library_errors = (ArithmeticError,)

    def _init(self, conf):
        self.calls = []

    def _estimate(self, p0, p1, *cameras):
        self.calls.append((p0.shape, len(cameras)))
        b = self.conf.behaviour
        if b == "fail":
            raise EstimationFailure("nothing found")
        if b == "library":
            raise ZeroDivisionError("boom")
        if b == "bug":
            raise KeyError("a bug is not a failure")
        if b == "nan":
            return np.full((3, 3), np.nan), np.ones(len(p0), bool)
        H = np.eye(3) * 2.0  # normalised by the template
        H[:2, 2] = 6.0
        return H, np.ones(len(p0), bool)


class FakePose(Fake):
    kind = "relative_pose"

    def _estimate(self, p0, p1, *cameras):
        self.calls.append((p0.shape, len(cameras)))
        return np.c_[np.eye(3), [1.0, 0, 0]], np.ones(len(p0), bool)


def test_success_is_normalised_and_packed():
    p0, p1 = _points()
    out = Fake()({"m_kpts0": p0, "m_kpts1": p1})
    assert out["success"] and out["inliers"].all()
    torch.testing.assert_close(out["M_0to1"][2, 2], torch.tensor(1.0, dtype=p0.dtype))
    torch.testing.assert_close(out["M_0to1"][0, 2], torch.tensor(3.0, dtype=p0.dtype))


@pytest.mark.parametrize(
    "behaviour,reason",
    [
        ("fail", "nothing found"),
        ("library", "fake.estimate raised: boom"),
        ("nan", "no finite model"),
    ],
)
def test_failures_are_reported_not_raised(behaviour, reason, caplog):
    p0, p1 = _points()
    with caplog.at_level(logging.DEBUG, "gluefactory.robust_estimators.common"):
        out = Fake({"behaviour": behaviour})({"m_kpts0": p0, "m_kpts1": p1})
    assert out["success"] is False and not out["inliers"].any()
    torch.testing.assert_close(out["M_0to1"], torch.eye(3, dtype=p0.dtype))
    assert reason in caplog.text


def test_other_exceptions_are_bugs_and_propagate():
    p0, p1 = _points()
    with pytest.raises(KeyError):
        Fake({"behaviour": "bug"})({"m_kpts0": p0, "m_kpts1": p1})


def test_degenerate_input_never_reaches_the_library():
    est = Fake()
    p0, p1 = _points(3)
    assert est({"m_kpts0": p0, "m_kpts1": p1})["success"] is False
    line = torch.stack([torch.arange(10.0), torch.arange(10.0)], -1)
    assert est({"m_kpts0": line, "m_kpts1": line})["success"] is False
    assert est.calls == []


def test_relative_pose_gets_the_cameras_and_returns_a_pose():
    p0, p1 = _points()
    cam = Camera.from_calibration_matrix(
        torch.tensor([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]]).double(), (100, 100)
    )
    est = FakePose()
    out = est({"m_kpts0": p0, "m_kpts1": p1, "camera0": cam, "camera1": cam})
    assert est.calls == [((20, 2), 2)]
    assert out["success"] and isinstance(out["M_0to1"], Pose)
    failed = FakePose()(
        {"m_kpts0": p0[:4], "m_kpts1": p1[:4], "camera0": cam, "camera1": cam}
    )
    assert failed["success"] is False and isinstance(failed["M_0to1"], Pose)


def test_adapters_only_implement_estimate():
    """One skeleton: no library adapter repeats _forward (the DLT is not robust)."""
    for kind in ("homography", "relative_pose"):
        for name in list_estimators(kind):
            cls = get_estimator(kind, name)
            if name == "dlt":
                continue
            assert "_forward" not in vars(cls), cls
            assert "_estimate" in vars(cls), cls
            assert cls.kind == kind


def test_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="relative_pose"):
        get_estimator("fundamental", "opencv")
