"""Bad input to the main functions of each app: a clear error naming the argument, or a correct
result (see :mod:`tests.property.harness` for the rule)."""

import pytest

from tests.property.apps_table_a import ENTRIES as APPS_A
from tests.property.apps_table_b import ENTRIES as APPS_B
from tests.property.harness import check_argument, profile

PAIRS = [(entry, arg) for entry in APPS_A + APPS_B for arg in entry.bad]


@pytest.mark.parametrize(
    ("entry", "arg"), PAIRS, ids=[f"{entry.name}-{arg}" for entry, arg in PAIRS]
)
def test_bad_input(entry, arg, one_thread):
    check_argument(entry, arg, profile())
