"""User-error types shared by the whole library.

A :class:`UserError` is something the *user* can fix (a config key, a missing dataset, a
weight file, an input image): CLIs print its message on one line and exit with code 2. Any
other exception is a bug and keeps its traceback. Each subclass also derives from the
builtin exception that callers would naturally catch (``ValueError``, ``OSError``, ...).
"""

from __future__ import annotations

import errno
import os
import re


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


class LockedError(UserError, RuntimeError):
    """Another process is writing the same run folder (results tag, experiment)."""


#: faults of the environment, not of the program: what the user must do about each
ENVIRONMENT_FAULTS = {
    errno.ENOSPC: "no space left on the device: free space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free space or write elsewhere",
    errno.EROFS: "the filesystem is read-only: write elsewhere",
    errno.EACCES: "permission denied: fix the permissions or write elsewhere",
    errno.EPERM: "operation not permitted: fix the permissions or write elsewhere",
    errno.ENOTDIR: "a file stands where a folder is expected: remove it or choose another path",
    errno.EISDIR: "a folder stands where a file is expected: give a file path",
}


def environment_fault(e: BaseException) -> str | None:
    """One line for an ``OSError`` caused by the environment (disk full, read-only or
    missing permissions, a file where a folder is expected or the reverse), naming the
    path and what to do; None for anything else. h5py reports such faults with the
    errno inside its message only, so that is read too."""
    if not isinstance(e, OSError):
        return None
    code = e.errno
    if code is None:
        found = re.search(r"errno = (\d+)", str(e))
        code = int(found.group(1)) if found else None
    path = e.filename or getattr(e, "filename2", None)
    if code in (errno.EEXIST, errno.ENOTDIR) and path is not None:
        blocking = _file_on_the_way(os.fspath(path))
        if blocking is None and code == errno.EEXIST:
            return None  # an existing folder or a lost race: not the user's to fix
        code, path = errno.ENOTDIR, blocking or path
    if code not in ENVIRONMENT_FAULTS:
        return None
    where = f"{path}: " if path else ""
    return f"{where}{ENVIRONMENT_FAULTS[code]} ({errno.errorcode[code]})."


def _file_on_the_way(path: str) -> str | None:
    """The file standing at ``path`` or at one of its parents, where a folder is needed."""
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path if path and os.path.isfile(path) else None


__all__ = [
    "ConfigError",
    "DataError",
    "InputError",
    "LockedError",
    "UserError",
    "WeightsError",
    "environment_fault",
]
