from pathlib import Path

import pytest
from omegaconf import OmegaConf

from gluefactory.utils.conf import (
    ConfigError,
    compose,
    list_confs,
    load_conf,
    merge_strict,
    parse_dotlist,
    resolve_conf_path,
)

DEFAULTS = {
    "depth_confidence": 0.95,
    "loss": {"gamma": 1.0, "nll_balancing": 0.5},
    "extractor": {"name": None},
    "options": {},
}


def test_unknown_key_names_key_component_and_suggestion():
    with pytest.raises(ConfigError) as e:
        merge_strict(DEFAULTS, {"depth_confidense": 0.9}, "LightGlue")
    msg = str(e.value)
    assert "'depth_confidense'" in msg and "LightGlue" in msg
    assert "Did you mean 'depth_confidence'" in msg


def test_unknown_nested_key_gets_dotted_path():
    with pytest.raises(ConfigError, match=r"'loss\.nll_balance'.*nll_balancing"):
        merge_strict(DEFAULTS, {"loss": {"nll_balance": 0.2}}, "LightGlue")


def test_component_slots_and_empty_mappings_are_open():
    conf = merge_strict(
        DEFAULTS, {"extractor": {"name": "x", "anything": 1}, "options": {"k": 2}}, "P"
    )
    assert conf.extractor.anything == 1 and conf.options.k == 2


def test_merge_keeps_defaults():
    conf = merge_strict(DEFAULTS, {"loss": {"gamma": 0.5}}, "P")
    assert conf.loss.gamma == 0.5 and conf.loss.nll_balancing == 0.5


def test_non_strict_merge_accepts_unknown():
    assert merge_strict(DEFAULTS, {"zzz": 1}, "P", strict=False).zzz == 1


def test_config_path_resolution(tmp_path: Path):
    path = tmp_path / "my.yaml"
    path.write_text("model:\n  name: two_view_pipeline\n")
    assert resolve_conf_path(str(path)) == path
    assert load_conf(path).model.name == "two_view_pipeline"


def test_shipped_config_resolution_by_name():
    names = list_confs()
    assert names, "the package ships configs"
    conf = load_conf(names[0])
    assert "model" in conf
    assert load_conf(names[0] + ".yaml") == conf


def test_unknown_config_name_lists_known_ones():
    names = list_confs()
    with pytest.raises(ConfigError) as e:
        load_conf("definitely-not-a-config")
    assert names[0] in str(e.value)


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_conf(path)


def test_dotlist_overrides_compose(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  matcher:\n    depth_confidence: -1\n")
    conf = compose(
        str(path), ["model.matcher.depth_confidence=0.95", "data.batch_size=4"]
    )
    assert conf.model.matcher.depth_confidence == 0.95
    assert conf.data.batch_size == 4


def test_malformed_override():
    with pytest.raises(ConfigError, match="key=value"):
        parse_dotlist(["model.matcher"])
    assert OmegaConf.to_container(parse_dotlist(["a.b=1"])) == {"a": {"b": 1}}


def test_open_keys_and_strict_empty_sections():
    defaults = {"solver": {"options": {}, "th": 1.0}, "extra": {}}
    conf = merge_strict(
        defaults, {"solver": {"options": {"k": 1}}}, "P", open_keys=["solver.options"]
    )
    assert conf.solver.options.k == 1
    with pytest.raises(ConfigError, match=r"'extra\.k'"):
        merge_strict(defaults, {"extra": {"k": 1}}, "P", empty_open=False)
    with pytest.raises(ConfigError, match="'solver' is a section"):
        merge_strict(defaults, {"solver": 3}, "P")
    with pytest.raises(ConfigError, match="'solver.th' is a value"):
        merge_strict(defaults, {"solver": {"th": {"a": 1}}}, "P")
    assert merge_strict(defaults, {"solver": None}, "P").solver is None
