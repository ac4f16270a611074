"""Evaluate an expensive black-box objective, or many independent jobs, in parallel.

The score-function estimator needs only values :math:`f(x_i)`, so when ``f`` is an expensive
simulator (a physics code, a docking score, an environment roll-out) its evaluation dominates and
parallelises trivially over samples. :class:`ParallelMap` wraps ``f``: called on a batch
``[n, ...]`` it splits the batch along axis 0 into chunks, evaluates ``f`` on each chunk in a
worker and returns the values ``[n]`` in order, equal to ``f(x)`` (bit for bit when ``f`` maps
each sample independently and deterministically). :func:`map_items` runs self-contained jobs
(a chunk of genes to fit, say) and hands each result to a callback as it finishes.

Backends:

- ``"process"``: local worker processes (started with ``spawn``, never ``fork``: forking a
  process that holds torch's thread pools can deadlock).
- ``"ray"``: Ray tasks, on a Ray cluster (``address`` or ``RAY_ADDRESS``) or on a local Ray
  instance started for you.
- ``"serial"``: the same chunking in this process; the reference the others are tested against.

Faults end in a clear exception, never in a hang or a leftover process:

- ``timeout=`` seconds per chunk or item: one that runs longer stops every worker and raises
  :class:`ChunkTimeout` naming it; results already handed to ``callback`` stay delivered.
- A worker process that dies (a crash in native code, ``os._exit``, the out-of-memory killer)
  raises :class:`WorkerCrashed` naming the chunk or item it was running.
- No worker outlives its driver: on Linux, process workers ask the kernel to kill them when the
  driver dies (``PR_SET_PDEATHSIG``) and watch their parent process besides; a local Ray
  instance started here is killed with the driver (see :func:`map_items`).

Every estimator that takes ``parallel=`` calls :func:`as_parallel`, e.g.
``sg.score_function(f, dist_fn, theta, num_samples=10_000, parallel="process")``.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_float
from stochgrad._parallel_faults import (
    ChunkTimeout,
    WorkerCrashed,
    _call_timed,
    _import_ray,
    _ray_run,
    _ray_start,
)

__all__ = [
    "BACKENDS",
    "ChunkTimeout",
    "ParallelMap",
    "WorkerCrashed",
    "as_parallel",
    "map_items",
    "parallel_map",
]

BACKENDS = ("process", "ray", "serial")

# ``spawn`` starts each worker as a fresh interpreter: no inherited torch/OpenMP thread state
# (fork deadlocks), and it behaves the same on Linux, macOS and Windows.
_START_METHOD = "spawn"
# How often a timed run looks for new work started, and a worker for a dead parent (seconds).
_POLL_S = 0.25


_RAY_REMOTE = None


def _check_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    return check_float("timeout", timeout, minimum=0.0, open_min=True)


# ---------------------------------------------------------------------------------------------
# code that runs in the workers (module level, so workers can import it by name)
# ---------------------------------------------------------------------------------------------
def _eval_chunk(f: Callable, chunk: np.ndarray) -> tuple[np.ndarray, bool]:
    """``f`` on one chunk: numpy in (cheap to ship), numpy out; also whether f gave a tensor."""
    if not chunk.flags.writeable:  # Ray hands out read-only views of its object store
        chunk = chunk.copy()
    out = f(torch.from_numpy(chunk))
    if isinstance(out, Tensor):
        return out.detach().cpu().numpy(), True
    return np.asarray(out), False


_WORKER_F_BYTES: bytes | None = None
_WORKER_F: Callable | None = None
_WORKER_EVENTS: Any = None  # the write end of the pipe on which a worker says what it starts
_THREADS_LIMITED = False


def _limit_threads() -> None:
    # One worker per core already uses every core; torch's own intra-op threads on top of that
    # would oversubscribe the machine and make each worker slower.
    global _THREADS_LIMITED
    if not _THREADS_LIMITED:
        torch.set_num_threads(1)
        # and the BLAS/OpenMP pools numpy and scipy use (a job's scipy.optimize, say)
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        _THREADS_LIMITED = True


def _die_with_parent(parent: int, pdeathsig: bool) -> None:
    """End this worker when the driver ``parent`` dies, however it dies (even by SIGKILL)."""
    if sys.platform.startswith("linux") and pdeathsig:
        with contextlib.suppress(Exception):  # PR_SET_PDEATHSIG = 1: the kernel sends SIGKILL
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    if sys.platform == "win32":  # no reparenting to watch for there
        return
    if os.getppid() != parent:  # the driver died before we asked
        os._exit(1)

    def watch() -> None:  # the fallback: a parent that has died leaves us another parent
        while True:
            time.sleep(_POLL_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="stochgrad-parent-watch", daemon=True).start()


def _init_worker(events: Any, parent: int, pdeathsig: bool, f_bytes: bytes | None) -> None:
    global _WORKER_F_BYTES, _WORKER_EVENTS
    _limit_threads()
    _die_with_parent(parent, pdeathsig)
    _WORKER_EVENTS = events
    # Unpickled lazily in the first task: an error then surfaces as an ordinary exception with a
    # traceback, instead of the opaque BrokenProcessPool a failing initializer gives.
    _WORKER_F_BYTES = f_bytes


def _worker_f() -> Callable:
    global _WORKER_F
    if _WORKER_F is None:
        try:
            _WORKER_F = pickle.loads(_WORKER_F_BYTES)
        except Exception as exc:
            raise RuntimeError(
                "ParallelMap: the worker process could not load f. Spawned workers import f by "
                "its module path, so f must be defined in an importable module (not in an "
                f"interactive session or notebook): {exc!r}"
            ) from exc
    return _WORKER_F


def _noop() -> None:
    """A job that makes the pool start a worker now (see :class:`_Pool`)."""


def _pool_task(call: int, index: int, fn: Callable | None, payload: Any) -> Any:
    """Job ``index`` of run ``call``: say it starts (one pipe write of a few bytes, atomic with
    other workers' writes), then ``fn(payload)``, or the pool's ``f`` on a chunk if no ``fn``."""
    if _WORKER_EVENTS is not None:
        _WORKER_EVENTS.send((call, index, os.getpid(), time.monotonic()))
    if fn is None:
        return _eval_chunk(_worker_f(), payload)
    return fn(payload)


def _ray_task(f: Callable, chunk: np.ndarray, timeout: float | None) -> tuple[np.ndarray, bool]:
    _limit_threads()
    return _call_timed(lambda c: _eval_chunk(f, c), chunk, timeout, "this chunk", 0)


def _item_task(fn: Callable, item: Any, timeout: float | None) -> Any:
    _limit_threads()
    return _call_timed(fn, item, timeout, "this item", 0)


def _pickle_for_processes(f: Callable) -> bytes:
    """Pickle ``f`` for spawned workers, or raise a ``TypeError`` that says how to fix it."""
    try:
        payload = pickle.dumps(f)
    except Exception as exc:  # PicklingError, AttributeError ("local object"), TypeError
        raise TypeError(
            f"f must be picklable for backend='process' (it is sent to worker processes), but "
            f"pickling {f!r} failed: {exc}. Use a function defined at module level (not a "
            "lambda, a nested function or a closure), or use backend='ray' (which ships "
            "functions by value)"
        ) from exc
    # Functions pickle by name; a spawned worker cannot import a name that lives only in an
    # interactive session's __main__ (a script's __main__ is re-imported and works).
    fn = getattr(f, "__wrapped__", f)
    module = getattr(fn, "__module__", None) or type(fn).__module__
    main = sys.modules.get("__main__")
    if module == "__main__" and not hasattr(main, "__file__"):
        raise TypeError(
            "f must be importable by worker processes for backend='process', but it is "
            "defined in an interactive session; move it into a module (a .py file) and "
            "import it, or use backend='ray' (which ships functions by value)"
        )
    return payload


# ---------------------------------------------------------------------------------------------
# the driver's side: a process pool that can time jobs out and name the job of a dead worker
# ---------------------------------------------------------------------------------------------
_CALLS = itertools.count()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            name = signal.Signals(-code).name
            oom = " (the out-of-memory killer sends it)" if -code == signal.SIGKILL else ""
            return f"killed by {name}{oom}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


class _Pool:
    """A ``spawn`` process pool whose workers die with this process and report, on a pipe, each
    job they start (so that a job can be timed from its start, and a dead worker's job named).

    All workers start here, in the thread that makes the pool: ``PR_SET_PDEATHSIG`` fires when
    the *thread* that started a worker ends, so it is asked for only from the main thread, which
    lives as long as the process; the watchdog thread covers the rest.
    """

    def __init__(self, workers: int, f_bytes: bytes | None = None) -> None:
        ctx = multiprocessing.get_context(_START_METHOD)
        self._events, self._writer = ctx.Pipe(duplex=False)
        main = threading.current_thread() is threading.main_thread()
        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(self._writer, os.getpid(), main, f_bytes),
        )
        with _workers_ignore_sigint():  # each submit to a pool with no idle worker starts one
            for _ in range(workers):
                self.executor.submit(_noop)
        self.processes = dict(self.executor._processes or {})
        self.stopped = False
        # start reports read from the pipe, by (run, job): runs of other threads share it
        self._lock = threading.Lock()
        self._starts: dict[tuple[int, int], tuple[int, float]] = {}
        self._active: set[int] = set()

    def run(
        self,
        fn: Callable | None,
        payloads: Sequence[Any],
        *,
        timeout: float | None,
        callback: Callable[[int, Any], None] | None,
        name: Callable[[int], str],
        keep_on_error: bool = False,
    ) -> list[Any]:
        """``fn(payload)`` for each payload in the workers; see :func:`map_items`."""
        call = next(_CALLS)
        results: list[Any] = [None] * len(payloads)
        futures: dict[Future, int] = {}
        started: dict[int, tuple[int, float]] = {}  # running job -> (worker pid, start)
        with self._lock:
            self._active.add(call)
        try:
            for i, payload in enumerate(payloads):
                futures[self.executor.submit(_pool_task, call, i, fn, payload)] = i
            pending = set(futures)
            while pending:
                wake = None
                if timeout is not None:  # wake when the first running job is due
                    now = time.monotonic()
                    wake = max(
                        0.0, min([_POLL_S] + [t + timeout - now for _, t in started.values()])
                    )
                done, pending = wait(pending, timeout=wake, return_when=FIRST_COMPLETED)
                self._drain(call, started)
                for fut in done:
                    i = futures[fut]
                    results[i] = fut.result()  # a job's exception, or BrokenProcessPool
                    started.pop(i, None)
                    if callback is not None:
                        callback(i, results[i])
                if timeout is not None:
                    now = time.monotonic()
                    late = [i for i, (_, t) in started.items() if now - t > timeout]
                    if late:
                        i = min(late, key=lambda j: started[j][1])
                        raise ChunkTimeout(
                            f"{name(i)} ran past the timeout of {timeout:g} s; every worker was "
                            "stopped",
                            i,
                            timeout,
                        )
        except BrokenProcessPool:
            self._drain(call, started)
            raise self._crashed(started, name) from None
        except Exception as exc:
            if keep_on_error and not isinstance(exc, ChunkTimeout):
                for fut in futures:  # an exception in f: drop the jobs not yet started
                    fut.cancel()
            else:
                self.stop(futures)
            raise
        except BaseException:  # Ctrl-C: stop the workers now rather than wait for their jobs
            self.stop(futures)
            raise
        finally:
            with self._lock:
                self._active.discard(call)
                for key in [k for k in self._starts if k[0] == call]:
                    del self._starts[key]
        return results

    def _drain(self, call: int, started: dict[int, tuple[int, float]]) -> None:
        """Read the start reports on the pipe; hand this run's to ``started``."""
        with self._lock:
            with contextlib.suppress(EOFError, OSError):
                while self._events.poll():
                    c, i, pid, t = self._events.recv()
                    if c in self._active:  # a job of a run given up may still start
                        self._starts[c, i] = (pid, min(t, time.monotonic()))
            for key in [k for k in self._starts if k[0] == call]:
                started[key[1]] = self._starts.pop(key)

    def _crashed(self, started: dict[int, tuple[int, float]], name: Callable) -> WorkerCrashed:
        """The error for a broken pool: the job whose worker died first, by its exit status
        (the pool terminates the others with SIGTERM once it sees one die)."""
        self.stop(())  # a dead worker keeps its own exit status; the others show SIGTERM
        codes = {pid: proc.exitcode for pid, proc in self.processes.items()}
        culprits = [
            i for i, (pid, _) in started.items() if codes.get(pid) not in (None, -signal.SIGTERM)
        ] or sorted(started)
        if not culprits:
            died = [c for c in codes.values() if c not in (None, 0, -signal.SIGTERM)]
            code = died[0] if died else None
            return WorkerCrashed(
                f"a worker process died ({_exit_text(code)}) before it started any job", None, code
            )
        i = culprits[0]
        code = codes.get(started[i][0])
        also = f" (or {', '.join(name(j) for j in culprits[1:])})" if len(culprits) > 1 else ""
        return WorkerCrashed(
            f"{name(i)}{also}: its worker process died ({_exit_text(code)}): a crash in native "
            "code, os._exit or the out-of-memory killer; every other worker was stopped",
            i,
            code,
        )

    def stop(self, futures: Iterable[Future] = ()) -> None:
        """Stop at once: cancel the jobs not started, terminate the workers (their running jobs
        are lost) and reap them."""
        self.stopped = True
        _stop_pool(self.executor, futures)
        for conn in (self._events, self._writer):
            with contextlib.suppress(OSError):
                conn.close()

    def shutdown(self, wait: bool = True) -> None:
        """Let the running jobs finish (``wait``), then end the workers."""
        self.executor.shutdown(wait=wait, cancel_futures=True)
        if wait:
            for conn in (self._events, self._writer):
                with contextlib.suppress(OSError):
                    conn.close()


def _stop_pool(pool: ProcessPoolExecutor, futures: Iterable[Future]) -> None:
    """Stop a process pool at once: cancel the jobs not started and terminate the workers,
    without waiting for the jobs they are running (their work is lost)."""
    for fut in futures:
        fut.cancel()
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:  # SIGTERM ends a worker at once; reap it (no zombie left behind)
        with contextlib.suppress(Exception):
            proc.join(timeout=1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=1.0)


@contextlib.contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Worker processes started in this block ignore SIGINT.

    Ctrl-C in a terminal signals the whole process group: the driver stops the pool (see
    :func:`_stop_pool`), and a worker that also raised KeyboardInterrupt would only print a
    traceback. An ignored signal stays ignored across ``exec``, and Python then leaves it so.
    The main thread blocks SIGINT meanwhile, so a Ctrl-C it receives in this short block (the
    spawns, about 10 ms) is raised when the block ends; one delivered to another thread of the
    driver in that window is ignored (the disposition is process-wide), and a second Ctrl-C
    stops the run.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or not hasattr(signal, "pthread_sigmask")
        or signal.getsignal(signal.SIGINT) is None  # a handler not set from Python: leave it
    ):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


# ---------------------------------------------------------------------------------------------
# the public API
# ---------------------------------------------------------------------------------------------
def _check_positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


class ParallelMap:
    r"""``f`` evaluated over chunks of a batch in parallel; a drop-in replacement for ``f``.

    Calling it on a batch ``x`` of shape ``[n, ...]`` splits ``x`` along axis 0 into chunks,
    evaluates ``f`` on each chunk in a worker (chunks travel as numpy arrays and reach ``f`` as
    CPU tensors) and returns the values concatenated in order as a tensor on ``x.device``. For
    an ``f`` that maps each sample independently and deterministically the result equals
    ``f(x)`` bit for bit. ``f`` may return a tensor, a numpy array or a list; a non-tensor
    result takes ``x``'s floating dtype, as in the estimators.

    The worker pool starts on the first call and is reused by later calls; :meth:`close` (or a
    ``with`` block) shuts it down, and a later call starts a new one. The workers receive ``f``
    once, when they start (``"process"``) or on the first call (``"ray"``): later changes to
    ``f``'s internal state are not seen; make a new ``ParallelMap`` then. A chunk past
    ``timeout`` (:class:`ChunkTimeout`), a dead worker (:class:`WorkerCrashed`) or Ctrl-C stop
    the pool at once; the next call starts a fresh one. An exception in ``f`` leaves the pool
    running.

    Values come back through numpy, so the wrapped callable is never differentiable: it carries
    ``black_box = True`` (the pathwise estimator refuses it) and keeps ``f`` as ``.f`` and
    ``.__wrapped__``.

    Args:
        f: batch ``[m, ...]`` -> ``[m]`` values, each row depending only on its own sample.
            For ``"process"`` it must be picklable: a module-level function, or
            :func:`stochgrad.black_box` of one (a script using it needs the usual
            ``if __name__ == "__main__":`` guard, since workers re-import the script). For
            ``"ray"`` anything cloudpickle can ship works, lambdas included, but modules that
            ``f`` refers to by name must be importable on the Ray workers (install them, use a
            ``runtime_env``, or ``ray.cloudpickle.register_pickle_by_value(module)``).
        backend: ``"process"``, ``"ray"`` or ``"serial"``.
        num_workers: worker processes (``"process"``, default ``os.cpu_count()``); for
            ``"ray"`` the number of chunks (default: the cluster's CPUs) and, when a local Ray
            instance is started here, its ``num_cpus``; for ``"serial"`` the number of chunks
            (default 1).
        chunk_size: samples per chunk (the last may be smaller); default ``ceil(n /
            num_workers)``, i.e. one chunk per worker. Smaller chunks balance uneven costs at
            the price of more messages.
        address: Ray cluster address (``backend="ray"`` only); default ``RAY_ADDRESS``. With
            neither, and Ray not yet initialised, a new local Ray instance is started
            (``ray.init(address="local", num_cpus=num_workers, include_dashboard=False,
            log_to_driver=False)``) that ends with this process. Ray is left running by
            :meth:`close`; ``ray.shutdown()`` is yours to call.
        timeout: seconds a chunk may run (``None``, the default: no limit), timed as in
            :func:`map_items`.

    Raises:
        ValueError: unknown ``backend``, ``num_workers`` or ``chunk_size`` below 1, ``timeout``
            not positive, or ``address`` with a backend other than ``"ray"``.
        TypeError: ``f`` not callable, or not picklable for ``"process"``.
        ImportError: ``backend="ray"`` without Ray installed.

    >>> import numpy as np, torch, stochgrad as sg
    >>> with ParallelMap(sg.black_box(np.square), backend="serial", chunk_size=2) as pf:
    ...     pf(torch.arange(5.0))
    tensor([ 0.,  1.,  4.,  9., 16.])
    """

    black_box = True

    def __init__(
        self,
        f: Callable,
        *,
        backend: str = "process",
        num_workers: int | None = None,
        chunk_size: int | None = None,
        address: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if not callable(f):
            raise TypeError(f"f must be callable (batch -> values), got {type(f).__name__}")
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise ValueError(
                f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}"
            )
        if address is not None and backend != "ray":
            raise ValueError(f"address is only used with backend='ray', got backend={backend!r}")
        self.f = f
        self.__wrapped__ = f
        self.backend = backend
        self.num_workers = _check_positive_int(num_workers, "num_workers")
        self.chunk_size = _check_positive_int(chunk_size, "chunk_size")
        self.address = address
        self.timeout = _check_timeout(timeout)
        self._lock = threading.Lock()
        self._pool: _Pool | None = None
        self._f_bytes: bytes | None = None
        self._ray_f = None  # (ObjectRef of f, the Ray session it belongs to)
        if backend == "process":
            self._f_bytes = _pickle_for_processes(f)  # fail now, not inside a worker
        elif backend == "ray":
            _import_ray()

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Shut the worker pool down (waiting for running work); a later call starts a new one."""
        self._shutdown(wait=True)

    def _shutdown(self, wait: bool) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._ray_f = None  # dropping the ObjectRef lets Ray free f
        if pool is not None:
            pool.shutdown(wait=wait)

    def __enter__(self) -> ParallelMap:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        # May run during interpreter shutdown, when module globals are already gone; the pool's
        # own atexit hook joins the workers then, so a failure here loses nothing.
        try:
            self._shutdown(wait=False)
        except Exception:
            pass

    def __getstate__(self) -> dict:
        # The pool, lock and object references belong to this process; a copy starts its own.
        state = self.__dict__.copy()
        state.update(_pool=None, _lock=None, _ray_f=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        name = getattr(self.f, "__qualname__", None) or repr(self.f)
        return (
            f"ParallelMap({name}, backend={self.backend!r}, num_workers={self.num_workers}, "
            f"chunk_size={self.chunk_size}, timeout={self.timeout})"
        )

    # -- evaluation -----------------------------------------------------------------------------
    def __call__(self, x: Tensor) -> Tensor:
        """Evaluate ``f`` on the batch ``x`` ``[n, ...]``; ``[n]`` values on ``x.device``."""
        if not isinstance(x, Tensor):
            x = torch.as_tensor(np.asarray(x))
        if x.dim() == 0:
            raise ValueError(
                f"x must be a batch with a leading sample axis, got shape {list(x.shape)}"
            )
        xs = x.detach().cpu().numpy()
        if self.backend == "process":
            chunks, results = self._run_process(xs)
        elif self.backend == "ray":
            chunks, results = self._run_ray(xs)
        else:
            chunks = self._chunks(xs, self.num_workers or 1)
            name = self._namer(chunks)
            results = [
                _call_timed(lambda c: _eval_chunk(self.f, c), c, self.timeout, name(i), i)
                for i, c in enumerate(chunks)
            ]
        return self._assemble(results, chunks, x)

    def _chunks(self, xs: np.ndarray, default_chunks: int) -> list[np.ndarray]:
        n = xs.shape[0]
        size = self.chunk_size or max(1, math.ceil(n / default_chunks))
        # Slices are views: pickling one copies only its own rows.
        return [xs[i : i + size] for i in range(0, n, size)] or [xs]

    @staticmethod
    def _namer(chunks: list[np.ndarray]) -> Callable[[int], str]:
        starts = np.cumsum([0] + [len(c) for c in chunks])

        def name(i: int) -> str:
            return (
                f"chunk {i} of {len(chunks)} (samples {starts[i]} to {starts[i + 1] - 1} of the "
                "batch)"
            )

        return name

    def _run_process(self, xs: np.ndarray) -> tuple[list[np.ndarray], list]:
        workers = self.num_workers or os.cpu_count() or 1
        with self._lock:
            if self._pool is None:
                self._pool = _Pool(workers, self._f_bytes)
            pool = self._pool
        chunks = self._chunks(xs, workers)
        try:
            results = pool.run(
                None,
                chunks,
                timeout=self.timeout,
                callback=None,
                name=self._namer(chunks),
                keep_on_error=True,
            )
        except BaseException:
            if pool.stopped:  # the next call starts a fresh pool
                with self._lock:
                    if self._pool is pool:
                        self._pool = None
            raise
        return chunks, results

    def _run_ray(self, xs: np.ndarray) -> tuple[list[np.ndarray], list]:
        global _RAY_REMOTE
        ray = _import_ray()
        with self._lock:
            _ray_start(ray, self.address, self.num_workers)
            ctx = ray.get_runtime_context()
            session = (ctx.get_job_id(), ctx.get_node_id())
            if self._ray_f is None or self._ray_f[1] != session:
                # f goes to the object store once per Ray session; every task reuses it.
                self._ray_f = (ray.put(self.f), session)
            f_ref = self._ray_f[0]
            if _RAY_REMOTE is None:
                _RAY_REMOTE = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
            remote = _RAY_REMOTE
        workers = self.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        chunks = self._chunks(xs, workers)
        results = _ray_run(
            ray,
            remote,
            [(f_ref, c) for c in chunks],
            slots=workers,
            timeout=self.timeout,
            callback=None,
            name=self._namer(chunks),
        )
        return chunks, results

    @staticmethod
    def _assemble(
        results: list[tuple[np.ndarray, bool]], chunks: list[np.ndarray], x: Tensor
    ) -> Tensor:
        """Concatenate per-chunk values in order, checking each chunk gave one value per row."""
        for (out, _), chunk in zip(results, chunks, strict=True):
            if out.ndim == 0 or out.shape[0] != chunk.shape[0]:
                raise ValueError(
                    f"f must return one value per sample: a chunk of {chunk.shape[0]} samples "
                    f"gave shape {list(out.shape)} (f receives a chunk of the batch, shape "
                    f"[{chunk.shape[0]}, ...])"
                )
        values = np.concatenate([out for out, _ in results], axis=0)
        out = torch.from_numpy(values)
        if not all(is_tensor for _, is_tensor in results) and x.is_floating_point():
            out = out.to(x.dtype)  # as the estimators do for numpy results
        return out.to(x.device)


def as_parallel(f: Callable, spec: str | ParallelMap) -> ParallelMap:
    """Resolve an estimator's ``parallel=`` argument to a :class:`ParallelMap` wrapping ``f``.

    ParallelMaps made from a string are cached per ``(id(f), spec)`` so that an estimator
    called in a loop with the same ``f`` reuses one worker pool instead of starting a new one
    per call. The cache is a small LRU dict (:data:`_CACHE_SIZE` entries); an entry pushed out
    is closed (it would restart its pool if used again). Because the cache keeps ``f`` alive, an
    ``id`` cannot be reused by another function while its entry exists. A fresh ``f`` per call
    (a new ``functools.partial`` each iteration) defeats the cache: build one
    :class:`ParallelMap` and pass it instead (with a ``timeout``, say).

    Args:
        f: the objective.
        spec: ``"process"``, ``"ray"``, ``"serial"`` (default settings), or a
            :class:`ParallelMap` wrapping ``f`` (returned as is). If ``f`` already is a
            :class:`ParallelMap` it is returned as is.

    Returns:
        A :class:`ParallelMap`.

    >>> import numpy as np, stochgrad as sg
    >>> f = sg.black_box(np.cos)
    >>> as_parallel(f, "serial") is as_parallel(f, "serial")
    True
    """
    if isinstance(spec, ParallelMap):
        if spec is not f and spec.f is not f:
            raise ValueError(
                "parallel: the ParallelMap given wraps a different function than f; pass "
                "ParallelMap(f, ...) for the same f"
            )
        return spec
    if isinstance(f, ParallelMap):
        return f
    if not isinstance(spec, str) or spec not in BACKENDS:
        options = ", ".join(repr(b) for b in BACKENDS)
        raise ValueError(f"parallel must be one of {options} or a ParallelMap, got {spec!r}")
    key = (id(f), spec)
    with _CACHE_LOCK:
        pm = _CACHE.get(key)
        if pm is not None and pm.f is f:
            _CACHE.move_to_end(key)
            return pm
    pm = ParallelMap(f, backend=spec)  # outside the lock: it may raise or take a moment
    with _CACHE_LOCK:
        _CACHE[key] = pm
        _CACHE.move_to_end(key)
        evicted = []
        while len(_CACHE) > _CACHE_SIZE:
            evicted.append(_CACHE.popitem(last=False)[1])
    for old in evicted:
        old._shutdown(wait=False)
    return pm


# Pools made by as_parallel from strings, least recently used first (see as_parallel).
_CACHE_SIZE = 4
_CACHE: OrderedDict[tuple[int, str], ParallelMap] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def parallel_map(
    f: Callable,
    x: Tensor,
    *,
    backend: str = "process",
    num_workers: int | None = None,
    chunk_size: int | None = None,
    address: str | None = None,
    timeout: float | None = None,
) -> Tensor:
    """Evaluate ``f`` on the batch ``x`` in parallel once: ``ParallelMap(f, ...)(x)``, then close.

    Starting a process pool takes about a second (each worker imports torch); to evaluate
    repeatedly, keep a :class:`ParallelMap` instead. Arguments as for :class:`ParallelMap`.

    >>> import numpy as np, torch, stochgrad as sg
    >>> parallel_map(sg.black_box(np.abs), torch.tensor([-1.0, 2.0, -3.0]), backend="serial")
    tensor([1., 2., 3.])
    """
    with ParallelMap(
        f,
        backend=backend,
        num_workers=num_workers,
        chunk_size=chunk_size,
        address=address,
        timeout=timeout,
    ) as pf:
        return pf(x)


def map_items(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    backend: str = "process",
    num_workers: int | None = None,
    callback: Callable[[int, Any], None] | None = None,
    address: str | None = None,
    timeout: float | None = None,
    labels: Sequence[str] | None = None,
) -> list[Any]:
    """``[fn(item) for item in items]`` across processes or Ray, results in the order of ``items``.

    Unlike :class:`ParallelMap` (one batch of samples -> one value per sample), each item is a
    self-contained job returning any picklable result, e.g. a chunk of genes to fit.
    ``callback(index, result)`` runs in this process as each job finishes (in completion order):
    advance a progress bar, save a checkpoint. Workers run torch with one thread each.

    When something goes wrong every worker is stopped at once (jobs not started are cancelled,
    running ones terminated without waiting for them) and an exception says what; the results
    already handed to ``callback`` are what is kept:

    - an exception in a job or in ``callback``, or Ctrl-C: raised as it is;
    - a job running longer than ``timeout``: :class:`ChunkTimeout` naming it and the limit;
    - a worker that dies (a crash in native code, ``os._exit``, the out-of-memory killer):
      :class:`WorkerCrashed` naming the job it was running, never a hang.

    How the ``timeout`` is timed: ``"process"`` from the moment a worker starts the job (each
    worker reports it). ``"serial"`` runs a job under a ``SIGALRM`` timer that interrupts it,
    when called on the main thread of a POSIX process that does not use SIGALRM itself; a
    native routine that does not return to Python (one long C call) is interrupted only when
    it returns, and elsewhere (another thread, Windows) the time is checked when the job
    returns: an overdue job then raises after the fact, its result discarded. ``"ray"`` times
    each job in its worker as ``"serial"`` does; a job stuck in native code is stopped from
    here 30 s after its time is up counted from its submission (with a ``timeout``, no more
    jobs are in flight than there are CPU slots, ``num_workers`` or the cluster's CPUs, so a
    job starts about when it is submitted). A crash on Ray is not retried.

    No worker outlives this process. Process workers ask the kernel to kill them when their
    parent dies (Linux ``PR_SET_PDEATHSIG``, asked for when the pool starts on the main thread)
    and, besides, exit within a quarter of a second once their parent is gone (a watchdog
    thread; not on Windows). A local Ray instance started here dies with this process through
    Ray's own fate-sharing (GCS, raylet, and task workers within ~3 s) and, on Linux, a small
    watcher process that kills the raylet's agents at once (left alone they linger ~60 s after
    a SIGKILL). Ray started elsewhere (``address``, ``RAY_ADDRESS``) is not touched.

    Args:
        fn: item -> result; for ``"process"`` a module-level (picklable) function.
        items: the work items (picklable).
        backend: ``"process"``, ``"ray"`` or ``"serial"`` (in this process, in order).
        num_workers: processes (default ``os.cpu_count()``) or, for a local Ray instance, its
            ``num_cpus``; ignored by ``"serial"``.
        callback: called with ``(index, result)`` as each item finishes.
        address: Ray cluster address (``"ray"`` only); default ``RAY_ADDRESS`` or a local instance.
        timeout: seconds one item may run (``None``, the default: no limit).
        labels: how error messages name each item (default ``"item i of n"``).

    Returns:
        The results, ``results[i] = fn(items[i])``.

    Raises:
        ChunkTimeout: an item ran longer than ``timeout``.
        WorkerCrashed: a worker process died while running an item.
        ValueError: unknown ``backend``, ``num_workers < 1``, ``timeout`` not positive,
            ``labels`` of another length than ``items``.
        TypeError: ``fn`` not callable, or not picklable for ``"process"``.

    >>> map_items(abs, [-1, 2, -3], backend="serial")
    [1, 2, 3]
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}"
        )
    workers = _check_positive_int(num_workers, "num_workers")
    timeout = _check_timeout(timeout)
    items = list(items)
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != len(items):
            raise ValueError(f"labels must name the {len(items)} items, got {len(labels)}")

    def name(i: int) -> str:
        return labels[i] if labels is not None else f"item {i} of {len(items)}"

    results: list[Any] = [None] * len(items)
    if backend == "serial" or not items:
        for i, item in enumerate(items):
            results[i] = _call_timed(fn, item, timeout, name(i), i)
            if callback is not None:
                callback(i, results[i])
        return results
    if backend == "process":
        _pickle_for_processes(fn)  # a clear error now rather than inside a worker
        pool = _Pool(min(workers or os.cpu_count() or 1, len(items)))
        try:
            results = pool.run(fn, items, timeout=timeout, callback=callback, name=name)
        except BaseException:
            pool.stop()  # Ctrl-C, an exception: do not wait for the jobs still running
            raise
        pool.shutdown(wait=True)
        return results
    ray = _import_ray()
    _ray_start(ray, address, workers)
    remote = ray.remote(num_cpus=1, max_retries=0)(_item_task)
    fn_ref = ray.put(fn)
    slots = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    return _ray_run(
        ray,
        remote,
        [(fn_ref, item) for item in items],
        slots=slots,
        timeout=timeout,
        callback=callback,
        name=name,
    )
