"""CLI helpers: the strict config merge every CLI uses, and the user-error handling."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from gluefactory.utils.cli import (
    conf_section,
    debug_enabled,
    main_wrapper,
    merge_cli_conf,
)
from gluefactory.utils.errors import (
    ConfigError,
    DataError,
    InputError,
    UserError,
    WeightsError,
)

DEFAULTS = {
    "model": {},  # open (empty): validated by the model
    "estimator": {"name": "poselib", "ransac_th": 1.0},  # open (has a name)
    "preprocessing": {"resize": None, "side": "long"},  # closed
    "eval": {"plot": False, "thresholds": {"low": 1, "high": 3}},  # closed, nested
}


def user(*dotlist: str):
    return OmegaConf.from_dotlist(list(dotlist))


def test_merge_keeps_defaults_and_applies_overrides():
    conf = merge_cli_conf(DEFAULTS, user("preprocessing.resize=640"), "cli")
    assert conf.preprocessing.resize == 640 and conf.preprocessing.side == "long"
    assert conf.estimator.name == "poselib" and conf.eval.thresholds.high == 3
    assert DEFAULTS["preprocessing"]["resize"] is None  # defaults untouched


@pytest.mark.parametrize(
    "override, key, suggestion",
    [
        ("preprocesing.resize=100", "'preprocesing'", "'preprocessing'"),
        ("modle.matcher.name=x", "'modle'", "'model'"),
        ("preprocessing.sid=short", "'preprocessing.sid'", "'side'"),
        ("eval.thresholds.hihg=5", "'eval.thresholds.hihg'", "'high'"),
    ],
)
def test_unknown_key_at_any_level_names_key_and_closest(override, key, suggestion):
    with pytest.raises(ConfigError) as e:
        merge_cli_conf(DEFAULTS, user(override), "python -m gluefactory.demo")
    msg = str(e.value)
    assert key in msg and f"Did you mean {suggestion}" in msg
    assert "python -m gluefactory.demo" in msg


def test_sections_with_a_name_or_empty_are_open():
    conf = merge_cli_conf(
        DEFAULTS, user("model.anything.deep=1", "estimator.ransac_options.x=2"), "cli"
    )
    assert conf.model.anything.deep == 1 and conf.estimator.ransac_options.x == 2


def test_open_keys_opens_a_closed_section():
    with pytest.raises(ConfigError):
        merge_cli_conf(DEFAULTS, user("eval.extra=1"), "cli")
    conf = merge_cli_conf(DEFAULTS, user("eval.extra=1"), "cli", open_keys=["eval"])
    assert conf.eval.extra == 1 and conf.eval.plot is False


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model=foo", "'model' is a section, got 'foo'"),
        ("preprocessing=3", "'preprocessing' is a section (keys: resize, side)"),
        ("eval.plot.x=1", "'eval.plot' is a value (default False)"),
    ],
)
def test_value_for_a_section_and_section_for_a_value(override, expected):
    with pytest.raises(ConfigError, match="Invalid configuration for cli") as e:
        merge_cli_conf(DEFAULTS, user(override), "cli")
    assert expected in str(e.value)


def test_null_disables_a_section():
    assert merge_cli_conf(DEFAULTS, user("estimator=null"), "cli").estimator is None


def test_conf_section_prefixes_config_errors_only():
    with pytest.raises(ConfigError, match=r"^in estimator: bad key"):
        with conf_section("estimator"):
            raise ConfigError("bad key")
    with pytest.raises(KeyError):  # a bug is not turned into a config error
        with conf_section("estimator"):
            raise KeyError("matches0")


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on ", True),
    ],
)
def test_debug_flag_is_parsed_as_a_boolean(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("GLUEFACTORY_DEBUG", raising=False)
    else:
        monkeypatch.setenv("GLUEFACTORY_DEBUG", value)
    assert debug_enabled() is expected


@pytest.mark.parametrize("error", [ConfigError, DataError, WeightsError, InputError])
@pytest.mark.parametrize("debug", [None, "0"])
def test_user_errors_are_one_line_and_exit_2(capsys, monkeypatch, error, debug):
    if debug is None:
        monkeypatch.delenv("GLUEFACTORY_DEBUG", raising=False)
    else:
        monkeypatch.setenv("GLUEFACTORY_DEBUG", debug)

    @main_wrapper
    def fails():
        raise error("the file /x/y.pth is corrupt")

    with pytest.raises(SystemExit) as e:
        fails()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "error: the file /x/y.pth is corrupt"
    assert "Traceback" not in err and "GLUEFACTORY_DEBUG=1" in err


def test_user_error_that_is_also_a_key_error_is_not_quoted(capsys, monkeypatch):
    monkeypatch.delenv("GLUEFACTORY_DEBUG", raising=False)

    class UnknownName(ConfigError, KeyError):
        pass

    @main_wrapper
    def fails():
        raise UnknownName("Unknown weights 'x'")

    with pytest.raises(SystemExit):
        fails()
    assert capsys.readouterr().err.startswith("error: Unknown weights 'x'\n")


def test_debug_shows_the_user_error_itself(monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_DEBUG", "1")

    @main_wrapper
    def fails():
        raise ConfigError("bad")

    with pytest.raises(ConfigError, match="bad"):
        fails()


@pytest.mark.parametrize("error", [KeyError, ValueError, TypeError, RuntimeError])
def test_other_errors_are_bugs_and_propagate(monkeypatch, error):
    monkeypatch.delenv("GLUEFACTORY_DEBUG", raising=False)
    assert not issubclass(error, UserError)

    @main_wrapper
    def fails():
        raise error("matches0")

    with pytest.raises(error):
        fails()
