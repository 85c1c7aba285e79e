"""Command-line helpers shared by training, evaluation and scripts.

Every CLI takes ``--conf NAME_OR_PATH`` (a shipped config name, see
``python -m gluefactory configs``, or a YAML path) followed by OmegaConf dotlist
overrides (``model.matcher.depth_confidence=0.95``). The user config is merged over the
CLI's own defaults with :func:`merge_cli_conf`, which rejects unknown keys at every level.
Expected errors (:class:`~gluefactory.utils.errors.UserError`: bad config, missing data or
weights, bad input) are printed as one message, without a stack trace, and exit with code 2;
any other exception is a bug and keeps its traceback (exit code 1).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .conf import compose, merge_strict, to_conf
from .errors import ConfigError, UserError, environment_fault

logger = logging.getLogger("gluefactory")


def add_conf_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conf",
        type=str,
        default=None,
        help="Shipped config name (python -m gluefactory configs) or path to a YAML file.",
    )
    parser.add_argument("dotlist", nargs="*", help="Overrides such as key.sub=value.")


def conf_from_args(args: argparse.Namespace) -> DictConfig:
    return compose(args.conf, list(args.dotlist or []))


def merge_cli_conf(
    defaults: Any, user: Any, component: str, open_keys: Iterable[str] = ()
) -> DictConfig:
    """Merge a CLI's user config (``--conf`` file + overrides) over the CLI's defaults.

    Strict at every nesting level, with the rules of :func:`~gluefactory.utils.conf.merge_strict`:
    an unknown key raises :class:`ConfigError` naming the key, ``component`` (e.g.
    ``"python -m gluefactory.demo"``) and the closest valid keys. A sub-section whose
    default is a mapping with a ``name`` key (or an empty mapping), or whose dotted path is
    in ``open_keys``, is open: the component it configures validates it when it is built
    (``Cls.build_conf``). A value given for a section (``model=foo``) or a section given for
    a value is a ConfigError too; ``null`` is accepted everywhere (it disables a section).

    Returns the merged config, not frozen (a CLI may still fill in values).
    """
    defaults, user = to_conf(defaults), to_conf(user)
    check = defaults
    if open_keys:
        check = copy.deepcopy(defaults)
        for key in open_keys:
            OmegaConf.update(check, key, {}, merge=False, force_add=True)
    merge_strict(check, user, component)  # unknown keys, a value for a section
    try:
        return OmegaConf.merge(defaults, user)
    except OmegaConfBaseException as e:  # e.g. a type clash in a structured default
        raise ConfigError(f"Invalid configuration for {component}: {e}") from e


@contextlib.contextmanager
def conf_section(key: str) -> Iterator[None]:
    """Prefix a :class:`ConfigError` raised inside with the CLI config section it is about.

    ``with conf_section("estimator"): load_estimator(kind, conf.estimator)`` turns
    "Unknown configuration key(s) for PoseLibRelativePose: 'ransac_thr'" into
    "in estimator: Unknown ...", so that the user knows where to look in their config.
    """
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"in {key}: {e}") from e


#: errors shown to the user as a single message (no traceback); anything else is a bug
USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)

DEBUG_ENV = "GLUEFACTORY_DEBUG"


def debug_enabled() -> bool:
    """True when ``$GLUEFACTORY_DEBUG`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def error_message(e: BaseException) -> str:
    """The text of an error (a KeyError subclass would otherwise be shown quoted)."""
    if isinstance(e, KeyError) and len(e.args) == 1:
        return str(e.args[0])
    return str(e)


def main_wrapper(fn: Callable[..., int | None]) -> Callable[..., int | None]:
    """Run a CLI ``main``; turn expected errors into a message and exit code 2."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        if not logging.getLogger().handlers:
            logging.basicConfig(
                level=logging.INFO,
                format="[%(asctime)s %(name)s %(levelname)s] %(message)s",
            )
        try:
            return fn(*args, **kwargs)
        except (*USER_ERRORS, OSError) as e:
            if isinstance(e, USER_ERRORS):
                message = error_message(e)
            else:  # a fault of the environment (disk full, read-only, ...) or a bug
                message = environment_fault(e)
                if message is None:
                    raise
            if debug_enabled():
                raise
            print(f"error: {message}", file=sys.stderr)
            print("(set GLUEFACTORY_DEBUG=1 for the full traceback)", file=sys.stderr)
            sys.exit(2)

    return wrapped
