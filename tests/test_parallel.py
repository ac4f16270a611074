"""Tests for stochgrad.parallel: every backend must reproduce the serial values exactly."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import stochgrad as sg
from stochgrad import parallel as sgp
from stochgrad.parallel import ParallelMap, as_parallel, parallel_map


# Module level, so spawned worker processes can import them by name.
def expensive(x: np.ndarray) -> np.ndarray:
    """A numpy black box: a few transcendental passes per sample, one value per row."""
    y = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    for k in range(1, 6):
        y = np.sin(k * y) + np.cos(y / k)
    return y.sum(axis=1)


def quadratic_list(x: torch.Tensor) -> list[float]:
    """Returns a plain list, to check that non-tensor results are converted like evaluate_f."""
    return [float(v) ** 2 for v in x.reshape(-1)]


def dist_fn(th: torch.Tensor) -> torch.distributions.Normal:
    return torch.distributions.Normal(th[0], th[1])


f_black_box = sg.black_box(expensive)


@pytest.fixture(scope="module")
def process_map():
    # One pool for the module: starting workers (each imports torch) is the slow part.
    with ParallelMap(f_black_box, backend="process", num_workers=2, chunk_size=7) as pf:
        yield pf


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Ray workers cannot import this test module (tests/ is not on their path): ship its
    # functions by value, as a user would for a module that is not installed.
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(module)
    ray.shutdown()


def batch(n: int, *event: int) -> torch.Tensor:
    return torch.randn(n, *event, generator=torch.Generator().manual_seed(n))


# --- layer 1: exact agreement with the serial reference -------------------------------------
def test_serial_equals_direct_call_with_uneven_chunks():
    x = batch(23, 3)
    want = f_black_box(x)
    for chunk_size in (1, 4, 7, 23, 100):
        got = ParallelMap(f_black_box, backend="serial", chunk_size=chunk_size)(x)
        assert got.dtype == want.dtype
        assert torch.equal(got, want), chunk_size


def test_process_equals_serial_order_preserved(process_map):
    x = batch(23, 3)  # 23 = 3 * 7 + 2: uneven chunks
    want = ParallelMap(f_black_box, backend="serial")(x)
    got = process_map(x)
    assert torch.equal(got, want)
    # Order: distinct rows give distinct values, so any permutation of chunks would show.
    assert torch.equal(got, torch.as_tensor(expensive(x.numpy()), dtype=x.dtype))
    # The pool persists: a second call (other size, other dtype) reuses it.
    pool = process_map._pool
    x64 = batch(40).double()
    assert torch.equal(process_map(x64), f_black_box(x64))
    assert process_map._pool is pool


def test_list_results_converted_like_evaluate_f():
    # The conversion happens in the caller, for every backend; serial avoids a second pool.
    x = batch(9)
    got = ParallelMap(quadratic_list, backend="serial", chunk_size=4)(x)
    want = sg._core.evaluate_f(quadratic_list, x, 9)
    assert got.dtype == x.dtype
    assert torch.equal(got, want)


def test_score_function_process_bit_identical():
    theta = torch.tensor([0.5, 1.3])
    kw = dict(num_samples=2_000, seed=0, baseline="loo")
    want = sg.score_function(f_black_box, dist_fn, theta, **kw)
    got = sg.score_function(f_black_box, dist_fn, theta, parallel="process", **kw)
    assert torch.equal(got.grad, want.grad)
    assert torch.equal(got.per_sample, want.per_sample)
    # A second call in a loop reuses the cached pool.
    cached = as_parallel(f_black_box, "process")
    assert cached is as_parallel(f_black_box, "process")
    assert cached._pool is not None
    cached.close()


def test_ray_local_equals_serial(ray_local):
    x = batch(31, 2)
    want = ParallelMap(f_black_box, backend="serial")(x)
    pf = ParallelMap(f_black_box, backend="ray", chunk_size=5)
    assert torch.equal(pf(x), want)
    assert torch.equal(pf(x[:11]), want[:11])  # f stays in the object store across calls
    # A lambda is fine for Ray (shipped by value); default chunking uses the cluster's CPUs.
    got = ParallelMap(lambda t: t.sum(1) * 2, backend="ray")(x)
    assert torch.equal(got, x.sum(1) * 2)
    pf.close()
    # per-item jobs on the same Ray instance: results in order, one callback per item
    seen = {}
    out = sgp.map_items(
        lambda v: v * v, [3, 1, 4, 1, 5], backend="ray", callback=lambda i, r: seen.setdefault(i, r)
    )
    assert out == [9, 1, 16, 1, 25]
    assert seen == dict(enumerate(out))


def test_parallel_map_and_black_box_flag():
    x = batch(6)
    assert torch.equal(
        parallel_map(f_black_box, x, backend="serial", num_workers=4), f_black_box(x)
    )
    pf = as_parallel(torch.sin, "serial")
    assert pf.black_box is True and pf.__wrapped__ is torch.sin
    with pytest.raises(ValueError, match="black box"):
        sg.pathwise(pf, dist_fn, torch.tensor([0.0, 1.0]), num_samples=10, seed=0)


# --- layer 3: bad input ------------------------------------------------------------------------
def test_unpicklable_f_raises_type_error():
    with pytest.raises(TypeError, match="module level"):
        ParallelMap(lambda t: t.sum(1), backend="process")

    def local(t):
        return t

    with pytest.raises(TypeError, match="picklable"):
        as_parallel(local, "process")
    with pytest.raises(TypeError, match="picklable"):
        ParallelMap(sg.black_box(lambda a: a), backend="process")


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="parallel.*'process'"):
        as_parallel(f_black_box, "threads")
    with pytest.raises(ValueError, match="parallel"):
        sg.score_function(
            f_black_box, dist_fn, torch.tensor([0.0, 1.0]), num_samples=4, seed=0, parallel="gpu"
        )
    with pytest.raises(ValueError, match="backend"):
        ParallelMap(f_black_box, backend="threads")
    with pytest.raises(ValueError, match="num_workers"):
        ParallelMap(f_black_box, backend="serial", num_workers=0)
    with pytest.raises(ValueError, match="chunk_size"):
        ParallelMap(f_black_box, backend="serial", chunk_size=0)
    with pytest.raises(ValueError, match="address"):
        ParallelMap(f_black_box, backend="process", address="127.0.0.1:6379")
    with pytest.raises(ValueError, match="different function"):
        as_parallel(f_black_box, ParallelMap(expensive, backend="serial"))
    with pytest.raises(ValueError, match="one value per sample"):
        ParallelMap(lambda t: t.sum(), backend="serial", chunk_size=2)(batch(5))


def test_as_parallel_cache_is_bounded():
    fs = [sg.black_box(np.sin) for _ in range(sgp._CACHE_SIZE + 2)]
    maps = [as_parallel(f, "serial") for f in fs]
    assert len(sgp._CACHE) <= sgp._CACHE_SIZE
    assert as_parallel(fs[-1], "serial") is maps[-1]


def slow(x: np.ndarray) -> np.ndarray:
    """Sleeps 20 s per chunk: a chunk still running when Ctrl-C comes."""
    import time

    time.sleep(20.0)
    return x[:, 0]


def test_ctrl_c_stops_the_process_pool_without_waiting_for_running_chunks():
    import os
    import signal
    import threading
    import time

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    pm = ParallelMap(slow, backend="process", num_workers=2)
    timer = threading.Timer(3.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.monotonic()
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            pm(np.zeros((4, 1)))
        stopped = time.monotonic() - start
        assert stopped < 3.0 + 2.0  # not the 20 s a running chunk would take
        assert pm._pool is None  # the workers were stopped; the next call starts a fresh pool
        pm.close()
        assert time.monotonic() - start < 3.0 + 2.0  # closing waits for no running chunk
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, before)
        pm.close()
