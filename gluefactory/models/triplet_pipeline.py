"""The two-view pipeline on triplets: three views, three pairs, one extraction each.

Datasets give triplets with ``view0``, ``view1``, ``view2`` and the geometry of each
pair under ``<key>_{a}to{b}`` (``homographies`` with ``triplet: true``: ``H_0to1``,
``H_0to2``, ``H_1to2``; ``megadepth`` with ``views: 3``: ``T_{a}to{b}`` both ways and
``overlap_{a}to{b}``). The features of each view are extracted once and the matcher
runs on the pairs 0-1, 0-2 and 1-2, so a triplet supervises three pairs for the cost of
three extractions (a pair costs two).

Each pair is handed to the two-view machinery renamed as a pair (views a, b -> 0, 1;
``X_{a}to{b}`` -> ``X_0to1``, ``X_{b}to{a}`` -> ``X_1to0``), so every ground-truth
matcher, loss and metric works unchanged. With ``batch_triplets`` (default, as upstream)
the three pairs are stacked on the batch dimension and matched in one call (they need
equal keypoint counts and image sizes: ``force_num_keypoints``); otherwise one call per
pair.

Outputs: the pair 0-1 at the top level, as :class:`TwoViewPipeline` gives it (figures
and evaluation read it unchanged), the per-view features ``keypoints2``, ... and the
pairs 0-2 and 1-2 under ``pred["0to2"]`` and ``pred["1to2"]`` (keys as a pair's).
Losses and metrics are per pair: (3B,) vectors, the B items of pair 0-1, then 0-2, then
1-2. Data without ``view2`` is an ordinary pair.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..utils.tensor import cat_batches, split_batch
from .two_view_pipeline import TwoViewPipeline

PAIRS = ((0, 1), (0, 2), (1, 2))
STACK_HINT = (
    "TripletPipeline stacks the three pairs: force equal keypoint counts "
    "(extractor.force_num_keypoints) and image sizes, or set model.batch_triplets=false."
)
_PAIR_KEY = re.compile(r"^(.*)_(\d)to(\d)$")


def pair_data(data: Mapping[str, Any], a: int, b: int) -> dict:
    """The data of the pair (view a, view b) of a triplet, named as a pair.

    ``view{a}``/``view{b}`` -> ``view0``/``view1``; ``X_{a}to{b}`` -> ``X_0to1`` and
    ``X_{b}to{a}`` -> ``X_1to0``; keys of other views and pairs are dropped; the rest
    (names, scene, ...) is kept.
    """
    out = {}
    rename = {str(a): "0", str(b): "1"}
    for key, value in data.items():
        view = re.fullmatch(r"view(\d)", key)
        if view:
            if view.group(1) in rename:
                out[f"view{rename[view.group(1)]}"] = value
            continue
        pair = _PAIR_KEY.match(key)
        if pair:
            src, dst = pair.group(2), pair.group(3)
            if src in rename and dst in rename and src != dst:
                out[f"{pair.group(1)}_{rename[src]}to{rename[dst]}"] = value
            continue
        out[key] = value
    return out


class TripletPipeline(TwoViewPipeline):
    """Extractor once per view -> matcher and ground truth on the three pairs."""

    default_conf = {
        "batch_triplets": True,  # stack the three pairs: one matcher call
    }

    def _pairs(self, data: dict, feats: list[dict]) -> list[tuple[dict, dict]]:
        """(data, features) of each pair of :data:`PAIRS`, named as a pair."""
        return [
            (
                pair_data(data, a, b),
                {
                    **{f"{k}0": v for k, v in feats[a].items()},
                    **{f"{k}1": v for k, v in feats[b].items()},
                },
            )
            for a, b in PAIRS
        ]

    def _forward(self, data: dict) -> dict:
        if "view2" not in data:
            return super()._forward(data)
        feats = [self.view_features(data, i) for i in range(3)]
        pairs = self._pairs(data, feats)
        if self.conf.batch_triplets:
            sizes = [len(p["keypoints0"]) for _, p in pairs]
            stacked = self.match_pair(
                cat_batches([d for d, _ in pairs], hint=STACK_HINT),
                cat_batches([p for _, p in pairs], "features", STACK_HINT),
            )
            outs = split_batch(stacked, sizes)
        else:
            outs = [self.match_pair(d, p) for d, p in pairs]
        pred = {**outs[0], **{f"{k}2": v for k, v in feats[2].items()}}
        pred.update({f"{a}to{b}": o for (a, b), o in zip(PAIRS[1:], outs[1:])})
        return pred

    def loss(self, pred: dict, data: dict):
        if "view2" not in data:
            return super().loss(pred, data)
        firsts = {k: v for k, v in pred.items() if k not in ("0to2", "1to2")}
        preds = [firsts, pred["0to2"], pred["1to2"]]
        datas = [pair_data(data, a, b) for a, b in PAIRS]
        if self.conf.batch_triplets:
            return super().loss(
                cat_batches(preds, "pred", STACK_HINT),
                cat_batches(datas, hint=STACK_HINT),
            )
        results = [
            super(TripletPipeline, self).loss(p, d) for p, d in zip(preds, datas)
        ]
        losses = cat_batches([r[0] for r in results], "losses")
        metrics = cat_batches([r[1] for r in results], "metrics")
        return losses, metrics


__main_model__ = TripletPipeline
