"""Photometric presets: deterministic per seed, photometric only, clear errors."""

from __future__ import annotations

import pytest
import torch

from gluefactory.datasets.augmentations import PRESETS, Augmentation
from gluefactory.utils.errors import ConfigError


@pytest.fixture(scope="module")
def photo():
    skd = pytest.importorskip("skimage.data")
    return (
        torch.from_numpy(skd.astronaut()[::2, ::2].copy()).permute(2, 0, 1).float()
        / 255
    )


def test_identity_is_a_no_op(photo):
    assert Augmentation("identity")(photo, seed=3) is photo


@pytest.mark.parametrize("name", ["lg", "dark"])
def test_presets_deterministic_and_varied(photo, name):
    pytest.importorskip("kornia")
    aug = Augmentation(name, p=1.0)
    state = torch.random.get_rng_state()
    outs = [aug(photo, seed=s) for s in range(12)]
    assert torch.equal(torch.random.get_rng_state(), state)  # caller's RNG untouched
    assert torch.equal(aug(photo, seed=5), outs[5])
    for o in outs:
        assert o.shape == photo.shape and o.dtype == torch.float32
        assert o.min() >= 0 and o.max() <= 1 and torch.isfinite(o).all()
    changed = [not torch.allclose(o, photo, atol=1e-3) for o in outs]
    assert sum(changed) >= 3  # most transforms fire with probability 0.1-0.5
    distinct = {round(float(o.mean()), 4) for o in outs}
    assert len(distinct) >= 4
    if name == "lg":  # the lg preset only darkens or keeps brightness on average
        assert sum(float(o.mean()) <= float(photo.mean()) + 0.02 for o in outs) >= 8


def test_probability_zero_keeps_the_image(photo):
    pytest.importorskip("kornia")
    aug = Augmentation("lg", p=0.0)
    assert torch.equal(aug(photo, seed=1), photo)


def test_geometry_is_unchanged(photo):
    """Augmentations never move content: the image stays aligned with the original."""
    pytest.importorskip("kornia")
    aug = Augmentation("dark", p=1.0)
    for s in range(6):
        out = aug(photo, seed=s)
        g0 = photo.mean(0) - photo.mean()
        g1 = out.mean(0) - out.mean()
        shifted = torch.roll(g1, 3, dims=1)
        c = lambda a, b: float((a * b).sum() / (a.norm() * b.norm() + 1e-9))
        if g1.std() > 1e-3:
            assert c(g0, g1) > c(g0, shifted), s


def test_errors():
    with pytest.raises(ConfigError, match="Unknown photometric augmentation 'nope'"):
        Augmentation("nope")
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\]"):
        Augmentation("identity", p=2)
    assert set(PRESETS) == {"identity", "lg", "dark"}
