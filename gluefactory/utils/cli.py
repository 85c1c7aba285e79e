"""Command-line helpers shared by training, evaluation and scripts.

Every CLI takes ``--conf NAME_OR_PATH`` (a shipped config name, see
``python -m gluefactory configs``, or a YAML path) followed by OmegaConf dotlist
overrides (``model.matcher.depth_confidence=0.95``). Expected errors (bad config, missing
data or weights) are printed as one clear message, without a stack trace.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable

from omegaconf import DictConfig

from .conf import compose
from .errors import UserError

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


#: errors shown to the user as a single message (no traceback); anything else is a bug
USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)

DEBUG_ENV = "GLUEFACTORY_DEBUG"


def debug_enabled() -> bool:
    """True when ``$GLUEFACTORY_DEBUG`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


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
        except USER_ERRORS as e:
            if debug_enabled():
                raise
            print(f"error: {e}", file=sys.stderr)
            print("(set GLUEFACTORY_DEBUG=1 for the full traceback)", file=sys.stderr)
            sys.exit(2)

    return wrapped
