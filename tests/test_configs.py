"""Every shipped config is valid: it builds its model (official weights included).

Configs whose official weights cannot be had offline (SuperPoint, SIFT-LightGlue) are
skipped with the weights manager's message; tests/eval/test_configs.py checks that
message and tests/test_training_configs.py runs their architectures with random weights.
Configs built on line models (``lines.wireframe``, ``lines.lsd``) are skipped while
``gluefactory.models.lines`` is not in the package.
"""

import importlib.util

import pytest
import torch

from gluefactory.models import get_model
from gluefactory.utils.conf import list_confs, load_conf
from gluefactory.utils.errors import WeightsError


@pytest.mark.parametrize("name", list_confs())
def test_shipped_config_builds(name):
    conf = load_conf(name)
    if "lines." in str(conf.model) and not importlib.util.find_spec(
        "gluefactory.models.lines"
    ):
        pytest.skip("needs the line models: gluefactory.models.lines is absent")
    try:
        model = get_model(conf.model.name)(conf.model).eval()
    except WeightsError as e:
        pytest.skip(f"official weights not available here: {str(e).splitlines()[0]}")
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
