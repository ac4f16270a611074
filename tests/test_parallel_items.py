"""Tests of stochgrad.parallel.map_items: per-item jobs across processes, in order, with callback."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time

import pytest

from stochgrad.parallel import map_items


def test_serial_results_in_order_and_callback_per_item() -> None:
    seen = []
    out = map_items(
        math.factorial, [5, 0, 3], backend="serial", callback=lambda i, r: seen.append((i, r))
    )
    assert out == [120, 1, 6]
    assert seen == [(0, 120), (1, 1), (2, 6)]


def test_process_backend_equals_serial_and_calls_back_once_per_item() -> None:
    items = [7, 1, 12, 4, 9]
    seen = {}
    out = map_items(
        math.factorial,
        items,
        backend="process",
        num_workers=2,
        callback=lambda i, r: seen.setdefault(i, r),
    )
    assert out == [math.factorial(v) for v in items]
    assert seen == dict(enumerate(out))


def test_empty_items() -> None:
    assert map_items(abs, [], backend="process") == []


def test_exception_in_a_job_propagates() -> None:
    with pytest.raises(ValueError):
        map_items(math.factorial, [3, -1], backend="process", num_workers=2)


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_an_interrupt_stops_the_pool_without_waiting_for_running_jobs(error) -> None:
    # item 0 returns at once; items 1 and 2 would sleep 30 s. Ctrl-C (or any exception) in the
    # callback must cancel item 2, terminate the worker running item 1 and return at once.
    workers: list = []
    raised = []

    def callback(i: int, result) -> None:
        workers.extend(multiprocessing.active_children())
        raised.append(time.monotonic())
        raise error("stop")

    with pytest.raises(error):
        map_items(time.sleep, [0, 30, 30], backend="process", num_workers=2, callback=callback)
    assert time.monotonic() - raised[0] < 2.0
    # the pool's own thread may be the one that reaps a terminated worker: give it a moment
    deadline = time.monotonic() + 2.0
    while any(p.is_alive() for p in workers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert workers and not any(p.is_alive() for p in workers)


@pytest.fixture
def sigint_raises():
    """SIGINT as an interactive Python has it (a run started in the background, as by a CI
    runner or `make test &`, inherits it ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("sigint_raises")
def test_workers_ignore_the_ctrl_c_that_reaches_the_whole_process_group() -> None:
    # Ctrl-C in a terminal signals every process of the group; the driver alone must react
    # (and stop the pool), or each worker raises KeyboardInterrupt and prints a traceback
    before = set(multiprocessing.active_children())
    signalled = []

    def callback(i: int, result) -> None:
        if not signalled:
            for proc in set(multiprocessing.active_children()) - before:
                os.kill(proc.pid, signal.SIGINT)
                signalled.append(proc)

    try:
        out = map_items(time.sleep, [0, 1, 1], backend="process", num_workers=2, callback=callback)
    except KeyboardInterrupt:  # let pytest go on to report the failure
        pytest.fail("a worker raised KeyboardInterrupt on SIGINT")
    assert out == [None, None, None] and signalled
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the driver's own


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="backend"):
        map_items(abs, [1], backend="threads")
    with pytest.raises(ValueError, match="num_workers"):
        map_items(abs, [1], backend="process", num_workers=0)
    with pytest.raises(TypeError, match="callable"):
        map_items(3, [1], backend="serial")
    with pytest.raises(TypeError, match="picklable"):
        map_items(lambda v: v, [1], backend="process")
