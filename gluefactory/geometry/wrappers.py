"""Batched rigid poses and pinhole cameras as thin tensor wrappers.

Both classes store their parameters in one tensor ``_data`` of shape (..., D) so that a
batch of poses or cameras can be indexed, stacked, moved between devices and collated
like a tensor. The leading dimensions are the batch shape (``obj.shape``).

Conventions
-----------
* :class:`Pose` is a **world-to-camera** rigid transform ``p_cam = R @ p_world + t``.
  ``T_0to1 = T_w2c1 @ T_w2c0.inv()`` maps points from camera 0 to camera 1.
* :class:`Camera` is a pinhole camera (fx, fy, cx, cy) with the **real image size**
  (w, h) in pixels. Its image coordinates follow the library convention of
  :mod:`gluefactory.geometry.coordinates`: the centre of pixel (i, j) is
  (i + 0.5, j + 0.5) and the image spans [0, W] x [0, H]. The principal point of ``K``
  is expressed in the same frame, so ``K @ (X / Z)`` gives keypoints in the library
  convention directly. COLMAP (and hence MegaDepth) intrinsics already use this frame;
  an OpenCV-calibrated K (pixel centres at integers) needs ``cx + 0.5, cy + 0.5``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .coordinates import in_image as _in_image

TensorLike = torch.Tensor | np.ndarray | Sequence[float] | float


def _as_tensor(x: TensorLike, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if like is None else x.to(like)
    if like is not None:
        return torch.as_tensor(x, dtype=like.dtype, device=like.device)
    t = torch.as_tensor(x)
    return t if t.is_floating_point() else t.float()


class TensorWrapper:
    """A tensor ``_data`` (..., D) with a meaning: indexing acts on the batch dims."""

    _data: torch.Tensor

    def __init__(self, data: torch.Tensor):
        if not isinstance(data, torch.Tensor):
            raise TypeError(
                f"{type(self).__name__} expects a tensor, got {type(data)}."
            )
        self._data = data

    @property
    def shape(self) -> torch.Size:
        """Batch shape (without the parameter dimension)."""
        return self._data.shape[:-1]

    @property
    def device(self) -> torch.device:
        return self._data.device

    @property
    def dtype(self) -> torch.dtype:
        return self._data.dtype

    def __len__(self) -> int:
        if len(self.shape) == 0:
            raise TypeError(f"len() of an unbatched {type(self).__name__}.")
        return self.shape[0]

    def __getitem__(self, index):
        return self.__class__(self._data[index])

    def __setitem__(self, index, item: TensorWrapper):
        self._data[index] = item._data

    def to(self, *args, **kwargs):
        return self.__class__(self._data.to(*args, **kwargs))

    def cpu(self):
        return self.__class__(self._data.cpu())

    def cuda(self):
        return self.__class__(self._data.cuda())

    def float(self):
        return self.__class__(self._data.float())

    def double(self):
        return self.__class__(self._data.double())

    def detach(self):
        return self.__class__(self._data.detach())

    def pin_memory(self):
        return self.__class__(self._data.pin_memory())

    def unsqueeze(self, dim: int):
        if dim < 0:
            dim -= 1  # never insert after the parameter dimension
        return self.__class__(self._data.unsqueeze(dim))

    @classmethod
    def stack(cls, objects: Sequence[TensorWrapper], dim: int = 0):
        if dim < 0:
            dim -= 1
        return cls(torch.stack([o._data for o in objects], dim=dim))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.shape)}, data={self._data})"


# --------------------------------------------------------------------------- rotations
def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Rodrigues: axis-angle vectors (..., 3) in radians -> rotations (..., 3, 3)."""
    theta = aa.norm(dim=-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = theta < 1e-8
    axis = aa[..., None, :] / torch.where(small, torch.ones_like(theta), theta)
    k = axis[..., 0, :]
    zero = torch.zeros_like(k[..., 0])
    K = torch.stack(
        [
            zero,
            -k[..., 2],
            k[..., 1],
            k[..., 2],
            zero,
            -k[..., 0],
            -k[..., 1],
            k[..., 0],
            zero,
        ],
        -1,
    ).reshape(*k.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(K)
    R = eye + torch.sin(theta) * K + (1 - torch.cos(theta)) * (K @ K)
    return torch.where(small, eye, R)


def rotation_angle(R: torch.Tensor) -> torch.Tensor:
    """Angle in degrees of rotation matrices (..., 3, 3).

    atan2(|axis|, cos) with cos = (trace - 1) / 2 and axis = vee(R - R^T) / 2: unlike
    arccos(cos) alone, it stays accurate for small angles in float32.
    """
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    axis = torch.stack(
        [
            R[..., 2, 1] - R[..., 1, 2],
            R[..., 0, 2] - R[..., 2, 0],
            R[..., 1, 0] - R[..., 0, 1],
        ],
        -1,
    )
    sin = axis.norm(dim=-1) / 2
    return torch.rad2deg(torch.atan2(sin, cos))


# --------------------------------------------------------------------------- pose
class Pose(TensorWrapper):
    """Batched rigid transform ``p' = R p + t``; ``_data`` is (..., 12): [R, t]."""

    def __init__(self, data: torch.Tensor):
        if data.shape[-1] != 12:
            raise ValueError(f"Pose data must be (..., 12), got {tuple(data.shape)}.")
        super().__init__(data)

    @classmethod
    def from_Rt(cls, R: TensorLike, t: TensorLike) -> Pose:
        """From rotations (..., 3, 3) and translations (..., 3) (broadcast together)."""
        R = _as_tensor(R)
        t = _as_tensor(t, like=R)
        if R.shape[-2:] != (3, 3) or t.shape[-1] != 3:
            raise ValueError(
                f"Expected R (...,3,3) and t (...,3), got {R.shape}, {t.shape}."
            )
        batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
        R = R.expand(*batch, 3, 3)
        t = t.expand(*batch, 3)
        return cls(torch.cat([R.reshape(*batch, 9), t], -1))

    @classmethod
    def from_4x4mat(cls, T: TensorLike) -> Pose:
        """From homogeneous matrices (..., 4, 4) (the last row is ignored)."""
        T = _as_tensor(T)
        if T.shape[-2:] != (4, 4):
            raise ValueError(f"Expected a (..., 4, 4) matrix, got {tuple(T.shape)}.")
        return cls.from_Rt(T[..., :3, :3], T[..., :3, 3])

    @classmethod
    def from_aa(cls, aa: TensorLike, t: TensorLike) -> Pose:
        """From axis-angle vectors (..., 3) in radians and translations (..., 3)."""
        aa = _as_tensor(aa)
        return cls.from_Rt(axis_angle_to_matrix(aa), _as_tensor(t, like=aa))

    @classmethod
    def identity(
        cls, batch_shape: Sequence[int] = (), dtype=torch.float32, device=None
    ):
        R = torch.eye(3, dtype=dtype, device=device).expand(*batch_shape, 3, 3)
        return cls.from_Rt(R, torch.zeros(*batch_shape, 3, dtype=dtype, device=device))

    @property
    def R(self) -> torch.Tensor:
        """Rotations (..., 3, 3)."""
        return self._data[..., :9].reshape(*self.shape, 3, 3)

    @property
    def t(self) -> torch.Tensor:
        """Translations (..., 3)."""
        return self._data[..., -3:]

    def matrix(self) -> torch.Tensor:
        """Homogeneous matrices (..., 4, 4)."""
        T = torch.zeros(*self.shape, 4, 4, dtype=self.dtype, device=self.device)
        T[..., :3, :3] = self.R
        T[..., :3, 3] = self.t
        T[..., 3, 3] = 1
        return T

    def inv(self) -> Pose:
        """The inverse transform: R^T, -R^T t."""
        Rt = self.R.transpose(-1, -2)
        return Pose.from_Rt(Rt, -(Rt @ self.t[..., None])[..., 0])

    def compose(self, other: Pose) -> Pose:
        """``self @ other``: apply ``other`` first, then ``self``."""
        R = self.R @ other.R
        t = self.t + (self.R @ other.t[..., None])[..., 0]
        return Pose.from_Rt(R, t)

    def transform(self, p3d: torch.Tensor) -> torch.Tensor:
        """Transform points (..., N, 3) by the pose with batch shape (...)."""
        if p3d.shape[-1] != 3:
            raise ValueError(f"Expected 3D points (..., N, 3), got {tuple(p3d.shape)}.")
        return p3d @ self.R.transpose(-1, -2) + self.t.unsqueeze(-2)

    def __matmul__(self, other):
        """Pose @ Pose composes; Pose @ points (..., N, 3) transforms."""
        if isinstance(other, Pose):
            return self.compose(other)
        if isinstance(other, torch.Tensor):
            return self.transform(other)
        return NotImplemented

    def magnitude(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rotation angle in degrees, translation norm), each of the batch shape."""
        return rotation_angle(self.R), self.t.norm(dim=-1)

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, t) as numpy arrays."""
        return self.R.detach().cpu().numpy(), self.t.detach().cpu().numpy()

    def __repr__(self) -> str:
        return f"Pose(shape={tuple(self.shape)}, R={self.R}, t={self.t})"


# --------------------------------------------------------------------------- camera
class Camera(TensorWrapper):
    """Batched pinhole camera; ``_data`` is (..., 6) = [w, h, fx, fy, cx, cy].

    Image coordinates are in the library convention (pixel centres at +0.5, image
    corners (0, 0) and (w, h)), and so is the principal point (see the module
    docstring).
    """

    eps = 1e-4  # minimum depth for a point to count as in front of the camera

    def __init__(self, data: torch.Tensor):
        if data.shape[-1] != 6:
            raise ValueError(f"Camera data must be (..., 6), got {tuple(data.shape)}.")
        super().__init__(data)

    @classmethod
    def from_calibration_matrix(cls, K: TensorLike, size: TensorLike) -> Camera:
        """From K (..., 3, 3) and the real image size (w, h) (..., 2).

        The size is required: it is never guessed from the principal point.
        """
        K = _as_tensor(K)
        if K.shape[-2:] != (3, 3):
            raise ValueError(f"Expected K of shape (..., 3, 3), got {tuple(K.shape)}.")
        if size is None:
            raise ValueError(
                "Camera.from_calibration_matrix needs the image size (w, h)."
            )
        size = _as_tensor(size, like=K)
        if size.shape[-1] != 2:
            raise ValueError(
                f"The image size must be (..., 2) = (w, h), got {size.shape}."
            )
        params = torch.stack(
            [K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]], -1
        )
        batch = torch.broadcast_shapes(params.shape[:-1], size.shape[:-1])
        data = torch.cat([size.expand(*batch, 2), params.expand(*batch, 4)], -1)
        return cls(data)

    @classmethod
    def from_params(
        cls,
        w: float,
        h: float,
        fx: float,
        fy: float,
        cx: float,
        cy: float,
        dtype=torch.float32,
    ) -> Camera:
        return cls(torch.tensor([w, h, fx, fy, cx, cy], dtype=dtype))

    @property
    def size(self) -> torch.Tensor:
        """Image size (w, h) in pixels, (..., 2)."""
        return self._data[..., 0:2]

    @property
    def f(self) -> torch.Tensor:
        """Focal lengths (fx, fy), (..., 2)."""
        return self._data[..., 2:4]

    @property
    def c(self) -> torch.Tensor:
        """Principal point (cx, cy) in the library convention, (..., 2)."""
        return self._data[..., 4:6]

    def calibration_matrix(self) -> torch.Tensor:
        """K (..., 3, 3)."""
        K = torch.zeros(*self.shape, 3, 3, dtype=self.dtype, device=self.device)
        K[..., 0, 0], K[..., 1, 1] = self.f[..., 0], self.f[..., 1]
        K[..., 0, 2], K[..., 1, 2] = self.c[..., 0], self.c[..., 1]
        K[..., 2, 2] = 1
        return K

    @property
    def K(self) -> torch.Tensor:
        return self.calibration_matrix()

    def scale(self, scales: TensorLike) -> Camera:
        """The camera of the image resized by ``scales`` (s or (sx, sy), batchable).

        Exact in the library convention: x -> s * x for keypoints, f, c and the size.
        Pass the real ratios (new_w / w, new_h / h) when the new size was rounded. A
        trailing dimension of 2 is read as (sx, sy): give per-item scales as (B, 1).
        """
        s = _as_tensor(scales, like=self._data)
        if s.dim() == 0 or s.shape[-1] != 2:
            s = s[..., None].expand(*s.shape, 2)
        data = torch.cat([self.size * s, self.f * s, self.c * s], -1)
        return Camera(data)

    def crop(self, left_top: TensorLike, size: TensorLike) -> Camera:
        """The camera of the crop of ``size`` (w, h) starting at corner ``left_top``."""
        left_top = _as_tensor(left_top, like=self._data)
        size = _as_tensor(size, like=self._data)
        batch = self.shape
        data = torch.cat(
            [size.expand(*batch, 2), self.f, self.c - left_top.expand(*batch, 2)], -1
        )
        return Camera(data)

    def _pts(self, x: torch.Tensor) -> torch.Tensor:
        """Broadcast per-camera parameters (..., 2) over points (..., N, 2)."""
        return x.unsqueeze(-2)

    def image2cam(self, p2d: torch.Tensor) -> torch.Tensor:
        """Pixels (..., N, 2) -> normalised image-plane coordinates (x/z, y/z)."""
        return (p2d - self._pts(self.c)) / self._pts(self.f)

    def cam2image(self, p2d: torch.Tensor) -> torch.Tensor:
        """Normalised image-plane coordinates (..., N, 2) -> pixels."""
        return p2d * self._pts(self.f) + self._pts(self.c)

    def project(self, p3d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera-frame points (..., N, 3) -> (pixels (..., N, 2), valid: z > eps)."""
        z = p3d[..., -1]
        valid = z > self.eps
        z = torch.where(valid, z, torch.full_like(z, self.eps))
        p2d = p3d[..., :-1] / z.unsqueeze(-1)
        return self.cam2image(p2d), valid

    def unproject(
        self, p2d: torch.Tensor, depth: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pixels (..., N, 2) -> rays (x, y, 1) (..., N, 3) or 3D points with ``depth``.

        ``depth`` (..., N) is the z coordinate (as in depth maps), not the distance
        along the ray.
        """
        xy = self.image2cam(p2d)
        rays = torch.cat([xy, torch.ones_like(xy[..., :1])], -1)
        if depth is None:
            return rays
        return rays * depth.unsqueeze(-1)

    def in_image(self, p2d: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
        """Mask (..., N) of points inside [0, w) x [0, h) (shrunk by ``margin``)."""
        return _in_image(p2d, self.size, margin)

    def __repr__(self) -> str:
        return (
            f"Camera(shape={tuple(self.shape)}, size={self.size}, f={self.f}, "
            f"c={self.c})"
        )
