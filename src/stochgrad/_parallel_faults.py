"""What :mod:`stochgrad.parallel` does when a job runs too long or a worker dies.

- :class:`ChunkTimeout` and :class:`WorkerCrashed`, the errors (exported by
  :mod:`stochgrad.parallel`, and named after it).
- The serial backend's timer: a ``SIGALRM`` that interrupts a job past its time.
- Ray runs: jobs timed from their submission (no more in flight than CPU slots), a dead worker
  named, the rest force-cancelled; and a local Ray instance that ends with its driver.

The process backend's pool lives in :mod:`stochgrad.parallel` itself, beside the code its
workers import.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["ChunkTimeout", "WorkerCrashed"]


class ChunkTimeout(TimeoutError):
    """A chunk (:class:`ParallelMap`) or an item (:func:`map_items`) ran past its ``timeout``.

    Every worker was stopped before this was raised. Attributes: ``index`` (of the chunk or
    item), ``limit`` (the timeout in seconds).
    """

    __module__ = "stochgrad.parallel"  # its public home (messages, pickling by reference)

    def __init__(self, message: str, index: int, limit: float) -> None:
        super().__init__(message)
        self.index = index
        self.limit = limit

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self):  # OSError's own pickling would lose index and limit
        return type(self), (str(self), self.index, self.limit)


class WorkerCrashed(RuntimeError):
    """A worker died while running a chunk or item: a crash in native code, ``os._exit``, a
    signal, the out-of-memory killer. The other workers were stopped.

    Attributes: ``index`` (of the chunk or item it ran; ``None`` when unknown) and ``exitcode``
    (the process's exit status, negative for a signal; ``None`` when unknown or on Ray).
    """

    __module__ = "stochgrad.parallel"

    def __init__(self, message: str, index: int | None, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.exitcode = exitcode

    def __reduce__(self):
        return type(self), (str(self), self.index, self.exitcode)


# ---------------------------------------------------------------------------------------------
# timing a job in this process (backend "serial")
# ---------------------------------------------------------------------------------------------
class _Overdue(BaseException):
    """Raised by SIGALRM in a serial job past its timeout (a BaseException, so that the job's
    own ``except Exception`` does not swallow it)."""


@contextlib.contextmanager
def _alarm(limit: float | None) -> Iterator[None]:
    """Interrupt the Python code run in this block with :class:`_Overdue` after ``limit`` s.

    Only on the main thread of a POSIX process whose SIGALRM and real-time timer are unused;
    elsewhere it does nothing and the caller checks the time when the call returns. A native
    routine that does not return to the interpreter meanwhile is interrupted when it does.
    """
    if (
        limit is None
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGALRM) is not signal.SIG_DFL
        or signal.getitimer(signal.ITIMER_REAL)[0] > 0
    ):
        yield
        return
    armed = [True]

    def ring(signum: int, frame: Any) -> None:
        if armed[0]:
            raise _Overdue

    previous = signal.signal(signal.SIGALRM, ring)
    try:
        signal.setitimer(signal.ITIMER_REAL, limit)
    except (OverflowError, ValueError, OSError):  # a limit of years: checked on return instead
        signal.signal(signal.SIGALRM, previous)
        yield
        return
    try:
        yield
    finally:
        try:  # an alarm landing here raises before the handler goes, never after
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, previous)


def _call_timed(fn: Callable, arg: Any, timeout: float | None, what: str, index: int) -> Any:
    """``fn(arg)`` in this process; :class:`ChunkTimeout` past ``timeout`` (see :func:`_alarm`)."""
    start = time.monotonic()
    try:
        with _alarm(timeout):
            out = fn(arg)
    except _Overdue:
        raise ChunkTimeout(
            f"{what} ran past the timeout of {timeout:g} s and was interrupted", index, timeout
        ) from None
    elapsed = time.monotonic() - start
    if timeout is not None and elapsed > timeout:
        raise ChunkTimeout(
            f"{what} ran {elapsed:.3g} s, past the timeout of {timeout:g} s (it could not be "
            "interrupted here: checked when it returned, its result discarded)",
            index,
            timeout,
        )
    return out


# ---------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------
_RAY_REAPER: subprocess.Popen | None = None

# Runs beside a driver that started a local Ray instance, and outlives it. Ray's fate-sharing
# kills the GCS and the raylet with the driver, and task workers follow within ~3 s; the
# raylet's agents (DashboardAgent, RuntimeEnvAgent) notice within 2 s but then wait Ray's 60 s
# trying to report the death to the dead GCS. Once the driver is gone (end of file on stdin),
# this kills what it last saw under the driver's raylet (start times compared: no reused pid).
_REAPER = r"""
import os, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
driver, seen = int(sys.argv[1]), {}
def stat(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read()
    except OSError:
        return None
    rest = text[text.rindex(b")") + 2 :].split()
    return text[text.index(b"(") + 1 : text.rindex(b")")], rest[0], rest[19]
def children(pid):
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out
while True:
    seen = {p: s for p, s in seen.items() if (stat(p) or (0, 0, 0))[2] == s}
    todo = [c for c in children(driver) if (stat(c) or (b"",))[0] == b"raylet"]
    while todo:
        pid = todo.pop()
        st = stat(pid)
        if st:
            seen[pid] = st[2]
            todo += children(pid)
    if select.select([sys.stdin], [], [], 1.0)[0] and not os.read(sys.stdin.fileno(), 1):
        break
for pid, start in seen.items():
    st = stat(pid)
    if st and st[2] == start and st[1] != b"Z":
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "backend='ray' needs Ray: pip install \"stochgrad[ray]\" (or pip install ray)"
        ) from exc
    return ray


def _ray_start(ray: Any, address: str | None, num_cpus: int | None) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``), or start a local Ray instance that ends
    with this process however it ends (see :data:`_REAPER`)."""
    global _RAY_REAPER
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return
    # "local" always starts a new instance, so num_cpus is honoured even when some other Ray
    # cluster runs on this machine.
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    if sys.platform.startswith("linux") and (_RAY_REAPER is None or _RAY_REAPER.poll() is not None):
        with contextlib.suppress(OSError):
            _RAY_REAPER = subprocess.Popen(
                [sys.executable, "-c", _REAPER, str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the terminal's process group spares it
            )


# How long past its timeout the driver waits for a Ray task to stop itself (its worker's
# start-up counts against the time measured from submission).
_RAY_GRACE_S = 30.0


def _ray_timeout(name: Callable[[int], str], i: int, timeout: float) -> ChunkTimeout:
    return ChunkTimeout(
        f"{name(i)} ran past the timeout of {timeout:g} s; its Ray workers were stopped",
        i,
        timeout,
    )


def _ray_run(
    ray: Any,
    remote: Any,
    args: Sequence[tuple],
    *,
    slots: int,
    timeout: float | None,
    callback: Callable[[int, Any], None] | None,
    name: Callable[[int], str],
) -> list[Any]:
    """``remote.remote(*args[i], timeout)`` for every ``i``, results in order; ``callback`` as
    each finishes.

    The task times itself from its start with :func:`_call_timed` (a job in Python code is
    interrupted in its worker). A job stuck in native code, which the alarm cannot interrupt,
    is stopped from here :data:`_RAY_GRACE_S` after its time is up counted from submission
    (with a ``timeout`` at most ``slots`` tasks are in flight, so submission is about the
    start, give or take a worker's start-up). A crash is not retried (the remote has
    ``max_retries=0``): it raises :class:`WorkerCrashed` at once."""
    results: list[Any] = [None] * len(args)
    window = len(args) if timeout is None else max(1, slots)
    refs: dict[Any, tuple[int, float]] = {}  # in flight -> (index, submitted)
    queued = iter(range(len(args)))
    try:
        while True:
            for i in itertools.islice(queued, window - len(refs)):
                refs[remote.remote(*args[i], timeout)] = (i, time.monotonic())
            if not refs:
                return results
            wake = None
            if timeout is not None:
                first = min(t for _, t in refs.values())
                wake = max(0.0, first + timeout + _RAY_GRACE_S - time.monotonic())
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=wake)
            for ref in ready:
                i, _ = refs.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # an exception in the job: as raised
                    if isinstance(exc, ChunkTimeout) or isinstance(exc.cause, ChunkTimeout):
                        raise _ray_timeout(name, i, timeout) from None
                    raise
                except ray.exceptions.RayError as exc:
                    first_line = (str(exc).strip().splitlines() or [""])[0][:200]
                    raise WorkerCrashed(
                        f"{name(i)}: its Ray worker died ({type(exc).__name__}: {first_line})",
                        i,
                    ) from None
                if callback is not None:
                    callback(i, results[i])
            if timeout is not None and not ready:
                now = time.monotonic()
                late = [(t, i) for i, t in refs.values() if now - t > timeout + _RAY_GRACE_S]
                if late:
                    raise _ray_timeout(name, min(late)[1], timeout)
    except BaseException:
        for ref in refs:  # force: kill the worker running it (a stuck native call included)
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
