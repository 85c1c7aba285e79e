"""Wireframe: keypoints and line segments sharing their endpoints (GlueStick's input).

A point extractor (any extractor with dense descriptors: ALIKED, XFeat, DISK,
SuperPoint(-open)) and a line detector (``lines.lsd``) run on the same images; then,
per image (facts 1.2):

1. line scores are divided by the image's best line score;
2. line endpoints at most ``nms_radius`` apart are merged into *junctions* (connected
   components of that graph: DBSCAN with ``min_samples = 1``, computed exactly), each
   the mean of its endpoints, scored by the mean score of its lines; the lines now
   join junctions (``lines``), the detector's segments are kept as ``orig_lines``;
3. keypoints closer than ``nms_radius`` to a junction are dropped;
4. the point list is the junctions first, then the remaining keypoints;
   ``lines_junc_idx`` (B, L, 2) indexes it;
5. every point, junctions included, is described by the point extractor's own
   description at that position (:meth:`BaseExtractor.extract_dense`).

Point lists are padded to a common count (B > 1) with random in-image points of score
0, described where they lie, and ``keypoint_mask`` False, as the extractors pad. With
``force_num_keypoints`` on the point extractor and ``force_num_lines`` on the
detector the count is fixed, ``max_num_keypoints + 2 * max_num_lines``. A line whose
two endpoints fall into one junction gets ``line_mask`` False.
"""

from __future__ import annotations

from functools import partial

import torch

from ...geometry.lines import merge_endpoints
from ...utils.conf import ConfigError
from .. import get_model
from ..base_model import BaseModel
from ..extractors.base import BaseExtractor
from ..utils.keypoints import check_range, random_keypoints

EXACT_CDIST = "donot_use_mm_for_euclid_dist"  # no matrix-product rounding at the radius


def _component(conf, key: str) -> tuple[type, object]:
    """The class and merged, checked config of a component slot (nothing built)."""
    sub = conf[key]
    if sub is None or sub.get("name") is None:
        raise ConfigError(f"lines.wireframe: {key}.name is required.")
    cls = get_model(sub.name)
    return cls, cls.build_conf(sub)


class Wireframe(BaseModel):
    """Points + lines with shared junctions (module docstring).

    Input ``image`` (B, C, H, W), optional ``image_size`` (B, 2). Outputs
    ``keypoints`` (B, N, 2) (junctions first), ``keypoint_scores`` (B, N),
    ``descriptors`` (B, N, D), ``keypoint_mask`` (B, N), ``num_junctions`` (B,),
    ``lines`` (B, L, 2, 2) (merged endpoints), ``orig_lines`` (B, L, 2, 2),
    ``line_scores`` (B, L) (normalised), ``line_mask`` (B, L) and ``lines_junc_idx``
    (B, L, 2).
    """

    default_conf = {
        "point_extractor": {"name": None, "trainable": False},
        "line_extractor": {"name": "lines.lsd", "trainable": False},
        "wireframe_params": {
            "merge_points": True,  # drop keypoints closer than nms_radius to a junction
            "merge_line_endpoints": True,  # merge endpoints into junctions
            "nms_radius": 3.0,  # px
        },
        "trainable": False,
    }
    required_data_keys = ["image"]

    @classmethod
    def check_conf(cls, conf) -> None:
        super().check_conf(conf)
        check_range(conf.wireframe_params, "nms_radius", "lines.wireframe", low=0)
        p_cls, p_conf = _component(conf, "point_extractor")
        if not (
            issubclass(p_cls, BaseExtractor) and p_cls.has_dense_descriptors(p_conf)
        ):
            raise ConfigError(
                f"lines.wireframe: point_extractor {conf.point_extractor.name} has no "
                "dense descriptors (junctions are described from them); use ALIKED, "
                "XFeat (not dense), DISK or SuperPoint."
            )
        l_cls, l_conf = _component(conf, "line_extractor")
        describe = getattr(l_cls, "describe", None)
        if describe is None or not describe(l_conf).get("lines"):
            raise ConfigError(
                f"lines.wireframe: line_extractor {conf.line_extractor.name} does not "
                "output lines."
            )

    @classmethod
    def describe(cls, conf=None) -> dict:
        """The point extractor's description, plus ``lines``."""
        conf = cls.build_conf(conf)
        p_cls, p_conf = _component(conf, "point_extractor")
        return {**p_cls.describe(p_conf), "lines": True}

    def _init(self, conf) -> None:
        (p_cls, p_conf), (l_cls, l_conf) = (
            _component(conf, k) for k in ("point_extractor", "line_extractor")
        )
        self.point_extractor = p_cls(p_conf)
        self.line_extractor = l_cls(l_conf)

    # ------------------------------------------------------------------ points
    def _points(self, data: dict) -> list[tuple]:
        """Per image: (real keypoints (N, 2), scores (N,), describe(kpts) -> (N, D))."""
        pe = self.point_extractor
        b = len(data["image"])
        if b == 1 or pe.conf.force_num_keypoints:
            inputs = [data]
        else:  # variable counts cannot be batched: one image at a time
            keys = [k for k in ("image", "image_size") if k in data]
            inputs = [{k: data[k][i : i + 1] for k in keys} for i in range(b)]
        out = []
        for sub in inputs:
            pred, dense = pe.extract_dense(sub)
            mask = pred.get("keypoint_mask")
            for j, (kpts, scores) in enumerate(
                zip(pred["keypoints"], pred["keypoint_scores"], strict=True)
            ):
                real = slice(None) if mask is None else mask[j]
                describe = partial(dense.sample_one, j)
                out.append((kpts[real], scores[real], describe))
        return out

    def _count(self, totals: list[int]) -> int:
        """The padded point count: fixed when both components force their counts."""
        pe, le = self.point_extractor.conf, self.line_extractor.conf
        if pe.force_num_keypoints and le.get("force_num_lines", False):
            return pe.max_num_keypoints + 2 * le.max_num_lines
        return max(totals)

    # ------------------------------------------------------------------ forward
    def _forward(self, data: dict) -> dict:
        params = self.conf.wireframe_params
        r = float(params.nms_radius)
        image = data["image"]
        b, h, w = len(image), *image.shape[-2:]
        lines = self.line_extractor(data)
        points = self._points(data)
        sizes = data.get("image_size")
        seed = self.point_extractor.conf.get("seed")
        per_image = []
        for i in range(b):
            segs, lmask = lines["lines"][i], lines["line_mask"][i]
            lscores = lines["line_scores"][i]
            lscores = lscores / (lscores.max() + 1e-8) if lscores.numel() else lscores
            real = segs[lmask]  # (R, 2, 2)
            ends = real.reshape(-1, 2)
            if params.merge_line_endpoints:
                junc, idx = merge_endpoints(ends, r)
            else:
                junc, idx = ends, torch.arange(len(ends), device=ends.device)
            idx = idx.to(segs.device)
            ends_scores = lscores[lmask].repeat_interleave(2)
            junc_scores = ends_scores.new_zeros(len(junc)).index_add_(
                0, idx, ends_scores
            ) / torch.bincount(idx, minlength=len(junc)).clamp_min(1).to(ends_scores)
            kpts, kscores, describe = points[i]
            if params.merge_points and len(junc) and len(kpts):
                dist = torch.cdist(
                    kpts.double(), junc.double(), compute_mode=EXACT_CDIST
                )
                near = dist.min(1).values < r
                kpts, kscores = kpts[~near], kscores[~near]
            junc_idx = torch.zeros(segs.shape[:2], dtype=torch.long, device=idx.device)
            junc_idx[lmask] = idx.reshape(-1, 2)
            merged = torch.zeros_like(segs)
            merged[lmask] = junc[idx].reshape(-1, 2, 2).to(segs)
            per_image.append(
                {
                    "kpts": torch.cat([junc.to(kpts), kpts]),
                    "scores": torch.cat([junc_scores.to(kscores), kscores]),
                    "describe": describe,
                    "num_junctions": len(junc),
                    "lines": merged,
                    "lines_junc_idx": junc_idx,
                    "line_mask": lmask & (junc_idx[:, 0] != junc_idx[:, 1]),
                    "line_scores": lscores,
                }
            )
        n = self._count([len(p["kpts"]) for p in per_image])
        out = {k: [] for k in ("keypoints", "keypoint_scores", "descriptors")}
        out["keypoint_mask"] = []
        for i, p in enumerate(per_image):
            k, s = p["kpts"], p["scores"]
            if len(k) > n:
                raise RuntimeError(f"lines.wireframe: {len(k)} points > {n}.")
            size = (w, h) if sizes is None else sizes[i]
            gen = None if seed is None else torch.Generator().manual_seed(seed)
            extra = random_keypoints(n - len(k), size, gen, k.device, k.dtype)
            k_all = torch.cat([k, extra])
            out["keypoints"].append(k_all)
            out["keypoint_scores"].append(torch.cat([s, s.new_zeros(len(extra))]))
            out["descriptors"].append(p["describe"](k_all))
            out["keypoint_mask"].append(torch.arange(n, device=k.device) < len(k))
        out = {key: torch.stack(v) for key, v in out.items()}
        return {
            **out,
            "num_junctions": torch.tensor(
                [p["num_junctions"] for p in per_image], device=image.device
            ),
            "lines": torch.stack([p["lines"] for p in per_image]),
            "orig_lines": lines["lines"],
            "line_scores": torch.stack([p["line_scores"] for p in per_image]),
            "line_mask": torch.stack([p["line_mask"] for p in per_image]),
            "lines_junc_idx": torch.stack([p["lines_junc_idx"] for p in per_image]),
        }
