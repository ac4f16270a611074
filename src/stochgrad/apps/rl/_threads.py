"""Torch's intra-op thread count for the length of a piece of work, the caller's restored after.

The RL trainers run small tensor programs (a few thousand elements per operation): extra
threads only add synchronisation, and on a busy machine they cost a lot (a weight sweep ran
2.4 times slower under torch's default thread count than with one thread).

>>> import torch
>>> before = torch.get_num_threads()
>>> with torch_threads(1):
...     torch.get_num_threads()
1
>>> torch.get_num_threads() == before
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from stochgrad._checks import check_int

#: The most threads asked for (torch takes a 32-bit count; more threads than this on one
#: machine only contend).
MAX_THREADS = 4096


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (``None``: leave the setting alone; at most
    :data:`MAX_THREADS`)."""
    if threads is None:
        yield
        return
    threads = check_int("threads", threads, minimum=1, maximum=MAX_THREADS)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
