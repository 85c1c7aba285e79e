"""Our ALIKED keypoints against upstream glue-factory's, on the same images and weights.

    python -m benchmarks.peer_keypoints --peer PEER [--workdir DIR]

Upstream's ``extractors.aliked`` runs in the peer's venv (``build_peer.sh``, see
:mod:`benchmarks.peer`) through :mod:`benchmarks.upstream_aliked`; ours here with ``nms:
strict`` (the default, kornia's NMS) and ``nms: simple`` (upstream's). Images:
scikit-image's astronaut and coffee and the Motorcycle left view; settings: the best 1024
(``detection_threshold: -1``) and threshold 0.2 without a limit. A keypoint is "the
same" when ours minus 0.5 (our pixel convention, docs/extractors.md) lies within 1e-3 px
of one of upstream's. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from .common import peer_env, peer_python, run_measured, table

SETTINGS = {
    "top 1024": {"max_num_keypoints": 1024, "detection_threshold": -1},
    "threshold 0.2": {"max_num_keypoints": -1, "detection_threshold": 0.2},
}


def ours(images: dict, nms: str) -> dict[str, np.ndarray]:
    from gluefactory.models import get_model

    out = {}
    for s, conf in SETTINGS.items():
        model = get_model("extractors.aliked")({"nms": nms, **conf}).eval()
        for n, im in images.items():
            x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
            with torch.inference_mode():
                out[f"{s}|{n}"] = model({"image": x})["keypoints"][0].numpy() - 0.5
    return out


def main(argv: list[str] | None = None) -> None:
    from skimage import data

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--peer", type=Path, required=True, help="build_peer.sh's DEST")
    p.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gf_peer_kp"
    )
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    images = {"astronaut": data.astronaut(), "coffee": data.coffee(),
              "motorcycle": data.stereo_motorcycle()[0]}  # fmt: skip
    np.savez(args.workdir / "images.npz", **images)
    upstream = args.workdir / "upstream.npz"
    run_measured(
        peer_python(args.peer), str(Path(__file__).with_name("upstream_aliked.py")),
        [args.workdir / "images.npz", upstream, json.dumps(SETTINGS)],
        args.peer / "glue-factory", peer_env(2, args.peer), "plain",
        args.workdir / "upstream_aliked.log",
    )  # fmt: skip
    ref = dict(np.load(upstream))
    rows = []
    for nms in ("strict", "simple"):
        for key, kp in ours(images, nms).items():
            r = ref[key]
            d = np.linalg.norm(kp[:, None] - r[None], axis=-1).min(1)
            same = d < 1e-3
            off = f"{d[same].max():.1e}" if same.any() else "-"
            ratio = f"{same.sum()} ({same.sum() / max(len(r), 1):.1%})"
            rows.append((f"nms: {nms}", *key.split("|"), len(kp), len(r), ratio, off))
    head = ["ours", "setting", "image", "ours", "upstream", "same"]
    print(table([*head, "max offset of same (px)"], rows))


if __name__ == "__main__":
    main()
