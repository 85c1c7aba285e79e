"""Checking that the input of a component (model, estimator) has the keys it needs.

:class:`MissingDataError` is a user error (:class:`~gluefactory.utils.errors.InputError`):
in practice a missing key comes from a combination the user chose, e.g. a ground-truth
matcher that needs depth run on a homography dataset, or cached features exported
without a field; CLIs show it as one line naming the component, the missing keys and the
keys the input has (``GLUEFACTORY_DEBUG=1`` shows the traceback). It also derives from
:class:`KeyError`, so code that catches a missing key keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import InputError


class MissingDataError(InputError, KeyError):
    """The input of a component lacks required keys (the message names them)."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else ""


def missing_keys(required: Iterable[str], data: Mapping) -> list[str]:
    """The (dotted, e.g. ``view0.image``) keys of ``required`` absent from ``data``."""
    missing = []
    for key in required:
        node = data
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                missing.append(key)
                break
            node = node[part]
    return missing


def check_data_keys(component: str, required: Iterable[str], data: Mapping) -> None:
    """Raise :class:`MissingDataError` naming every missing (dotted) key."""
    missing = missing_keys(required, data)
    if missing:
        have = (
            ", ".join(sorted(map(str, data.keys())))
            if isinstance(data, Mapping)
            else f"a {type(data).__name__}, not a dict"
        )
        raise MissingDataError(
            f"{component} is missing input key(s): {', '.join(missing)}. "
            f"Input has: {have}."
        )


__all__ = ["MissingDataError", "check_data_keys", "missing_keys"]
