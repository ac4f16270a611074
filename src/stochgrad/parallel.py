"""Evaluate an expensive black-box objective over chunks of samples in parallel.

The score-function estimator needs only values :math:`f(x_i)`, so when ``f`` is an expensive
simulator (a physics code, a docking score, an environment roll-out) its evaluation dominates and
parallelises trivially over samples. :class:`ParallelMap` wraps ``f``: called on a batch
``[n, ...]`` it splits the batch along axis 0 into chunks, evaluates ``f`` on each chunk in a
worker and returns the values ``[n]`` in order, equal to ``f(x)`` (bit for bit when ``f`` maps
each sample independently and deterministically).

Backends:

- ``"process"``: a persistent pool of local worker processes (started with ``spawn``, never
  ``fork``: forking a process that holds torch's thread pools can deadlock).
- ``"ray"``: Ray tasks, on a Ray cluster (``address`` or ``RAY_ADDRESS``) or on a local Ray
  instance started for you.
- ``"serial"``: the same chunking in this process; the reference the others are tested against.

Every estimator that takes ``parallel=`` calls :func:`as_parallel`, e.g.
``sg.score_function(f, dist_fn, theta, num_samples=10_000, parallel="process")``.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["BACKENDS", "ParallelMap", "as_parallel", "map_items", "parallel_map"]

BACKENDS = ("process", "ray", "serial")

# ``spawn`` starts each worker as a fresh interpreter: no inherited torch/OpenMP thread state
# (fork deadlocks), and it behaves the same on Linux, macOS and Windows.
_START_METHOD = "spawn"


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
_THREADS_LIMITED = False


def _limit_threads() -> None:
    # One worker per core already uses every core; torch's own intra-op threads on top of that
    # would oversubscribe the machine and make each worker slower.
    global _THREADS_LIMITED
    if not _THREADS_LIMITED:
        torch.set_num_threads(1)
        _THREADS_LIMITED = True


def _init_process_worker(f_bytes: bytes) -> None:
    global _WORKER_F_BYTES
    _limit_threads()
    # Unpickled lazily in the first task: an error then surfaces as an ordinary exception with a
    # traceback, instead of the opaque BrokenProcessPool a failing initializer gives.
    _WORKER_F_BYTES = f_bytes


def _process_task(chunk: np.ndarray) -> tuple[np.ndarray, bool]:
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
    return _eval_chunk(_WORKER_F, chunk)


def _ray_task(f: Callable, chunk: np.ndarray) -> tuple[np.ndarray, bool]:
    _limit_threads()
    return _eval_chunk(f, chunk)


def _pickle_for_processes(f: Callable) -> bytes:
    """Pickle ``f`` for spawned workers, or raise a ``TypeError`` that says how to fix it."""
    candidates = [f]
    error: Exception | None = None
    for candidate in candidates:
        try:
            payload = pickle.dumps(candidate)
        except Exception as exc:  # PicklingError, AttributeError ("local object"), TypeError
            error = exc
            continue
        # Functions pickle by name; a spawned worker cannot import a name that lives only in an
        # interactive session's __main__ (a script's __main__ is re-imported and works).
        fn = getattr(candidate, "__wrapped__", candidate)
        module = getattr(fn, "__module__", None) or type(fn).__module__
        main = sys.modules.get("__main__")
        if module == "__main__" and not hasattr(main, "__file__"):
            raise TypeError(
                "f must be importable by worker processes for backend='process', but it is "
                "defined in an interactive session; move it into a module (a .py file) and "
                "import it, or use backend='ray' (which ships functions by value)"
            )
        return payload
    raise TypeError(
        f"f must be picklable for backend='process' (it is sent to worker processes), but "
        f"pickling {f!r} failed: {error}. Use a function defined at module level (not a lambda, "
        "a nested function or a closure), or use backend='ray' (which ships functions by value)"
    ) from error


_RAY_REMOTE = None


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "backend='ray' needs Ray: pip install \"stochgrad[ray]\" (or pip install ray)"
        ) from exc
    return ray


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
    ``f``'s internal state are not seen; make a new ``ParallelMap`` then.

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
            log_to_driver=False)``). Ray is left running by :meth:`close`; ``ray.shutdown()``
            is yours to call.

    Raises:
        ValueError: unknown ``backend``, ``num_workers`` or ``chunk_size`` below 1, or
            ``address`` with a backend other than ``"ray"``.
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
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
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
            pool.shutdown(wait=wait, cancel_futures=True)

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
            f"chunk_size={self.chunk_size})"
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
            results = [_eval_chunk(self.f, c) for c in chunks]
        return self._assemble(results, chunks, x)

    def _chunks(self, xs: np.ndarray, default_chunks: int) -> list[np.ndarray]:
        n = xs.shape[0]
        size = self.chunk_size or max(1, math.ceil(n / default_chunks))
        # Slices are views: pickling one copies only its own rows.
        return [xs[i : i + size] for i in range(0, n, size)] or [xs]

    def _run_process(self, xs: np.ndarray) -> tuple[list[np.ndarray], list]:
        workers = self.num_workers or os.cpu_count() or 1
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=workers,
                    mp_context=multiprocessing.get_context(_START_METHOD),
                    initializer=_init_process_worker,
                    initargs=(self._f_bytes,),
                )
            pool = self._pool
        chunks = self._chunks(xs, workers)
        futures: list[Future] = []
        try:
            futures = [pool.submit(_process_task, c) for c in chunks]
            return chunks, [fut.result() for fut in futures]
        except BrokenProcessPool as exc:
            # A worker died (crash, out of memory): this pool is unusable, the next call starts a
            # fresh one.
            self._shutdown(wait=False)
            raise RuntimeError(
                "ParallelMap: a worker process died while evaluating f (crash or out of memory)"
            ) from exc
        except KeyboardInterrupt:
            # Ctrl-C: stop the workers now rather than let the pool (and the interpreter's exit)
            # wait for the chunks they are running; the next call starts a fresh pool.
            with self._lock:
                stopping, self._pool = self._pool, None
            if stopping is not None:
                _stop_pool(stopping, futures)
            raise
        except BaseException:
            for fut in futures:  # an exception in f: drop the chunks not yet started
                fut.cancel()
            raise

    def _run_ray(self, xs: np.ndarray) -> tuple[list[np.ndarray], list]:
        global _RAY_REMOTE
        ray = _import_ray()
        with self._lock:
            if not ray.is_initialized():
                address = self.address or os.environ.get("RAY_ADDRESS")
                if address:
                    ray.init(address=address)
                else:
                    # "local" always starts a new instance, so num_cpus is honoured even when
                    # some other Ray cluster runs on this machine.
                    ray.init(
                        address="local",
                        num_cpus=self.num_workers,
                        include_dashboard=False,
                        log_to_driver=False,
                    )
            ctx = ray.get_runtime_context()
            session = (ctx.get_job_id(), ctx.get_node_id())
            if self._ray_f is None or self._ray_f[1] != session:
                # f goes to the object store once per Ray session; every task reuses it.
                self._ray_f = (ray.put(self.f), session)
            f_ref = self._ray_f[0]
            if _RAY_REMOTE is None:
                _RAY_REMOTE = ray.remote(num_cpus=1)(_ray_task)
            remote = _RAY_REMOTE
        workers = self.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        chunks = self._chunks(xs, workers)
        refs = [remote.remote(f_ref, c) for c in chunks]
        try:
            return chunks, ray.get(refs)
        except BaseException:
            for ref in refs:
                ray.cancel(ref)
            raise

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
    :class:`ParallelMap` and pass it instead.

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
) -> Tensor:
    """Evaluate ``f`` on the batch ``x`` in parallel once: ``ParallelMap(f, ...)(x)``, then close.

    Starting a process pool takes about a second (each worker imports torch); to evaluate
    repeatedly, keep a :class:`ParallelMap` instead. Arguments as for :class:`ParallelMap`.

    >>> import numpy as np, torch, stochgrad as sg
    >>> parallel_map(sg.black_box(np.abs), torch.tensor([-1.0, 2.0, -3.0]), backend="serial")
    tensor([1., 2., 3.])
    """
    with ParallelMap(
        f, backend=backend, num_workers=num_workers, chunk_size=chunk_size, address=address
    ) as pf:
        return pf(x)


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


def _item_task(fn: Callable, item: Any) -> Any:
    _limit_threads()
    return fn(item)


def map_items(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    backend: str = "process",
    num_workers: int | None = None,
    callback: Callable[[int, Any], None] | None = None,
    address: str | None = None,
) -> list[Any]:
    """``[fn(item) for item in items]`` across processes or Ray, results in the order of ``items``.

    Unlike :class:`ParallelMap` (one batch of samples -> one value per sample), each item is a
    self-contained job returning any picklable result, e.g. a chunk of genes to fit.
    ``callback(index, result)`` runs in this process as each job finishes (in completion order):
    advance a progress bar, save a checkpoint. Workers run torch with one thread each. An
    exception in a job or in ``callback``, or Ctrl-C, stops the process pool at once: jobs not
    started are cancelled and the worker processes terminated without waiting for the jobs they
    are running, so an interrupt takes effect within moments and the results already handed to
    ``callback`` are what is kept.

    Args:
        fn: item -> result; for ``"process"`` a module-level (picklable) function.
        items: the work items (picklable).
        backend: ``"process"``, ``"ray"`` or ``"serial"`` (in this process, in order).
        num_workers: processes (default ``os.cpu_count()``) or, for a local Ray instance, its
            ``num_cpus``; ignored by ``"serial"``.
        callback: called with ``(index, result)`` as each item finishes.
        address: Ray cluster address (``"ray"`` only); default ``RAY_ADDRESS`` or a local instance.

    Returns:
        The results, ``results[i] = fn(items[i])``.

    Raises:
        ValueError: unknown ``backend``, ``num_workers < 1``.
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
    items = list(items)
    results: list[Any] = [None] * len(items)
    if backend == "serial" or not items:
        for i, item in enumerate(items):
            results[i] = fn(item)
            if callback is not None:
                callback(i, results[i])
        return results
    if backend == "process":
        _pickle_for_processes(fn)  # a clear error now rather than inside a worker
        from concurrent.futures import as_completed

        pool = ProcessPoolExecutor(
            max_workers=min(workers or os.cpu_count() or 1, len(items)),
            mp_context=multiprocessing.get_context(_START_METHOD),
        )
        futures: dict[Future, int] = {}
        try:
            with _workers_ignore_sigint():  # the workers start during the first submits
                for i, item in enumerate(items):
                    futures[pool.submit(_item_task, fn, item)] = i
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                if callback is not None:
                    callback(i, results[i])
        except BaseException:
            # Ctrl-C, an exception in a job or in the callback: stop now. Waiting for the jobs
            # already running (a `with` block's shutdown) would hold the interrupt for as long
            # as the slowest of them; their results would be thrown away anyway.
            _stop_pool(pool, futures)
            raise
        pool.shutdown(wait=True)
        return results
    ray = _import_ray()
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address)
        else:
            ray.init(
                address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False
            )
    remote = ray.remote(num_cpus=1)(_item_task)
    fn_ref = ray.put(fn)
    refs = {remote.remote(fn_ref, item): i for i, item in enumerate(items)}
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = refs[ref]
                results[i] = ray.get(ref)
                if callback is not None:
                    callback(i, results[i])
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise
    return results
