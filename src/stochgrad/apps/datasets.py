"""Data sets shared by the applications, each loaded in one place.

>>> train, test = load_binary_digits(test_size=97)
>>> train.shape[0], test.shape[0]
(1700, 97)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_int

__all__ = ["PIXEL_THRESHOLD", "SPLIT_SEED", "TEST_SIZE", "load_binary_digits"]

#: Digits binarised at intensity > 8 of 16 (> 0.5 after scaling to [0, 1]).
PIXEL_THRESHOLD = 8
#: Test digits, picked by a seeded random permutation, and the permutation's seed.
TEST_SIZE = 360
SPLIT_SEED = 0


def load_binary_digits(
    *, test_size: int = TEST_SIZE, seed: int = SPLIT_SEED, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1797 digits (8 x 8), binarised at intensity > 8 of 16, split in two.

    Args:
        test_size: digits in the test set (a seeded random permutation picks them).
        seed: seed of the permutation.
        dtype: floating-point type of the returned tensors.

    Returns:
        ``(train, test)``: ``[1797 - test_size, 64]`` and ``[test_size, 64]`` of ``0.``/``1.``.

    Reference: scikit-learn, ``sklearn.datasets.load_digits`` (UCI optical recognition of
    handwritten digits).
    """
    from sklearn.datasets import load_digits

    images = load_digits().data
    test_size = check_int("test_size", test_size, minimum=1, maximum=len(images) - 1)
    binary = (images > PIXEL_THRESHOLD).astype(np.float64)
    order = np.random.default_rng(seed).permutation(len(binary))
    test, train = order[:test_size], order[test_size:]
    return (
        torch.as_tensor(binary[train], dtype=dtype),
        torch.as_tensor(binary[test], dtype=dtype),
    )
