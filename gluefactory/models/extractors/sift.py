"""SIFT keypoints with RootSIFT descriptors, scales and orientations.

Backends: ``opencv`` (``cv2.SIFT``, default) or ``pycolmap`` (COLMAP's CPU SIFT, or its
GPU SIFT where pycolmap was built with CUDA: ``pycolmap_cpu`` / ``pycolmap_cuda`` pick
one, ``pycolmap`` takes the GPU when there is one). The settings follow COLMAP's
meaning for both backends:

- ``detection_threshold``: COLMAP's ``peak_threshold``, the minimum absolute DoG value
  of an image in [0, 1] (default 0.02 / 3). OpenCV divides its ``contrastThreshold``
  by the number of layers per octave (3), so it is given ``3 x detection_threshold``;
  the two backends then find about the same keypoints. <= 0 or None: no threshold
  (OpenCV 0; COLMAP, which requires a positive one, 1e-12).
- ``edge_threshold`` (10): the same in both.
- ``first_octave`` -1 (the image is upsampled by 2 first) and ``num_octaves`` 4 are
  passed to COLMAP. OpenCV always starts at octave -1 and derives the number of octaves
  from the image size: it rejects ``first_octave != -1`` and ignores ``num_octaves``.
- ``precise_upscale`` (OpenCV >= 4.8 ``enable_precise_upscale``): upsample so that pixel
  x maps to 2x. Without it OpenCV's keypoints are biased by +0.25 px (measured against
  COLMAP); with it they agree with COLMAP's to the pixel centre convention.

Conventions (checked against COLMAP on real photos): OpenCV's ``pt`` is in the centre
convention and gets +0.5 (COLMAP's keypoints are already in the library convention);
``scales`` is the Gaussian scale sigma in pixels, i.e. OpenCV's ``size / 2`` (equal to
COLMAP's scale); ``oris`` is in radians in [-pi, pi), measured in the image frame
(x right, y down), i.e. ``deg2rad(cv2.KeyPoint.angle)``, equal to COLMAP's orientation.

Scores: OpenCV's detector ``response`` (|DoG| at the extremum). pycolmap does not expose
the response, so there ``keypoint_scores`` are the scales (COLMAP itself drops the
finest-scale features first when it caps their number).

Post-processing: ``nms_radius`` 0 keeps one detection per pixel (SIFT reports one
keypoint per dominant orientation: the highest-scoring, then smallest-|angle|, one is
kept), ``> 0`` also suppresses non-maxima within that radius; then the
``max_num_keypoints`` best are kept, so that many distinct keypoints are returned
whenever the image has them (all detections are described, which costs time on images
with many more detections than asked for). ``remove_borders`` first drops the
detections whose pixel is within that many pixels of the border. ``nms_radius: None``
keeps every detection and lets the backend cap their number exactly like a plain
``cv2.SIFT_create(nfeatures=N)`` call (or COLMAP's ``max_num_features``); it cannot
be combined with ``remove_borders``.
``force_num_keypoints`` pads to exactly ``max_num_keypoints`` with random in-image
keypoints that have zero score, zero descriptor, zero scale and orientation, and
``keypoint_mask`` False.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...geometry.coordinates import CENTER_OFFSET
from ...utils.errors import ConfigError
from ...utils.image import rgb_to_grayscale
from ..utils.keypoints import border_mask, check_range
from .base import BaseExtractor

BACKENDS = ("opencv", "pycolmap", "pycolmap_cpu", "pycolmap_cuda")
OCTAVE_LAYERS = 3  # OpenCV nOctaveLayers == COLMAP octave_resolution


def sift_to_rootsift(desc: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, square root, L2-normalise.

    ``desc`` (..., 128) non-negative SIFT descriptors; all-zero rows stay zero.
    """
    desc = F.normalize(desc, p=1, dim=-1, eps=eps)
    return F.normalize(desc.clamp(min=0).sqrt(), p=2, dim=-1, eps=eps)


def _rootsift_np(desc: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """:func:`sift_to_rootsift` in NumPy, in place on the float32 ``desc`` (N, 128)
    (faster than torch for one image's features); returns ``desc``."""
    np.maximum(desc, 0, out=desc)
    l1 = desc.sum(-1, keepdims=True)
    desc /= np.maximum(l1, eps, out=l1)
    np.sqrt(desc, out=desc)
    l2 = np.sqrt(np.einsum("ij,ij->i", desc, desc))[:, None]
    desc /= np.maximum(l2, eps, out=l2)
    return desc


def _l2_np(desc: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    desc /= np.maximum(np.linalg.norm(desc, axis=-1, keepdims=True), eps)
    return desc


def filter_detections(
    kpts: np.ndarray,
    scores: np.ndarray,
    oris: np.ndarray,
    image_hw: tuple[int, int],
    nms_radius: int,
) -> np.ndarray:
    """Indices (sorted by decreasing score) of the detections kept by the NMS.

    ``kpts`` (N, 2) in the library convention. One detection per pixel (highest score,
    then smallest |orientation|); with ``nms_radius > 0`` only those that are the
    maximum of their (2 r + 1)^2 neighbourhood of pixels.
    """
    h, w = image_hw
    ij = np.floor(kpts).astype(np.int64)
    ij[:, 0] = ij[:, 0].clip(0, w - 1)
    ij[:, 1] = ij[:, 1].clip(0, h - 1)
    pixel = ij[:, 1] * w + ij[:, 0]
    order = np.lexsort((np.abs(oris), -scores, pixel))  # by pixel, best first
    first = np.ones(len(order), dtype=bool)
    first[1:] = pixel[order][1:] != pixel[order][:-1]
    keep = order[first]
    if nms_radius > 0 and len(keep):
        buffer = torch.zeros(h * w, dtype=torch.float64)
        buffer[torch.from_numpy(pixel[keep])] = torch.from_numpy(
            scores[keep].astype(np.float64)
        )
        buffer = buffer.view(1, 1, h, w)
        local_max = F.max_pool2d(
            buffer, 2 * nms_radius + 1, stride=1, padding=nms_radius
        )
        is_max = (buffer == local_max).view(-1).numpy()
        keep = keep[is_max[pixel[keep]]]
    return keep[np.argsort(-scores[keep], kind="stable")]


class SIFT(BaseExtractor):
    """SIFT / RootSIFT extractor (see the module docstring for conventions).

    Input ``image`` (B, 1 or 3, H, W) in [0, 1]; optional ``image_size`` (B, 2) valid
    (w, h) of images padded to a common size (the padding is cropped away). Outputs
    ``keypoints`` (B, N, 2), ``keypoint_scores`` (B, N), ``descriptors`` (B, N, 128)
    (RootSIFT, or L2-normalised SIFT with ``rootsift: false``), ``scales`` (B, N),
    ``oris`` (B, N); with ``force_num_keypoints`` also ``keypoint_mask`` (B, N).
    """

    default_conf = {
        "backend": "opencv",  # opencv | pycolmap | pycolmap_cpu | pycolmap_cuda
        "rootsift": True,
        "max_num_keypoints": 4096,  # <= 0 or None: all
        "detection_threshold": 0.02 / 3,  # COLMAP peak_threshold; <= 0 or None: none
        "edge_threshold": 10,
        "first_octave": -1,
        "num_octaves": 4,  # pycolmap only; OpenCV derives it from the image size
        "precise_upscale": True,  # OpenCV only, see the module docstring
        "nms_radius": 0,  # None: keep all detections; 0: one per pixel; r: NMS radius
        "remove_borders": 0,  # drop keypoints within this many pixels of the border
        "force_num_keypoints": False,
        "num_threads": -1,  # pycolmap CPU threads, -1: all (OpenCV: cv2.setNumThreads)
        "seed": None,  # padding keypoints: None: global RNG; int: seeded per image
        "trainable": False,
    }
    input_channels = "grey"
    nms_optional = True  # None: the backend caps the count
    threshold_max = 1.0  # a DoG of an image in [0, 1]
    min_image_size = 16  # a few octaves of DoG

    @classmethod
    def _describe(cls, conf) -> dict:
        return {"descriptor_dim": 128, "scales": True, "orientations": True}

    @classmethod
    def _has_dense_descriptors(cls, conf) -> bool:
        return False  # descriptors of the detected (scale, orientation) frames only

    @classmethod
    def _check_conf(cls, conf) -> None:
        if conf.backend not in BACKENDS:
            raise ConfigError(
                f"SIFT: unknown backend {conf.backend!r}; choose one of {BACKENDS}."
            )
        if conf.trainable:
            raise ConfigError("SIFT: trainable=True, but SIFT has no parameters.")
        if conf.nms_radius is None and conf.remove_borders:
            raise ConfigError(
                "SIFT: remove_borders needs an NMS (nms_radius 0 or more): with "
                "nms_radius None the backend caps the count before the border is "
                "known. Set nms_radius: 0."
            )
        check_range(conf, "edge_threshold", "SIFT", low=0, low_open=True)
        check_range(conf, "num_octaves", "SIFT", low=1, integer=True)
        check_range(conf, "first_octave", "SIFT", low=-1, integer=True)
        if conf.num_threads != -1:
            check_range(conf, "num_threads", "SIFT", low=1, integer=True)

    def _build(self, conf) -> None:
        # scratch arrays reused across calls, see _buffer
        self._scratch: dict[tuple[int, str], np.ndarray] = {}
        # None or <= 0: no threshold (the backends' 0)
        self.peak_threshold = self.threshold or 0.0
        if conf.backend == "opencv":
            self._init_opencv(conf)
        else:
            self._init_pycolmap(conf)

    def _init_opencv(self, conf) -> None:
        if conf.first_octave != -1:
            raise ConfigError(
                f"SIFT: first_octave={conf.first_octave} is not available with the "
                "opencv backend (OpenCV always starts at octave -1); use "
                "backend=pycolmap or first_octave=-1."
            )
        # With an NMS, detect everything and keep the best max_num_keypoints after it
        # (OpenCV's cap counts every orientation of a location as one keypoint).
        nfeatures = 0 if conf.nms_radius is not None else max(self.max_num, 0)
        kwargs = dict(
            nfeatures=nfeatures,
            nOctaveLayers=OCTAVE_LAYERS,
            contrastThreshold=self.peak_threshold * OCTAVE_LAYERS,
            edgeThreshold=conf.edge_threshold,
        )
        try:
            self.sift = cv2.SIFT_create(
                **kwargs, enable_precise_upscale=conf.precise_upscale
            )
        except TypeError:  # OpenCV < 4.8 has no precise upscaling
            if conf.precise_upscale:
                raise ConfigError(
                    f"SIFT: OpenCV {cv2.__version__} has no enable_precise_upscale "
                    "(needs >= 4.8); set precise_upscale=False (keypoints are then "
                    "biased by +0.25 px) or upgrade opencv."
                ) from None
            self.sift = cv2.SIFT_create(**kwargs)

    def _init_pycolmap(self, conf) -> None:
        try:
            import pycolmap
        except ImportError as e:
            raise ImportError(
                f"SIFT backend {conf.backend!r} needs pycolmap: `pip install pycolmap` "
                "(or use backend=opencv)."
            ) from e
        if not hasattr(pycolmap, "FeatureExtractor"):
            raise ImportError(
                f"SIFT backend {conf.backend!r} needs pycolmap >= 3.12 "
                f"(FeatureExtractor API); found {pycolmap.__version__}."
            )
        has_cuda = bool(getattr(pycolmap, "has_cuda", False))
        if conf.backend == "pycolmap_cuda" and not has_cuda:
            raise ConfigError(
                "SIFT backend 'pycolmap_cuda': this pycolmap was built without CUDA; use "
                "backend=pycolmap_cpu (or pycolmap, which picks the GPU when there is one)."
            )
        device = {
            "pycolmap": pycolmap.Device.auto,
            "pycolmap_cpu": pycolmap.Device.cpu,
            "pycolmap_cuda": pycolmap.Device.cuda,
        }[conf.backend]
        options = pycolmap.FeatureExtractionOptions()
        options.max_image_size = -1  # never downscale
        options.num_threads = conf.num_threads
        sift = options.sift
        cap = self.max_num > 0 and conf.nms_radius is None
        sift.max_num_features = self.max_num if cap else 2**31 - 1
        # COLMAP requires peak_threshold > 0: "no threshold" is a vanishing one
        sift.peak_threshold = max(self.peak_threshold, 1e-12)
        sift.edge_threshold = conf.edge_threshold
        sift.first_octave = conf.first_octave
        sift.num_octaves = conf.num_octaves
        sift.octave_resolution = OCTAVE_LAYERS
        sift.normalization = pycolmap.Normalization.L2  # RootSIFT is applied here
        self.sift = pycolmap.FeatureExtractor.create(options, device)

    # ------------------------------------------------------------------ extraction
    def _buffer(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A scratch array kept across calls (one per thread): memory allocated anew
        right after OpenCV has freed its image pyramid is paged in again by the OS,
        which costs milliseconds per image; reused arrays are already mapped."""
        tid = threading.get_ident()
        if all(k[0] != tid for k in self._scratch):  # a new thread: forget dead ones
            alive = {t.ident for t in threading.enumerate()}
            self._scratch = {k: v for k, v in self._scratch.items() if k[0] in alive}
        key = (tid, name)
        buf = self._scratch.get(key)
        if (
            buf is None
            or buf.dtype != dtype
            or buf.shape[1:] != shape[1:]
            or len(buf) < shape[0]
        ):
            buf = self._scratch[key] = np.empty(shape, dtype)
        return buf[: shape[0]]

    def _detect_opencv(self, grey: np.ndarray):
        # x 255, rounded and saturated to uint8 in one pass
        grey = np.ascontiguousarray(grey, np.float32)
        img = self._buffer("uint8", grey.shape, np.uint8)
        img = cv2.convertScaleAbs(grey, dst=img, alpha=255.0)
        kps, desc = self.sift.detectAndCompute(img, None)
        if not kps:
            return (np.zeros((0, 2), np.float32), *(np.zeros(0, np.float32),) * 3,
                    np.zeros((0, 128), np.float32))  # fmt: skip
        pts = cv2.KeyPoint_convert(kps)  # (N, 2) float32
        pts += np.float32(CENTER_OFFSET)
        # one list per attribute is the fastest way to read them (no vector getter)
        scores = np.array([k.response for k in kps], np.float32)
        scales = np.array([k.size for k in kps], np.float32)
        scales /= 2
        oris = np.array([k.angle for k in kps], np.float32)
        np.deg2rad(oris, out=oris)
        oris[oris >= np.pi] -= np.float32(2 * np.pi)
        return pts, scores, scales, oris, desc

    def _detect_pycolmap(self, grey: np.ndarray):
        kps, desc = self.sift.extract_from_float32_array(
            np.ascontiguousarray(grey, dtype=np.float32)
        )
        attrs = np.array(
            [(k.x, k.y, k.compute_scale(), k.compute_orientation()) for k in kps],
            np.float32,
        ).reshape(-1, 4)
        desc = desc.data.astype(np.float32).reshape(-1, 128)
        h, w = grey.shape
        inside = (attrs[:, 0] < w) & (attrs[:, 1] < h) & (attrs[:, :2] >= 0).all(1)
        attrs, desc = attrs[inside], desc[inside]
        oris = np.where(attrs[:, 3] >= np.pi, attrs[:, 3] - 2 * np.pi, attrs[:, 3])
        return attrs[:, :2], attrs[:, 2].copy(), attrs[:, 2], oris, desc

    def _extract_one(self, grey: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Keypoints (N, 2), scores (N,) and the other per-keypoint outputs of one
        grey image, best first."""
        conf = self.conf
        if conf.backend == "opencv":
            pts, scores, scales, oris, desc = self._detect_opencv(grey)
        else:
            pts, scores, scales, oris, desc = self._detect_pycolmap(grey)
        if conf.remove_borders:
            inside = border_mask(
                torch.from_numpy(pts), conf.remove_borders, grey.shape[::-1]
            ).numpy()
            pts, scores, scales, oris, desc = (
                v[inside] for v in (pts, scores, scales, oris, desc)
            )
        if conf.nms_radius is not None:
            keep = filter_detections(pts, scores, oris, grey.shape, conf.nms_radius)
        else:
            keep = np.argsort(-scores, kind="stable")
        if self.max_num > 0:
            keep = keep[: self.max_num]
        # Gather the kept rows into the front of OpenCV's (already mapped) array through
        # a reused scratch array, then normalise them in place.
        desc = np.require(desc, np.float32, ("C", "W"))
        gathered = self._buffer("desc", (len(keep), desc.shape[1]), np.float32)
        np.take(desc, keep, axis=0, out=gathered)
        desc = desc[: len(keep)]
        desc[...] = gathered
        desc = _rootsift_np(desc) if conf.rootsift else _l2_np(desc)
        fields = {
            "descriptors": torch.from_numpy(desc),
            "scales": torch.from_numpy(scales[keep]),
            "oris": torch.from_numpy(oris[keep].astype(np.float32, copy=False)),
        }
        return torch.from_numpy(pts[keep]), torch.from_numpy(scores[keep]), fields

    def convert_channels(self, image: torch.Tensor) -> torch.Tensor:
        """The library's grey conversion, on the CPU, written into a scratch array
        reused across calls (see :meth:`_buffer`)."""
        if image.shape[1] == 1:
            return image
        x = image.detach().cpu().float()
        b, _, h, w = x.shape
        out = torch.from_numpy(self._buffer("grey", (b, 1, h, w), np.float32))
        tmp = torch.from_numpy(self._buffer("grey_tmp", (b, h, w), np.float32))
        return rgb_to_grayscale(x, out=out, tmp=tmp)

    def _extract(self, image: torch.Tensor, data: dict) -> dict:
        device = data["image"].device
        h, w = image.shape[-2:]
        grey_batch = image.detach().cpu().float().numpy()[:, 0]
        sizes = data.get("image_size")
        kpts, scores, fields = [], [], []
        for i, grey in enumerate(grey_batch):
            if sizes is not None:  # crop the padding away
                wi, hi = (int(v) for v in sizes[i])
                grey = grey[:hi, :wi]
            k, s, f = self._extract_one(grey)
            kpts.append(k)
            scores.append(s)
            fields.append(f)
        pred = self.batch(
            kpts,
            scores,
            (h, w),
            None if sizes is None else sizes.cpu(),
            fields=fields,
        )  # padded entries: zero descriptor, scale and orientation
        return {k: v.to(device) for k, v in pred.items()}
