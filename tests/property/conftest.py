"""Settings of the bad-input suite and the report of its counts.

Profiles (``STOCHGRAD_BAD_INPUT_PROFILE``, default ``ci``): ``ci`` runs 25 derandomized examples
per argument (reproducible, bounded: part of ``make test``); ``bench`` runs 100 (the script
``benchmarks/bad_input_suite.py``). The counts go to the terminal summary and, when
``STOCHGRAD_BAD_INPUT_REPORT=path`` is set, to ``path`` as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import HealthCheck, settings

from tests.property.harness import TALLY, profile, summary_lines

_COMMON = {
    "derandomize": True,  # the same examples every run: CI is reproducible
    "database": None,
    "print_blob": False,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=25, **_COMMON)
settings.register_profile("bench", max_examples=100, **_COMMON)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not TALLY.counts["inputs"]:
        return
    terminalreporter.section("bad-input suite")
    for line in summary_lines():
        terminalreporter.write_line(line)
    path = os.environ.get("STOCHGRAD_BAD_INPUT_REPORT")
    if path:
        report = {"profile": profile(), **TALLY.as_dict()}
        Path(path).write_text(json.dumps(report, indent=2) + "\n")
        terminalreporter.write_line(f"counts written to {path}")
