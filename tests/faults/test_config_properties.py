"""Property-based: random keys and values in a training config never give a traceback.

Whatever a user types (an unknown key, a string for a number, NaN, a list, a section
for a value), validation either accepts the config or raises one user error: the CLI
prints it on one line and exits 2 (``main_wrapper``). Anything else is a bug.
"""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from toy_training import toy_conf

from gluefactory.trainer.config import build_train_conf
from gluefactory.trainer.launch import check_components
from gluefactory.utils.conf import load_conf
from gluefactory.utils.errors import UserError


def leaf_paths(conf: dict, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for k, v in conf.items():
        if isinstance(v, dict) and v:
            paths += leaf_paths(v, prefix + (k,))
        else:
            paths.append(prefix + (k,))
    return paths


BASES = {
    "toy": toy_conf(),
    "xfeat": OmegaConf.to_container(load_conf("xfeat+lighterglue_homography")),
}
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.sampled_from(["a", "name", "x"]), st.integers(), max_size=2),
)


@st.composite
def overrides(draw):
    base = draw(st.sampled_from(sorted(BASES)))
    conf = copy.deepcopy(BASES[base])
    for _ in range(draw(st.integers(1, 3))):
        paths = leaf_paths(conf)
        if draw(st.booleans()):
            path = draw(st.sampled_from(paths))
        else:  # a typo or a key that does not exist
            path = draw(st.sampled_from(paths))[:-1] + (
                draw(st.text(min_size=1, max_size=6)),
            )
        node = conf
        for k in path[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[path[-1]] = draw(VALUES)
    return conf


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(overrides())
def test_random_training_configs_pass_or_raise_one_user_error(conf):
    try:
        check_components(build_train_conf(conf))
    except UserError:
        pass  # printed as one `error:` line, exit 2
