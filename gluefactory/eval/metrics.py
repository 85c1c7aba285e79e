"""Evaluation metrics of two-view matching: precision, homography and pose errors, AUC.

Functional API (NumPy arrays or torch tensors in, Python floats out); computations run
in float64. Keypoints are in the library convention (pixel centres at +0.5, image
corners (0, 0) and (W, H)). The exact protocols (HPatches, MegaDepth-1500) and every
summary key are documented in ``docs/metrics.md``.

* Per match: :func:`matches_precision_homography` (symmetric transfer error),
  :func:`epipolar_precision` (symmetric epipolar distance, normalised units),
  :func:`reprojection_precision` (through both depth maps).
* Per pair: :func:`homography_corner_error`, :func:`pose_error`.
* Over pairs: :func:`auc` and :func:`mAA` (failures count as infinite errors),
  :func:`summarize`; over the matches of all pairs: :func:`average_precision` (ETH3D).
* Per pair, on a :class:`~gluefactory.eval.records.PairRecord` (what the benchmarks
  use): :func:`homography_match_metrics`, :func:`homography_dlt_metrics`,
  :func:`homography_robust_metrics`, :func:`epipolar_match_metrics`,
  :func:`depth_match_metrics`, :func:`relative_pose_metrics`,
  :func:`labelled_match_metrics` (against depth ground truth); per-match errors
  :func:`homography_match_errors`, :func:`epipolar_match_errors`; with lines,
  :func:`line_match_metrics` (against the record's line ground truth).
* The same on a dataset sample ``data`` and a model prediction ``pred``:
  :func:`eval_matches_homography`, :func:`eval_homography_dlt`,
  :func:`eval_homography_robust`, :func:`eval_matches_epipolar`,
  :func:`eval_matches_depth`, :func:`eval_relative_pose`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..geometry.coordinates import image_corners
from ..geometry.depth import sample_depth
from ..geometry.epipolar import T_to_E, relative_pose_error, sym_epipolar_distance
from ..geometry.homography import sym_homography_error, warp_points
from ..geometry.wrappers import Camera, Pose
from ..robust_estimators import BaseEstimator, load_estimator
from ..robust_estimators.homography.dlt import find_homography_dlt
from ..utils.errors import InputError
from ..utils.tensor import unbatch
from .records import PairRecord, image_size, matched_keypoints  # noqa: F401 (re-exported)
from .records import float64 as _f64

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]

#: default thresholds of each protocol
HPATCHES_PREC_THRESHOLDS = (1, 3)  # px
HPATCHES_AUC_THRESHOLDS = (1, 3, 5)  # px, mean corner error
EPI_PREC_THRESHOLDS = (1e-4, 5e-4, 1e-3)  # normalised units
REPROJ_PREC_THRESHOLDS = (1, 3, 5)  # px
POSE_AUC_THRESHOLDS = (5, 10, 20)  # degrees


def _cpu64(x: Pose | Camera) -> Pose | Camera:
    return x.detach().cpu().double()


def threshold_name(t: float) -> str:
    """Key suffix of a threshold: 1 -> "1", 0.5 -> "0.5", 1e-4 -> "1e-4"."""
    t = float(t)
    if t != 0 and abs(t) < 1e-2:
        mantissa, exponent = f"{t:e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{t:g}"


def _precision(
    err: torch.Tensor, thresholds: Iterable[float], key: str, unit: str = ""
) -> dict[str, float]:
    """``{key}@{t}{unit}``: the fraction of ``err`` below each threshold (0 if empty)."""
    return {
        f"{key}@{threshold_name(t)}{unit}": (err < t).double().mean().item()
        if err.numel()
        else 0.0
        for t in thresholds
    }


# --------------------------------------------------------------------------------------
# Per-match precision


def matches_precision_homography(
    kpts0: ArrayLike,
    kpts1: ArrayLike,
    H_0to1: ArrayLike,
    thresholds: Sequence[float] = HPATCHES_PREC_THRESHOLDS,
) -> dict[str, float]:
    """Fraction of matches (N, 2) <-> (N, 2) with transfer error below thresholds.

    The error is ½(‖H p0 − p1‖ + ‖H⁻¹ p1 − p0‖) in pixels (HPatches protocol). Keys
    ``prec@{t}px``; no matches gives 0 (as upstream).
    """
    err = sym_homography_error(_f64(kpts0), _f64(kpts1), _f64(H_0to1))
    return _precision(err, thresholds, "prec", "px")


def epipolar_precision(
    kpts0: ArrayLike,
    kpts1: ArrayLike,
    T_0to1: Pose,
    camera0: Camera,
    camera1: Camera,
    thresholds: Sequence[float] = EPI_PREC_THRESHOLDS,
) -> dict[str, float]:
    """Fraction of matches whose symmetric epipolar distance is below thresholds.

    Matches (N, 2) in pixels are mapped to normalised coordinates with K⁻¹ and compared
    with E = [t]ₓR of the GT ``T_0to1`` (camera 0 to camera 1):
    |x₁ᵀEx₀|·½·(1/‖(Ex₀)₁,₂‖ + 1/‖(Eᵀx₁)₁,₂‖), non-squared, in normalised units
    (MegaDepth-1500 protocol). Keys ``epi_prec@{t}`` (e.g. ``epi_prec@1e-4``); no
    matches gives 0.
    """
    cam0, cam1, T = _cpu64(camera0), _cpu64(camera1), _cpu64(T_0to1)
    x0 = cam0.image2cam(_f64(kpts0))
    x1 = cam1.image2cam(_f64(kpts1))
    err = sym_epipolar_distance(x0, x1, T_to_E(T))
    return _precision(err, thresholds, "epi_prec")


def reprojection_errors(
    kpts0: ArrayLike,
    kpts1: ArrayLike,
    depth0: ArrayLike,
    depth1: ArrayLike,
    T_0to1: Pose,
    camera0: Camera,
    camera1: Camera,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric reprojection error (N,) of matches through both depth maps, validity.

    Each keypoint is lifted with the depth of its own view (bilinear, see
    :func:`gluefactory.geometry.depth.sample_depth`), moved to the other camera and
    projected; the error is ½(‖π₁(T·X₀) − p₁‖ + ‖π₀(T⁻¹·X₁) − p₀‖) in pixels, inf when a
    lifted point lands behind the other camera. A match is valid (as upstream) when the
    depth is known at both keypoints; projections outside the other image still count.
    """
    k0, k1 = _f64(kpts0), _f64(kpts1)
    T, cam0, cam1 = _cpu64(T_0to1), _cpu64(camera0), _cpu64(camera1)
    d0, valid0 = sample_depth(k0, _f64(depth0))
    d1, valid1 = sample_depth(k1, _f64(depth1))
    k0_1, front0 = cam1.project(T.transform(cam0.unproject(k0, d0)))
    k1_0, front1 = cam0.project(T.inv().transform(cam1.unproject(k1, d1)))
    err = ((k0_1 - k1).norm(dim=-1) + (k1_0 - k0).norm(dim=-1)) / 2
    err = torch.where(front0 & front1, err, math.inf)
    return err, valid0 & valid1


def reprojection_precision(
    errors: torch.Tensor,
    valid: torch.Tensor,
    thresholds: Sequence[float] = REPROJ_PREC_THRESHOLDS,
) -> dict[str, float]:
    """Fraction of depth-valid matches with reprojection error below thresholds.

    ``errors, valid`` are the output of :func:`reprojection_errors` (computed once, also
    for the covisibility counts). Keys ``reproj_prec@{t}px``; 0 when no match has valid
    depth (as upstream).
    """
    return _precision(
        _f64(errors)[torch.as_tensor(valid)], thresholds, "reproj_prec", "px"
    )


# --------------------------------------------------------------------------------------
# Per-pair model errors


def homography_corner_error(
    H_est: ArrayLike | None, H_gt: ArrayLike, size: Sequence[float] | ArrayLike
) -> float:
    """Mean distance (px) between the image corners mapped by ``H_est`` and by ``H_gt``.

    Corners (0, 0), (W, 0), (W, H), (0, H) of image 0 (corner convention, with (W, H) =
    ``size`` of the image the homographies refer to: the resized image in HPatches).
    A missing or non-finite ``H_est`` gives inf.
    """
    if H_est is None:
        return math.inf
    H_est, H_gt = _f64(H_est), _f64(H_gt)
    if not torch.isfinite(H_est).all():
        return math.inf
    w, h = (float(v) for v in _f64(size).reshape(2))
    corners = image_corners(w, h, dtype=torch.float64)
    err = (warp_points(corners, H_est) - warp_points(corners, H_gt)).norm(dim=-1).mean()
    return err.item() if torch.isfinite(err) else math.inf


def pose_error(T_0to1: Pose, R: ArrayLike, t: ArrayLike) -> float:
    """max(rotation error, translation angle error) in degrees of an estimate (R, t).

    Rotation error: angle of Rᵀ·R_gt. Translation error: angle between t and t_gt,
    folded as min(e, 180° − e) because an essential matrix fixes t only up to sign. No
    pure-rotation exemption. Non-finite estimates give inf.
    """
    R, t = _f64(R), _f64(t)
    if not (torch.isfinite(R).all() and torch.isfinite(t).all()):
        return math.inf
    t_err, r_err = relative_pose_error(_cpu64(T_0to1), R, t)
    return max(t_err.item(), r_err.item())


# --------------------------------------------------------------------------------------
# Over pairs


def auc(
    errors: ArrayLike, thresholds: Sequence[float], round: int | None = None
) -> list[float]:
    """Area under the recall-vs-error curve up to each threshold, divided by it.

    Exactly the glue-factory integration: sort the errors of **all** pairs (failures
    as inf; NaN counts as a failure), recall at the i-th error is i/N, prepend (0, 0),
    keep the points with error < t, append (t, last recall), integrate with the
    trapezoid rule and divide by t. ``round=4`` rounds like upstream (default:
    unrounded). An empty list gives NaN.
    """
    e = _f64(errors).reshape(-1).numpy()
    if np.any(e < 0):
        raise ValueError(f"Errors must be >= 0, got min {e.min()}.")
    if e.size == 0:
        return [math.nan for _ in thresholds]
    e = np.sort(np.where(np.isnan(e), np.inf, e))
    recall = np.arange(1, e.size + 1) / e.size
    e = np.r_[0.0, e]
    recall = np.r_[0.0, recall]
    out = []
    for t in thresholds:
        if not t > 0:
            raise ValueError(f"AUC thresholds must be > 0, got {t}.")
        last = int(np.searchsorted(e, t))  # points with error < t (incl. the origin)
        r = np.r_[recall[:last], recall[last - 1]]
        x = np.r_[e[:last], t]
        area = float(np.sum((x[1:] - x[:-1]) * (r[1:] + r[:-1]) / 2) / t)
        out.append(float(np.round(area, round)) if round is not None else area)
    return out


def mAA(
    errors: ArrayLike, thresholds: Sequence[float], round: int | None = None
) -> float:
    """Mean of :func:`auc` over the thresholds (upstream rounds the AUCs: round=4)."""
    return float(np.mean(auc(errors, thresholds, round)))


def average_precision(
    labels: ArrayLike, scores: ArrayLike, num_positives: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """Average precision (%) of scored matches pooled over a dataset, and its curve.

    ``labels`` (K,): 1 correct, 0 wrong, -1 ignored (dropped: the ground truth of its
    feature in image 0 is -2); ``scores`` (K,); ``num_positives``: features of image 0
    with a true match, summed over the pairs (at least 1 is used). The matches are
    sorted by decreasing score (ties keep their order); after the k-th, recall =
    TP_k / num_positives and precision = TP_k / k. AP is the area under the
    precision envelope (the running maximum from the right) over recall, with the
    curve closed at recall 0 and 1 by precision 0 (the ETH3D protocol of upstream
    glue-factory and SOLD2). Returns (AP in %, recall (K',), precision (K',)).
    """
    labels = _f64(labels).reshape(-1).numpy()
    scores = _f64(scores).reshape(-1).numpy()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ.")
    keep = labels >= 0
    labels, scores = labels[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order] == 1)
    recall = tp / max(int(num_positives), 1)
    precision = tp / np.arange(1, len(tp) + 1)
    r = np.r_[0.0, recall, 1.0]
    p = np.r_[0.0, precision, 0.0]
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    ap = float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))
    return 100 * ap, recall, precision


#: summary rules: metric key -> (AUC thresholds, unit suffix)
AUC_METRICS: dict[str, tuple[tuple[float, ...], str]] = {
    "H_error_dlt": (HPATCHES_AUC_THRESHOLDS, "px"),
    "H_error_ransac": (HPATCHES_AUC_THRESHOLDS, "px"),
    "H_error_ransac_points": (HPATCHES_AUC_THRESHOLDS, "px"),
    "rel_pose_error": (POSE_AUC_THRESHOLDS, "deg"),
}


def summarize(
    results: Mapping[str, Sequence[float]],
    auc_metrics: Mapping[str, tuple[Sequence[float], str]] | None = None,
    round: int | None = None,
) -> dict[str, float]:
    """Aggregate per-pair results (key -> one value per pair) into named summaries.

    * Error keys of ``auc_metrics`` (default :data:`AUC_METRICS`) give the AUC at each
      threshold, ``{key}@{t}{unit}`` (e.g. ``H_error_ransac@1px``,
      ``rel_pose_error@5deg``), and their mean ``{key}_mAA``. Failures are inf.
    * Every other key gives ``mean_{key}``, ``median_{key}`` and ``sem_{key}`` (the
      standard error of the mean, sample std / sqrt(n); NaN below 2 pairs) over the
      pairs where it is not NaN (NaN means "undefined for this pair", e.g. no
      depth-valid match), e.g. ``median_prec@1px`` (HPatches reports medians) and
      ``mean_epi_prec@1e-4`` (MegaDepth-1500 reports means). All-NaN gives NaN.

    ``round`` rounds the AUCs (upstream: 4) before the mAA is taken.
    """
    auc_metrics = AUC_METRICS if auc_metrics is None else auc_metrics
    out: dict[str, float] = {}
    for key, values in results.items():
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if key in auc_metrics:
            ths, unit = auc_metrics[key]
            aucs = auc(v, ths, round)
            for t, a in zip(ths, aucs, strict=True):
                out[f"{key}@{threshold_name(t)}{unit}"] = a
            out[f"{key}_mAA"] = float(np.mean(aucs))
            continue
        v = v[~np.isnan(v)]
        out[f"mean_{key}"] = float(np.mean(v)) if v.size else math.nan
        out[f"median_{key}"] = float(np.median(v)) if v.size else math.nan
        sem = np.std(v, ddof=1) / math.sqrt(v.size) if v.size > 1 else math.nan
        out[f"sem_{key}"] = float(sem)
    return out


# --------------------------------------------------------------------------------------
# Per pair, on a PairRecord (the evaluation pipeline's unit)


def _estimator(kind: str, estimator: BaseEstimator | Mapping | Any) -> BaseEstimator:
    return (
        estimator
        if isinstance(estimator, BaseEstimator)
        else load_estimator(kind, estimator)
    )


def _require(rec: PairRecord, *fields: str) -> None:
    missing = [f for f in fields if getattr(rec, f) is None]
    if missing:
        raise InputError(
            f"Pair {rec.name or '?'} has no {', '.join(missing)}: this metric needs "
            "that ground truth (a homography or a posed dataset?)."
        )


def homography_match_errors(rec: PairRecord) -> torch.Tensor:
    """(M,) symmetric transfer error ½(‖H p0 − p1‖ + ‖H⁻¹ p1 − p0‖) of each match, px."""
    _require(rec, "H_0to1")
    return sym_homography_error(rec.kpts0, rec.kpts1, rec.H_0to1)


def epipolar_match_errors(rec: PairRecord) -> torch.Tensor:
    """(M,) symmetric epipolar distance of each match in normalised units
    (:func:`epipolar_precision`)."""
    _require(rec, "T_0to1", "camera0", "camera1")
    x0 = rec.camera0.image2cam(rec.kpts0)
    x1 = rec.camera1.image2cam(rec.kpts1)
    return sym_epipolar_distance(x0, x1, T_to_E(rec.T_0to1))


def _errors(rec: PairRecord, fn) -> torch.Tensor:
    """The record's per-match errors (computed once by the pipeline), else ``fn``'s."""
    return rec.match_error if rec.match_error is not None else fn(rec)


def _counts(rec: PairRecord) -> dict[str, float]:
    n0, n1 = rec.num_keypoints
    return {"num_matches": float(rec.num_matches), "num_keypoints": (n0 + n1) / 2}


def homography_match_metrics(rec: PairRecord) -> dict[str, float]:
    """HPatches match metrics of one pair: ``prec@1px``, ``prec@3px`` (symmetric
    transfer error), ``num_matches``, ``num_keypoints`` (mean of the two images)."""
    err = _errors(rec, homography_match_errors)
    return {**_precision(err, HPATCHES_PREC_THRESHOLDS, "prec", "px"), **_counts(rec)}


def homography_dlt_metrics(rec: PairRecord) -> dict[str, float]:
    """``H_error_dlt``: corner error of the score-weighted DLT (inf if it fails)."""
    _require(rec, "H_0to1", "image_size0")
    H, success = find_homography_dlt(rec.kpts0, rec.kpts1, rec.scores)
    ok = bool(success)
    err = homography_corner_error(H, rec.H_0to1, rec.image_size0) if ok else math.inf
    return {"H_error_dlt": err}


def _inliers(pred_est: Mapping, n: int) -> dict[str, float]:
    inl = int(pred_est["inliers"].sum()) if pred_est["success"] else 0
    return {"ransac_inl": float(inl), "ransac_inl%": inl / n if n else 0.0}


def homography_robust_metrics(
    rec: PairRecord, estimator: BaseEstimator | Mapping
) -> dict[str, float]:
    """``H_error_ransac`` (corner error, inf: failed), ``ransac_inl``, ``ransac_inl%``.

    ``estimator``: a homography estimator or its config (``{"name": "poselib",
    "ransac_th": 1.0, ...}``). An estimator that ``uses_lines`` (``point_line``) gets
    the record's matched segments too: ``H_error_ransac`` is then the error from points
    and lines, ``H_error_ransac_points`` the same estimator's from the points alone,
    and ``ransac_line_inl`` / ``ransac_line_inl%`` count its line inliers.
    """
    _require(rec, "H_0to1", "image_size0")
    est = _estimator("homography", estimator)
    points = {"m_kpts0": rec.kpts0, "m_kpts1": rec.kpts1}

    def corner_error(res: Mapping) -> float:
        if not res["success"]:
            return math.inf
        return homography_corner_error(res["M_0to1"], rec.H_0to1, rec.image_size0)

    if not (getattr(est, "uses_lines", False) and rec.lines0 is not None):
        res = est(points)
        return {"H_error_ransac": corner_error(res), **_inliers(res, rec.num_matches)}
    res = est({**points, "m_lines0": rec.lines0, "m_lines1": rec.lines1})
    n = rec.num_line_matches
    line_inl = int(res["line_inliers"].sum()) if res["success"] else 0
    return {
        "H_error_ransac": corner_error(res),
        "H_error_ransac_points": corner_error(est(points)),
        **_inliers(res, rec.num_matches),
        "ransac_line_inl": float(line_inl),
        "ransac_line_inl%": line_inl / n if n else 0.0,
    }


def labelled_match_metrics(rec: PairRecord) -> dict[str, float]:
    """Point metrics of one pair against the record's ground truth of every keypoint
    (``gt_matches0``): ``match_prec`` (correct matches over the matches whose keypoint
    of image 0 is not ignored), ``match_rec`` (correct matches over the keypoints of
    image 0 with a true match), NaN when undefined, ``num_matches``,
    ``num_keypoints``."""
    _require(rec, "gt_matches0")
    labels = rec.labels()
    correct = float((labels == 1).sum())
    counted = int((labels >= 0).sum())
    matchable = int((rec.gt_matches0 >= 0).sum())
    return {
        "match_prec": correct / counted if counted else math.nan,
        "match_rec": correct / matchable if matchable else math.nan,
        **_counts(rec),
    }


def line_match_metrics(rec: PairRecord) -> dict[str, float]:
    """Line metrics of one pair: ``num_lines`` (mean of the two images),
    ``num_line_matches`` and, with line ground truth, ``line_prec`` (correct matches
    over the matches whose line of image 0 is not ignored, GT -2) and ``line_rec``
    (correct matches over the lines of image 0 with a true match). NaN when undefined
    (no line ground truth, no counted match, no matchable line); {} without lines."""
    if rec.num_lines is None:
        return {}
    out = {
        "num_lines": sum(rec.num_lines) / 2,
        "num_line_matches": float(rec.num_line_matches),
    }
    labels = rec.line_labels()
    if labels is None:
        return {**out, "line_prec": math.nan, "line_rec": math.nan}
    correct = float((labels == 1).sum())
    counted = int((labels >= 0).sum())
    matchable = int((rec.gt_line_matches0 >= 0).sum())
    out["line_prec"] = correct / counted if counted else math.nan
    out["line_rec"] = correct / matchable if matchable else math.nan
    return out


def epipolar_match_metrics(rec: PairRecord) -> dict[str, float]:
    """MegaDepth-1500 match metrics: ``epi_prec@1e-4/5e-4/1e-3``, ``num_matches``,
    ``num_keypoints``."""
    err = _errors(rec, epipolar_match_errors)
    return {**_precision(err, EPI_PREC_THRESHOLDS, "epi_prec"), **_counts(rec)}


def depth_match_metrics(
    rec: PairRecord, depth0: ArrayLike, depth1: ArrayLike
) -> dict[str, float]:
    """Depth metrics of MegaDepth-1500 through the depth maps (H, W) of both views.

    ``reproj_prec@1/3/5px`` (0 if no match has depth), ``covisible`` (number of matches
    with depth at both keypoints) and ``covisible_percent`` (their share of the matches,
    in %, NaN without matches). The depth maps are not part of the record: they are
    large, and only this metric reads them.
    """
    _require(rec, "T_0to1", "camera0", "camera1")
    err, valid = reprojection_errors(
        rec.kpts0, rec.kpts1, depth0, depth1, rec.T_0to1, rec.camera0, rec.camera1
    )
    out = reprojection_precision(err, valid)
    out["covisible"] = float(valid.sum())
    out["covisible_percent"] = (
        100 * valid.double().mean().item() if len(valid) else math.nan
    )
    return out


def relative_pose_metrics(
    rec: PairRecord, estimator: BaseEstimator | Mapping
) -> dict[str, float]:
    """``rel_pose_error`` (degrees, inf on failure), ``ransac_inl``, ``ransac_inl%``.

    ``estimator``: a relative-pose estimator or its config.
    """
    _require(rec, "T_0to1", "camera0", "camera1")
    est = _estimator("relative_pose", estimator)
    res = est(
        {
            "m_kpts0": rec.kpts0,
            "m_kpts1": rec.kpts1,
            "camera0": rec.camera0,
            "camera1": rec.camera1,
        }
    )
    err = (
        pose_error(rec.T_0to1, res["M_0to1"].R, res["M_0to1"].t)
        if res["success"]
        else math.inf
    )
    return {"rel_pose_error": err, **_inliers(res, rec.num_matches)}


# --------------------------------------------------------------------------------------
# The same on (data, pred) as produced by datasets and the two-view pipeline


def eval_matches_homography(data: Mapping, pred: Mapping) -> dict[str, float]:
    """:func:`homography_match_metrics` of a sample and its predictions."""
    return homography_match_metrics(PairRecord.from_batch(data, pred))


def eval_homography_dlt(data: Mapping, pred: Mapping) -> dict[str, float]:
    """:func:`homography_dlt_metrics` of a sample and its predictions."""
    return homography_dlt_metrics(PairRecord.from_batch(data, pred))


def eval_homography_robust(
    data: Mapping, pred: Mapping, estimator: BaseEstimator | Mapping
) -> dict[str, float]:
    """:func:`homography_robust_metrics` of a sample and its predictions."""
    return homography_robust_metrics(PairRecord.from_batch(data, pred), estimator)


def eval_matches_epipolar(data: Mapping, pred: Mapping) -> dict[str, float]:
    """:func:`epipolar_match_metrics` of a sample and its predictions."""
    return epipolar_match_metrics(PairRecord.from_batch(data, pred))


def eval_matches_depth(data: Mapping, pred: Mapping) -> dict[str, float]:
    """:func:`depth_match_metrics` with ``data["view{0,1}"]["depth"]``."""
    depths = [unbatch(data[f"view{i}"]["depth"], 2, f"view{i}.depth") for i in (0, 1)]
    return depth_match_metrics(PairRecord.from_batch(data, pred), *depths)


def eval_relative_pose(
    data: Mapping, pred: Mapping, estimator: BaseEstimator | Mapping
) -> dict[str, float]:
    """:func:`relative_pose_metrics` of a sample and its predictions."""
    return relative_pose_metrics(PairRecord.from_batch(data, pred), estimator)
