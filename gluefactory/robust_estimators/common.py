"""Helpers shared by the robust estimators: input checks, failure results, option lists.

An estimator never raises on degenerate input. Before calling a library it rejects, with
``success=False``:

* fewer matches than the minimal sample (4 for a homography, 5 for an essential matrix);
* any non-finite coordinate (NaN or inf: a matched keypoint must be a real point, so
  this signals a bug upstream, and silently dropping it would hide that);
* all points of either image collinear (the model is then not determined).

An estimator that also takes matched line segments (``m_lines0``, ``m_lines1``, (M, 2,
2) endpoints; ``uses_lines``) needs 4 correspondences in all (a line counts as one),
finite segments of non-zero length, and, without point matches, lines that are not all
concurrent (or parallel) in either image: the dual of collinear points.

After the library call it also rejects non-finite models, fewer inliers than the minimal
sample, and inliers of which fewer than ``min_points - 2`` lie farther than
``ransac_th`` pixels from the line through the others, in either image (a homography
needs two points off a line of matches; an essential matrix more).

A failed estimate is ``{"success": False, "M_0to1": identity (3x3 tensor or Pose),
"inliers": all False}``: the identity (as in glue-factory upstream) keeps downstream
code working, and the evaluation turns ``success=False`` into an infinite error.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ..geometry.wrappers import Pose
from ..utils.errors import ConfigError
from ..utils.tensor import unbatch

logger = logging.getLogger(__name__)

#: relative perpendicular spread (smallest / largest singular value of the centred
#: points) below which a point set counts as collinear
COLLINEAR_RTOL = 1e-5


def points_from(data: dict, key: str) -> torch.Tensor:
    """``data[key]`` as a float (N, 2) tensor; a wrong shape is an error naming it."""
    pts = unbatch(torch.as_tensor(data[key]), 2, key)  # a batch of one pair is fine
    if pts.shape[-1] != 2:
        raise ValueError(
            f"'{key}' must be (N, 2) matched keypoints, got {tuple(pts.shape)}."
        )
    return pts if pts.is_floating_point() else pts.float()


def matched_points(
    data: dict,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """(m_kpts0, m_kpts1) as tensors and as float64 numpy arrays, shapes checked."""
    k0, k1 = points_from(data, "m_kpts0"), points_from(data, "m_kpts1")
    if k0.shape != k1.shape:
        raise ValueError(
            f"'m_kpts0' and 'm_kpts1' must have the same shape, got {tuple(k0.shape)} "
            f"and {tuple(k1.shape)}."
        )
    p0 = k0.detach().cpu().double().numpy()
    p1 = k1.detach().cpu().double().numpy()
    return k0, k1, p0, p1


def matched_lines(data: dict) -> tuple[np.ndarray, np.ndarray]:
    """(m_lines0, m_lines1) as float64 numpy (M, 2, 2); (0, 2, 2) when both are absent."""
    present = [k for k in ("m_lines0", "m_lines1") if data.get(k) is not None]
    if not present:
        return np.zeros((0, 2, 2)), np.zeros((0, 2, 2))
    if len(present) == 1:
        missing = "m_lines1" if present == ["m_lines0"] else "m_lines0"
        raise KeyError(f"'{present[0]}' is given without '{missing}'.")
    lines = []
    for key in ("m_lines0", "m_lines1"):
        seg = unbatch(torch.as_tensor(data[key]), 3, key)
        if seg.shape[-2:] != (2, 2):
            raise ValueError(
                f"'{key}' must be (M, 2, 2) matched segments (two endpoints (x, y)), "
                f"got {tuple(seg.shape)}."
            )
        lines.append(seg.detach().cpu().double().numpy())
    if lines[0].shape != lines[1].shape:
        raise ValueError(
            f"'m_lines0' and 'm_lines1' must have the same shape, got "
            f"{lines[0].shape} and {lines[1].shape}."
        )
    return lines[0], lines[1]


def is_concurrent(segments: np.ndarray) -> bool:
    """Whether the lines through segments (M, 2, 2) all meet in one point (or are all
    parallel: they meet at infinity), up to rounding. The dual of :func:`is_collinear`:
    the homogeneous lines, in a frame centred on the endpoints, have rank < 3.
    """
    if len(segments) < 3:
        return True
    ends = segments.reshape(-1, 2)
    ends = (ends - ends.mean(0)) / max(np.abs(ends - ends.mean(0)).max(), 1e-300)
    ends = np.concatenate([ends, np.ones((len(ends), 1))], -1).reshape(-1, 2, 3)
    lines = np.cross(ends[:, 0], ends[:, 1])
    lines = lines / np.linalg.norm(lines, axis=-1, keepdims=True)
    s = np.linalg.svd(lines, compute_uv=False)
    return bool(s[2] <= COLLINEAR_RTOL * s[0])


def is_collinear(pts: np.ndarray) -> bool:
    """Whether points (N, 2) lie on one line (or one point), up to rounding.

    Collinear means a perpendicular spread below ``COLLINEAR_RTOL`` times the spread
    along the line (smallest / largest singular value of the centred points).
    """
    if len(pts) < 3:
        return True
    s = np.linalg.svd(pts - pts.mean(0), compute_uv=False)
    return bool(s[0] == 0 or s[1] <= COLLINEAR_RTOL * s[0])


def points_off_line(pts: np.ndarray, tol: float) -> int:
    """Number of points (N, 2) farther than ``tol`` from the line through most of them.

    The line is a trimmed least-squares fit (refit on the points within max(tol, median
    distance), a few rounds), so a handful of stray points does not hide that nearly all
    points are collinear. For well-spread points the count is about N.
    """
    if len(pts) < 3:
        return 0
    keep = np.ones(len(pts), bool)
    for _ in range(5):
        sel = pts[keep]
        c = sel.mean(0)
        centred = sel - c
        normal = np.linalg.eigh(centred.T @ centred)[1][:, 0]  # least variance
        d = np.abs((pts - c) @ normal)
        new = d <= max(tol, float(np.median(d)))
        if (new == keep).all() or new.sum() < 2:
            break
        keep = new
    return int((d > tol).sum())


def input_degeneracy(
    p0: np.ndarray,
    p1: np.ndarray,
    min_points: int,
    lines0: np.ndarray | None = None,
    lines1: np.ndarray | None = None,
) -> str | None:
    """Why the matches (N, 2) (and line matches (M, 2, 2)) cannot determine a model,
    or None if they may (points and lines together are checked by the estimator)."""
    m = 0 if lines0 is None else len(lines0)
    if len(p0) + m < min_points:
        what = f"{len(p0)} matches" + (f" and {m} line matches" if m else "")
        return f"{what}, fewer than the {min_points} needed"
    if not (np.isfinite(p0).all() and np.isfinite(p1).all()):
        return "non-finite keypoint coordinates"
    if m == 0:
        if is_collinear(p0) or is_collinear(p1):
            return "all points are collinear"
        return None
    if not (np.isfinite(lines0).all() and np.isfinite(lines1).all()):
        return "non-finite line coordinates"
    for seg in (lines0, lines1):
        if (np.abs(seg[:, 0] - seg[:, 1]).max(-1) == 0).any():
            return "a line segment of zero length"
    if len(p0) == 0 and (is_concurrent(lines0) or is_concurrent(lines1)):
        return "all lines are concurrent or parallel"
    return None


def result_degeneracy(
    M: np.ndarray | None,
    inliers: np.ndarray,
    p0: np.ndarray,
    p1: np.ndarray,
    min_points: int,
    tol: float,
    line_inliers: np.ndarray | None = None,
) -> str | None:
    """Why an estimate is unusable (non-finite, too few/collinear inliers), or None.

    With line inliers (M,) the inliers are counted together, and the collinearity of
    the point inliers is not checked (the lines may fix what the points do not; the
    line-aware estimator checks the conditioning of all its inliers itself).
    """
    if M is None or not np.isfinite(M).all():
        return "the library returned no finite model"
    n_lines = 0 if line_inliers is None else int(line_inliers.sum())
    n = int(inliers.sum()) + n_lines
    if n < min_points:
        return f"{n} inliers, fewer than the {min_points} needed"
    if n_lines:
        return None
    min_off = min_points - 2
    if (
        min(points_off_line(p0[inliers], tol), points_off_line(p1[inliers], tol))
        < min_off
    ):
        return f"fewer than {min_off} inliers off the line through the others"
    return None


def inlier_mask(mask: Any, n: int) -> np.ndarray:
    """A library's inlier output (None, uint8 (N,1), list of bools) -> bool (N,)."""
    if mask is None:
        return np.zeros(n, bool)
    mask = np.asarray(mask).reshape(-1).astype(bool)
    if mask.shape != (n,):
        return np.zeros(n, bool)
    return mask


def to_output(
    M: Any, inliers: np.ndarray, like: torch.Tensor, success: bool = True
) -> dict[str, Any]:
    """Pack a 3x3 model (numpy) and an inlier mask as tensors like the keypoints."""
    return {
        "success": success,
        "M_0to1": torch.as_tensor(np.asarray(M), dtype=like.dtype, device=like.device),
        "inliers": torch.as_tensor(inliers, dtype=torch.bool, device=like.device),
    }


def pose_output(
    R: np.ndarray, t: np.ndarray, inliers: np.ndarray, like: torch.Tensor
) -> dict[str, Any]:
    """Pack a relative pose (R (3, 3), t (3,), camera 0 to camera 1) as a Pose."""
    R = torch.as_tensor(
        np.array(R, dtype=np.float64), dtype=like.dtype, device=like.device
    )
    t = torch.as_tensor(
        np.array(t, dtype=np.float64).reshape(3), dtype=like.dtype, device=like.device
    )
    return {
        "success": True,
        "M_0to1": Pose.from_Rt(R, t),
        "inliers": torch.as_tensor(inliers, dtype=torch.bool, device=like.device),
    }


def failure(
    like: torch.Tensor, name: str, reason: str, pose: bool = False
) -> dict[str, Any]:
    """A failed estimate: identity model, no inliers (see the module docstring)."""
    logger.debug("%s failed: %s", name, reason)
    n = like.shape[0]
    if pose:
        M = Pose.identity(dtype=like.dtype, device=like.device)
    else:
        M = torch.eye(3, dtype=like.dtype, device=like.device)
    return {
        "success": False,
        "M_0to1": M,
        "inliers": torch.zeros(n, dtype=torch.bool, device=like.device),
    }


def intrinsics(camera: Any, key: str) -> tuple[np.ndarray, tuple[int, int]]:
    """(K (3, 3) float64, (w, h)) of a :class:`~gluefactory.geometry.wrappers.Camera`.

    A batch of one camera is accepted. Anything else is an error naming ``key``.
    """
    if not (hasattr(camera, "calibration_matrix") and hasattr(camera, "size")):
        raise TypeError(f"'{key}' must be a Camera, got {type(camera).__name__}.")
    camera = unbatch(camera, 0, key)
    K = camera.calibration_matrix().detach().cpu().double()
    size = camera.size.detach().cpu().double()
    w, h = (int(round(float(v))) for v in size)
    return K.numpy(), (w, h)


# --------------------------------------------------------------------------------------
# PoseLib options (poselib 2.0.5). The thresholds ``max_reproj_error`` and
# ``max_epipolar_error`` are not listed: they are set from ``ransac_th``.

POSELIB_RANSAC_OPTIONS: dict[str, Any] = {
    "max_iterations": 100000,
    "min_iterations": 1000,
    "dyn_num_trials_mult": 3.0,
    "success_prob": 0.9999,
    "seed": 0,
    "progressive_sampling": False,
    "max_prosac_iterations": 100000,
    "real_focal_check": False,
}

#: ``loss_scale: None`` leaves PoseLib's own choice, half the RANSAC threshold.
POSELIB_BUNDLE_OPTIONS: dict[str, Any] = {
    "max_iterations": 100,
    "loss_scale": None,
    "loss_type": "CAUCHY",
    "gradient_tol": 1e-10,
    "step_tol": 1e-8,
    "initial_lambda": 1e-3,
    "min_lambda": 1e-10,
    "max_lambda": 1e10,
    "verbose": False,
}


#: the option sections of every PoseLib estimator
POSELIB_DEFAULT_CONF: dict[str, Any] = {
    "ransac_options": POSELIB_RANSAC_OPTIONS,
    "bundle_options": POSELIB_BUNDLE_OPTIONS,
}


def poselib_options(conf: Any, threshold_key: str) -> tuple[dict, dict]:
    """(ransac_opt, bundle_opt) dicts for PoseLib from an estimator config.

    Every key of ``conf.ransac_options`` and ``conf.bundle_options`` is forwarded (None
    values are left to PoseLib); the threshold ``threshold_key`` is ``conf.ransac_th``.
    """
    from omegaconf import OmegaConf

    ransac = OmegaConf.to_container(conf.ransac_options, resolve=True)
    bundle = OmegaConf.to_container(conf.bundle_options, resolve=True)
    ransac = {k: v for k, v in ransac.items() if v is not None}
    bundle = {k: v for k, v in bundle.items() if v is not None}
    ransac[threshold_key] = float(conf.ransac_th)
    return ransac, bundle


def check_poselib_options(conf: Any, component: str) -> None:
    """Raise if an option is unknown to the installed PoseLib (version drift)."""
    import poselib

    for key, known in (
        ("ransac_options", poselib.RansacOptions()),
        ("bundle_options", poselib.BundleOptions()),
    ):
        unknown = sorted(set(conf[key].keys()) - set(known.keys()))
        if unknown:
            raise ConfigError(
                f"{component}: {key} {unknown} are not options of the installed "
                "poselib "
                f"(known: {', '.join(sorted(known))})."
            )
