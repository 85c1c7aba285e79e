"""Feature files: written whole or not at all, read back as written."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from gluefactory.formats.features import (
    FeatureReader,
    FeatureWriter,
    export_hash_of,
    is_complete,
)
from gluefactory.utils.errors import DataError


def test_round_trip(tmp_path):
    path = tmp_path / "f.h5"
    kpts = torch.rand(5, 2) * 100
    with FeatureWriter(path, "abc") as w:
        w.write("scene/a.jpg", {"keypoints": kpts, "scores": torch.rand(5).half()})
        w.write("b.jpg", {"keypoints": np.zeros((0, 2), np.float32)})
    assert is_complete(path, "abc", ["scene/a.jpg", "b.jpg"])
    assert not is_complete(path, "abc", ["c.jpg"])
    assert not is_complete(path, "other")
    assert export_hash_of(path) == "abc"
    with FeatureReader(path) as r:
        assert "scene/a.jpg" in r and "c.jpg" not in r
        assert r.names() == ["b.jpg", "scene/a.jpg"]
        got = r.read("scene/a.jpg")
        torch.testing.assert_close(got["keypoints"], kpts)
        assert got["scores"].dtype == torch.float32  # half widened when written
        assert r.read("b.jpg")["keypoints"].shape == (0, 2)
        with pytest.raises(DataError, match="no entry 'c.jpg'"):
            r.read("c.jpg")
    assert [p.name for p in tmp_path.iterdir()] == ["f.h5"]


def test_nothing_is_published_on_error(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureWriter(path, "v1") as w:
        w.write("a", {"x": np.ones(3)})
    with pytest.raises(DataError, match="Two entries are named 'a'"):
        with FeatureWriter(path, "v2") as w:
            w.write("a", {"x": np.ones(3)})
            w.write("a", {"x": np.ones(3)})
    assert export_hash_of(path) == "v1"  # the previous file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["f.h5"]


def test_incomplete_or_foreign_files_are_not_trusted(tmp_path):
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.attrs["export_hash"] = "abc"  # no "complete": a killed writer
    assert not is_complete(tmp_path / "g.h5", "abc")
    assert export_hash_of(tmp_path / "g.h5") is None
    (tmp_path / "h.h5").write_text("not hdf5")
    assert not is_complete(tmp_path / "h.h5", "abc")
    assert export_hash_of(tmp_path / "h.h5") is None
    assert not is_complete(tmp_path / "none.h5", "abc")
