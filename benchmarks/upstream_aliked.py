"""Upstream's ALIKED keypoints of saved images: the upstream side of
``python -m benchmarks.peer --only keypoints``, run by the peer's interpreter (imports upstream).

    python upstream_aliked.py IMAGES.npz OUT.npz SETTINGS_JSON
"""

import json
import sys

import numpy as np
import torch

from gluefactory.models import get_model  # upstream glue-factory's

images, settings = dict(np.load(sys.argv[1])), json.loads(sys.argv[3])
out = {}
for name, conf in settings.items():
    model = get_model("extractors.aliked")({"model_name": "aliked-n16", **conf}).eval()
    for image_name, im in images.items():
        x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            out[f"{name}|{image_name}"] = model({"image": x})["keypoints"][0].numpy()
np.savez(sys.argv[2], **out)
