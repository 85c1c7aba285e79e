"""User-error types shared by the whole library.

A :class:`UserError` is something the *user* can fix (a config key, a missing dataset, a
weight file, an input image): CLIs print its message on one line and exit with code 2. Any
other exception is a bug and keeps its traceback. Each subclass also derives from the
builtin exception that callers would naturally catch (``ValueError``, ``OSError``, ...).
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error the user can fix; its message names the file, key or value."""


class ConfigError(UserError, ValueError):
    """A configuration is invalid (unknown key, unknown name, value out of range)."""


class DataError(UserError, OSError):
    """A dataset is missing, incomplete or corrupt (the message says how to get it)."""


class WeightsError(UserError, RuntimeError):
    """Weights could not be found, fetched, verified or loaded."""


class InputError(UserError, ValueError):
    """An input (image, tensor, file) has the wrong type, range or content."""


__all__ = ["UserError", "ConfigError", "DataError", "WeightsError", "InputError"]
