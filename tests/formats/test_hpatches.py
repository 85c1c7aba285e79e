"""HPatches sequence folders: homography files round-trip, layout checks."""

from __future__ import annotations

import numpy as np
import pytest

from gluefactory.formats import hpatches
from gluefactory.utils.errors import DataError


def test_homography_round_trip(tmp_path):
    H = np.array([[1.1, 0.02, -3.5], [0.01, 0.95, 7.25], [1e-4, -2e-5, 1.0]])
    hpatches.write_homography(tmp_path / "H_1_2", H)
    np.testing.assert_allclose(hpatches.read_homography(tmp_path / "H_1_2"), H, 1e-12)
    with pytest.raises(ValueError, match="3 x 3"):
        hpatches.write_homography(tmp_path / "H_1_3", np.eye(2))
    assert not (tmp_path / "H_1_3").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 0 0 0 1 0 0 0", "9 finite numbers"),
        ("1 0 0 0 1 0 0 0 nan", "9 finite numbers"),
        ("1 0 0 2 0 0 0 0 1", "singular"),
        ("1 0 x 0 1 0 0 0 1", "Cannot read"),
    ],
)
def test_bad_homography_files(tmp_path, text, message):
    (tmp_path / "H").write_text(text)
    with pytest.raises(DataError, match=message):
        hpatches.read_homography(tmp_path / "H")


def test_layout(tmp_path):
    assert hpatches.sequence_files()[:2] == ["1.ppm", "2.ppm"]
    assert hpatches.sequence_files()[-1] == "H_1_6"
    seq = tmp_path / "v_x"
    seq.mkdir()
    for f in hpatches.sequence_files():
        (seq / f).write_text("")
    assert hpatches.missing_files(seq) == []
    (seq / "H_1_4").unlink()
    assert hpatches.missing_files(seq) == ["H_1_4"]


def test_reads_the_builtin_generator_files(tmp_path):
    """builtin_hpatches writes H_1_k with its own writer: the reader reads it back."""
    pytest.importorskip("skimage.data")
    from gluefactory.datasets.sources import builtin_hpatches

    H = builtin_hpatches.plane_homography(320, 240, 0.4, 0.3, 0.2, 1.2)
    builtin_hpatches.write_homography(tmp_path / "H_1_2", H)
    np.testing.assert_allclose(
        hpatches.read_homography(tmp_path / "H_1_2"), H, rtol=1e-12
    )
    hpatches.write_homography(tmp_path / "ours", H)
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "H_1_2").read_bytes()
