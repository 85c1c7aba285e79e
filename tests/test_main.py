"""The listing command and the CLI error handling."""

import subprocess
import sys

import pytest

from gluefactory.__main__ import main
from gluefactory.utils.cli import main_wrapper
from gluefactory.utils.conf import ConfigError


def test_lists_registered_components(capsys):
    main(["models", "configs", "estimators", "weights"])
    out = capsys.readouterr().out
    assert "two_view_pipeline" in out
    assert "aliked+lightglue-official" in out
    assert "aliked-lightglue" in out


def test_benchmarks_lists_only_concrete_benchmarks():
    """The shared EvalPipeline base is abstract, so it is not a benchmark name."""
    from gluefactory.eval.base import list_benchmarks
    from gluefactory.eval.pipeline import EvalPipeline

    names = list_benchmarks()
    assert {"hpatches", "megadepth1500"} <= set(names)
    assert "pipeline" not in names
    with pytest.raises(TypeError, match="abstract"):
        EvalPipeline({})


def test_unknown_kind_is_an_error():
    with pytest.raises(SystemExit):
        main(["modelz"])


def test_cli_errors_are_one_line_messages(capsys, monkeypatch):
    monkeypatch.delenv("GLUEFACTORY_DEBUG", raising=False)

    @main_wrapper
    def fails():
        raise ConfigError("Unknown configuration key 'x'")

    with pytest.raises(SystemExit) as e:
        fails()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: Unknown configuration key 'x'" in err and "Traceback" not in err


def test_models_module_runs_as_script():
    out = subprocess.run(
        [sys.executable, "-m", "gluefactory.models"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "two_view_pipeline" in out.split()
