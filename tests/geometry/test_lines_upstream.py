"""Parity of the line ground truth from a homography with upstream glue-factory's
``gt_line_matches_from_homography`` (GlueStick's labels), on the same lines and the
same homographies: identical labels (docs/lines.md, line ground truth).

``GLUEFACTORY_UPSTREAM=DIR python -m pytest tests/geometry/test_lines_upstream.py -s``
(``tests/upstream.py``); skipped without it. Two kinds of input: LSD lines of
photographs and of their warps (real lines, 250 per view), and random segments with
warped, noisy, partly hidden copies (lines leaving the image, near-threshold overlaps).
"""

from __future__ import annotations

import pytest
import torch

from gluefactory.geometry.gt_generation import gt_line_matches_from_homography
from gluefactory.geometry.homography import sample_homography_corners, warp_image
from gluefactory.models.lines.lsd import detect_segments
from tests.upstream import needs_upstream, upstream_module

pytestmark = needs_upstream

SIZE = (640, 480)  # (w, h)
CONF = dict(num_samples=50, th_dist=5.0, th_overlap=0.2, min_visible=0.5)


def photo_pair(name: str, seed: int):
    """A scikit-image photograph (grey, 640 x 480), its warp by a random homography
    and their 250 best LSD lines: (lines0 (L0, 2, 2), lines1 (L1, 2, 2), H (3, 3))."""
    skd = pytest.importorskip("skimage.data")
    img = torch.from_numpy(getattr(skd, name)()).float()
    img = img.mean(-1) if img.dim() == 3 else img
    img = torch.nn.functional.interpolate(img[None, None], SIZE[::-1], mode="area")[0]
    H, _ = sample_homography_corners(SIZE, SIZE, difficulty=0.5, max_angle=30, rng=seed)
    H = torch.from_numpy(H).float()
    warped = warp_image(img, H)
    lines = [
        torch.from_numpy(detect_segments(i[0].numpy(), "opencv", 15, 250)[0]).float()
        for i in (img, warped)
    ]
    return lines[0], lines[1], H


def random_pair(g: torch.Generator, n: int = 120):
    """Random segments, their warps (with 1 px noise, every third one shortened) and
    random distractors; some warps leave the image."""
    w, h = SIZE
    a = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    d = torch.randn(n, 2, generator=g) * 60
    lines0 = torch.stack([a, a + d], 1)
    H = torch.eye(3) + 0.05 * torch.randn(3, 3, generator=g) * torch.tensor(
        [[1, 1, 100], [1, 1, 100], [1e-3, 1e-3, 0]]
    )
    pts = torch.cat([lines0.reshape(-1, 2), torch.ones(2 * n, 1)], -1) @ H.T
    lines1 = (pts[:, :2] / pts[:, 2:]).reshape(n, 2, 2)
    lines1 = lines1 + torch.randn(lines1.shape, generator=g)
    t = torch.rand(n, 1, generator=g)
    short = torch.arange(n) % 3 == 0
    lines1[short, 1] = lines1[short, 0] + t[short] * (
        lines1[short, 1] - lines1[short, 0]
    )
    extra = torch.rand(n // 2, 2, 2, generator=g) * torch.tensor([w, h])
    lines1 = torch.cat([lines1, extra])[torch.randperm(n + n // 2, generator=g)]
    return lines0, lines1, H


def compare(upstream, lines0, lines1, H, label: str) -> int:
    """Both labellings of one pair; prints the differences, returns their number."""
    w, h = SIZE
    # upstream clamps endpoints to [0, w - 1] x [0, h - 1] (bending segments that leave
    # the image); ours takes segments as given: the inputs are taken inside that box
    box = torch.tensor([w - 1.0, h - 1.0])
    lines0, lines1 = (torch.minimum(x.clamp_min(0), box) for x in (lines0, lines1))
    l0, l1, Hb = lines0[None], lines1[None], H[None]
    pos, m0_ref, m1_ref = upstream.gt_line_matches_from_homography(
        l0, l1, torch.ones(l0.shape[:2], dtype=torch.bool),
        torch.ones(l1.shape[:2], dtype=torch.bool), (1, h, w), (1, h, w), Hb,
        CONF["num_samples"], CONF["th_dist"], CONF["th_overlap"], CONF["min_visible"],
    )  # fmt: skip
    ours = gt_line_matches_from_homography(l0, l1, Hb, torch.tensor(SIZE),
                                           torch.tensor(SIZE), **CONF)  # fmt: skip
    d0 = int((ours["line_matches0"] != m0_ref).sum())
    d1 = int((ours["line_matches1"] != m1_ref).sum())
    da = int((ours["line_assignment"] != pos).sum())
    print(
        f"{label}: {l0.shape[1]} x {l1.shape[1]} lines, upstream "
        f"{int((m0_ref >= 0).sum())} matches, ours {int((ours['line_matches0'] >= 0).sum())}; "
        f"labels differing: {d0} (view 0), {d1} (view 1), assignment {da}"
    )
    return d0 + d1 + da


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket", "brick"])
def test_photo_lines_equal_upstream(name):
    upstream = upstream_module("geometry.gt_generation")
    assert compare(upstream, *photo_pair(name, seed=len(name)), f"{name} + warp") == 0


@pytest.mark.parametrize("seed", range(4))
def test_random_lines_equal_upstream(seed):
    upstream = upstream_module("geometry.gt_generation")
    g = torch.Generator().manual_seed(seed)
    assert compare(upstream, *random_pair(g), f"random {seed}") == 0
