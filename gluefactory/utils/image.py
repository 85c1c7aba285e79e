"""Reading images and preparing them for a network.

``read_image`` fails with a clear message naming the path; ``ImagePreprocessor`` resizes
(by short or long side, or to a fixed size; antialiased), optionally crops to sizes
divisible by a stride and converts to grayscale, and records the scale factors so that
keypoints can be mapped back: ``kpts_original = kpts_resized / scales`` (exact in the
library's pixel convention, see :mod:`gluefactory.geometry.coordinates`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from .conf import Configurable
from .errors import ConfigError, InputError

IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".pgm",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
}


#: the smallest side of an image file that is read (the smallest ``min_image_size`` of
#: the extractors): a smaller image holds no features, and resizing it would only
#: invent them by upscaling (a 1 x 1 pixel image became a uniform 480 x 480 one)
MIN_IMAGE_SIDE = 16


class ImageReadError(InputError, OSError):
    """An image file is missing, unreadable, not an image or too small."""


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"Image file not found: {path}")
    if not path.is_file():
        raise ImageReadError(f"Not a file: {path}")


def _check_size(path: Path, w: int, h: int) -> None:
    if min(w, h) < MIN_IMAGE_SIDE:
        raise ImageReadError(
            f"Image {path} is {w}x{h} px (WxH): images must be at least "
            f"{MIN_IMAGE_SIDE} px on each side (a smaller one holds no features; "
            "resizing it would invent them). Use a larger image."
        )


def read_image(path: str | Path, grayscale: bool = False) -> np.ndarray:
    """Read an image as uint8 RGB (H, W, 3) or grayscale (H, W); an image below
    :data:`MIN_IMAGE_SIDE` px on a side is an :class:`ImageReadError` naming it."""
    path = Path(path)
    _check_file(path)
    mode = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    data = np.fromfile(str(path), dtype=np.uint8)  # also works with non-ASCII paths
    image = cv2.imdecode(data, mode) if data.size else None
    if image is None:
        raise ImageReadError(
            f"Could not decode image {path} ({data.size} bytes): the file is corrupt or "
            f"not an image format OpenCV reads ({', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    _check_size(path, image.shape[1], image.shape[0])
    # cvtColor: 0.01-0.03 of a reversed-axis copy's time (docs/benchmarks.md)
    if not grayscale:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


#: EXIF orientations that turn the image a quarter (width and height swap)
_EXIF_QUARTER_TURNS = (5, 6, 7, 8)


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(w, h) of the image :func:`read_image` would return, from the file's header
    alone (no decoding): OpenCV applies the EXIF orientation, so a quarter turn swaps
    them here too. Errors as :func:`read_image`'s."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as im:
            (w, h), orientation = im.size, im.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise ImageReadError(f"Could not read the size of image {path}: {e}") from e
    _check_size(path, w, h)
    return (h, w) if orientation in _EXIF_QUARTER_TURNS else (w, h)


def numpy_image_to_torch(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) uint8/float array -> (C, H, W) float tensor in [0, 1]."""
    if image.ndim not in (2, 3):
        raise ValueError(f"Not an image: array of shape {image.shape}")
    t = torch.from_numpy(np.ascontiguousarray(image))
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    # reorder while still 1-byte, then one float copy (never the caller's memory)
    # divided in place (docs/benchmarks.md: 0.6-0.9 of the time of the old way)
    t = t.contiguous().to(torch.float32, copy=True)
    return t.div_(255.0) if image.dtype == np.uint8 else t


RGB_TO_GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights, as cv2.cvtColor

# Float images outside [0, 1] by at most this much are accepted as they are: bicubic
# resizing overshoots at sharp edges by up to about 0.1.
IMAGE_VALUE_TOLERANCE = 0.25


def rgb_to_grayscale(
    image: torch.Tensor,
    out: torch.Tensor | None = None,
    tmp: torch.Tensor | None = None,
) -> torch.Tensor:
    """(..., 3, H, W) RGB -> (..., 1, H, W) grey with ITU-R 601 luma weights (as OpenCV).

    The library's one RGB-to-grey conversion (extractors, preprocessing): the weighted
    sum r w_r + g w_g + b w_b in this order, equal bit for bit to
    ``(image * w).sum(-3)``. A (..., 1, H, W) image is returned unchanged. ``out``
    (..., 1, H, W) and ``tmp`` (..., H, W): optional tensors to compute into (buffers
    reused across calls); the result is the same.
    """
    c = image.shape[-3] if image.dim() >= 3 else None
    if c == 1:
        return image
    if c != 3:
        raise InputError(
            f"rgb_to_grayscale expects (..., 1 or 3, H, W), got {tuple(image.shape)}."
        )
    w_r, w_g, w_b = RGB_TO_GREY
    if _numpy_ok(image) and all(t is None or _numpy_ok(t) for t in (out, tmp)):
        # NumPy on the CPU: single-threaded, so no stall waiting for intra-op worker
        # threads on a loaded machine (torch's 2-thread version took tens of ms there)
        r, g, b = (x.numpy() for x in image.unbind(-3))
        o = None if out is None else out.squeeze(-3).numpy()
        t = None if tmp is None else tmp.numpy()
        grey = np.multiply(r, r.dtype.type(w_r), out=o)
        grey += np.multiply(g, g.dtype.type(w_g), out=t)
        grey += np.multiply(b, b.dtype.type(w_b), out=t)
        return torch.from_numpy(grey).unsqueeze(-3) if out is None else out
    r, g, b = image.unbind(-3)
    grey = torch.mul(r, w_r, out=None if out is None else out.squeeze(-3))
    grey += torch.mul(g, w_g, out=tmp)  # separate products and sums: no fused
    grey += torch.mul(b, w_b, out=tmp)  # multiply-add, so the same bits everywhere
    return grey.unsqueeze(-3) if out is None else out


def _numpy_ok(x: torch.Tensor) -> bool:
    """Whether ``x`` can be computed on through NumPy (CPU float, no autograd)."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and not (x.requires_grad and torch.is_grad_enabled())
    )


def _value_range(image: torch.Tensor) -> tuple[float, float]:
    """(min, max) of a float tensor; NaN if it holds any NaN. On the CPU through NumPy
    (single-threaded: no stall on intra-op threads of a loaded machine)."""
    x = image.detach()
    if _numpy_ok(x):
        a = x.numpy()
        return float(a.min()), float(a.max())
    lo, hi = torch.aminmax(x)
    return lo.item(), hi.item()


def check_image_tensor(
    image: Any,
    component: str,
    channels: Sequence[int] = (1, 3),
    min_size: int | None = None,
) -> torch.Tensor:
    """Validate a batched image given to a model; return it as a float tensor.

    The rule every extractor applies (docs/extractors.md, "Input"):

    - ``image`` must be a (B, C, H, W) tensor with C in ``channels`` and H, W >= 1,
      else an :class:`InputError` names the expected shape;
    - float images must hold values in [0, 1] (overshoot up to
      ``IMAGE_VALUE_TOLERANCE``, as from bicubic resizing, is accepted): larger or more
      negative values, e.g. an image in [0, 255] as float, are an :class:`InputError`
      that says so (rescaling them silently would hide the bug); NaN or infinite values
      are an :class:`InputError`;
    - uint8 images (unambiguous) are converted to float / 255 with a warning; other
      integer and boolean types are an :class:`InputError`;
    - with ``min_size``, an image whose height or width is below it is an
      :class:`InputError` naming the size and the minimum (a network cannot run there,
      or finds keypoints only in its own padding or upsampling).
    """
    if not isinstance(image, torch.Tensor):
        raise InputError(
            f"{component}: data['image'] must be a torch.Tensor (B, C, H, W), got "
            f"{type(image).__name__}."
        )
    expected = f"(B, {' or '.join(map(str, channels))}, H, W)"
    shape = tuple(image.shape)
    if image.dim() != 4 or shape[1] not in channels:
        hint = (
            " (one image: add the batch dimension, image[None])"
            if (image.dim() == 3 and shape[0] in channels)
            else ""
        )
        raise InputError(
            f"{component}: data['image'] must be {expected}, got {shape}{hint}."
        )
    if shape[2] < 1 or shape[3] < 1:
        raise InputError(f"{component}: data['image'] is empty, shape {shape}.")
    if image.dtype == torch.uint8:
        warnings.warn(
            f"{component}: data['image'] is uint8; converted to float / 255 (the "
            "models expect float images in [0, 1]).",
            stacklevel=3,
        )
        image = image.float() / 255.0
    elif not image.is_floating_point():
        raise InputError(
            f"{component}: data['image'] must be a float tensor in [0, 1] (or uint8), "
            f"got dtype {image.dtype}."
        )
    else:
        lo, hi = _value_range(image)
        if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN propagates to both
            bad = (~torch.isfinite(image.detach())).sum().item()
            raise InputError(
                f"{component}: data['image'] has {bad} NaN or infinite value(s)."
            )
        tol = IMAGE_VALUE_TOLERANCE
        if hi > 1 + tol or lo < -tol:
            hint = (
                " It looks like an image in [0, 255]: divide it by 255."
                if hi > 1 + tol and lo >= -tol
                else ""
            )
            raise InputError(
                f"{component}: data['image'] has values in [{lo:.4g}, {hi:.4g}], "
                f"but images must be float in [0, 1].{hint}"
            )
    if min_size is not None and min(shape[2:]) < min_size:
        raise InputError(
            f"{component}: the image is {shape[3]}x{shape[2]} px (WxH), smaller than "
            f"the {min_size} px {component} needs on each side (below, it cannot run "
            "or finds keypoints only in its own padding); use a larger image."
        )
    return image


def resize_image(
    image: torch.Tensor,
    size: Sequence[int],
    interpolation: str = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Resize (..., C, H, W) to ``size`` = (h, w)."""
    h, w = int(size[0]), int(size[1])
    if tuple(image.shape[-2:]) == (h, w):
        return image
    shape = image.shape
    x = image.reshape(-1, *shape[-3:])
    kwargs = (
        {"align_corners": False} if interpolation in ("bilinear", "bicubic") else {}
    )
    aa = antialias and interpolation in ("bilinear", "bicubic")
    x = F.interpolate(x, size=(h, w), mode=interpolation, antialias=aa, **kwargs)
    return x.reshape(*shape[:-2], h, w)


class ImagePreprocessor(Configurable):
    """Resize/crop/grayscale an image and record the scales (see module docstring).

    Config:
    - ``resize``: None, an int (target length of ``side``) or [h, w] (fixed size);
    - ``side``: "short", "long", "vert" or "horz": which side ``resize`` applies to;
    - ``interpolation``: "bilinear", "bicubic", "area", "nearest"; ``antialias``;
    - ``square_pad``: zero-pad the resized image to a square (bottom/right);
    - ``divisible_by``: crop the resized image (bottom/right) to multiples of this;
    - ``grayscale``: convert RGB to one channel.
    """

    default_conf = {
        "resize": None,
        "side": "long",
        "interpolation": "bilinear",
        "antialias": True,
        "square_pad": False,
        "divisible_by": None,
        "grayscale": False,
    }

    def __init__(self, conf: Any = None):
        self.conf = self.build_conf(conf)

    @classmethod
    def check_conf(cls, conf) -> None:
        if conf.side not in ("short", "long", "vert", "horz"):
            raise ConfigError(
                f"ImagePreprocessor.side must be short|long|vert|horz, got {conf.side!r}."
            )
        r = conf.resize
        sizes = list(r) if OmegaConf.is_list(r) else [r]
        if r is not None and (
            len(sizes) not in (1, 2)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in sizes)
            or min(sizes) < 1
        ):
            raise ConfigError(
                "ImagePreprocessor.resize must be null, a positive integer (length of "
                f"the `side` edge) or [height, width] of positive integers, got {r!r}."
            )
        d = conf.divisible_by
        if d is not None and (not isinstance(d, int) or d < 1):
            raise ConfigError(
                f"ImagePreprocessor.divisible_by must be null or a positive integer, got {d!r}."
            )

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        r = self.conf.resize
        if r is None:
            return h, w
        if OmegaConf.is_list(r) or isinstance(r, (list, tuple)):
            if len(r) != 2:
                raise ValueError(
                    f"ImagePreprocessor.resize must be an int or [h, w], got {r}"
                )
            return int(r[0]), int(r[1])
        side = self.conf.side
        ref = {"short": min(h, w), "long": max(h, w), "vert": h, "horz": w}[side]
        # The resized side gets exactly `r` pixels; the other is truncated with
        # upstream's formula (int(r * aspect)), so that sizes, and hence metrics in
        # resized pixels, are those of the published protocols. ``scales`` records the
        # exact ratios either way.
        aspect = w / h
        return (int(r), int(r * aspect)) if ref == h else (int(r / aspect), int(r))

    def sizes(self, h: int, w: int) -> dict[str, torch.Tensor]:
        """What :meth:`__call__` records for an (h, w) image, without an image:
        ``scales`` (sx, sy), ``image_size`` (w, h after the divisible_by crop) and
        ``original_image_size`` (e.g. for cached features, whose image is not read)."""
        th, tw = self.target_size(h, w)
        scales = torch.tensor([tw / w, th / h], dtype=torch.float32)
        d = self.conf.divisible_by
        if d:  # the crop keeps the scale of the remaining pixels
            th, tw = (th // d) * d, (tw // d) * d
        return {
            "scales": scales,
            "image_size": torch.tensor([tw, th], dtype=torch.float32),
            "original_image_size": torch.tensor([w, h], dtype=torch.float32),
        }

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """(C, H, W) float image -> dict(image, scales (sx, sy), image_size (w, h), original_image_size)."""
        h, w = image.shape[-2:]
        out = self.sizes(h, w)
        th, tw = self.target_size(h, w)
        image = resize_image(
            image, (th, tw), self.conf.interpolation, self.conf.antialias
        )
        cw, ch = (int(v) for v in out["image_size"])
        image = image[..., :ch, :cw]
        if self.conf.grayscale:
            image = rgb_to_grayscale(image)
        if self.conf.square_pad:
            side = max(ch, cw)
            image = F.pad(image, (0, side - cw, 0, side - ch))
        return {"image": image, **out}

    def load(self, path: str | Path) -> dict[str, torch.Tensor]:
        """Read an image file and preprocess it."""
        return self(numpy_image_to_torch(read_image(path)))
