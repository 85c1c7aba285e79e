"""``deploy.onnx``: an exported pipeline run with onnxruntime, as a two-view model.

Registered as the model ``deploy.onnx``, so that every benchmark runs on the exported
graphs with ``model.name=deploy.onnx model.path=<export folder>``. Inputs and outputs
are those of :class:`~gluefactory.models.two_view_pipeline.TwoViewPipeline`:
``view0/1`` with ``image`` (B, C, H, W) and optionally ``image_size`` (B, 2) and
cached features (``cache``: used when the export has no extractor); outputs
``keypoints0/1``, ``keypoint_scores0/1``, ``descriptors0/1``, ``matches0/1``,
``matching_scores0/1`` and ``stop`` (layers run).

The hot path is onnxruntime and NumPy only (the extractor graph's outputs go to the
matcher graphs as arrays); torch appears at the API's edges (the input images, the
output tensors). Pairs run one at a time (the graphs have batch 1); a batch whose pairs get different
keypoint counts is an InputError. Padded cached keypoints (``keypoint_mask``) are left
out of the matching, as the PyTorch matcher masks them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from ..models.base_model import BaseModel
from ..utils.errors import ConfigError, InputError
from ..utils.image import check_image_tensor
from .export import read_manifest
from .extractor_runtime import ExtractorRuntime
from .lightglue_runtime import LightGlueRuntime

_FROM_EXPORT = ("depth_confidence", "width_confidence", "filter_threshold")


def _session_factory(providers, threads: int, spinning: bool):
    try:
        import onnxruntime as ort
    except ImportError as e:  # an optional extra
        raise ConfigError(
            "deploy.onnx needs onnxruntime: pip install 'gluefactory[onnx]'."
        ) from e
    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
    # onnxruntime's workers spin after each parallel section by default; between
    # the per-layer graphs the runner works in NumPy, and on a shared CPU the
    # spinning threads take the cores the others need (benchmarks/deploy_onnx.py)
    spin = "1" if spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    providers = [_provider(p) for p in providers]
    available = ort.get_available_providers()
    missing = [p[0] for p in providers if p[0] not in available]
    if missing:
        raise ConfigError(
            f"deploy.onnx: providers {missing} are not available in this onnxruntime "
            f"(available: {', '.join(available)})."
        )
    return lambda path: ort.InferenceSession(str(path), options, providers=providers)


def _provider(entry) -> tuple[str, dict]:
    """A ``providers`` entry: a name, or [name, {provider options}]."""
    if isinstance(entry, str):
        return entry, {}
    entry = OmegaConf.to_container(entry) if OmegaConf.is_config(entry) else entry
    if (
        isinstance(entry, list | tuple)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and isinstance(entry[1], dict)
    ):
        return entry[0], {str(k): str(v) for k, v in entry[1].items()}
    raise ConfigError(
        f"deploy.onnx: providers entry {entry!r}: give a provider name or "
        "[name, {option: value}]."
    )


class OnnxMatcher(BaseModel):
    """Extractor and LightGlue of an export folder (``path``), run by onnxruntime."""

    default_conf = {
        "name": "deploy.onnx",
        "path": None,  # the export folder (python -m gluefactory.export_onnx)
        # onnxruntime execution providers, each a name or [name, {provider options}]
        "providers": ["CPUExecutionProvider"],
        "num_threads": 0,  # onnxruntime intra-op threads; 0: its default
        "spinning": False,  # busy-wait of idle worker threads (onnxruntime's default: on)
        # null: as exported; -1 turns early exit / pruning off
        "depth_confidence": None,
        "width_confidence": None,
        "filter_threshold": None,
        # a two-view pipeline's sections (a preset's): extractor keys change the
        # selection step (max_num_keypoints, thresholds), matcher keys the options
        # above; anything the graphs fixed must keep its exported value
        "extractor": {"name": None},
        "matcher": {"name": None},
        "ground_truth": {"name": None},  # none here: the benchmarks compute their own
        "trainable": False,
    }
    required_data_keys = ["view0", "view1"]

    def _init(self, conf):
        if conf.path is None:
            raise ConfigError("deploy.onnx: set model.path to an export folder.")
        if conf.ground_truth.name is not None:
            raise ConfigError(
                f"deploy.onnx: ground_truth.name={conf.ground_truth.name!r}: the "
                "runner computes no ground truth; leave it null."
            )
        folder = Path(conf.path)
        self.manifest = manifest = read_manifest(folder)
        session = _session_factory(conf.providers, conf.num_threads, conf.spinning)
        spec = manifest["matcher"]
        self.options = {k: float(_option(conf, spec, k)) for k in _FROM_EXPORT}
        self.matcher = LightGlueRuntime(folder, spec, session)
        self.extractor = None
        if "extractor" in manifest:
            e = manifest["extractor"]
            self.extractor = ExtractorRuntime(
                folder, e, session, _extractor_overrides(conf, e)
            )

    def _features(self, data: dict, i: int) -> list[dict]:
        """Per pair of the batch: keypoints, scores, descriptors as NumPy arrays,
        with ``keep`` (the indices of the keypoints to match: padded cached ones are
        left out)."""
        view = data[f"view{i}"]
        if self.extractor is not None:
            images = check_image_tensor(view["image"], "deploy.onnx")
            images = images.detach().cpu().float().numpy()
            sizes = view.get("image_size")
            out = []
            for b, image in enumerate(images):
                if sizes is not None:  # images padded to a common size: crop
                    w, h = (int(v) for v in torch.as_tensor(sizes).reshape(-1, 2)[b])
                    image = image[:, :h, :w]
                f = self.extractor(image)
                out.append({**f, "keep": np.arange(len(f["keypoints"]))})
            return out
        cache = view.get("cache")
        if not cache:
            raise InputError(
                f"deploy.onnx: the export has no extractor and view{i} carries no "
                "cached features (view['cache'])."
            )
        mask = cache.get("keypoint_mask")
        out = []
        for b in range(len(cache["keypoints"])):
            f = {k: _numpy(cache[k][b]) for k in _FEATURES if k in cache}
            keep = np.arange(len(f["keypoints"]))
            if mask is not None:  # padded cached keypoints are not matched
                keep = np.flatnonzero(_numpy(mask[b]))
            out.append({**f, "keep": keep})
        return out

    @staticmethod
    def _size(view: dict, kpts: np.ndarray, b: int) -> np.ndarray:
        """(w, h) used to normalise the keypoints: ``image_size`` or their extent."""
        size = view.get("image_size")
        if size is not None:
            size = torch.as_tensor(size).reshape(-1, 2)
            return size[b if len(size) > 1 else 0].float().cpu().numpy()
        if len(kpts) == 0:
            return np.ones(2, np.float32)
        return np.maximum(1 + kpts.max(0) - kpts.min(0), 1).astype(np.float32)

    def _forward(self, data: dict) -> dict:
        feats = [self._features(data, i) for i in (0, 1)]
        pairs = []
        for k, (f0, f1) in enumerate(zip(*feats, strict=True)):
            args = []
            for f in (f0, f1):
                kpts = np.ascontiguousarray(f["keypoints"][f["keep"]], np.float32)
                desc = np.ascontiguousarray(f["descriptors"][f["keep"]], np.float32)
                args.append((kpts, desc))
            size = [self._size(data[f"view{i}"], args[i][0], k) for i in (0, 1)]
            res = self.matcher(
                args[0][0], args[1][0], args[0][1], args[1][1], *size, **self.options
            )
            idx = [(f["keep"], len(f["keypoints"])) for f in (f0, f1)]
            pairs.append(_scatter(res, idx))
        device = _device(data)
        out = {}
        for i, per_pair in enumerate(feats):
            for key in per_pair[0]:
                if key != "keep":
                    out[f"{key}{i}"] = _stack([p[key] for p in per_pair], key, device)
        for key in pairs[0]:
            out[key] = _stack([p[key] for p in pairs], key, device)
        return out

    def loss(self, pred, data):
        raise NotImplementedError("deploy.onnx runs exported graphs (no training).")


def _option(conf, spec: dict, key: str):
    """An option from the top level, else the matcher section, else the export; the
    matcher section's other keys must be the exported values."""
    section = {k: v for k, v in conf.matcher.items() if k != "name"}
    for k, v in section.items():
        exported = spec["conf"].get(k)
        if k not in _FROM_EXPORT and v != exported:
            raise ConfigError(
                f"deploy.onnx: matcher.{k}={v!r} differs from the export "
                f"({exported!r}): the graphs fix it; export again to change it."
            )
    if conf[key] is not None:
        return conf[key]
    return section.get(key, spec[key])


def _extractor_overrides(conf, exported: dict) -> dict:
    """The extractor section's keys (checked against the export by the runtime)."""
    section = {k: v for k, v in conf.extractor.items() if k != "name"}
    name = conf.extractor.name
    if name is not None and name != exported["name"]:
        raise ConfigError(
            f"deploy.onnx: extractor.name={name!r}, but the export holds "
            f"{exported['name']!r}."
        )
    return section


_FEATURES = ("keypoints", "keypoint_scores", "descriptors")


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _device(data: dict) -> torch.device:
    for view in (data["view0"], data["view0"].get("cache") or {}):
        for v in view.values():
            if torch.is_tensor(v):
                return v.device
    return torch.device("cpu")


def _stack(values: list, key: str, device) -> torch.Tensor:
    """Per-pair NumPy arrays -> one (B, ...) tensor (the pipeline's API)."""
    if len({np.shape(v) for v in values}) > 1:
        raise InputError(
            f"deploy.onnx: the pairs of a batch give {key} of different sizes; run "
            "batches of one pair."
        )
    return torch.from_numpy(np.stack(values)).to(device)


def _scatter(res: dict, idx) -> dict:
    """Matches of the real keypoints -> indices into the padded arrays."""
    (keep0, m), (keep1, n) = idx
    out = {
        "matches0": np.full(m, -1, np.int64),
        "matches1": np.full(n, -1, np.int64),
        "matching_scores0": np.zeros(m, np.float32),
        "matching_scores1": np.zeros(n, np.float32),
    }
    for i, (keep, other) in enumerate(((keep0, keep1), (keep1, keep0))):
        mt = res[f"matches{i}"]
        out[f"matches{i}"][keep] = np.where(mt >= 0, other[np.maximum(mt, 0)], -1)
        out[f"matching_scores{i}"][keep] = res[f"matching_scores{i}"]
    out["stop"] = np.int64(res["stop"])
    return out


__main_model__ = OnnxMatcher
