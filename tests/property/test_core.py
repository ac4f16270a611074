"""Bad input to every public function of the core: a clear error naming the argument, or a
correct result (see :mod:`tests.property.harness` for the rule)."""

import pytest

from tests.property.core_estimators import ENTRIES as ESTIMATORS
from tests.property.core_other import ENTRIES as OTHERS
from tests.property.harness import check_argument, profile

PAIRS = [(entry, arg) for entry in ESTIMATORS + OTHERS for arg in entry.bad]


@pytest.mark.parametrize(
    ("entry", "arg"), PAIRS, ids=[f"{entry.name}-{arg}" for entry, arg in PAIRS]
)
def test_bad_input(entry, arg, one_thread):
    check_argument(entry, arg, profile())
