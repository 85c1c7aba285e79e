"""Every shipped config is valid: it builds its model (official weights included)."""

import pytest
import torch

from gluefactory.models import get_model
from gluefactory.utils.conf import list_confs, load_conf


@pytest.mark.parametrize("name", list_confs())
def test_shipped_config_builds(name):
    conf = load_conf(name)
    model = get_model(conf.model.name)(conf.model).eval()
    image = torch.rand(1, 3, 96, 128)
    size = torch.tensor([[128.0, 96.0]])
    with torch.inference_mode():
        pred = model(
            {
                "view0": {"image": image, "image_size": size},
                "view1": {"image": image, "image_size": size},
            }
        )
    assert pred["matches0"].shape[:1] == (1,)
    assert pred["keypoints0"].shape[-1] == 2
