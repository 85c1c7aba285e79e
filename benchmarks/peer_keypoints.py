"""Our ALIKED keypoints against upstream glue-factory's, on the same images and weights.

    python benchmarks/peer_keypoints.py --peer /work/peer [--workdir /tmp/gf_peer_kp]

Upstream's ``extractors.aliked`` runs in the peer's own venv (``build_peer.sh``; see
``benchmarks/peer.py``), ours here with ``nms: strict`` (the default, kornia's NMS) and
``nms: simple`` (upstream's). Images: scikit-image's astronaut and coffee and the
Motorcycle left view; settings: the best 1024 (``detection_threshold: -1``) and
threshold 0.2 without a limit. A keypoint is "the same" when ours minus 0.5 (our pixel
convention, docs/extractors.md) lies within 1e-3 px of one of upstream's. Prints a
markdown table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import REPO, peer_env  # noqa: E402

SETTINGS = {
    "top 1024": {"max_num_keypoints": 1024, "detection_threshold": -1},
    "threshold 0.2": {"max_num_keypoints": -1, "detection_threshold": 0.2},
}

# run by the peer's interpreter: upstream's ALIKED on the saved images
UPSTREAM = r"""
import sys, numpy as np, torch
from gluefactory.models import get_model
imgs, settings = dict(np.load(sys.argv[1])), eval(sys.argv[3])
out = {}
for s, conf in settings.items():
    m = get_model("extractors.aliked")({"model_name": "aliked-n16", **conf}).eval()
    for n, im in imgs.items():
        x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            out[f"{s}|{n}"] = m({"image": x})["keypoints"][0].numpy()
np.savez(sys.argv[2], **out)
"""


def images() -> dict[str, np.ndarray]:
    from skimage import data

    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "motorcycle": data.stereo_motorcycle()[0],
    }


def ours(imgs: dict, nms: str) -> dict[str, np.ndarray]:
    import torch

    from gluefactory.models import get_model

    out = {}
    for s, conf in SETTINGS.items():
        m = get_model("extractors.aliked")({"nms": nms, **conf}).eval()
        for n, im in imgs.items():
            x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
            with torch.inference_mode():
                out[f"{s}|{n}"] = m({"image": x})["keypoints"][0].numpy() - 0.5
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--peer", type=Path, required=True, help="build_peer.sh's DEST")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gf_peer_kp"))
    args = p.parse_args()
    python = args.peer / "venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"No peer build in {args.peer}: run build_peer.sh first.")
    args.workdir.mkdir(parents=True, exist_ok=True)
    imgs = images()
    np.savez(args.workdir / "images.npz", **imgs)
    ref_path = args.workdir / "upstream.npz"
    subprocess.run(
        [python, "-c", UPSTREAM, args.workdir / "images.npz", ref_path, repr(SETTINGS)],
        cwd=args.peer / "glue-factory",
        env=peer_env(2, args.peer),
        check=True,
    )
    ref = dict(np.load(ref_path))
    rows = [
        "| ours | setting | image | ours | upstream | same | max offset of same (px) |"
    ]
    rows.append("|---" * 7 + "|")
    for nms in ("strict", "simple"):
        for key, kp in ours(imgs, nms).items():
            r = ref[key]
            d = np.linalg.norm(kp[:, None] - r[None], axis=-1).min(1)
            same = d < 1e-3
            s, n = key.split("|")
            off = f"{d[same].max():.1e}" if same.any() else "-"
            rows.append(
                f"| nms: {nms} | {s} | {n} | {len(kp)} | {len(r)} | "
                f"{same.sum()} ({same.sum() / max(len(r), 1):.1%}) | {off} |"
            )
    print("\n".join(rows))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
