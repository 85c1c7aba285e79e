"""Call a function of a native library in a helper process that is replaced once its
memory grows past a bound: for native code that leaks.

pytlsd 0.0.2 (the LSD of upstream Glue Factory, ``lines.lsd``) frees none of its
buffers: about 24 bytes per pixel per call, 4 MB for a 480 x 360 image, so a GlueStick
training run grows by gigabytes an hour until the kernel kills it. In a helper process
the leak is returned to the system each time the helper is replaced.

The helper is ``python -m gluefactory.utils.isolated`` (it imports only the library it
calls, not torch, so it starts in a fraction of a second), fed pickled calls through a
pipe: unlike ``multiprocessing`` it never re-imports the caller's ``__main__``. Each
process that uses an :class:`IsolatedFunction` (a DataLoader worker too) gets its own
helper; a call is serialised by a lock, so threads may share one.
"""

from __future__ import annotations

import importlib
import os
import pickle
import struct
import subprocess
import sys
import threading
import weakref
from typing import Any

_HEADER = struct.Struct("<Q")


def _send(stream, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def _rss() -> int:
    """Resident memory of this process in bytes: the current size where /proc tells
    it, else the peak (0 where unknown). The peak alone would not do on Linux: a child
    inherits its parent's peak through fork and exec."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class IsolatedFunction:
    """``module.name(*args, **kwargs)`` run in a helper process, replaced before a call
    once the helper's resident memory has passed ``max_rss_mb``. Arguments and results are
    pickled (NumPy arrays, numbers); an exception of the function is raised here."""

    def __init__(self, module: str, name: str, max_rss_mb: float = 512):
        self.module, self.name = module, name
        self.max_rss = int(max_rss_mb * 2**20)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner = -1  # the PID that started the helper
        self._rss = 0
        self._finalizer: weakref.finalize | None = None

    def __getstate__(self) -> dict:  # copies and pickles start their own helper
        return {"module": self.module, "name": self.name, "max_rss": self.max_rss}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["module"], state["name"], state["max_rss"] / 2**20)

    def __call__(self, *args, **kwargs) -> Any:
        with self._lock:
            stale = self._proc is None or self._owner != os.getpid()
            if stale or self._rss > self.max_rss:
                self._restart()
            try:
                _send(self._proc.stdin, (args, kwargs))
                ok, value, self._rss = _receive(self._proc.stdout)
            except (EOFError, BrokenPipeError, OSError) as e:
                code = self._proc.poll()
                self._proc = None
                raise RuntimeError(
                    f"The helper process running {self.module}.{self.name} died "
                    f"(exit code {code})."
                ) from e
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Stop the helper (also done when this object is collected or at exit)."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._proc = None

    def _restart(self) -> None:
        if self._finalizer is not None:
            if self._owner == os.getpid():
                self._finalizer()
            else:  # a helper inherited through fork belongs to the parent: leave it
                self._finalizer.detach()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__, self.module, self.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._owner, self._rss = os.getpid(), 0
        _widen_pipe(self._proc.stdin)
        self._finalizer = weakref.finalize(self, _stop, self._proc)


def _widen_pipe(stream) -> None:
    """A pipe of 1 MB (Linux; 64 kB by default): an image crosses it in one or two
    writes instead of dozens of wake-ups of both processes."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 2**20)
    except (ImportError, OSError):
        pass


def _stop(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _serve(module: str, name: str) -> None:
    """The helper: answer calls from stdin until it closes."""
    function = getattr(importlib.import_module(module), name)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # what the function prints must not enter the pipe
    while True:
        try:
            args, kwargs = _receive(stdin)
        except EOFError:
            return
        try:
            reply = (True, function(*args, **kwargs))
        except Exception as e:  # handed to the caller, raised there
            reply = (False, e)
        _send(stdout, (*reply, _rss()))


if __name__ == "__main__":
    _serve(*sys.argv[1:3])
