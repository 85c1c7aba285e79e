"""Finding components by name; upstream names through the one alias table."""

from __future__ import annotations

import logging

import pytest
import torch

from gluefactory.models import ALIASES, get_model, list_aliases, list_models
from gluefactory.models.base_model import BaseModel
from gluefactory.utils.conf import ConfigError
from gluefactory.utils.registry import (
    Alias,
    _alias_class,
    existing_packages,
    package_exists,
)
from gluefactory.weights import WeightsError, get_weights_path

REGISTRY_LOG = "gluefactory.utils.registry"


def _weights(name: str):
    try:
        return get_weights_path(name)
    except WeightsError as e:
        pytest.skip(f"weights {name!r} unavailable: {e}")


# ------------------------------------------------------------------- search packages


def test_missing_search_packages_are_skipped_explicitly(monkeypatch):
    # gluefactory.models.lines exists since the lines landed: a missing plug-in
    # package listed in SEARCH stands in for it
    import gluefactory.models as models

    missing = "gluefactory.models.no_such_plugin"
    assert package_exists("gluefactory.models.lines")
    assert not package_exists(missing)
    assert not package_exists("no_such_top_level_package.sub")
    assert existing_packages(["gluefactory.models", missing]) == ["gluefactory.models"]
    monkeypatch.setattr(models, "SEARCH", [*models.SEARCH, missing])
    with pytest.raises(ConfigError) as e:
        get_model("matchers.no_such_matcher")
    msg = str(e.value)
    assert "gluefactory.models.matchers.matchers.no_such_matcher" in msg
    assert ".no_such_plugin." not in msg  # an absent package is not even tried
    assert "matchers.lightglue" in list_models()
    assert "lines.lsd" in list_models() and "lines.wireframe" in list_models()


def test_unknown_name_suggests_aliases_too():
    with pytest.raises(ConfigError, match="matchers.lightglue_pretrained"):
        get_model("matchers.lightglue_pretraind")


# ---------------------------------------------------------------- the real alias table


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_every_alias_resolves_to_a_subclass_of_its_target(name):
    cls = get_model(name)
    target = get_model(ALIASES[name].target)
    assert issubclass(cls, target) and cls is not target
    assert cls.alias_of is target and cls.alias_name == name
    assert get_model(name) is cls  # built once
    conf = cls.build_conf({"name": name})
    assert set(conf) == set(target.defaults())  # no key added by the alias
    assert any(
        line.startswith(f"{name} -> {ALIASES[name].target}") for line in list_aliases()
    )


def test_lightglue_pretrained_carries_the_lightglue_repo_defaults():
    conf = get_model("matchers.lightglue_pretrained").build_conf()
    assert (conf.depth_confidence, conf.width_confidence) == (0.95, 0.99)
    assert (conf.filter_threshold, conf.flash, conf.features) == (
        0.1,
        True,
        "superpoint",
    )
    # the "-official" configs of upstream switch the adaptivity off: the user wins
    conf = get_model("matchers.lightglue_pretrained").build_conf(
        {"depth_confidence": -1, "width_confidence": -1, "features": "aliked"}
    )
    assert (conf.depth_confidence, conf.width_confidence) == (-1, -1)
    assert get_model("matchers.lightglue").build_conf().depth_confidence == -1


def test_alias_still_rejects_unknown_keys_with_the_suggestion():
    with pytest.raises(
        ConfigError, match=r"(?s)lightglue_pretrained.*Did you mean 'depth_confidence'"
    ):
        get_model("matchers.lightglue_pretrained").build_conf({"depth_confidense": 0.9})
    with pytest.raises(ConfigError, match="Did you mean 'mutual_check'"):
        get_model("matchers.nearest_neighbor_matcher").build_conf({"mutual_chek": True})


def test_disk_kornia_keys_are_translated_with_a_note(caplog):
    cls = get_model("extractors.disk_kornia")
    upstream = {
        "name": "extractors.disk_kornia",
        "weights": "depth",
        "max_num_keypoints": 2048,
        "nms_window_size": 5,
        "detection_threshold": 0.0,
        "force_num_keypoints": True,
        "pad_if_not_divisible": True,
        "chunk": 4,
        "desc_dim": 128,
    }
    with caplog.at_level(logging.INFO, REGISTRY_LOG):
        conf = cls.build_conf(upstream)
    assert conf.nms_radius == 2 and conf.weights == "disk-depth"
    assert conf.max_num_keypoints == 2048 and conf.force_num_keypoints is True
    assert "nms_window_size=5 translated to nms_radius=2" in caplog.text
    assert "weights='depth' translated to 'disk-depth'" in caplog.text
    for key in ("chunk", "pad_if_not_divisible"):  # dropped only if ours lacks them
        if key in get_model("extractors.disk").defaults():
            assert conf[key] == upstream[key]
        else:
            assert f"upstream-only key {key}=" in caplog.text


@pytest.mark.parametrize(
    "conf,match",
    [
        ({"nms_window_size": 4}, "odd positive int"),
        ({"nms_window_size": 5, "nms_radius": 2}, "give only one"),
        ({"nms_window": 5}, "Did you mean 'nms_window_size'|nms_radius"),
    ],
)
def test_disk_kornia_bad_keys_are_config_errors(conf, match):
    with pytest.raises(ConfigError, match=match):
        get_model("extractors.disk_kornia").build_conf(conf)


@pytest.mark.slow
def test_upstream_pipeline_config_builds_our_models():
    """A two-view pipeline written with upstream names loads our DISK and LightGlue."""
    _weights("disk-depth")
    _weights("disk-lightglue")
    conf = {
        "name": "two_view_pipeline",
        "extractor": {
            "name": "extractors.disk_kornia",
            "weights": "depth",
            "max_num_keypoints": 256,
            "nms_window_size": 5,
            "chunk": 4,
        },
        "matcher": {"name": "matchers.lightglue_pretrained", "features": "disk"},
    }
    pipe = get_model("two_view_pipeline")(conf).eval()
    disk, lg = get_model("extractors.disk"), get_model("matchers.lightglue")
    assert isinstance(pipe.extractor, disk) and isinstance(pipe.matcher, lg)
    assert (
        pipe.matcher.conf.depth_confidence == 0.95
        and pipe.extractor.conf.nms_radius == 2
    )
    ours = lg({"features": "disk"})
    for k, v in ours.state_dict().items():
        torch.testing.assert_close(pipe.matcher.state_dict()[k], v)


# ------------------------------------------------------------------ the mechanism itself


class _Toy(BaseModel):
    default_conf = {"size": 3, "mode": "a", "keep": 1}

    def _init(self, conf):
        pass

    def _forward(self, data):
        return {}


def test_dropped_keys_are_logged_and_renamed_values_converted(caplog):
    alias = Alias(
        target="toy",
        defaults={"mode": "b"},
        renamed={"old_size": ("size", lambda v: v * 2)},
        values={"mode": {"legacy": "a"}},
        dropped={"vram": "memory only", "keep": "never dropped: toy knows it"},
    )
    cls = _alias_class("toy_upstream", alias, _Toy)
    assert cls.build_conf().mode == "b"
    with caplog.at_level(logging.INFO, REGISTRY_LOG):
        conf = cls({"old_size": 5, "mode": "legacy", "vram": 8, "keep": 2}).conf
    assert (conf.size, conf.mode, conf.keep) == (10, "a", 2)
    assert "upstream-only key vram=8 is ignored (memory only)" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "toy_upstream: upstream-only key vram=8 is ignored (memory only)."
    ]
    with pytest.raises(ConfigError, match="'siz'"):
        cls({"siz": 1})


def test_alias_defaults_must_be_keys_of_the_target():
    with pytest.raises(TypeError, match="unknown to _Toy"):
        _alias_class("bad", Alias(target="toy", defaults={"nope": 1}), _Toy)


def test_python_m_gluefactory_lists_the_aliases(capsys):
    from gluefactory.__main__ import main

    main(["aliases"])
    out = capsys.readouterr().out
    assert f"aliases ({len(ALIASES)}):" in out
    assert "matchers.lightglue_pretrained -> matchers.lightglue" in out


def test_estimator_aliases_resolve_and_are_listed(capsys):
    from gluefactory.__main__ import main
    from gluefactory.robust_estimators import get_estimator
    from gluefactory.robust_estimators.base_estimator import ALIASES as EST_ALIASES

    assert EST_ALIASES["homography"]["homography_est"].target == "point_line"
    for kind, table in EST_ALIASES.items():
        for name, alias in table.items():
            cls = get_estimator(kind, name)
            assert issubclass(cls, get_estimator(kind, alias.target))
            assert cls.alias_name == name
    main(["estimators"])
    assert (
        "homography.homography_est -> homography.point_line" in capsys.readouterr().out
    )
    with pytest.raises(ConfigError, match="homography_est"):
        get_estimator("homography", "homography_es")
