"""Adaptive depth and width (paper Sec. 3.3): the bookkeeping of early exit and pruning.

At inference, after layer l (all but the last):

- **early exit** (``depth_confidence`` a in (0, 1]): a pair stops when the fraction of
  its points whose token confidence is at least lambda_l exceeds a
  (:func:`exit_pairs`); it leaves the batch with the assignment of layer l;
- **pruning** (``width_confidence`` w in (0, 1]): a point whose matchability is at most
  1 - w is dropped, unless its confidence is below lambda_l (:func:`prune_keep`).

Pairs of a batch exit at different layers and lose different points, so the running
tokens are re-packed (:class:`Running`) while :class:`Results` scatters each pair's
outputs back to its original keypoint indices: a pair gets in a batch exactly what it
gets alone.
"""

from __future__ import annotations

import math

import torch

from .fast import widen


def confidence_threshold(layer: int, n_layers: int) -> float:
    """lambda_l = clip(0.8 + 0.1 exp(-4 l / L), 0, 1) (the paper's exit threshold)."""
    return min(max(0.8 + 0.1 * math.exp(-4.0 * layer / n_layers), 0.0), 1.0)


def exit_pairs(confidence, threshold: float, valid, num_points, depth_confidence):
    """(B',) pairs whose fraction of confident points exceeds ``depth_confidence``.

    confidence (B', T) token confidences; valid (B', T) points in play or None;
    num_points (B',) real points of each pair (at the start).
    """
    unsure = confidence < threshold
    if valid is not None:
        unsure = unsure & valid
    return (1.0 - unsure.sum(-1) / num_points) > depth_confidence


def prune_keep(matchability, confidence, threshold: float, width_confidence):
    """(B', T) points kept: matchable enough, or not yet confident (never pruned)."""
    keep = matchability > (1 - width_confidence)
    if confidence is not None:
        keep = keep | (confidence <= threshold)
    return keep


class State:
    """The pairs still running and, per pair, which of their points are still in play.

    ``rows`` (B',): batch index of each running pair. ``ind0`` (B', M'): original index
    of each current slot of image 0 (None: identity). ``valid0`` (B', M'): the slot holds
    a real, unpruned point (None: all do). ``m``, ``n``: current slot counts; the token
    tensor x holds the M' slots of image 0, then the N' slots of image 1.
    """

    def __init__(self, rows, ind0, ind1, valid0, valid1, m: int, n: int):
        self.rows, self.ind0, self.ind1 = rows, ind0, ind1
        self.valid0, self.valid1, self.m, self.n = valid0, valid1, m, n

    def live(self, image: int) -> torch.Tensor:
        """(B', M') mask of the slots of ``image`` that hold a point in play."""
        valid = self.valid0 if image == 0 else self.valid1
        if valid is not None:
            return valid
        size = self.m if image == 0 else self.n
        return torch.ones(
            self.rows.shape[0], size, dtype=torch.bool, device=self.rows.device
        )

    def index(self, image: int) -> torch.Tensor:
        """(B', M') original keypoint index of each slot of ``image``."""
        ind = self.ind0 if image == 0 else self.ind1
        if ind is not None:
            return ind
        size = self.m if image == 0 else self.n
        return torch.arange(size, device=self.rows.device).expand(
            self.rows.shape[0], -1
        )

    @property
    def valid(self) -> torch.Tensor | None:
        """(B', M'+N') mask of the slots in play, or None when all are."""
        if self.valid0 is None and self.valid1 is None:
            return None
        return torch.cat([self.live(0), self.live(1)], 1)

    def subset(self, which: torch.Tensor) -> State:
        pick = lambda t: None if t is None else t[which]  # noqa: E731
        v0, v1 = pick(self.valid0), pick(self.valid1)
        v0 = None if v0 is not None and bool(v0.all()) else v0
        v1 = None if v1 is not None and bool(v1.all()) else v1
        return State(
            self.rows[which], pick(self.ind0), pick(self.ind1), v0, v1, self.m, self.n
        )

    def empty_pairs(self) -> torch.Tensor | None:
        """(B',) pairs with no point left in one of the images, or None if there is none."""
        gone = ~(self.live(0).any(-1) & self.live(1).any(-1))
        return gone if bool(gone.any()) else None


class Running:
    """Tokens x (B', T, D), rotary cos/sin (B', T, d/2) and point counts of the running
    pairs, with their :class:`State`."""

    def __init__(self, x, cos, sin, num_points, state: State):
        self.x, self.cos, self.sin = x, cos, sin
        self.num_points, self.state = num_points, state

    def drop(self, gone: torch.Tensor) -> Running:
        """The running pairs without those of ``gone`` (B',)."""
        keep = ~gone
        return Running(
            self.x[keep],
            self.cos[keep],
            self.sin[keep],
            self.num_points[keep],
            self.state.subset(keep),
        )

    def prune(self, keep: torch.Tensor) -> tuple[Running, tuple]:
        """Keep the points ``keep`` (B', M'+N'), packed to the front of each image's slots.

        Returns the new running set and the dropped masks of both images.
        """
        s, m = self.state, self.state.m
        valid = s.valid
        if valid is not None:
            keep = keep & valid
        keep0, keep1 = keep[:, :m], keep[:, m:]
        dropped = (s.live(0) & ~keep0, s.live(1) & ~keep1)
        x, cos, sin = self.x, self.cos, self.sin
        x0, c0, s0, ind0, v0 = _pack(keep0, x[:, :m], cos[:, :m], sin[:, :m], s.ind0)
        x1, c1, s1, ind1, v1 = _pack(keep1, x[:, m:], cos[:, m:], sin[:, m:], s.ind1)
        state = State(s.rows, ind0, ind1, v0, v1, x0.shape[1], x1.shape[1])
        packed = Running(
            torch.cat([x0, x1], 1),
            torch.cat([c0, c1], 1),
            torch.cat([s0, s1], 1),
            self.num_points,
            state,
        )
        return packed, dropped


def _pack(keep, x, cos, sin, ind):
    """Move the kept points of each pair to the front (same order), pad to the largest count."""
    if bool(keep.all()):
        return x, cos, sin, ind, None
    new_t = int(keep.sum(-1).max())
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :new_t]
    ind = order if ind is None else ind.gather(1, order)
    valid = keep.gather(1, order)
    valid = None if bool(valid.all()) else valid
    gather = lambda t: t.gather(1, order[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
    return gather(x), gather(cos), gather(sin), ind, valid


def _scatter_rows(dst, rows, ind, live, values, size: int) -> None:
    """dst[rows[k], ind[k, j]] = values[k, j] where live[k, j] (dst is (B, size))."""
    tmp = dst[rows]
    tmp = torch.cat([tmp, tmp.new_zeros(tmp.shape[0], 1)], 1)  # slot ``size``: discard
    tmp.scatter_(1, torch.where(live, ind, size), values.to(dst.dtype))
    dst[rows] = tmp[:, :size]


class Results:
    """Outputs of the batch, filled as its pairs finish (possibly at different layers)."""

    def __init__(self, b: int, m: int, n: int, num_points: torch.Tensor):
        self.b, self.m, self.n = b, m, n
        dev = num_points.device
        self.num_points = num_points
        self.parts = []  # (state, log_assignment, m0, m1, scores0, scores1)
        self.prune = [
            torch.zeros(b, m, dtype=torch.long, device=dev),
            torch.zeros(b, n, dtype=torch.long, device=dev),
        ]
        self.stop = torch.zeros(b, dtype=torch.long, device=dev)
        self.num_pruned = torch.zeros(b, dtype=torch.long, device=dev)

    def pruned(self, state: State, dropped, layers: int) -> None:
        """Points ``dropped`` ((B', M'), (B', N')) left after ``layers`` layers."""
        for image, drop in enumerate(dropped):
            if bool(drop.any()):
                size = self.m if image == 0 else self.n
                _scatter_rows(
                    self.prune[image],
                    state.rows,
                    state.index(image),
                    drop,
                    torch.full_like(drop, layers, dtype=torch.long),
                    size,
                )
                self.num_pruned.index_add_(0, state.rows, drop.sum(-1))

    def stopped(self, rows: torch.Tensor, layers: int) -> None:
        """Pairs ``rows`` end after ``layers`` layers without any match (no points)."""
        self.stop[rows] = layers

    def finish(self, state: State, la, m0, m1, sc0, sc1, layers: int) -> None:
        self.parts.append((state, la, m0, m1, sc0, sc1))
        self.stop[state.rows] = layers
        for image in (0, 1):
            live = state.live(image)
            size = self.m if image == 0 else self.n
            _scatter_rows(
                self.prune[image],
                state.rows,
                state.index(image),
                live,
                torch.full_like(live, layers, dtype=torch.long),
                size,
            )

    def whole(self) -> bool:
        """A single part covers the whole batch with every slot in place (no pruning)."""
        if len(self.parts) != 1:
            return False
        s = self.parts[0][0]
        return s.rows.shape[0] == self.b and s.ind0 is None and s.ind1 is None

    def output(self) -> dict:
        if self.whole():
            _, la, m0, m1, sc0, sc1 = self.parts[0]
        else:
            la, m0, m1, sc0, sc1 = self._assemble()
        return {
            "matches0": m0,
            "matches1": m1,
            "matching_scores0": widen(sc0),
            "matching_scores1": widen(sc1),
            "log_assignment": la,
            "stop": self.stop,
            "prune0": self.prune[0],
            "prune1": self.prune[1],
            "pruned_fraction": self.num_pruned.float() / self.num_points.clamp(min=1),
        }

    def _assemble(self):
        """Scatter the parts into (B, M+1, N+1) / (B, M) / (B, N) tensors.

        Pruned and padded points: log-assignment -inf to every point and 0 to the dustbin,
        no match, score 0.
        """
        b, m, n = self.b, self.m, self.n
        dev = self.stop.device
        dtype = self.parts[0][1].dtype if self.parts else torch.float32
        la_full = torch.full((b, m + 2, n + 2), -torch.inf, dtype=dtype, device=dev)
        la_full[:, :, n] = 0.0
        la_full[:, m, :] = 0.0
        m0f = torch.full((b, m), -1, dtype=torch.long, device=dev)
        m1f = torch.full((b, n), -1, dtype=torch.long, device=dev)
        sdtype = widen(self.parts[0][4]).dtype if self.parts else torch.float32
        s0f = torch.zeros((b, m), dtype=sdtype, device=dev)
        s1f = torch.zeros((b, n), dtype=sdtype, device=dev)
        for s, la, m0, m1, sc0, sc1 in self.parts:
            k = s.rows.shape[0]
            ind0, ind1, live0, live1 = s.index(0), s.index(1), s.live(0), s.live(1)
            r = torch.cat(
                [torch.where(live0, ind0, m + 1), ind0.new_full((k, 1), m)], 1
            )
            c = torch.cat(
                [torch.where(live1, ind1, n + 1), ind1.new_full((k, 1), n)], 1
            )
            la_full[s.rows[:, None, None], r[:, :, None], c[:, None, :]] = la.to(dtype)
            g0 = torch.where(m0 >= 0, ind1.gather(1, m0.clamp(min=0)), -1)
            g1 = torch.where(m1 >= 0, ind0.gather(1, m1.clamp(min=0)), -1)
            _scatter_rows(m0f, s.rows, ind0, live0, g0, m)
            _scatter_rows(m1f, s.rows, ind1, live1, g1, n)
            _scatter_rows(s0f, s.rows, ind0, live0, sc0, m)
            _scatter_rows(s1f, s.rows, ind1, live1, sc1, n)
        return la_full[:, : m + 1, : n + 1], m0f, m1f, s0f, s1f
