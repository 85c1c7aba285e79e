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
    hpatches.write_homography(tmp_path / "H_1_4", 2 * H)  # stored with H[2, 2] = 1
    np.testing.assert_allclose(hpatches.read_homography(tmp_path / "H_1_4"), H, 1e-12)
    with pytest.raises(ValueError, match="3 x 3"):
        hpatches.write_homography(tmp_path / "H_1_3", np.eye(2))
    assert not (tmp_path / "H_1_3").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 0 0 0 1 0 0 0", "H must hold 9 numbers (a 3 x 3 matrix), got 8."),
        ("1 0 0 0 1 0 0 0 nan", "H, line 1, value 9: 'nan' is not finite"),
        ("1 0 0\n0 -inf 0\n0 0 1\n", "H, line 2, value 5: '-inf' is not finite"),
        ("1 0 0 2 0 0 0 0 1", "singular"),
        ("1 0 x\n0 1 0\n0 0 1", "H, line 1, value 3: 'x' is not a number."),
    ],
)
def test_bad_homography_files(tmp_path, text, message):
    (tmp_path / "H").write_text(text)
    with pytest.raises(DataError) as e:
        hpatches.read_homography(tmp_path / "H")
    assert message in str(e.value) and str(tmp_path / "H") in str(e.value)


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


def test_reads_a_builtin_sequence(tmp_path):
    """A sequence of the built-in generator is complete, its homographies read back,
    and this module's writer gives the generator's bytes."""
    pytest.importorskip("skimage.data")
    from gluefactory.datasets.sources import builtin_hpatches

    builtin_hpatches.build(tmp_path, 0, only=["v_coffee"])
    seq = tmp_path / "v_coffee"
    assert hpatches.missing_files(seq) == []
    for k in range(2, hpatches.NUM_IMAGES + 1):
        H = hpatches.read_homography(seq / hpatches.homography_name(k))
        assert H[2, 2] == 1 and not np.allclose(H, np.eye(3))  # a viewpoint change
        hpatches.write_homography(tmp_path / "ours", H * 3.0)
        assert (tmp_path / "ours").read_bytes() == (
            seq / hpatches.homography_name(k)
        ).read_bytes()
