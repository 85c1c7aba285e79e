"""Runs the exported LightGlue graphs with onnxruntime, taking the adaptive decisions.

Between the layer graphs (:mod:`.matcher_graphs`) this runner does what
:mod:`gluefactory.models.matchers.lightglue.adaptive` does for a pair (batch of one),
with the same comparisons in float32:

- early exit after layer l < L - 1: stop when
  ``1 - #{points in play with confidence < lambda_l} / (M + N) > depth_confidence``,
  and match with the assignment of layer l;
- pruning: keep a point when ``matchability > 1 - width_confidence`` or, with early
  exit on, when its ``confidence <= lambda_l``; the kept points keep their order;
- an image left without points ends the pair without matches.

Matches are mapped back to the original keypoint indices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .matcher_graphs import HEADS, MATCHES, ROTARY, TOKENS


def _f32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


class LightGlueRuntime:
    """The matcher of an export folder (``manifest["matcher"]`` describes it)."""

    def __init__(self, folder: Path, spec: dict, session):
        self.spec = spec
        self.n_layers = spec["n_layers"]
        self.encode = session(folder / "matcher_encode.onnx")
        self.layers = [
            session(folder / f"matcher_layer{i}.onnx") for i in range(self.n_layers)
        ]
        self.assign = [
            session(folder / f"matcher_assign{i}.onnx") for i in range(self.n_layers)
        ]

    def __call__(
        self,
        kpts0: np.ndarray,
        kpts1: np.ndarray,
        desc0: np.ndarray,
        desc1: np.ndarray,
        size0,
        size1,
        depth_confidence: float,
        width_confidence: float,
        filter_threshold: float,
    ) -> dict:
        """One pair: keypoints (M, 2) / (N, 2) pixels, descriptors, sizes (w, h).

        Returns ``matches0`` (M,), ``matches1`` (N,) (-1 = none), ``matching_scores0/1``
        and ``stop`` (the number of layers run).
        """
        m, n = len(kpts0), len(kpts1)
        out = {
            "matches0": np.full(m, -1, np.int64),
            "matches1": np.full(n, -1, np.int64),
            "matching_scores0": np.zeros(m, np.float32),
            "matching_scores1": np.zeros(n, np.float32),
            "stop": 0,
        }
        if m == 0 or n == 0:
            return out
        feeds = {
            "kpts0": _f32(kpts0)[None], "kpts1": _f32(kpts1)[None],
            "desc0": _f32(desc0)[None], "desc1": _f32(desc1)[None],
            "size0": _f32(size0).reshape(1, 2), "size1": _f32(size1).reshape(1, 2),
        }  # fmt: skip
        state = dict(zip(TOKENS + ROTARY, self.encode.run(None, feeds), strict=True))
        ind = [np.arange(m), np.arange(n)]
        early, prune = depth_confidence > 0, width_confidence > 0
        num_points = np.float32(m + n)
        last = self.n_layers - 1
        for i, layer in enumerate(self.layers):
            res = layer.run(None, {k: state[k] for k in TOKENS + ROTARY})
            state.update(zip(TOKENS, res[:2], strict=True))
            if not (early or prune) or i == last:
                continue
            heads = dict(zip(HEADS, res[2:], strict=True))
            th = np.float32(self.spec["thresholds"][i])
            conf = [heads["conf0"][0], heads["conf1"][0]]
            if early:
                unsure = sum(int((c < th).sum()) for c in conf)
                if np.float32(1.0) - np.float32(unsure) / num_points > np.float32(
                    depth_confidence
                ):
                    return self._finish(out, state, ind, i, filter_threshold)
            if prune:
                for k in (0, 1):
                    keep = heads[f"match{k}"][0] > np.float32(1 - width_confidence)
                    if early:
                        keep |= conf[k] <= th
                    if keep.all():
                        continue
                    ind[k] = ind[k][keep]
                    for name in (f"x{k}", f"cos{k}", f"sin{k}"):
                        state[name] = np.ascontiguousarray(state[name][:, keep])
                if len(ind[0]) == 0 or len(ind[1]) == 0:
                    out["stop"] = i + 1
                    return out
        return self._finish(out, state, ind, last, filter_threshold)

    def _finish(self, out, state, ind, i: int, threshold: float) -> dict:
        feeds = {"x0": state["x0"], "x1": state["x1"]}
        feeds["threshold"] = np.array(threshold, np.float32)
        res = dict(zip(MATCHES, self.assign[i].run(None, feeds), strict=True))
        m0, m1 = res["matches0"][0], res["matches1"][0]
        out["matches0"][ind[0]] = np.where(m0 >= 0, ind[1][np.maximum(m0, 0)], -1)
        out["matches1"][ind[1]] = np.where(m1 >= 0, ind[0][np.maximum(m1, 0)], -1)
        out["matching_scores0"][ind[0]] = res["scores0"][0]
        out["matching_scores1"][ind[1]] = res["scores1"][0]
        out["stop"] = i + 1
        return out
