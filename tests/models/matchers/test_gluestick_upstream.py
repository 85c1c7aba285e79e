"""Parity of ``matchers.gluestick`` with upstream glue-factory's GlueStick, on one random
state dict and the same wireframe-shaped inputs (docs/lines.md).

Needs upstream's source tree: ``GLUEFACTORY_UPSTREAM=DIR python -m pytest
tests/models/matchers/test_gluestick_upstream.py -s``, DIR a checkout of
github.com/cvg/glue-factory (e.g. the ``glue-factory`` folder of ``build_peer.sh``);
skipped without it (``tests/upstream.py``). Upstream's GlueStick module needs only
torch and omegaconf: it is loaded under a private package name with our torch. Matches
must be identical and scores agree to 1e-4 (float32) / 1e-9 (float64).
"""

from __future__ import annotations

import pytest
import torch

from gluefactory.models.matchers.gluestick import GlueStick
from tests.upstream import needs_upstream, upstream_module

pytestmark = needs_upstream


def wireframe(g: torch.Generator, b: int, n: int, n_lines: int, size=(640, 480)):
    """Inputs shaped as the wireframe's: junctions first among the keypoints, each
    line joining two junctions (indices < 2 L, as upstream's line matching assumes)."""
    w, h = size  # a noisy copy stays inside the image: 4 px margins
    kpts = 4 + torch.rand(b, n, 2, generator=g) * torch.tensor([w - 8.0, h - 8.0])
    n_junc = min(n, 2 * n_lines)
    a = torch.randint(0, n_junc, (b, n_lines), generator=g)
    c = (a + torch.randint(1, n_junc, (b, n_lines), generator=g)) % n_junc
    junc = torch.stack([a, c], -1)
    lines = kpts.gather(1, junc.flatten(1)[..., None].expand(-1, -1, 2))
    return {
        "keypoints": kpts,
        "descriptors": torch.nn.functional.normalize(
            torch.randn(b, n, 256, generator=g), dim=-1
        ),
        "keypoint_scores": torch.rand(b, n, generator=g),
        "lines": lines.view(b, n_lines, 2, 2),
        "line_scores": torch.rand(b, n_lines, generator=g),
        "lines_junc_idx": junc,
    }


def random_state(model: torch.nn.Module, g: torch.Generator) -> dict:
    state = {}
    for k, v in model.state_dict().items():
        if k.endswith("running_mean"):
            v = 0.1 * torch.randn(v.shape, generator=g)
        elif k.endswith("running_var"):
            v = 0.5 + torch.rand(v.shape, generator=g)
        elif k.endswith("bin_score"):
            v = torch.tensor(0.5 + torch.rand((), generator=g).item())
        state[k] = v.clone()
    return state


def compare(upstream_cls, dtype: torch.dtype, seed: int = 0) -> bool:
    """Both models on one random state dict and the same inputs; prints the largest
    differences, True when matches are identical and scores agree to the tolerance."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the models' initial weights: a reproducible run
    conf = {"filter_threshold": 0.0}  # random weights: low scores; mutual matches
    ref = upstream_cls(conf).eval()
    ours = GlueStick(conf).eval()
    state = random_state(ref, g)
    ref.load_state_dict(state)
    ours.load_weights(state)
    ref, ours = ref.to(dtype), ours.to(dtype)
    data = {"view0": {}, "view1": {}}
    view0 = wireframe(g, 2, 400, 90)
    view1 = {k: v.clone() for k, v in view0.items()}  # a noisy copy: many matches
    view1["keypoints"] += torch.randn(view1["keypoints"].shape, generator=g)
    view1["descriptors"] += 0.02 * torch.randn(view1["descriptors"].shape, generator=g)
    for i, view in enumerate([view0, view1]):
        for k, v in view.items():
            data[f"{k}{i}"] = v.to(dtype) if v.is_floating_point() else v
        data[f"view{i}"]["image_size"] = torch.tensor([[640.0, 480.0]] * 2, dtype=dtype)
    with torch.no_grad():
        a, b = ref(data), ours(data)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    ok = True
    for prefix in ("", "line_"):
        for i in (0, 1):
            same = torch.equal(a[f"{prefix}matches{i}"], b[f"{prefix}matches{i}"])
            n = int((b[f"{prefix}matches{i}"] >= 0).sum())
            key = (
                "match_scores" if f"{prefix}match_scores{i}" in a else "matching_scores"
            )
            diff = (
                (a[f"{prefix}{key}{i}"] - b[f"{prefix}matching_scores{i}"]).abs().max()
            )
            print(
                f"{dtype}: {prefix or 'point_'}matches{i}: identical={same} ({n} matches), "
                f"max score difference {diff.item():.2e}"
            )
            ok &= same and diff.item() <= tol
        la_a, la_b = a[f"{prefix}log_assignment"], b[f"{prefix}log_assignment"]
        diff = (la_a - la_b).abs().max().item()
        print(f"{dtype}: {prefix}log_assignment max difference {diff:.2e}")
        ok &= diff <= tol * 10
    return ok


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_and_scores_equal_upstream(dtype):
    assert compare(upstream_module("models.matchers.gluestick").GlueStick, dtype)
