"""The digits the binary VAE learns: :func:`stochgrad.apps.datasets.load_binary_digits`, float32.

>>> train, test = load_binary_digits(test_size=97)
>>> train.shape[0], test.shape[0], train.dtype
(1700, 97, torch.float32)
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochgrad.apps import datasets
from stochgrad.apps.datasets import PIXEL_THRESHOLD, SPLIT_SEED, TEST_SIZE

__all__ = ["PIXEL_THRESHOLD", "SPLIT_SEED", "TEST_SIZE", "load_binary_digits"]


def load_binary_digits(
    *, test_size: int = TEST_SIZE, seed: int = SPLIT_SEED, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """:func:`stochgrad.apps.datasets.load_binary_digits` (same arguments and return value)
    with this app's default ``float32``."""
    return datasets.load_binary_digits(test_size=test_size, seed=seed, dtype=dtype)
