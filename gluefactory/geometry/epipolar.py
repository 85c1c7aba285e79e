"""Two-view epipolar geometry: essential/fundamental matrices, distances, pose errors.

Conventions: ``T_0to1`` maps points of camera 0 to camera 1 (``p1 = R p0 + t``), so the
essential matrix is ``E = [t]x R`` and a correspondence satisfies ``x1^T E x0 = 0`` in
normalised coordinates (``x = K^-1 (u, v, 1)``), and ``u1^T F u0 = 0`` in pixels with
``F = K1^-T E K0^-1``. Pixels are in the library convention (pixel centres at +0.5) with
K expressed in the same frame (see :mod:`gluefactory.geometry.wrappers`).
"""

from __future__ import annotations

import torch

from .utils import to_homogeneous
from .wrappers import Camera, Pose, rotation_angle

__all__ = [
    "E_to_F",
    "F_to_E",
    "T_to_E",
    "T_to_F",
    "angle_error_mat",
    "angle_error_vec",
    "relative_pose_error",
    "sampson_distance",
    "skew",
    "sym_epipolar_distance",
    "to_homogeneous",
]


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices [v]x (..., 3, 3) of vectors (..., 3): [v]x w = v x w."""
    z = torch.zeros_like(v[..., 0])
    x, y, w = v.unbind(-1)
    M = torch.stack([z, -w, y, w, z, -x, -y, x, z], -1)
    return M.reshape(*v.shape[:-1], 3, 3)


def T_to_E(T_0to1: Pose) -> torch.Tensor:
    """Essential matrices E = [t]x R (..., 3, 3)."""
    return skew(T_0to1.t) @ T_0to1.R


def E_to_F(E: torch.Tensor, K0: torch.Tensor, K1: torch.Tensor) -> torch.Tensor:
    """Fundamental matrices F = K1^-T E K0^-1 (..., 3, 3)."""
    return torch.linalg.inv(K1).transpose(-1, -2) @ E @ torch.linalg.inv(K0)


def F_to_E(F: torch.Tensor, K0: torch.Tensor, K1: torch.Tensor) -> torch.Tensor:
    """Essential matrices E = K1^T F K0 (..., 3, 3)."""
    return K1.transpose(-1, -2) @ F @ K0


def T_to_F(camera0: Camera, camera1: Camera, T_0to1: Pose) -> torch.Tensor:
    """Fundamental matrices in the library pixel convention (..., 3, 3)."""
    return E_to_F(T_to_E(T_0to1), camera0.K, camera1.K)


def _lines(p0: torch.Tensor, p1: torch.Tensor, M: torch.Tensor):
    """Homogeneous points x0, x1 (..., N, 3) and their epipolar lines ``M x0`` (in
    image 1) and ``M^T x1`` (in image 0), (..., N, 3)."""
    x0, x1 = to_homogeneous(p0), to_homogeneous(p1)
    return x0, x1, x0 @ M.transpose(-1, -2), x1 @ M


def _sym_distance(num, n0, n1, squared: bool, eps: float) -> torch.Tensor:
    """Mean of the point-to-line distances |num| / sqrt(n) in both images (or squared)."""
    if squared:
        return num.square() * 0.5 * (1 / (n0 + eps) + 1 / (n1 + eps))
    return num.abs() * 0.5 * (1 / (n0 + eps).sqrt() + 1 / (n1 + eps).sqrt())


def sym_epipolar_distance(
    p0: torch.Tensor,
    p1: torch.Tensor,
    M: torch.Tensor,
    squared: bool = False,
    eps: float = 1e-15,
    pairwise: bool = False,
) -> torch.Tensor:
    """Symmetric epipolar distance ``|x1^T M x0| * 1/2 * (1/||(M x0)_12|| + 1/||(M^T x1)_12||)``.

    ``M`` (..., 3, 3) is an essential matrix E with **normalised** coordinates (``K^-1``
    applied: the MegaDepth-1500 "epipolar precision" distance) or a fundamental matrix F
    with pixels (distances in pixels). Correspondences p0[i] <-> p1[i] (..., N, 2) give
    (..., N); with ``pairwise``, p0 (..., M, 2) and p1 (..., N, 2) give every pair
    (..., M, N). ``squared`` gives the mean of the two squared distances.
    """
    _, x1, Mx0, Mtx1 = _lines(p0, p1, M)  # lines: (..., M, 3) in image 1, (..., N, 3)
    n0 = Mx0[..., :2].square().sum(-1)
    n1 = Mtx1[..., :2].square().sum(-1)
    if pairwise:
        num = Mx0 @ x1.transpose(-1, -2)  # (..., M, N) = x1_j^T M x0_i
        n0, n1 = n0[..., :, None], n1[..., None, :]
    else:
        num = (x1 * Mx0).sum(-1)
    return _sym_distance(num, n0, n1, squared, eps)


def sampson_distance(
    p0: torch.Tensor,
    p1: torch.Tensor,
    F: torch.Tensor,
    squared: bool = False,
    eps: float = 1e-15,
) -> torch.Tensor:
    """Sampson distance (first-order geometric error) of correspondences (..., N, 2).

    ``(x1^T F x0)^2 / ((F x0)_1^2 + (F x0)_2^2 + (F^T x1)_1^2 + (F^T x1)_2^2)`` is the
    squared distance; ``squared=False`` returns its square root. Works with E on
    normalised coordinates too.
    """
    _, x1, Fx0, Ftx1 = _lines(p0, p1, F)
    num = (x1 * Fx0).sum(-1)
    den = Fx0[..., :2].square().sum(-1) + Ftx1[..., :2].square().sum(-1)
    d2 = num.square() / (den + eps)
    return d2 if squared else d2.sqrt()


def angle_error_vec(
    v0: torch.Tensor, v1: torch.Tensor, eps: float = 1e-12
) -> torch.Tensor:
    """Angle in degrees between vectors (..., D)."""
    cos = (v0 * v1).sum(-1) / (v0.norm(dim=-1) * v1.norm(dim=-1)).clamp_min(eps)
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


def angle_error_mat(R0: torch.Tensor, R1: torch.Tensor) -> torch.Tensor:
    """Angle in degrees of the rotation R0^T R1 (..., 3, 3)."""
    return rotation_angle(R0.transpose(-1, -2) @ R1)


def relative_pose_error(
    T_0to1: Pose,
    R: torch.Tensor,
    t: torch.Tensor,
    ignore_gt_t_thr: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(translation error, rotation error) in degrees of (R, t) vs ``T_0to1``.

    The translation error is the angle between t and the GT translation, folded with
    ``min(e, 180 - e)`` because an essential matrix fixes t only up to sign. It is 0
    where the GT translation is shorter than ``ignore_gt_t_thr`` (pure rotation).
    The rotation error is the angle of ``R^T R_gt``.
    """
    R = torch.as_tensor(R).to(T_0to1.R)
    t = torch.as_tensor(t).to(T_0to1.t)
    t_err = angle_error_vec(t, T_0to1.t)
    t_err = torch.minimum(t_err, 180.0 - t_err)
    if ignore_gt_t_thr > 0:
        t_err = torch.where(
            T_0to1.t.norm(dim=-1) < ignore_gt_t_thr, torch.zeros_like(t_err), t_err
        )
    r_err = angle_error_mat(R, T_0to1.R)
    return t_err, r_err
