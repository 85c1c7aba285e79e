"""The per-pair record of an evaluation: what the metrics of one image pair need.

A :class:`PairRecord` is built once per pair from the evaluation loader's sample and the
stored predictions (:meth:`PairRecord.from_batch`). The estimator-free metrics take it,
the per-match errors of the benchmark's correctness rule are stored in it once
(``match_error``), and it is sent as it is to the worker processes of the robust
estimation and read back by the figures. Every field is a small CPU float64 tensor (or
None): no image, no depth map, nothing a worker does not need.

Keypoints are in the pixels of the ground truth, i.e. of the evaluation loader's
images: the ORIGINAL images, unless a protocol evaluates at a fixed size (HPatches: the
480 px images its homographies refer to). Library convention: pixel centres at +0.5.

Geometry is optional so that a record serves every benchmark: ``H_0to1`` (homography
benchmarks) or ``T_0to1`` with ``camera0`` / ``camera1`` (posed benchmarks). Lines are
optional the same way: when the predictions hold ``lines0/1`` and ``line_matches0``, the
record holds the matched segments (``lines0`` / ``lines1``, the detector's
``orig_lines`` when exported: what the point+line estimator fits), their indices and
the number of lines; the benchmark adds the line ground truth ``gt_line_matches0``
(:meth:`gluefactory.eval.pipeline.EvalPipeline.line_ground_truth`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..geometry.wrappers import Camera, Pose
from ..utils.tensor import unbatch


def float64(x: Any) -> torch.Tensor:
    """Any array-like as a float64 CPU tensor (metrics are cheap; exactness matters)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double()
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def matched_keypoints(
    pred: Mapping[str, Any],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(m_kpts0 (M, 2), m_kpts1 (M, 2), scores (M,)) from keypoints and ``matches0``.

    ``matches0`` (N,) holds the index in image 1 or -1; ``matching_scores0`` defaults to
    ones. A leading batch dimension of one is dropped.
    """
    kp0 = unbatch(pred["keypoints0"], 2, "keypoints0")
    kp1 = unbatch(pred["keypoints1"], 2, "keypoints1")
    m0 = unbatch(pred["matches0"], 1, "matches0")
    scores = pred.get("matching_scores0")
    scores = (
        torch.ones_like(m0, dtype=kp0.dtype)
        if scores is None
        else unbatch(scores, 1, "matching_scores0")
    )
    valid = m0 > -1
    return kp0[valid], kp1[m0[valid]], scores[valid]


def matched_lines(
    pred: Mapping[str, Any],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Matched segments of a prediction with lines (a batch of one is dropped).

    Returns (m_lines0 (K, 2, 2), m_lines1 (K, 2, 2), scores (K,), indices (K, 2) of
    the matched lines in each image, (L0, L1) real lines per image). The segments are
    ``orig_lines`` when present (the detector's, before the wireframe joins endpoints),
    else ``lines``; padded lines (``line_mask`` False) are not counted.
    """
    seg = "orig_lines" if "orig_lines0" in pred else "lines"
    l0 = unbatch(pred[f"{seg}0"], 3, f"{seg}0")
    l1 = unbatch(pred[f"{seg}1"], 3, f"{seg}1")
    m0 = unbatch(pred["line_matches0"], 1, "line_matches0").long()
    scores = pred.get("line_matching_scores0")
    scores = (
        torch.ones_like(m0, dtype=l0.dtype)
        if scores is None
        else unbatch(scores, 1, "line_matching_scores0")
    )

    def count(i: int, lines: torch.Tensor) -> int:
        mask = pred.get(f"line_mask{i}")
        return len(lines) if mask is None else int(unbatch(mask, 1, "line_mask").sum())

    idx0 = torch.nonzero(m0 > -1)[:, 0]
    idx1 = m0[idx0]
    indices = torch.stack([idx0, idx1], -1)
    return l0[idx0], l1[idx1], scores[idx0], indices, (count(0, l0), count(1, l1))


def match_labels(matches: torch.Tensor, gt_matches0: torch.Tensor) -> np.ndarray:
    """(K,) int8 label of each match (i0, i1) of ``matches`` (K, 2) against the ground
    truth of image 0 ``gt_matches0``: 1 correct (``gt[i0] == i1``), 0 wrong, -1
    ignored (``gt[i0] == -2``)."""
    gt = gt_matches0[matches[:, 0]]
    labels = (gt == matches[:, 1]).to(torch.int8)
    labels[gt == -2] = -1
    return labels.numpy()


def has_lines(pred: Mapping[str, Any]) -> bool:
    """Whether a prediction holds matched lines (``lines0/1`` and ``line_matches0``)."""
    return all(k in pred for k in ("lines0", "lines1", "line_matches0"))


def image_size(view: Mapping[str, Any]) -> tuple[float, float]:
    """(w, h) of a view: ``image_size`` if given, else the shape of ``image``."""
    if "image_size" in view:
        size = unbatch(float64(view["image_size"]), 1, "image_size")
        return float(size[0]), float(size[1])
    h, w = view["image"].shape[-2:]
    return float(w), float(h)


def _size_or_none(view: Mapping[str, Any] | None) -> tuple[float, float] | None:
    if view is None or ("image_size" not in view and "image" not in view):
        return None
    return image_size(view)


@dataclasses.dataclass
class PairRecord:
    """One evaluated pair. Shapes: M matches; tensors are CPU float64.

    Attributes:
        name: the pair's name in the dataset (key of ``predictions.h5``).
        kpts0, kpts1: (M, 2) matched keypoints (see the module doc for their pixels).
        scores: (M,) matching scores (ones when the matcher gives none).
        num_keypoints: (N0, N1) keypoints detected in each image.
        image_size0, image_size1: (w, h) of the images the ground truth refers to.
        scene: the pair's scene (sequence, image) or "".
        H_0to1: (3, 3) ground-truth homography, image 0 -> image 1.
        T_0to1: ground-truth relative pose, camera 0 -> camera 1.
        camera0, camera1: ground-truth intrinsics.
        match_error: (M,) per-match error of the benchmark's correctness rule, set once
            by :meth:`gluefactory.eval.pipeline.EvalPipeline.match_errors`.
        lines0, lines1: (K, 2, 2) matched segments (None: the model has no lines).
        line_scores: (K,) their matching scores.
        line_matches: (K, 2) int64 indices (i0, i1) of the matched lines.
        num_lines: (L0, L1) lines detected in each image (padding excluded).
        gt_line_matches0: (L0,) int64 line ground truth of image 0: the index of the
            true match in image 1, -1 unmatched, -2 ignored (None: no line GT).
        match_indices: (M, 2) int64 indices (i0, i1) of the matched keypoints.
        gt_matches0: (N0,) int64 point ground truth of image 0, as
            ``gt_line_matches0`` (None: the benchmark labels no keypoints).
    """

    name: str
    kpts0: torch.Tensor
    kpts1: torch.Tensor
    scores: torch.Tensor
    num_keypoints: tuple[int, int]
    image_size0: tuple[float, float] | None = None
    image_size1: tuple[float, float] | None = None
    scene: str = ""
    H_0to1: torch.Tensor | None = None
    T_0to1: Pose | None = None
    camera0: Camera | None = None
    camera1: Camera | None = None
    match_error: torch.Tensor | None = None
    lines0: torch.Tensor | None = None
    lines1: torch.Tensor | None = None
    line_scores: torch.Tensor | None = None
    line_matches: torch.Tensor | None = None
    num_lines: tuple[int, int] | None = None
    gt_line_matches0: torch.Tensor | None = None
    match_indices: torch.Tensor | None = None
    gt_matches0: torch.Tensor | None = None

    @property
    def num_matches(self) -> int:
        return len(self.kpts0)

    @property
    def num_line_matches(self) -> int:
        return 0 if self.lines0 is None else len(self.lines0)

    def line_labels(self) -> np.ndarray | None:
        """(K,) int8 per line match: 1 correct, 0 wrong, -1 ignored (ground truth -2
        for its line of image 0); None without line ground truth."""
        if self.gt_line_matches0 is None or self.line_matches is None:
            return None
        return match_labels(self.line_matches, self.gt_line_matches0)

    def labels(self) -> np.ndarray | None:
        """(M,) int8 per point match, as :meth:`line_labels` against ``gt_matches0``;
        None without point ground truth."""
        if self.gt_matches0 is None or self.match_indices is None:
            return None
        return match_labels(self.match_indices, self.gt_matches0)

    def correct(self, threshold: float) -> np.ndarray:
        """(M,) bool: matches whose ``match_error`` is below ``threshold``."""
        if self.match_error is None:
            raise ValueError(f"Pair {self.name}: match_error was not computed.")
        return (self.match_error < threshold).numpy()

    @classmethod
    def from_batch(cls, data: Mapping[str, Any], pred: Mapping[str, Any]) -> PairRecord:
        """The record of one pair from a sample ``data`` and predictions ``pred``
        (one pair, or a batch of one), keypoints in ``data``'s pixels."""
        k0, k1, scores = matched_keypoints(pred)
        m0 = unbatch(pred["matches0"], 1, "matches0").detach().cpu().long()
        idx0 = torch.nonzero(m0 > -1)[:, 0]
        n0 = unbatch(pred["keypoints0"], 2, "keypoints0").shape[-2]
        n1 = unbatch(pred["keypoints1"], 2, "keypoints1").shape[-2]
        v0, v1 = data.get("view0"), data.get("view1")

        def camera(view, i):
            if view is None or view.get("camera") is None:
                return None
            return unbatch(view["camera"], 0, f"view{i}.camera").detach().cpu().double()

        name, scene = data.get("name", ""), data.get("scene", "")
        name = name[0] if isinstance(name, (list, tuple)) else name
        scene = scene[0] if isinstance(scene, (list, tuple)) else scene
        H = data.get("H_0to1")
        T = data.get("T_0to1")
        lines: dict[str, Any] = {}
        if has_lines(pred):
            ml0, ml1, lscores, lidx, nl = matched_lines(pred)
            lines = {
                "lines0": float64(ml0),
                "lines1": float64(ml1),
                "line_scores": float64(lscores),
                "line_matches": lidx.detach().cpu().long(),
                "num_lines": nl,
            }
        return cls(
            name=str(name),
            kpts0=float64(k0),
            kpts1=float64(k1),
            scores=float64(scores),
            num_keypoints=(int(n0), int(n1)),
            image_size0=_size_or_none(v0),
            image_size1=_size_or_none(v1),
            scene=str(scene),
            H_0to1=None if H is None else float64(unbatch(H, 2, "H_0to1")),
            T_0to1=None
            if T is None
            else unbatch(T, 0, "T_0to1").detach().cpu().double(),
            camera0=camera(v0, 0),
            camera1=camera(v1, 1),
            match_indices=torch.stack([idx0, m0[idx0]], -1),
            **lines,
        )
