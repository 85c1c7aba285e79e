"""Fixtures shared by the extractor tests: real images, weights, nearest neighbours."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gluefactory.weights import WeightsError, get_weights_path


@pytest.fixture(scope="session")
def real_images(homography_pair, motorcycle_pair) -> dict[str, torch.Tensor]:
    """The four real photographs of the two pair fixtures, by label, (1, 3, H, W)."""
    return {
        "homography0": homography_pair["image0"],
        "homography1": homography_pair["image1"],
        "motorcycle0": motorcycle_pair["image0"],
        "motorcycle1": motorcycle_pair["image1"],
    }


@pytest.fixture(scope="session")
def real_crop(homography_pair) -> torch.Tensor:
    """A 240 x 320 crop of a real photograph: small, so that every model is fast."""
    return homography_pair["image0"][..., 80:320, 100:420].contiguous()


@pytest.fixture(scope="session")
def weights_path() -> Callable[[str], Path]:
    """``weights_path(name)``: the local file of registered weights, or skip the test
    when the weights manager cannot obtain it."""

    def get(name: str) -> Path:
        try:
            return get_weights_path(name)
        except WeightsError as e:
            pytest.skip(f"weights {name!r} unavailable: {e}")

    return get


@pytest.fixture
def offline_weights(tmp_path, monkeypatch) -> Path:
    """An empty weights cache and no downloads: building a model with official
    weights must fail with a WeightsError."""
    monkeypatch.setenv("GLUEFACTORY_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    return tmp_path


def _nearest(a: torch.Tensor, b: torch.Tensor):
    """For each row of a (N, 2), distance to and index of the nearest row of b."""
    d = torch.cdist(a.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist")
    return d.min(1)


@pytest.fixture(scope="session")
def nearest():
    """``nearest(a, b)``: (distances, indices) of each row of a to its nearest in b."""
    return _nearest
