"""Homography from point and line matches: LO-MSAC on a point+line DLT (ours).

Upstream glue-factory calls rpautrat/homography_est (C++ with Ceres and Eigen, not on
the package registries) under the name ``homography_est``: that name is an alias of this
estimator. A line match is a segment of image 0 and a segment of image 1 on the same 3D
line; it says that H maps the line of segment 0 onto the line of segment 1
(H^T l1 ~ l0). Its endpoints need not correspond, so fragmented segments still match.

* **Minimal samples**: 4 correspondences drawn uniformly from the N points and M lines
  together, so 4 points, 4 lines or mixed (3+1, 1+3) in proportion to their numbers,
  but never 2 points and 2 lines: those leave a one-parameter family H + t X' L^T
  (L the line through the two points in image 0, X' the intersection of the two lines
  in image 1) that maps all four exactly, so they determine no H. ``batch_size``
  samples are solved at once by the Hartley-normalised DLT
  (:func:`~gluefactory.geometry.homography.homography_dlt_rows`: two rows per point,
  two per line, one for each endpoint of segment 0 on line 1), by a batched LU with
  H[2, 2] = 1. A sample is dropped when its H is singular, or when its points and
  endpoints of image 0 do not all map to the same side of the line at infinity (no
  camera sees such a configuration).
* **Errors**, in pixels of image 1 and one-directional, like the transfer error of
  OpenCV and PoseLib, so that ``ransac_th`` means the same for points and lines: the
  distance of H p0 to p1 for a point; for a line the root mean square distance of the
  two endpoints of segment 0, mapped by H, to the infinite line through segment 1.
  Distances to infinite lines accept partial overlaps; the endpoints of segment 1 are
  not used, because a detector cuts a line at other places in the other image.
* **MSAC**: a model scores the sum of min(e^2, th^2) over all correspondences. The
  number of samples adapts to the inlier ratio w of the best model,
  log(1 - confidence) / log(1 - w^4), between ``min_iters`` and ``max_iters``.
* **Local optimisation**: each new best model is refitted by the DLT on its inliers,
  again while the score improves (at most ``lo_iters`` times).
* **Final refinement**: Levenberg-Marquardt on the squared errors (point transfer
  errors, endpoint-to-line distances) of the inliers, then the inliers are recomputed;
  up to ``refine_rounds`` rounds, ``refine_iters`` steps each.
* **Seeded**: every call draws its samples from a generator seeded with ``seed``
  (None: fresh entropy). NumPy in float64 throughout, with no thread pool, since the
  evaluation runs estimators in many worker processes at once.

With points only it is a plain point LO-MSAC with the same steps.
"""

from __future__ import annotations

import math

import numpy as np

from ...geometry.homography import (
    dlt_null_vector,
    homography_dlt_rows,
    segment_lines,
)
from ...utils.errors import ConfigError
from ..base_estimator import BaseEstimator, EstimationFailure

#: correspondences in a minimal sample (a point or a line gives two constraints)
SAMPLE_SIZE = 4
#: conditioning of a DLT system (:func:`dlt_null_vector`) below which it is degenerate
DEGENERATE_COND = 1e-6
#: |det H| / |H|^3 below which a minimal model counts as singular (degenerate sample)
SINGULAR_DET = 1e-9


def distinct_indices(rng: np.random.Generator, n: int, k: int, size: int) -> np.ndarray:
    """k rows (k, size) of distinct indices, each row uniform over [0, n), n >= size.

    The j-th index is drawn among the n - j unused ones and shifted past the used ones
    (in increasing order), which skips them exactly.
    """
    out = np.empty((k, size), np.int64)
    for j in range(size):
        r = rng.integers(0, n - j, k)
        used = np.sort(out[:, :j], axis=1)
        for c in range(j):
            r += r >= used[:, c]
        out[:, j] = r
    return out


def sample_indices(rng: np.random.Generator, n: int, m: int, k: int) -> np.ndarray:
    """k minimal samples (k, 4): indices into the n points, then (n + j) the m lines.

    Uniform over the 4-subsets of the n + m correspondences that are not 2 points and
    2 lines: those never determine H (below). Empty (0, 4) when there is no other.
    """
    counts = np.array([math.comb(m, t) * math.comb(n, 4 - t) for t in range(5)], float)
    counts[2] = 0.0
    if counts.sum() == 0:
        return np.zeros((0, SAMPLE_SIZE), np.int64)
    lines = rng.choice(5, size=k, p=counts / counts.sum())
    out = np.empty((k, SAMPLE_SIZE), np.int64)
    for t in np.unique(lines):
        rows = lines == t
        out[rows, : 4 - t] = distinct_indices(rng, n, int(rows.sum()), 4 - t)
        out[rows, 4 - t :] = n + distinct_indices(rng, m, int(rows.sum()), t)
    return out


def _similarity(points: np.ndarray) -> np.ndarray:
    """Hartley normalisation (3, 3) of points (N, 2): centroid 0, mean distance sqrt 2."""
    c = points.mean(0)
    s = math.sqrt(2) / max(np.linalg.norm(points - c, axis=-1).mean(), 1e-12)
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]])


def _homogeneous(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones_like(x[..., :1])], -1)


def _mapped(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """H (K, 3, 3) applied to the points xy (2, R): homogeneous (K, 3, R).

    Element-wise, not a BLAS product: BLAS spreads even these small products over
    threads, which costs 10x on a CPU shared by the evaluation's worker processes.
    """
    return H[:, :, 0, None] * xy[0] + H[:, :, 1, None] * xy[1] + H[:, :, 2, None]


class _Correspondences:
    """N point and M line matches in normalised coordinates, their DLT rows and errors."""

    def __init__(self, p0, p1, lines0, lines1):
        self.n, self.m = len(p0), len(lines0)
        self.T0 = _similarity(np.concatenate([p0, lines0.reshape(-1, 2)]))
        self.T1 = _similarity(np.concatenate([p1, lines1.reshape(-1, 2)]))
        # T1 is a similarity: distances in image 1 scale by T1[0, 0]
        self.scale2 = self.T1[0, 0] ** 2
        x0 = p0 * self.T0[0, 0] + self.T0[:2, 2]
        self.x1 = p1 * self.T1[0, 0] + self.T1[:2, 2]
        s0 = lines0 * self.T0[0, 0] + self.T0[:2, 2]
        l1 = segment_lines(lines1 * self.T1[0, 0] + self.T1[:2, 2])  # (M, 3)
        self.rows = homography_dlt_rows(x0, self.x1, s0, l1)  # (N + M, 2, 9)
        # the image-0 points behind each correspondence: a point twice, or the endpoints
        pairs = np.concatenate([np.repeat(x0[:, None], 2, 1), s0])
        self.anchors = _homogeneous(pairs)  # (N + M, 2, 3)
        # every image-0 point mapped when scoring: the N points, then the 2 M endpoints
        self.x0 = _homogeneous(np.concatenate([x0, s0.reshape(-1, 2)]))
        self.xy0 = np.ascontiguousarray(self.x0[:, :2].T)  # (2, N + 2 M)
        self.l1 = np.repeat(l1, 2, 0)  # (2 M, 3), the line of each endpoint

    def unnormalize(self, H: np.ndarray) -> np.ndarray:
        """A normalised-coordinate H (3, 3) as the pixel homography."""
        return np.linalg.inv(self.T1) @ H @ self.T0

    def squared_errors(self, H: np.ndarray) -> np.ndarray:
        """Squared errors (K, N + M) in px^2 of image 1 of normalised models H (K, 3, 3).

        Points: squared transfer error; lines: mean of the squared distances of both
        mapped endpoints to the line. A point mapped to infinity has an infinite error.
        """
        n, l1 = self.n, self.l1
        u, v, w = _mapped(H, self.xy0).transpose(1, 0, 2)  # (K, N + 2 M) each
        with np.errstate(divide="ignore", invalid="ignore"):
            e_pts = (u[:, :n] / w[:, :n] - self.x1[:, 0]) ** 2
            e_pts += (v[:, :n] / w[:, :n] - self.x1[:, 1]) ** 2
            d = (l1[:, 0] * u[:, n:] + l1[:, 1] * v[:, n:]) / w[:, n:] + l1[:, 2]
        e_lines = (d**2).reshape(len(H), self.m, 2).mean(-1)
        e = np.concatenate([e_pts, e_lines], -1) / self.scale2
        return np.nan_to_num(e, nan=np.inf)

    def residuals(
        self, H: np.ndarray, inliers: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Residuals (R,) of the inliers (N + M,) under H (3, 3) and their Jacobian
        (R, 9) with respect to H.flatten(): two per point (x, y transfer error), one per
        endpoint of a line (signed distance), in normalised units."""
        n = self.n
        keep = np.concatenate([inliers[:n], np.repeat(inliers[n:], 2)])
        x0, p = self.x0[keep], int(inliers[:n].sum())
        y = x0 @ H.T
        xw = x0 / y[:, 2:]
        uv = y[:, :2] / y[:, 2:]
        zero = np.zeros_like(xw)
        du = np.concatenate([xw, zero, -uv[:, :1] * xw], -1)  # d(u)/dh (R, 9)
        dv = np.concatenate([zero, xw, -uv[:, 1:] * xw], -1)
        l1 = self.l1[keep[n:]]
        r_pts = (uv[:p] - self.x1[inliers[:n]]).reshape(-1)
        J_pts = np.stack([du[:p], dv[:p]], 1).reshape(-1, 9)
        r_lines = (uv[p:] * l1[:, :2]).sum(-1) + l1[:, 2]
        J_lines = l1[:, :1] * du[p:] + l1[:, 1:2] * dv[p:]
        return np.concatenate([r_pts, r_lines]), np.concatenate([J_pts, J_lines])


def _msac_scores(sq_errors: np.ndarray, th2: float) -> np.ndarray:
    return np.minimum(sq_errors, th2).sum(-1)


def _num_samples(inlier_ratio: float, confidence: float) -> float:
    """Samples for one all-inlier sample with probability ``confidence``."""
    p_good = inlier_ratio**SAMPLE_SIZE
    if p_good >= 1.0:
        return 0.0
    if p_good <= 0.0:
        return math.inf
    return math.log(1.0 - confidence) / math.log1p(-p_good)


class PointLineHomography(BaseEstimator):
    """``load_estimator("homography", {"name": "point_line"})`` (alias
    ``homography_est``): point and line LO-MSAC, see the module docstring.

    Input ``m_kpts0``, ``m_kpts1`` (N, 2) and optionally ``m_lines0``, ``m_lines1``
    (M, 2, 2) segment endpoints in pixels (lines only: N = 0 keypoints). Output
    ``success``, ``M_0to1``, ``inliers`` (N,) and ``line_inliers`` (M,).
    """

    default_conf = {
        "ransac_th": 2.0,
        "confidence": 0.9999,
        "min_iters": 100,
        "max_iters": 10000,
        "batch_size": 128,
        "lo_iters": 10,
        "refine_rounds": 3,
        "refine_iters": 30,
        "seed": 0,
    }
    kind = "homography"
    uses_lines = True
    library_call = "PointLineHomography"
    library_errors = ()  # no library: any exception is a bug, never a failure

    def _init(self, conf):
        def bad(key: str, why: str):
            raise ConfigError(f"{type(self).__name__}: {key}={conf[key]!r} {why}.")

        if not conf.ransac_th > 0:
            bad("ransac_th", "must be > 0 (pixels)")
        if not 0 < conf.confidence < 1:
            bad("confidence", "must be in (0, 1)")
        for key, low in (("max_iters", 1), ("batch_size", 1)) + tuple(
            (k, 0) for k in ("min_iters", "lo_iters", "refine_rounds", "refine_iters")
        ):
            if isinstance(conf[key], bool) or not isinstance(conf[key], int):
                bad(key, "must be an integer")
            if conf[key] < low:
                bad(key, f"must be >= {low}")

    def _estimate(self, p0, p1, lines0, lines1):
        conf = self.conf
        c = _Correspondences(p0, p1, lines0, lines1)
        if dlt_null_vector(c.rows.reshape(-1, 9))[1] < DEGENERATE_COND:
            raise EstimationFailure("the correspondences are in a degenerate layout")
        th2 = float(conf.ransac_th) ** 2
        rng = np.random.default_rng(conf.seed)

        n_all = c.n + c.m
        best_H, best_score, needed, done = None, math.inf, math.inf, 0
        while done < conf.max_iters and (done < conf.min_iters or done < needed):
            k = min(int(conf.batch_size), int(conf.max_iters) - done)
            done += k
            H = self._minimal_models(c, sample_indices(rng, c.n, c.m, k))
            if not len(H):
                continue
            scores = _msac_scores(c.squared_errors(H), th2)
            i = int(scores.argmin())
            if scores[i] < best_score:
                best_H, best_score = self._local_optimisation(c, H[i], scores[i], th2)
                ratio = (c.squared_errors(best_H[None])[0] < th2).sum() / n_all
                needed = _num_samples(float(ratio), float(conf.confidence))
        if best_H is None:
            raise EstimationFailure(f"no valid minimal sample in {done} draws")
        H, inliers = self._refine(c, best_H, th2)
        if inliers.sum() < SAMPLE_SIZE:
            raise EstimationFailure(f"{inliers.sum()} inliers, fewer than 4")
        if dlt_null_vector(c.rows[inliers].reshape(-1, 9))[1] < DEGENERATE_COND:
            raise EstimationFailure("the inliers are in a degenerate layout")
        return c.unnormalize(H), inliers

    def _minimal_models(self, c: _Correspondences, idx: np.ndarray) -> np.ndarray:
        """The valid models (K', 3, 3) of minimal samples idx (K, 4), normalised.

        Solved with H[2, 2] = 1 by batched LU, 50x faster than an SVD per sample: no
        valid model has H[2, 2] = 0, which would map the centroid of the image-0
        points, inside their convex hull, to infinity while they all map to one side of
        it. A batch holding an exactly singular system is solved by SVD instead.
        """
        k = len(idx)
        A = c.rows[idx].reshape(k, 8, 9)
        try:
            x = np.linalg.solve(A[..., :8], -A[..., 8:])[..., 0]  # (K, 8)
            h = np.concatenate([x, np.ones((k, 1))], -1)
            H = h.reshape(k, 3, 3)
            # a degenerate sample gives a singular (or non-finite) H
            size = (H**2).sum((-1, -2)) ** 1.5
            with np.errstate(invalid="ignore", over="ignore"):
                valid = np.abs(np.linalg.det(H)) > SINGULAR_DET * size
        except np.linalg.LinAlgError:
            h, cond = dlt_null_vector(A)
            H, valid = h.reshape(k, 3, 3), cond > DEGENERATE_COND
        anchors = c.anchors[idx].reshape(k, 8, 3)
        w = np.einsum("kj,kaj->ka", H[:, 2], anchors)  # (K, 8) third coordinates
        same_side = (w > 0).all(-1) | (w < 0).all(-1)
        return H[valid & same_side]

    def _local_optimisation(self, c, H, score, th2):
        """DLT refits on the inliers while the MSAC score improves."""
        for _ in range(int(self.conf.lo_iters)):
            inliers = c.squared_errors(H[None])[0] < th2
            if inliers.sum() <= SAMPLE_SIZE:  # a refit needs more than a sample
                break
            h, cond = dlt_null_vector(c.rows[inliers].reshape(-1, 9))
            refit = h.reshape(3, 3)
            new = _msac_scores(c.squared_errors(refit[None]), th2)[0]
            if not (cond > DEGENERATE_COND and new < score):
                break
            H, score = refit, new
        return H, float(score)

    def _refine(self, c, H, th2):
        """Least squares on the inliers, then new inliers, until they are stable."""
        inliers = c.squared_errors(H[None])[0] < th2
        for _ in range(int(self.conf.refine_rounds)):
            H = self._levenberg_marquardt(c, H, inliers)
            new = c.squared_errors(H[None])[0] < th2
            if (new == inliers).all():
                break
            inliers = new
        return H, inliers

    def _levenberg_marquardt(self, c, H, inliers):
        """Minimise the squared residuals of the inliers over H (8 degrees of freedom:
        steps are taken orthogonal to h = H.flatten(), kept at unit norm)."""
        h = H.reshape(9) / np.linalg.norm(H)
        r, J = c.residuals(h.reshape(3, 3), inliers)
        cost, lam = float(r @ r), 1e-3
        for _ in range(int(self.conf.refine_iters)):
            B = np.linalg.svd(h[None], full_matrices=True)[2][1:].T  # (9, 8)
            JB = J @ B
            A, g = JB.T @ JB, JB.T @ r
            # damping relative to the diagonal, floored so that a parameter without
            # any residual depending on it (too few inliers) still gets a step of 0
            damping = np.maximum(A.diagonal(), 1e-12 * max(A.diagonal().max(), 1.0))
            step = np.linalg.solve(A + lam * np.diag(damping), -g)
            h_new = h + B @ step
            h_new = h_new / np.linalg.norm(h_new)
            r_new, J_new = c.residuals(h_new.reshape(3, 3), inliers)
            cost_new = float(r_new @ r_new)
            if cost_new < cost:
                converged = cost - cost_new <= 1e-12 * cost
                h, r, J, cost, lam = h_new, r_new, J_new, cost_new, lam / 10
                if converged:
                    break
            else:
                lam *= 10
                if lam > 1e10:
                    break
        return h.reshape(3, 3)
