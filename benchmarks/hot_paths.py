"""Hot paths of a training step against the formulas they replaced, timed in one run.

    python -m benchmarks.hot_paths [--repeats 50]

- BGR -> RGB of a decoded 1024 x 768 image: ``cv2.cvtColor`` (``read_image``) vs the
  reversed-axis copy it replaced;
- (H, W, 3) uint8 -> (3, H, W) float of a 480 x 360 view: ``numpy_image_to_torch`` vs
  transposing first and dividing a float copy;
- the token-confidence loss of one layer on a 4 x 513 x 513 log-assignment:
  ``confidence_loss`` with ``best_assignments`` computed once vs four ``argmax``;
- the NLL of LightGlue's layers, forward and backward (bf16 autocast as in training):
  ``dual_softmax_nll`` (no dense log-assignment) vs ``weighted_nll`` of
  ``log_double_softmax`` with ``nll_weights``; the time of one layer (4 pairs of 512
  points, 96-D) and the peak memory of the 9 layers of the shipped architecture
  (2 pairs of 2048 points, 256-D, each in a fresh process); and the whole LightGlue
  loss of the 6-layer small model (every layer's NLL and confidence), against the
  previous release's dense computation;
- the homography ground truth of a batch (4 pairs of 512 points): labels from each
  point's nearest-neighbour indices and per-coordinate distances vs the dense
  (B, M, N) mutual-argmin masks and the (B, M, N, 2) difference tensor.

Each timed row checks that both give the same result before timing them (median of
``--repeats`` calls, milliseconds); the memory row is the growth of the maximum RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from gluefactory.geometry.gt_generation import (
    IGNORE,
    UNMATCHED,
    gt_matches_from_homography,
)
from gluefactory.geometry.homography import warp_points
from gluefactory.models.matchers.lightglue.layers import log_double_softmax
from gluefactory.models.utils.losses import (
    best_assignments,
    confidence_loss,
    dual_softmax,
    dual_softmax_nll,
    nll_targets,
    nll_weights,
    weighted_nll,
)
from gluefactory.utils.image import numpy_image_to_torch

from .common import child_json, median_ms, table


def old_to_torch(image: np.ndarray) -> torch.Tensor:
    return (
        torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255
    )


def old_confidence_loss(logits0, logits1, la_now, la_final):
    ok0 = la_now[:, :-1].argmax(-1) == la_final[:, :-1].argmax(-1)
    ok1 = la_now[:, :, :-1].argmax(-2) == la_final[:, :, :-1].argmax(-2)
    bce = F.binary_cross_entropy_with_logits
    return (
        bce(logits0, ok0.float(), reduction="none").mean(-1)
        + bce(logits1, ok1.float(), reduction="none").mean(-1)
    ) / 2


def old_homography_gt(k0, k1, H, th_pos: float = 3.0, th_neg: float = 3.0):
    """The previous release's homography labels (no padding): dense masks."""

    def sq(a, b):
        d = (a.unsqueeze(-2) - b.unsqueeze(-3)).square().sum(-1)
        return torch.where(torch.isnan(d), torch.inf, d)

    d0, d1 = sq(warp_points(k0, H), k1), sq(k0, warp_points(k1, torch.linalg.inv(H)))
    dist = torch.maximum(d0, d1)
    is0 = torch.zeros_like(dist, dtype=torch.bool).scatter_(
        -1, dist.argmin(-1, keepdim=True), True
    )
    is1 = torch.zeros_like(is0).scatter_(-2, dist.argmin(-2, keepdim=True), True)
    pos = is0 & is1 & (dist < th_pos**2)
    out = {"assignment": pos}
    for i, (p, neg) in enumerate(
        ((pos, d0.min(-1).values > th_neg**2), (pos.mT, d1.min(-2).values > th_neg**2))
    ):
        m = torch.where(neg, UNMATCHED, IGNORE)
        out[f"matches{i}"] = torch.where(p.any(-1), p.long().argmax(-1), m)
    return out


def gt_row(g: torch.Generator, repeats: int) -> tuple[str, float, float]:
    b, n = 4, 512
    k0 = torch.rand(b, n, 2, generator=g) * torch.tensor([480.0, 360.0])
    H = torch.eye(3).repeat(b, 1, 1)
    H[:, :2, 2] = torch.randn(b, 2, generator=g) * 5
    k1 = warp_points(k0, H)[:, torch.randperm(n, generator=g)]
    k1 = k1 + torch.randn(b, n, 2, generator=g) * 2
    new, old = gt_matches_from_homography(k0, k1, H), old_homography_gt(k0, k1, H)
    assert all(torch.equal(new[k], v) for k, v in old.items())
    return (
        "homography GT labels, 4 x 512 x 512",
        median_ms(lambda: old_homography_gt(k0, k1, H), repeats),
        median_ms(lambda: gt_matches_from_homography(k0, k1, H), repeats),
    )


def nll_problem(g: torch.Generator, b: int, n: int, d: int):
    """Random projections (leaves) and ground truth with 60 % of the points matched."""
    x = [torch.randn(b, n, d, generator=g).requires_grad_() for _ in range(2)]
    z = [torch.randn(b, n, 1, generator=g).requires_grad_() for _ in range(2)]
    gt0, gt1 = torch.full((b, n), -1), torch.full((b, n), -1)
    k = int(0.6 * n)
    for i in range(b):
        rows = torch.randperm(n, generator=g)[:k]
        cols = torch.randperm(n, generator=g)[:k]
        gt0[i, rows], gt1[i, cols] = cols, rows
    return x, z, {"gt_matches0": gt0, "gt_matches1": gt1}


def layer_nll(kind: str, x, z, data) -> torch.Tensor:
    """One layer's NLL (B,) under bf16 autocast, as in training: ``dense`` (the
    log-assignment, then weighted_nll) or ``sparse`` (dual_softmax_nll)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if kind == "sparse":
            b, n = x[0].shape[:2]
            return dual_softmax_nll(dual_softmax(*x, *z), nll_targets(data, b, n, n))[0]
        la = log_double_softmax(x[0] @ x[1].transpose(1, 2), *z)
        return weighted_nll(la, nll_weights(la, data))[0]


def nll_peak_mb(kind: str, layers: int = 9, b: int = 2, n: int = 2048) -> float:
    """Peak memory growth (MB) of ``layers`` layers' NLL, forward and one backward (deep
    supervision keeps every layer's graph until then), 256-D, in a fresh process."""
    args = ["--nll_memory", kind, str(layers), str(b), str(n)]
    return child_json("benchmarks.hot_paths", args)["peak_mb"]


def _nll_peak_here(kind: str, layers: int, b: int, n: int) -> float:
    g = torch.Generator().manual_seed(0)
    problems = [nll_problem(g, b, n, 256) for _ in range(layers)]
    base = _reset_peak_kb()
    sum(layer_nll(kind, *p).sum() for p in problems).backward()
    return (_peak_kb() - base) / 1024


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_kb() -> int:
    """Reset the peak RSS to the current RSS (Linux: clear_refs 5) and return it (kB):
    ru_maxrss alone keeps the peak of the process that forked this one, across exec."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kb("VmRSS")
    except OSError:  # not Linux: the max RSS since start (this process is fresh)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_kb() -> int:
    peak = _status_kb("VmHWM")
    return (
        peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )


def dense_lightglue_loss(lg, pred: dict, data: dict) -> torch.Tensor:
    """LightGlue's training loss as the previous release computed it: every layer's
    dense log-assignment, ``weighted_nll`` and ``confidence_loss`` on it. (B,)"""
    refs0, refs1 = pred["ref_descriptors0"], pred["ref_descriptors1"]
    n_layers = refs0.shape[1]
    best = best_assignments(pred["log_assignment"])
    total, conf = 0.0, 0.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for i in range(n_layers):
            la = lg.log_assignment[i](refs0[:, i], refs1[:, i])
            total = total + weighted_nll(la, nll_weights(la, data))[0]
            if i < n_layers - 1:
                token = lg.token_confidence[i]
                logits = [token.logits(r[:, i]).float() for r in (refs0, refs1)]
                conf = conf + confidence_loss(*logits, la, best) / (n_layers - 1)
    return total / n_layers + conf


def loss_row(g: torch.Generator, repeats: int) -> tuple[str, float, float]:
    """The whole LightGlue loss, forward + backward, of the small 6-layer model of
    benchmarks/learning.py (96-D, batch 4, 512 points), against the dense one."""
    from gluefactory.models import get_model
    from gluefactory.models.matchers.lightglue.layers import filter_matches

    b, n, d, n_layers = 4, 512, 96, 6
    lg = get_model("matchers.lightglue")(
        {"input_dim": 64, "descriptor_dim": d, "n_layers": n_layers, "num_heads": 1,
         "weights": None, "mp": "bfloat16"}
    ).train()  # fmt: skip
    _, _, data = nll_problem(g, b, n, 1)
    refs = [
        torch.randn(b, n_layers, n, d, generator=g).requires_grad_() for _ in range(2)
    ]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        la = lg.log_assignment[-1](refs[0][:, -1], refs[1][:, -1]).float()
    m0, m1, s0, s1 = filter_matches(la, 0.1)
    pred = {"log_assignment": la, "ref_descriptors0": refs[0], "matches0": m0,
            "ref_descriptors1": refs[1], "matches1": m1, "matching_scores0": s0,
            "matching_scores1": s1}  # fmt: skip
    inputs = {**pred, **data}

    def dense():
        dense_lightglue_loss(lg, pred, data).sum().backward()

    def sparse():
        lg.loss(pred, inputs)[0]["total"].sum().backward()

    got = lg.loss(pred, inputs)[0]["total"]
    assert torch.allclose(got, dense_lightglue_loss(lg, pred, data), rtol=1e-3)
    return (
        "LightGlue loss, 6 layers, fwd + bwd, 4 x 512 x 512",
        median_ms(dense, repeats),
        median_ms(sparse, repeats),
    )


def nll_rows(g: torch.Generator, repeats: int) -> list[tuple[str, float, float]]:
    """Time of one layer (4 x 512 x 512, 96-D), equal losses checked, and the peak
    memory of 9 layers at 2048 points."""
    x, z, data = nll_problem(g, 4, 512, 96)
    dense, sparse = layer_nll("dense", x, z, data), layer_nll("sparse", x, z, data)
    assert torch.allclose(dense, sparse, rtol=1e-2), (dense, sparse)

    def step(kind):
        return lambda: layer_nll(kind, x, z, data).sum().backward()

    return [
        (
            "NLL of one layer, fwd + bwd, 4 x 512 x 512",
            median_ms(step("dense"), repeats),
            median_ms(step("sparse"), repeats),
        ),
        (
            "peak memory (MB) of 9 layers' NLL, fwd + bwd, 2 x 2048 x 2048",
            nll_peak_mb("dense"),
            nll_peak_mb("sparse"),
        ),
    ]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--nll_memory", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.nll_memory:  # the child process of nll_peak_mb
        kind, *sizes = args.nll_memory
        print(json.dumps({"peak_mb": _nll_peak_here(kind, *map(int, sizes))}))
        return
    r = args.repeats
    rng = np.random.default_rng(0)
    rows = []

    bgr = rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    assert np.array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), bgr[..., ::-1])
    rows.append(
        (
            "BGR -> RGB, 1024 x 768",
            median_ms(lambda: bgr[..., ::-1].copy(), r),
            median_ms(lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), r),
        )
    )

    view = rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
    assert torch.equal(numpy_image_to_torch(view), old_to_torch(view))
    rows.append(
        (
            "uint8 image -> float tensor, 480 x 360",
            median_ms(lambda: old_to_torch(view), r),
            median_ms(lambda: numpy_image_to_torch(view), r),
        )
    )

    g = torch.Generator().manual_seed(0)
    b, n = 4, 512
    las = [
        log_double_softmax(
            torch.randn(b, n, n, generator=g) * 3,
            torch.randn(b, n, 1, generator=g),
            torch.randn(b, n, 1, generator=g),
        )
        for _ in range(2)
    ]
    l0, l1 = torch.randn(b, n, generator=g), torch.randn(b, n, generator=g)
    final = best_assignments(las[1])
    assert torch.allclose(
        confidence_loss(l0, l1, las[0], final), old_confidence_loss(l0, l1, *las)
    )
    rows.append(
        (
            "confidence loss, one layer, 4 x 513 x 513",
            median_ms(lambda: old_confidence_loss(l0, l1, *las), r),
            # the final layer's choices are shared by all layers: not timed per layer
            median_ms(lambda: confidence_loss(l0, l1, las[0], final), r),
        )
    )

    rows += nll_rows(g, r)
    rows.append(loss_row(g, max(5, r // 5)))
    rows.append(gt_row(g, r))

    rows = [(n, f"{b:.2f}", f"{a:.2f}", f"{a / b:.2f}") for n, b, a in rows]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(
        table(["operation (median ms, or MB)", "before", "now", "now / before"], rows)
    )


if __name__ == "__main__":
    main()
