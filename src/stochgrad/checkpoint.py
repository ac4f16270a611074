"""Checkpoints for long studies: finished runs and mid-run states in one file, resumable.

A study is a set of runs keyed by ``(key, seed)`` (an estimator and a seed, say) under one
configuration dataclass. Each finished run is saved as soon as it ends, a run in progress may
save its state, and the file is rewritten atomically, so an interrupted study loses no finished
work. Loading a checkpoint made with other settings raises: its runs would not be comparable.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch


class RunCheckpoint:
    """Finished runs and mid-run states of one study, in one ``.pt`` file.

    Subclasses set ``result_type``: a class with ``key``, ``seed``, ``to_state()`` (a dict of
    tensors and plain values) and ``from_state(dict)``.

    Args:
        path: the ``.pt`` file.
        config: the study's settings (a dataclass); stored and compared on load.

    >>> import tempfile, dataclasses
    >>> @dataclasses.dataclass
    ... class Cfg:
    ...     steps: int = 3
    >>> ckpt = RunCheckpoint(tempfile.mkdtemp() + "/c.pt", Cfg())
    >>> ckpt.load()
    0
    """

    result_type: ClassVar[Any] = None

    def __init__(self, path: str | Path, config: Any):
        self.path = Path(path)
        self.config = config
        self.runs: dict[tuple[str, int], Any] = {}
        self.partial: dict[tuple[str, int], dict[str, Any]] = {}

    def load(self) -> int:
        """Load ``path`` if it exists; return the number of finished runs."""
        if not self.path.exists():
            return 0
        state = torch.load(self.path, weights_only=True)
        saved, now = state.get("config", {}), asdict(self.config)
        if saved != now:
            diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
            raise ValueError(
                f"checkpoint {self.path} was made with other settings (saved, now): {diff}; "
                "rerun with the same options, or discard the checkpoint to start afresh"
            )
        for name, run in state["runs"].items():
            self.runs[self._key(name)] = self.result_type.from_state(run)
        for name, part in state.get("partial", {}).items():
            self.partial[self._key(name)] = part
        return len(self.runs)

    def add(self, run: Any) -> None:
        """Record a finished run (dropping its mid-run state) and save."""
        self.runs[(run.key, run.seed)] = run
        self.partial.pop((run.key, run.seed), None)
        self.save()

    def save_partial(self, key: str, seed: int, state: dict[str, Any]) -> None:
        """Record the mid-run state of ``(key, seed)`` and save."""
        self.partial[(key, seed)] = state
        self.save()

    def save(self) -> None:
        """Rewrite the file atomically (write a temporary file, then rename it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "config": asdict(self.config),
            "runs": {f"{k}/{s}": r.to_state() for (k, s), r in self.runs.items()},
            "partial": {f"{k}/{s}": p for (k, s), p in self.partial.items()},
        }
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    @staticmethod
    def _key(name: str) -> tuple[str, int]:
        key, _, seed = name.rpartition("/")
        return key, int(seed)
