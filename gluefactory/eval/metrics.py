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
  :func:`summarize`.
* Per-pair convenience on a dataset sample ``data`` and a model prediction ``pred``:
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
from ..utils.tensor import unbatch

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]

#: default thresholds of each protocol
HPATCHES_PREC_THRESHOLDS = (1, 3)  # px
HPATCHES_AUC_THRESHOLDS = (1, 3, 5)  # px, mean corner error
EPI_PREC_THRESHOLDS = (1e-4, 5e-4, 1e-3)  # normalised units
REPROJ_PREC_THRESHOLDS = (1, 3, 5)  # px
POSE_AUC_THRESHOLDS = (5, 10, 20)  # degrees


def _f64(x: ArrayLike) -> torch.Tensor:
    """Any array-like as a float64 CPU tensor (metrics are cheap; exactness matters)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double()
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


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


#: summary rules: metric key -> (AUC thresholds, unit suffix)
AUC_METRICS: dict[str, tuple[tuple[float, ...], str]] = {
    "H_error_dlt": (HPATCHES_AUC_THRESHOLDS, "px"),
    "H_error_ransac": (HPATCHES_AUC_THRESHOLDS, "px"),
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
    * Every other key gives ``mean_{key}`` and ``median_{key}`` over the pairs where it
      is not NaN (NaN means "undefined for this pair", e.g. no depth-valid match), e.g.
      ``median_prec@1px`` (HPatches reports medians) and ``mean_epi_prec@1e-4``
      (MegaDepth-1500 reports means). All-NaN gives NaN.

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
    return out


# --------------------------------------------------------------------------------------
# Per-pair convenience on (data, pred) as produced by datasets and the two-view pipeline


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


def _num_keypoints(pred: Mapping[str, Any]) -> float:
    n0 = unbatch(pred["keypoints0"], 2, "keypoints0").shape[-2]
    n1 = unbatch(pred["keypoints1"], 2, "keypoints1").shape[-2]
    return (n0 + n1) / 2


def _cameras(data: Mapping) -> tuple[Camera, Camera]:
    return tuple(
        unbatch(data[f"view{i}"]["camera"], 0, f"view{i}.camera") for i in (0, 1)
    )


def image_size(view: Mapping[str, Any]) -> tuple[float, float]:
    """(w, h) of a view: ``image_size`` if given, else the shape of ``image``."""
    if "image_size" in view:
        size = unbatch(_f64(view["image_size"]), 1, "image_size")
        return float(size[0]), float(size[1])
    h, w = view["image"].shape[-2:]
    return float(w), float(h)


def _estimator(kind: str, estimator: BaseEstimator | Mapping | Any) -> BaseEstimator:
    return (
        estimator
        if isinstance(estimator, BaseEstimator)
        else load_estimator(kind, estimator)
    )


def eval_matches_homography(data: Mapping, pred: Mapping) -> dict[str, float]:
    """HPatches match metrics of one pair: ``prec@1px``, ``prec@3px``, ``num_matches``,
    ``num_keypoints`` (mean of the two images), with GT ``data["H_0to1"]``."""
    k0, k1, _ = matched_keypoints(pred)
    H = unbatch(data["H_0to1"], 2, "H_0to1")
    out = matches_precision_homography(k0, k1, H)
    out["num_matches"] = float(len(k0))
    out["num_keypoints"] = _num_keypoints(pred)
    return out


def eval_homography_dlt(data: Mapping, pred: Mapping) -> dict[str, float]:
    """``H_error_dlt``: corner error of the score-weighted DLT (inf if it fails)."""
    k0, k1, scores = matched_keypoints(pred)
    H_gt = unbatch(data["H_0to1"], 2, "H_0to1")
    size = image_size(data["view0"])
    H, success = find_homography_dlt(_f64(k0), _f64(k1), _f64(scores))
    err = homography_corner_error(H, H_gt, size) if bool(success) else math.inf
    return {"H_error_dlt": err}


def _inliers(pred_est: Mapping, n: int) -> dict[str, float]:
    inl = int(pred_est["inliers"].sum()) if pred_est["success"] else 0
    return {"ransac_inl": float(inl), "ransac_inl%": inl / n if n else 0.0}


def eval_homography_robust(
    data: Mapping, pred: Mapping, estimator: BaseEstimator | Mapping
) -> dict[str, float]:
    """``H_error_ransac`` (corner error, inf: failed), ``ransac_inl``, ``ransac_inl%``.

    ``estimator``: a homography estimator or its config (``{"name": "poselib",
    "ransac_th": 1.0, ...}``).
    """
    est = _estimator("homography", estimator)
    k0, k1, _ = matched_keypoints(pred)
    res = est({"m_kpts0": k0, "m_kpts1": k1})
    H_gt = unbatch(data["H_0to1"], 2, "H_0to1")
    err = homography_corner_error(res["M_0to1"], H_gt, image_size(data["view0"]))
    return {
        "H_error_ransac": err if res["success"] else math.inf,
        **_inliers(res, len(k0)),
    }


def eval_matches_epipolar(data: Mapping, pred: Mapping) -> dict[str, float]:
    """MegaDepth-1500 match metrics: ``epi_prec@1e-4/5e-4/1e-3``, ``num_matches``,
    ``num_keypoints``, with ``data["T_0to1"]`` and ``data["view{0,1}"]["camera"]``."""
    k0, k1, _ = matched_keypoints(pred)
    T = unbatch(data["T_0to1"], 0, "T_0to1")
    cam0, cam1 = _cameras(data)
    out = epipolar_precision(k0, k1, T, cam0, cam1)
    out["num_matches"] = float(len(k0))
    out["num_keypoints"] = _num_keypoints(pred)
    return out


def eval_matches_depth(data: Mapping, pred: Mapping) -> dict[str, float]:
    """Depth metrics of MegaDepth-1500 through ``data["view{0,1}"]["depth"]``.

    ``reproj_prec@1/3/5px`` (0 if no match has depth), ``covisible`` (number of matches
    with depth at both keypoints) and ``covisible_percent`` (their share of the matches,
    in %, NaN without matches).
    """
    k0, k1, _ = matched_keypoints(pred)
    v0, v1 = data["view0"], data["view1"]
    args = (
        k0,
        k1,
        unbatch(v0["depth"], 2, "view0.depth"),
        unbatch(v1["depth"], 2, "view1.depth"),
        unbatch(data["T_0to1"], 0, "T_0to1"),
        *_cameras(data),
    )
    err, valid = reprojection_errors(*args)
    out = reprojection_precision(err, valid)
    out["covisible"] = float(valid.sum())
    out["covisible_percent"] = (
        100 * valid.double().mean().item() if len(valid) else math.nan
    )
    return out


def eval_relative_pose(
    data: Mapping, pred: Mapping, estimator: BaseEstimator | Mapping
) -> dict[str, float]:
    """``rel_pose_error`` (degrees, inf on failure), ``ransac_inl``, ``ransac_inl%``.

    ``estimator``: a relative-pose estimator or its config.
    """
    est = _estimator("relative_pose", estimator)
    k0, k1, _ = matched_keypoints(pred)
    cam0, cam1 = _cameras(data)
    res = est({"m_kpts0": k0, "m_kpts1": k1, "camera0": cam0, "camera1": cam1})
    T = unbatch(data["T_0to1"], 0, "T_0to1")
    err = (
        pose_error(T, res["M_0to1"].R, res["M_0to1"].t) if res["success"] else math.inf
    )
    return {"rel_pose_error": err, **_inliers(res, len(k0))}
