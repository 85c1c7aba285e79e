"""Property-based: random keys and values on an evaluation command line never give a
traceback.

Whatever a user types after ``python -m gluefactory.eval.<benchmark>`` (an unknown
key, a string for a number, NaN, a list, a section for a value, YAML that does not
parse), the check of the whole config (:func:`gluefactory.eval.cli.prepare_benchmark`,
which runs before anything is written) either accepts it or raises one user error: the
CLI prints it on one line and exits 2 (``main_wrapper``). Anything else is a bug.
Bounded: in-process, nothing is run, built or downloaded.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gluefactory.eval.cli import prepare_benchmark
from gluefactory.eval.homographies import HomographiesPipeline
from gluefactory.eval.hpatches import HPatchesPipeline
from gluefactory.eval.io import flatten
from gluefactory.eval.megadepth1500 import MegaDepth1500Pipeline
from gluefactory.utils.conf import as_plain
from gluefactory.utils.errors import UserError

BENCHMARKS = (HPatchesPipeline, MegaDepth1500Pipeline, HomographiesPipeline)
CONFS = (None, "sift+NN", "xfeat+lighterglue_homography", "aliked+lsd+gluestick")


def schema_keys(cls, conf: str | None) -> list[str]:
    """The dotted keys of the merged config of ``cls`` with ``--conf conf``."""
    bench, _, _ = prepare_benchmark(cls, ["--conf", conf] if conf else [])
    return sorted(flatten(as_plain(bench.conf)))


KEYS = {(cls, conf): schema_keys(cls, conf) for cls in BENCHMARKS for conf in CONFS}

VALUES = st.one_of(
    st.sampled_from(
        [
            "null",
            "true",
            "-1",
            "0",
            "1.5",
            ".nan",
            "-.inf",
            "[1,-1]",
            "{a: 1}",
            "{name: x}",
        ]
    ),
    st.sampled_from(["abc", "[", "{", "${x}", "${eval.ransac_th}", "'", "a=b", ""]),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=6),
)


@st.composite
def command_lines(draw):
    cls, conf = draw(
        st.sampled_from(sorted(KEYS, key=lambda k: (k[0].name, str(k[1]))))
    )
    argv = ["--conf", conf] if conf else []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(KEYS[cls, conf]))
        if draw(st.booleans()):  # a typo, a key that does not exist, a sub-key
            parts = key.split(".")
            parts[draw(st.integers(0, len(parts) - 1))] = draw(
                st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6)
            )
            key = ".".join(parts)
        argv.append(f"{key}={draw(VALUES)}")
    return cls, argv


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Outputs and data roots in a temporary folder (the check must write to none)."""
    root = tmp_path_factory.mktemp("roots")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLUEFACTORY_OUTPUTS", str(root / "outputs"))
        mp.setenv("GLUEFACTORY_DATA", str(root / "data"))
        yield root


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(command_lines())
def test_random_eval_command_lines_pass_or_raise_one_user_error(roots, case):
    cls, argv = case
    try:
        prepare_benchmark(cls, argv)
    except UserError:
        pass  # printed as one `error:` line, exit 2
    assert not (roots / "outputs").exists()  # checking writes nothing
