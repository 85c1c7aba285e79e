"""Extract features in two views, match them, and (optionally) label them with ground truth.

Components are built by name from the config (``extractor``, ``matcher``,
``ground_truth``); each is optional. Per-view extractor outputs are suffixed with the view
index (``keypoints0``, ``descriptors1``, ``keypoint_mask0``, ...), as matchers and losses
expect.

When it is built, the pipeline checks that the matcher fits the extractor (descriptor
size, scales, orientations and lines: the extractor's ``describe(conf)`` against the matcher's
``requires(conf)``), before any weights are loaded or downloaded: a mismatch is a
:class:`~gluefactory.utils.errors.ConfigError` naming both components.

Padded keypoints (``force_num_keypoints``, or cached features padded to a common count)
come with ``keypoint_mask`` (True = real point). With ``mask_padded_keypoints`` (default)
the masks reach the matcher as ``keypoint_mask0/1``, so padded points are never matched
(and losses ignore them); ``false`` is upstream's training recipe: the pipeline drops the
masks and padded random points are treated as real (unmatchable) points.

Input: ``data["view0"]``, ``data["view1"]``, each with ``image`` (B x C x H x W) and
optionally ``image_size`` (B x 2, (w, h)) and pre-computed features under ``cache``
(used instead of the extractor when ``allow_no_extract`` is set); plus what the ground
truth needs (``H_0to1`` or depths, cameras and ``T_0to1``).
"""

from __future__ import annotations

from typing import Any

from ..utils.errors import ConfigError
from . import get_model
from .base_model import BaseModel

MASK_KEYS = ("keypoint_mask0", "keypoint_mask1")
#: boolean flags of ``describe()`` / ``requires()`` (docs/extractors.md)
OUTPUT_FLAGS = {
    "scales": "keypoint scales",
    "orientations": "keypoint orientations",
    "lines": "lines (a line extractor such as lines.wireframe)",
}


def _resolve(conf) -> tuple[type[BaseModel] | None, Any]:
    """The class and the merged, validated config of a component (nothing built)."""
    if conf is None or conf.get("name") is None:
        return None, None
    cls = get_model(conf.name)
    return cls, cls.build_conf(conf)


def check_compatible(extractor: tuple, matcher: tuple) -> None:
    """Raise a ConfigError when the matcher needs what the extractor does not give.

    ``extractor`` and ``matcher``: (name, class, merged conf). Uses the extractor's
    ``describe(conf)`` and the matcher's ``requires(conf)`` (contract in
    docs/extractors.md); skipped when either component, or either method, is absent.
    """
    (e_name, e_cls, e_conf), (m_name, m_cls, m_conf) = extractor, matcher
    describe = getattr(e_cls, "describe", None)
    requires = getattr(m_cls, "requires", None)
    if describe is None or requires is None:
        return
    have, need = describe(e_conf), requires(m_conf)
    problems = []
    dim = need.get("descriptor_dim")
    if dim is not None and dim != have["descriptor_dim"]:
        problems.append(
            f"{dim}-D descriptors, the extractor gives {have['descriptor_dim']}-D"
        )
    for key, what in OUTPUT_FLAGS.items():
        if need.get(key) and not have.get(key):
            problems.append(f"{what}, which the extractor does not output")
    if problems:
        preset = m_conf.get("features") if hasattr(m_conf, "get") else None
        m_desc = f"{m_name}" + (f" (features={preset})" if preset is not None else "")
        raise ConfigError(
            f"TwoViewPipeline: matcher {m_desc} does not fit extractor {e_name}: the "
            f"matcher needs {'; '.join(problems)}. Choose a matcher configuration "
            "for these features or another extractor."
        )


class TwoViewPipeline(BaseModel):
    """Extractor -> matcher -> ground truth on a pair of views (module docstring)."""

    default_conf = {
        "extractor": {"name": None, "trainable": False},
        "matcher": {"name": None},
        "ground_truth": {"name": None},
        "allow_no_extract": False,
        "run_gt_in_forward": False,
        # pass keypoint_mask0/1 to the matcher (padded points never matched); false:
        # upstream's training recipe (padded points are ordinary points)
        "mask_padded_keypoints": True,
    }
    required_data_keys = ["view0", "view1"]

    @classmethod
    def check_conf(cls, conf) -> None:
        """The components' configs too (so ``build_conf`` checks the whole pipeline,
        nothing built), and that the matcher fits the extractor."""
        super().check_conf(conf)
        if not isinstance(conf.mask_padded_keypoints, bool):
            raise ConfigError(
                "TwoViewPipeline: mask_padded_keypoints must be true or false, got "
                f"{conf.mask_padded_keypoints!r}."
            )
        (e_cls, e_conf), (m_cls, m_conf) = (
            _resolve(conf.extractor),
            _resolve(conf.matcher),
        )
        _resolve(conf.ground_truth)
        if e_cls is not None and m_cls is not None:
            check_compatible(
                (conf.extractor.name, e_cls, e_conf), (conf.matcher.name, m_cls, m_conf)
            )

    def _init(self, conf):
        for key in ("extractor", "matcher", "ground_truth"):
            cls, sub_conf = _resolve(conf[key])
            setattr(self, key, None if cls is None else cls(sub_conf))

    def extract_view(self, data: dict, i: int) -> dict:
        view = data[f"view{i}"]
        cache = view.get("cache", {})
        if self.conf.allow_no_extract and cache:
            return dict(cache)
        if self.extractor is None:
            if cache:
                return dict(cache)
            raise ConfigError(
                f"TwoViewPipeline has no extractor and view{i} carries no cached "
                "features: set model.extractor.name or provide view['cache']."
            )
        pred = self.extractor(view)
        if cache:  # cached fields complete (not override) the extracted ones
            pred = {**cache, **pred}
        return pred

    def _with_ground_truth(self, data: dict, pred: dict) -> dict:
        """``pred`` plus the ground truth's outputs, prefixed with ``gt_``."""
        gt = self.ground_truth({**data, **pred})
        gt = {k if k.startswith("gt_") else f"gt_{k}": v for k, v in gt.items()}
        return {**pred, **gt}

    def view_features(self, data: dict, i: int) -> dict:
        """The features of ``view{i}`` (keys unsuffixed); without their padding mask
        when ``mask_padded_keypoints`` is false (padded points are then real points)."""
        feats = self.extract_view(data, i)
        if not self.conf.mask_padded_keypoints:
            feats.pop("keypoint_mask", None)
        return feats

    def match_pair(self, data: dict, pred: dict) -> dict:
        """Matcher (and, with ``run_gt_in_forward``, ground truth) on one pair of views:
        ``pred`` holds the features suffixed 0 and 1."""
        if self.matcher is not None:
            inputs = {**data, **pred}
            if not self.conf.mask_padded_keypoints:
                inputs = {k: v for k, v in inputs.items() if k not in MASK_KEYS}
            pred = {**pred, **self.matcher(inputs)}
        if self.conf.run_gt_in_forward and self.ground_truth is not None:
            pred = self._with_ground_truth(data, pred)
        return pred

    def _forward(self, data: dict) -> dict:
        pred = {
            f"{k}{i}": v for i in (0, 1) for k, v in self.view_features(data, i).items()
        }
        return self.match_pair(data, pred)

    def loss(self, pred: dict, data: dict):
        if self.ground_truth is not None and "gt_matches0" not in pred:
            pred = self._with_ground_truth(data, pred)
        losses, metrics = {}, {}
        total = 0
        for name in ("extractor", "matcher"):
            model = getattr(self, name)
            if model is None or not model.conf.trainable:
                continue
            try:
                l_, m_ = model.loss(pred, {**pred, **data})
            except NotImplementedError:
                continue
            losses.update(l_)
            metrics.update(m_)
            total = l_["total"] + total
        if isinstance(total, int):
            raise ValueError(
                "TwoViewPipeline.loss: no trainable component defines a loss."
            )
        return {**losses, "total": total}, metrics


__main_model__ = TwoViewPipeline
