"""The one config mechanism: every configurable base class, three levels deep."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ReadonlyConfigError

from gluefactory.datasets.base_dataset import BaseDataset
from gluefactory.eval.base import BaseBenchmark
from gluefactory.models.base_model import BaseModel
from gluefactory.robust_estimators.base_estimator import BaseEstimator
from gluefactory.utils.conf import ConfigError, Configurable
from gluefactory.utils.image import ImagePreprocessor

# ---------------------------------------------------------------- three-level hierarchies


class ModelA(BaseModel):
    default_conf = {"dim": 4, "loss": {"gamma": 1.0}}

    def _init(self, conf):
        self.lin = torch.nn.Linear(conf.dim, 2)

    def _forward(self, data):
        return {}


class ModelB(ModelA):
    default_conf = {"loss": {"fn": "nll"}, "depth": 2}


class ModelC(ModelB):
    default_conf = {"loss": {"gamma": 2.0}, "width": 8}


class DataA(BaseDataset):
    default_conf = {"root": "x", "preprocessing": {"resize": 640}}

    def _init(self, conf):
        pass

    def get_dataset(self, split):
        return []


class DataB(DataA):
    default_conf = {"preprocessing": {"side": "long"}, "pairs": "list.txt"}


class DataC(DataB):
    default_conf = {"preprocessing": {"resize": 480}, "scenes": None}


class EstA(BaseEstimator):
    default_conf = {"ransac_th": 2.0, "options": {"iters": 10}}

    def _forward(self, data):
        return {}


class EstB(EstA):
    default_conf = {"options": {"seed": 0}, "method": "ransac"}


class EstC(EstB):
    default_conf = {"options": {"iters": 20}, "refine": True}


class BenchA(BaseBenchmark):
    default_conf = {"eval": {"ransac_th": 1.0}}

    def run(self, output_dir):
        return {}


class BenchB(BenchA):
    default_conf = {"data": {"x": 1}}


class BenchC(BenchB):
    default_conf = {"eval": {"estimator": "opencv"}, "model": {"name": "p"}}


LEVELS = {
    "model": (
        ModelC,
        {
            "dim": 4,
            "loss.gamma": 2.0,
            "loss.fn": "nll",
            "depth": 2,
            "width": 8,
            "trainable": True,
        },
    ),
    "dataset": (
        DataC,
        {
            "root": "x",
            "preprocessing.resize": 480,
            "preprocessing.side": "long",
            "pairs": "list.txt",
            "scenes": None,
            "batch_size": 1,
        },
    ),
    "estimator": (
        EstC,
        {
            "ransac_th": 2.0,
            "options.iters": 20,
            "options.seed": 0,
            "method": "ransac",
            "refine": True,
            "name": None,
        },
    ),
    "benchmark": (
        BenchC,
        {
            "eval.ransac_th": 1.0,
            "eval.estimator": "opencv",
            "data.x": 1,
            "model.name": "p",
        },
    ),
}

TYPOS = {
    "model": [({"widht": 1}, "width"), ({"loss": {"gama": 1.0}}, "gamma")],
    "dataset": [
        ({"pairz": "a"}, "pairs"),
        ({"preprocessing": {"rezize": 3}}, "resize"),
    ],
    "estimator": [({"refin": 1}, "refine"), ({"options": {"iter": 3}}, "iters")],
    "benchmark": [
        ({"evall": {}}, "eval"),
        ({"eval": {"ransac_thh": 2.0}}, "ransac_th"),
    ],
}


def _build(cls, conf=None):
    return cls(conf)


@pytest.mark.parametrize("kind", list(LEVELS))
def test_every_level_of_a_three_level_hierarchy_contributes(kind):
    cls, expected = LEVELS[kind]
    for conf in (cls.build_conf(), _build(cls).conf):
        for key, value in expected.items():
            assert OmegaConf.select(conf, key) == value, (kind, key)


@pytest.mark.parametrize("kind", list(LEVELS))
def test_user_config_wins_over_every_level(kind):
    cls, expected = LEVELS[kind]
    key = next(k for k in expected if "." in k)
    section, leaf = key.split(".")
    conf = cls.build_conf({section: {leaf: "user"}})
    assert OmegaConf.select(conf, key) == "user"


@pytest.mark.parametrize(
    "kind,conf,suggestion",
    [(k, c, s) for k, cases in TYPOS.items() for c, s in cases],
)
def test_typo_at_any_level_is_rejected_with_the_suggestion(kind, conf, suggestion):
    cls = LEVELS[kind][0]
    with pytest.raises(ConfigError, match=f"Did you mean '{suggestion}'") as e:
        cls.build_conf(conf)
    assert cls.__name__ in str(e.value)
    with pytest.raises(ConfigError):
        _build(cls, conf)


def test_issue_example_benchmark_keeps_intermediate_defaults():
    assert OmegaConf.to_container(BenchB().conf.eval) == {"ransac_th": 1.0}


@pytest.mark.parametrize("kind", list(LEVELS))
def test_conf_is_frozen(kind):
    conf = _build(LEVELS[kind][0]).conf
    key = next(iter(LEVELS[kind][1])).split(".")[0]
    with pytest.raises(ReadonlyConfigError):
        conf[key] = 0
    with pytest.raises(ConfigAttributeError):  # struct: unknown reads raise
        _ = conf.not_a_key


def test_base_default_conf_is_what_the_parents_contribute():
    """The idiom ``merge(cls.base_default_conf, cls.default_conf)`` keeps working."""
    full = OmegaConf.merge(ModelC.base_default_conf, ModelC.default_conf)
    assert full == ModelC.defaults()
    assert ModelC.base_default_conf["depth"] == 2
    assert "width" not in ModelC.base_default_conf


def test_declared_base_default_conf_is_merged_below_the_class_defaults():
    class Legacy(BaseDataset):
        base_default_conf = {"legacy": 1, "root": "a"}
        default_conf = {"root": "b"}

        def _init(self, conf):
            pass

        def get_dataset(self, split):
            return []

    class LegacyChild(Legacy):
        default_conf = {"extra": 2}

    conf = LegacyChild.build_conf()
    assert (conf.legacy, conf.root, conf.extra, conf.batch_size) == (1, "b", 2, 1)


# ---------------------------------------------------------------- open sections


def test_empty_default_section_is_strict():
    with pytest.raises(ConfigError, match="'eval.anything'"):
        BaseBenchmark.build_conf({"eval": {"anything": 1}})


def test_component_slot_and_open_conf_keys_are_open():
    class Pipe(Configurable):
        default_conf = {
            "extractor": {"name": None, "k": 1},
            "solver": {"options": {}, "th": 1.0},
        }
        open_conf_keys = ("solver.options",)

    conf = Pipe.build_conf(
        {"extractor": {"name": "x", "other": 2}, "solver": {"options": {"any": 3}}}
    )
    assert conf.extractor.other == 2 and conf.solver.options.any == 3
    with pytest.raises(ConfigError, match="'solver.thh'.*Did you mean 'th'"):
        Pipe.build_conf({"solver": {"thh": 2.0}})

    class PipeChild(Pipe):  # open keys are inherited
        default_conf = {"more": 1}

    assert PipeChild.build_conf({"solver": {"options": {"z": 1}}}).solver.options.z == 1


def test_benchmark_data_and_model_are_open_sections():
    conf = BenchC.build_conf({"data": {"y": 2}, "model": {"extractor": {"name": "e"}}})
    assert conf.data.y == 2 and conf.data.x == 1 and conf.model.extractor.name == "e"


def test_open_conf_keys_must_exist():
    with pytest.raises(TypeError, match="nope"):

        class Bad(Configurable):
            default_conf = {"a": 1}
            open_conf_keys = ("nope",)


def test_value_for_a_section_is_a_config_error():
    with pytest.raises(ConfigError, match="ModelC"):
        ModelC.build_conf({"loss": 3})


def test_strict_conf_false_accepts_unknown_keys():
    class Loose(Configurable):
        default_conf = {"a": 1}
        strict_conf = False

    assert Loose.build_conf({"b": 2}).b == 2


def test_build_conf_constructs_nothing_and_runs_value_checks():
    calls = []

    class Checked(Configurable):
        default_conf = {"side": "long"}

        def __init__(self, conf=None):  # pragma: no cover - must not run
            calls.append("init")

        @classmethod
        def check_conf(cls, conf):
            if conf.side not in ("long", "short"):
                raise ConfigError(f"bad side {conf.side}")

    assert Checked.build_conf({"side": "short"}).side == "short"
    with pytest.raises(ConfigError, match="bad side"):
        Checked.build_conf({"side": "up"})
    assert calls == []


def test_build_conf_accepts_frozen_parent_sections():
    parent = BenchC.build_conf()
    assert ModelC.build_conf(OmegaConf.create({"dim": 5})).dim == 5
    assert BenchC.build_conf(parent) == parent


def test_image_preprocessor_is_configurable():
    assert issubclass(ImagePreprocessor, Configurable)
    with pytest.raises(ConfigError, match="Did you mean 'resize'"):
        ImagePreprocessor({"resise": 3})
    with pytest.raises(ConfigError, match="side"):
        ImagePreprocessor.build_conf({"side": "diagonal"})


@pytest.mark.parametrize(
    "base", [BaseModel, BaseDataset, BaseEstimator, BaseBenchmark, ImagePreprocessor]
)
def test_every_configurable_base_uses_the_mixin(base):
    assert issubclass(base, Configurable)
    assert "build_conf" not in vars(base) and "__init_subclass__" not in vars(base)
