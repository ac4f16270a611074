"""Fixtures of the command-line tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stochgrad.cli import _kit


@pytest.fixture
def interrupt_after_checkpoint() -> Callable[[Path], None]:
    """``arm(folder)``: the next command run raises KeyboardInterrupt (as Ctrl-C would) at its
    first progress step after a checkpoint file has appeared in ``folder``."""
    hooks: list = []

    def arm(folder: Path) -> None:
        before = {p for p in Path(folder).rglob("*") if p.is_file()}

        def hook() -> None:
            now = {
                p
                for p in Path(folder).rglob("*")
                if p.is_file() and not p.name.startswith(".") and p not in before
            }
            if any("checkpoint" in p.name or p.suffix == ".pt" for p in now):
                _kit.PROGRESS_HOOKS.remove(hook)
                raise KeyboardInterrupt

        _kit.PROGRESS_HOOKS.append(hook)
        hooks.append(hook)

    yield arm
    for hook in hooks:
        if hook in _kit.PROGRESS_HOOKS:
            _kit.PROGRESS_HOOKS.remove(hook)
