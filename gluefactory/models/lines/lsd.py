"""LSD line segments (von Gioi et al., "LSD: a fast line segment detector", IPOL 2012).

Two backends run the same algorithm: ``pytlsd`` (the package upstream Glue Factory uses)
and OpenCV's ``createLineSegmentDetector``; ``backend: auto`` takes pytlsd when it is
installed. Both run on the grey image in [0, 255] (OpenCV needs uint8: the image is
rounded) with LSD's defaults (scale 0.8, sigma 0.6, standard refinement).

Coordinates, measured on a step edge between columns 99 and 100 at scale 1: pytlsd
reports x = 100 (already the library's convention, pixel centres at +0.5), OpenCV
x = 99.5 (pixel centres on integers), so OpenCV's endpoints get +0.5. At LSD's default
scale 0.8 both keep a sub-pixel bias of about 0.1 px of opposite sign (docs/lines.md).

Post-processing (facts 1.2): endpoints are clipped to the image [0, W] x [0, H]
(LSD's rectangles overshoot it by up to a pixel), segments shorter than ``min_length`` px are dropped, the
score is LSD's precision value (pytlsd's fifth column, OpenCV's ``prec``) times the
square root of the length, the ``max_num_lines`` best are kept (ties: detection order)
and ``force_num_lines`` pads to exactly ``max_num_lines`` with zero lines, score 0 and
``line_mask`` False. Images of a batch run in parallel threads; the result does not
depend on the thread count or on the batch (each image is processed alone; with
``image_size``, only its valid (w, h) part). pytlsd 0.0.2 frees none of its buffers
(about 24 bytes per pixel per call), so it runs in helper processes that are replaced
past 256 MB (:mod:`gluefactory.utils.isolated`): a training run's memory stays flat.
"""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ...utils.conf import ConfigError
from ...utils.image import check_image_tensor, rgb_to_grayscale
from ...utils.isolated import IsolatedFunction
from ..base_model import BaseModel
from ..utils.keypoints import check_range

BACKENDS = ("auto", "pytlsd", "opencv")


def has_pytlsd() -> bool:
    """Whether the pytlsd package is installed."""
    return importlib.util.find_spec("pytlsd") is not None


def _detect_pytlsd(grey: np.ndarray, lsd=None) -> tuple[np.ndarray, np.ndarray]:
    if lsd is None:
        import pytlsd

        lsd = pytlsd.lsd
    out = lsd(grey.astype(np.float64))
    out = np.asarray(out, np.float64).reshape(-1, 5)
    return out[:, :4], out[:, 4]


def _detect_opencv(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    image = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    # a detector per call: OpenCV's detector object is not documented thread-safe
    lines, _, prec, _ = cv2.createLineSegmentDetector().detect(image)
    if lines is None:
        return np.zeros((0, 4)), np.zeros(0)
    # OpenCV 4 returns (N, 1, 4), OpenCV 5 (N, 4); pixel centres on integers
    lines = np.asarray(lines, np.float64).reshape(-1, 4) + 0.5
    return lines, np.asarray(prec, np.float64).reshape(-1)


def detect_segments(
    grey: np.ndarray,
    backend: str,
    min_length: float,
    max_num_lines: int | None,
    pytlsd_lsd=None,
) -> tuple[np.ndarray, np.ndarray]:
    """LSD on one grey image (H, W) in [0, 255] -> (segments (L, 2, 2), scores (L,)),
    best first, in the library's pixel convention. ``pytlsd_lsd``: what to call for
    ``pytlsd.lsd`` (the model passes one running in a helper process: it leaks)."""
    if backend == "pytlsd":
        segs, precision = _detect_pytlsd(grey, pytlsd_lsd)
    else:
        segs, precision = _detect_opencv(grey)
    h, w = grey.shape
    # LSD's rectangles may overshoot the image by up to a pixel: clip the endpoints
    segs = np.clip(segs.reshape(-1, 2, 2), 0, [w, h])
    length = np.linalg.norm(segs[:, 1] - segs[:, 0], axis=-1)
    keep = length >= min_length
    segs, scores = segs[keep], precision[keep] * np.sqrt(length[keep])
    order = np.argsort(-scores, kind="stable")
    if max_num_lines is not None:
        order = order[:max_num_lines]
    return segs[order], scores[order]


class LSD(BaseModel):
    """LSD segments of a batch of images (module docstring).

    Input ``image`` (B, 1 or 3, H, W) in [0, 1], optional ``image_size`` (B, 2) valid
    (w, h) of images padded to a common size. Outputs ``lines`` (B, L, 2, 2) endpoints
    (x, y), ``line_scores`` (B, L) and ``line_mask`` (B, L) (True = real line; padded
    lines are zeros with score 0). L is ``max_num_lines`` with ``force_num_lines``,
    otherwise the largest count in the batch.
    """

    default_conf = {
        "backend": "auto",  # auto (pytlsd if installed, else opencv), pytlsd, opencv
        "min_length": 15.0,  # px: shorter segments are dropped
        "max_num_lines": None,  # the best ones by score; None: all
        "force_num_lines": False,  # exactly max_num_lines, padded (line_mask)
        "num_threads": 4,  # images of a batch detected in parallel
        # pytlsd in helper processes (it leaks 24 bytes per pixel per call); false: in
        # this process, for a few images
        "pytlsd_helper": True,
        "trainable": False,
    }
    required_data_keys = ["image"]

    @classmethod
    def check_conf(cls, conf) -> None:
        super().check_conf(conf)
        if conf.backend not in BACKENDS:
            raise ConfigError(
                f"lines.lsd: backend must be one of {', '.join(BACKENDS)}, got "
                f"{conf.backend!r}."
            )
        if conf.backend == "pytlsd" and not has_pytlsd():
            raise ConfigError(
                "lines.lsd: backend 'pytlsd' needs the pytlsd package (pip install "
                "pytlsd); or set backend: opencv."
            )
        check_range(conf, "min_length", "lines.lsd", low=0)
        check_range(
            conf, "max_num_lines", "lines.lsd", low=1, integer=True, allow_none=True
        )
        check_range(conf, "num_threads", "lines.lsd", low=1, integer=True)
        if not isinstance(conf.pytlsd_helper, bool):
            raise ConfigError(
                f"lines.lsd: pytlsd_helper must be true or false, got "
                f"{conf.pytlsd_helper!r}."
            )
        if not isinstance(conf.force_num_lines, bool):
            raise ConfigError(
                f"lines.lsd: force_num_lines must be true or false, got "
                f"{conf.force_num_lines!r}."
            )
        if conf.force_num_lines and conf.max_num_lines is None:
            raise ConfigError(
                "lines.lsd: force_num_lines needs max_num_lines (the count to pad to)."
            )

    @classmethod
    def describe(cls, conf=None) -> dict:
        """What the detector outputs: lines, no keypoints or descriptors."""
        cls.build_conf(conf)
        return {"descriptor_dim": None, "lines": True}

    def _init(self, conf) -> None:
        if conf.backend == "auto":
            self.backend = "pytlsd" if has_pytlsd() else "opencv"
        else:
            self.backend = conf.backend
        # pytlsd 0.0.2 frees none of its buffers (4 MB per 480 x 360 image): it runs
        # in helper processes, one per thread, replaced past 256 MB (utils.isolated)
        self._pytlsd = [
            IsolatedFunction("pytlsd", "lsd", max_rss_mb=256)
            for _ in range(
                conf.num_threads
                if self.backend == "pytlsd" and conf.pytlsd_helper
                else 0
            )
        ]

    def _forward(self, data: dict) -> dict:
        image = check_image_tensor(data["image"], "lines.lsd")
        b, _, h, w = image.shape
        grey = (rgb_to_grayscale(image.detach().float())[:, 0] * 255).cpu().numpy()
        sizes = data.get("image_size")
        if sizes is not None:
            sizes = sizes.round().long().tolist()
            grey = [g[:sh, :sw] for g, (sw, sh) in zip(grey, sizes, strict=True)]
        conf = self.conf

        def run(i: int) -> tuple[np.ndarray, np.ndarray]:
            helper = self._pytlsd[i % len(self._pytlsd)] if self._pytlsd else None
            return detect_segments(
                grey[i], self.backend, conf.min_length, conf.max_num_lines, helper
            )

        if b > 1 and conf.num_threads > 1:
            with ThreadPoolExecutor(min(b, conf.num_threads)) as pool:
                results = list(pool.map(run, range(b)))
        else:
            results = [run(i) for i in range(b)]
        n = conf.max_num_lines if conf.force_num_lines else None
        return pad_lines(results, n, image.device, image.dtype)


def pad_lines(
    results: list[tuple[np.ndarray, np.ndarray]],
    num: int | None,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """Per-image (segments (L_i, 2, 2), scores (L_i,)) -> batched ``lines``,
    ``line_scores`` and ``line_mask``, zero-padded to ``num`` (None: the largest L_i)."""
    if num is None:
        num = max((len(s) for s, _ in results), default=0)
    b = len(results)
    lines = torch.zeros((b, num, 2, 2), dtype=dtype)
    scores = torch.zeros((b, num), dtype=dtype)
    mask = torch.zeros((b, num), dtype=torch.bool)
    for i, (segs, sc) in enumerate(results):
        k = min(len(segs), num)
        lines[i, :k] = torch.from_numpy(segs[:k]).to(dtype)
        scores[i, :k] = torch.from_numpy(sc[:k]).to(dtype)
        mask[i, :k] = True
    return {
        "lines": lines.to(device),
        "line_scores": scores.to(device),
        "line_mask": mask.to(device),
    }
