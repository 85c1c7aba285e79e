"""Extract features in two views, match them, and (optionally) label them with ground truth.

Components are built by name from the config (``extractor``, ``matcher``,
``ground_truth``); each is optional. Per-view extractor outputs are suffixed with the view
index (``keypoints0``, ``descriptors1``, ...), as matchers and losses expect.

Input: ``data["view0"]``, ``data["view1"]``, each with ``image`` (B x C x H x W) and
optionally ``image_size`` (B x 2, (w, h)) and pre-computed features under ``cache``
(used instead of the extractor when ``allow_no_extract`` is set); plus what the ground
truth needs (``H_0to1`` or depths, cameras and ``T_0to1``).
"""

from __future__ import annotations

from . import get_model
from .base_model import BaseModel


def _build(conf):
    return (
        None if conf is None or conf.get("name") is None else get_model(conf.name)(conf)
    )


class TwoViewPipeline(BaseModel):
    default_conf = {
        "extractor": {"name": None, "trainable": False},
        "matcher": {"name": None},
        "ground_truth": {"name": None},
        "allow_no_extract": False,
        "run_gt_in_forward": False,
    }
    required_data_keys = ["view0", "view1"]
    components = ("extractor", "matcher", "ground_truth")

    def _init(self, conf):
        self.extractor = _build(conf.extractor)
        self.matcher = _build(conf.matcher)
        self.ground_truth = _build(conf.ground_truth)

    def extract_view(self, data: dict, i: int) -> dict:
        view = data[f"view{i}"]
        cache = view.get("cache", {})
        if self.conf.allow_no_extract and cache:
            return dict(cache)
        if self.extractor is None:
            if cache:
                return dict(cache)
            raise ValueError(
                f"TwoViewPipeline has no extractor and view{i} carries no cached features."
            )
        pred = self.extractor(view)
        if cache:  # cached fields complete (not override) the extracted ones
            pred = {**cache, **pred}
        return pred

    def _forward(self, data: dict) -> dict:
        pred = {}
        for i in (0, 1):
            for k, v in self.extract_view(data, i).items():
                pred[f"{k}{i}"] = v
        if self.matcher is not None:
            pred = {**pred, **self.matcher({**data, **pred})}
        if self.conf.run_gt_in_forward and self.ground_truth is not None:
            gt = self.ground_truth({**data, **pred})
            pred = {
                **pred,
                **{
                    f"gt_{k}" if not k.startswith("gt_") else k: v
                    for k, v in gt.items()
                },
            }
        return pred

    def loss(self, pred: dict, data: dict):
        if self.ground_truth is not None and "gt_matches0" not in pred:
            gt = self.ground_truth({**data, **pred})
            pred = {
                **pred,
                **{
                    f"gt_{k}" if not k.startswith("gt_") else k: v
                    for k, v in gt.items()
                },
            }
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
