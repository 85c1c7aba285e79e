"""Hot paths of a training step against the formulas they replaced, timed in one run.

    python benchmarks/hot_paths.py [--repeats 50]

- BGR -> RGB of a decoded 1024 x 768 image: ``cv2.cvtColor`` (``read_image``) vs the
  reversed-axis copy it replaced;
- (H, W, 3) uint8 -> (3, H, W) float of a 480 x 360 view: ``numpy_image_to_torch`` vs
  transposing first and dividing a float copy;
- the token-confidence loss of one layer on a 4 x 513 x 513 log-assignment:
  ``confidence_loss`` with ``best_assignments`` computed once vs four ``argmax``.

Each row checks that both give the same result before timing them (median of
``--repeats`` calls, milliseconds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gluefactory.models.matchers.lightglue.layers import log_double_softmax  # noqa: E402
from gluefactory.models.utils.losses import (  # noqa: E402
    best_assignments,
    confidence_loss,
)
from gluefactory.utils.image import numpy_image_to_torch  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=50)
    r = p.parse_args(argv).repeats
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

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median ms")
    print()
    print("| operation | before (ms) | now (ms) | now / before |")
    print("|---|---|---|---|")
    for name, before, now in rows:
        print(f"| {name} | {before:.2f} | {now:.2f} | {now / before:.2f} |")


if __name__ == "__main__":
    main()
