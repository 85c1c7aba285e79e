"""Homographies of any image folder: seeded random warps, the HPatches metrics.

    python -m gluefactory.eval.homographies --conf aliked+lightglue-official
    python -m gluefactory.eval.homographies --conf aliked+lightglue-official \\
        data.data_dir=my/photos data.items_per_image=10

Every image found under ``data.data_dir`` (``data.glob`` patterns, recursive, sorted; or
the list file ``data.image_list``; default: the photographs bundled with scikit-image,
``photos``) gives ``data.items_per_image`` pairs. The pairs are those of the training
data (:mod:`gluefactory.datasets.homographies`, its ``test`` split): the image, long
side reduced to ``data.max_image_size``, is warped twice by independent random
homographies of the training difficulty (``data.homography``: difficulty 0.8, up to
60°, 640 x 480 patches), seeded by (``data.seed``, pair index), so the pairs are the
same on every run and machine. No photometric change by default
(``data.photometric.name=dark`` adds training's). Features are extracted on the
patches; ``H_0to1`` maps patch 0 to patch 1.

Metrics and summaries are those of HPatches (:mod:`gluefactory.eval.hpatches`):
``prec@1px`` / ``prec@3px``, ``num_matches``, ``num_keypoints``, the corner error of the
DLT and of the robust estimator, AUC at 1/3/5 px and mAA, ``ransac_inl``. From Python:
``stages.run("homographies", out_dir, {"data": {...}, "model": {...}})``
(``docs/evaluation.md``).
"""

from __future__ import annotations

from .cli import make_main
from .hpatches import HomographyBenchmark


class HomographiesPipeline(HomographyBenchmark):
    default_conf = {
        "data": {
            "name": "homographies",
            "data_dir": "photos",  # under the data root unless absolute
            "image_dir": "",
            "image_list": None,  # null: every image matching glob under data_dir
            "train_size": None,  # the training split is not used: every image is
            "val_size": 0,  # in the test split
            "items_per_image": 5,
            "photometric": {"name": "identity"},
        },
        "eval": {"estimator": "poselib", "ransac_th": 1.0},
    }
    name = "homographies"
    title = "Homographies of images"


main = make_main(HomographiesPipeline)

if __name__ == "__main__":
    main()
