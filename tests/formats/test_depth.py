"""Depth files: both encodings round-trip, one key, one unknown-depth rule, one resize."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from gluefactory.formats.depth import (
    DEPTH_KEY,
    clean_depth,
    read_depth,
    resize_depth,
    write_depth,
)
from gluefactory.utils.errors import DataError


def _depth(h=12, w=16, seed=0):
    d = np.random.default_rng(seed).uniform(0.5, 40, (h, w)).astype(np.float32)
    d[0, :3] = 0  # unknown
    return d


def test_h5_round_trip_is_exact_and_deterministic(tmp_path):
    d = _depth()
    write_depth(tmp_path / "a.h5", d)
    np.testing.assert_array_equal(read_depth(tmp_path / "a.h5", (16, 12)), d)
    write_depth(tmp_path / "b.h5", d)  # no timestamps: same map, same bytes
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5"]


def test_png_round_trip_to_a_256th(tmp_path):
    d = _depth()
    write_depth(tmp_path / "a.png", d)
    back = read_depth(tmp_path / "a.png")
    np.testing.assert_allclose(back, d, atol=0.5 / 256 + 1e-6)
    assert np.all(back[0, :3] == 0)
    with pytest.raises(DataError, match="16-bit PNG"):
        write_depth(tmp_path / "far.png", np.full((2, 2), 300.0))
    assert not (tmp_path / "far.png").exists()


def test_unknown_depth_is_zero_whatever_the_file_holds(tmp_path):
    raw = np.array([[1.0, -2.0], [np.nan, np.inf]], np.float32)
    np.testing.assert_array_equal(clean_depth(raw), [[1, 0], [0, 0]])
    with h5py.File(tmp_path / "raw.h5", "w") as f:
        f[DEPTH_KEY] = raw
    np.testing.assert_array_equal(read_depth(tmp_path / "raw.h5"), [[1, 0], [0, 0]])


def test_one_key_and_clear_errors(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["z"] = np.ones((2, 2), np.float32)
    with pytest.raises(DataError, match="has no dataset 'depth'"):
        read_depth(tmp_path / "other.h5")  # never the first key found
    write_depth(tmp_path / "a.h5", _depth())
    with pytest.raises(DataError, match="a.h5 is 16x12 but its image is 8x8"):
        read_depth(tmp_path / "a.h5", (8, 8))
    with pytest.raises(DataError, match="not found"):
        read_depth(tmp_path / "none.h5")
    with pytest.raises(DataError, match="unknown format"):
        read_depth(tmp_path / "a.exr")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="corrupt"):
        read_depth(tmp_path / "bad.png")


def test_resize_is_nearest_exact():
    d = torch.arange(16, dtype=torch.float32).reshape(4, 4)
    up = resize_depth(d, (8, 8))
    assert torch.equal(up, d.repeat_interleave(2, 0).repeat_interleave(2, 1))
    down = resize_depth(d, (2, 2))  # the pixel under each output centre: no mixing
    assert torch.equal(down, d[1::2, 1::2])
    assert resize_depth(d, (4, 4)) is d
