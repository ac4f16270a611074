"""The public names of release 0.1 stay importable in 0.2 (those that moved, with a
DeprecationWarning): ``stochgrad.__all__``, every application module's ``__all__``, the
console script."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

#: ``__all__`` of each module of release 0.1 that had one.
RELEASE_0_1 = json.loads((Path(__file__).parent / "data" / "api_0_1.json").read_text())


@pytest.mark.parametrize("module", sorted(RELEASE_0_1))
def test_names_of_the_previous_release_still_import(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        mod = importlib.import_module(module)
        missing = [n for n in RELEASE_0_1[module] if not hasattr(mod, n)]
    assert not missing, f"{module}: {missing}"


def test_console_script():
    beside = Path(sys.executable).parent / "stochgrad"
    exe = str(beside) if beside.exists() else shutil.which("stochgrad")
    if exe is None:
        pytest.skip("the package is not installed with its console script")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("stochgrad ")
