"""Tests of stochgrad.parallel.map_items: per-item jobs across processes, in order, with callback."""

from __future__ import annotations

import math

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


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="backend"):
        map_items(abs, [1], backend="threads")
    with pytest.raises(ValueError, match="num_workers"):
        map_items(abs, [1], backend="process", num_workers=0)
    with pytest.raises(TypeError, match="callable"):
        map_items(3, [1], backend="serial")
    with pytest.raises(TypeError, match="picklable"):
        map_items(lambda v: v, [1], backend="process")
