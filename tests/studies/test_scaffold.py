"""The study scaffold: cells run once, saved as they finish, resumed exactly."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stochgrad.checkpoint import CheckpointMismatch
from stochgrad.studies.scaffold import cell_generator, run_grid, stream_generator


@dataclasses.dataclass
class Out:
    value: float
    steps: int

    def to_state(self):
        return {"value": torch.tensor(self.value, dtype=torch.float64), "steps": self.steps}

    @classmethod
    def from_state(cls, s):
        return cls(float(s["value"]), int(s["steps"]))


KEYS = [(est, seed) for est in ("score", "loo") for seed in (0, 1, 2)]
CONFIG = {"steps": 5}


def _cell(calls, fail_at=None):
    """A cell of 5 steps drawing from its own stream; saves its state after every step."""

    def run_cell(key, state, save):
        calls.append((key, None if state is None else state["step"]))
        g = stream_generator(key[1], key[0])
        step, total = 0, torch.zeros((), dtype=torch.float64)
        if state is not None:
            step, total = state["step"], state["total"]
            g.set_state(state["rng"])
        while step < CONFIG["steps"]:
            total = total + torch.rand((), generator=g, dtype=torch.float64)
            step += 1
            if fail_at is not None and (key, step) == fail_at:
                raise KeyboardInterrupt
            save({"step": step, "total": total, "rng": g.get_state()})
        return Out(float(total), step)

    return run_cell


def test_interrupted_grid_resumes_to_the_uninterrupted_result(tmp_path):
    reference = run_grid(KEYS, _cell([]), config=CONFIG, result_type=Out)
    ckpt = tmp_path / "c.pt"
    calls: list = []
    with pytest.raises(KeyboardInterrupt):
        run_grid(KEYS, _cell(calls, fail_at=(("loo", 1), 3)), config=CONFIG, result_type=Out,
                 checkpoint=ckpt)  # fmt: skip
    assert len(calls) == 5  # four cells finished, the fifth stopped mid-way
    calls.clear()
    seen = []
    advanced = []
    grid = run_grid(KEYS, _cell(calls), config=CONFIG, result_type=Out, checkpoint=ckpt,
                    on_resume=lambda done, part: seen.append((done, part)),
                    progress=advanced.append)  # fmt: skip
    assert seen == [(4, 1)]
    assert calls == [(("loo", 1), 2), (("loo", 2), None)]  # continued from its saved step
    assert (grid.resumed, grid.continued) == (4, 1)
    assert sum(advanced) == len(KEYS)
    for k in KEYS:
        assert grid.results[k] == reference.results[k]


def test_resume_false_starts_afresh_and_settings_are_checked(tmp_path):
    ckpt = tmp_path / "c.pt"
    run_grid(KEYS, _cell([]), config=CONFIG, result_type=Out, checkpoint=ckpt)
    calls: list = []
    run_grid(KEYS, _cell(calls), config=CONFIG, result_type=Out, checkpoint=ckpt, resume=False)
    assert len(calls) == len(KEYS)
    with pytest.raises(CheckpointMismatch, match="steps: 5 saved, 6 now"):
        run_grid(KEYS, _cell([]), config={"steps": 6}, result_type=Out, checkpoint=ckpt)


def test_duplicate_keys_are_refused():
    with pytest.raises(ValueError, match="keys"):
        run_grid([("a", 0), ("a", 0)], _cell([]), config=CONFIG, result_type=Out)


def test_streams_are_reproducible_and_distinct():
    a = torch.rand(3, generator=cell_generator(0, 1, 2))
    assert torch.equal(a, torch.rand(3, generator=cell_generator(0, 1, 2)))
    assert not torch.equal(a, torch.rand(3, generator=cell_generator(0, 2, 1)))
    b = torch.rand(3, generator=stream_generator(0, "x"))
    assert not torch.equal(b, torch.rand(3, generator=stream_generator(0, "y")))
