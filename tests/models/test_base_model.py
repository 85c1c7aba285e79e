import pytest
import torch
from omegaconf.errors import ReadonlyConfigError

from gluefactory.models import get_model, list_models
from gluefactory.models.base_model import (
    BaseModel,
    MissingDataError,
    load_state_dict_strict,
)
from gluefactory.utils.conf import ConfigError


class Toy(BaseModel):
    default_conf = {"dim": 4, "loss": {"gamma": 1.0}}
    required_data_keys = ["view0.image", "keypoints0"]

    def _init(self, conf):
        self.lin = torch.nn.Linear(conf.dim, 2)
        self.bn = torch.nn.BatchNorm1d(2)

    def _forward(self, data):
        return {"out": self.lin(data["keypoints0"])}


class ToyChild(Toy):
    default_conf = {"extra": True}


def test_defaults_merged_and_frozen():
    m = Toy({"dim": 3})
    assert m.conf.dim == 3 and m.conf.trainable is True and m.conf.loss.gamma == 1.0
    with pytest.raises(ReadonlyConfigError):
        m.conf.dim = 5


def test_defaults_inherited():
    m = ToyChild()
    assert m.conf.extra is True and m.conf.dim == 4


def test_unknown_key_error():
    with pytest.raises(ConfigError, match=r"(?s)Toy.*'dimm'.*Did you mean 'dim'"):
        Toy({"dimm": 3})


def test_missing_data_keys_are_named():
    m = Toy()
    with pytest.raises(MissingDataError) as e:
        m({"view0": {}})
    assert (
        "view0.image" in str(e.value)
        and "keypoints0" in str(e.value)
        and "Toy" in str(e.value)
    )
    out = m({"view0": {"image": 0}, "keypoints0": torch.zeros(1, 4)})
    assert out["out"].shape == (1, 2)


def test_trainable_false_freezes_parameters():
    assert not any(p.requires_grad for p in Toy({"trainable": False}).parameters())


def test_frozen_model_stays_in_eval_mode_inside_a_training_parent():
    """``trainable: false`` means frozen: a parent's ``train()`` leaves it in eval mode,
    so its BatchNorm neither uses batch statistics nor updates its running ones."""
    frozen = Toy({"trainable": False})
    parent = torch.nn.ModuleDict({"frozen": frozen, "free": Toy()}).train()
    assert parent.training and parent["free"].bn.training
    assert not frozen.training and not frozen.bn.training
    before = frozen.bn.running_mean.clone()
    frozen.bn(torch.randn(8, 2) * 5 + 3)
    assert torch.equal(frozen.bn.running_mean, before)


def test_frozen_xfeat_features_do_not_change_with_the_pipeline_mode():
    """Regression: a frozen XFeat inside a training pipeline ran its BatchNorm in train
    mode, so the matcher trained on other features than those it was evaluated on."""
    pipe = get_model("two_view_pipeline")(
        {
            "extractor": {"name": "extractors.xfeat", "weights": None, "seed": 0},
            "matcher": {"name": "matchers.nearest_neighbor"},
        }
    )
    view = {"image": torch.rand(2, 3, 96, 128)}
    with torch.no_grad():
        train_out = pipe.train().extractor(view)
        eval_out = pipe.eval().extractor(view)
    torch.testing.assert_close(train_out["descriptors"], eval_out["descriptors"])
    torch.testing.assert_close(train_out["keypoints"], eval_out["keypoints"])


def test_freeze_batch_normalization():
    m = Toy({"freeze_batch_normalization": True}).train()
    assert m.training and not m.bn.training


def test_strict_state_dict_errors_name_keys():
    m = Toy()
    state = m.state_dict()
    bad = dict(state)
    bad["lin.weight"] = torch.zeros(3, 3)
    bad["stray.key"] = torch.zeros(1)
    del bad["lin.bias"]
    with pytest.raises(ConfigError) as e:
        load_state_dict_strict(m, bad, "toy.pth")
    msg = str(e.value)
    assert (
        "lin.bias" in msg
        and "stray.key" in msg
        and "lin.weight" in msg
        and "toy.pth" in msg
    )
    load_state_dict_strict(
        m, {**state, "stray.key": torch.zeros(1)}, "toy.pth", ignore=("stray.key",)
    )


def test_registry_lookup_and_listing():
    assert "two_view_pipeline" in list_models()
    assert get_model("two_view_pipeline").__name__ == "TwoViewPipeline"
    # a dotted module path works for external code
    assert (
        get_model("gluefactory.models.two_view_pipeline").__name__ == "TwoViewPipeline"
    )
    with pytest.raises(
        ConfigError, match="Unknown model 'two_view_pipelin'.*Did you mean"
    ):
        get_model("two_view_pipelin")
