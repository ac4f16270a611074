"""``stochgrad rl pareto`` saves the kept policies (``pareto_policies.pt``): a file of tensors
and plain values whose greedy policies reproduce the returns in ``pareto.json``."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mo_gymnasium")

from stochgrad.apps.rl.deep_sea import evaluate_in_env, tabulate  # noqa: E402
from stochgrad.checkpoint import load_state  # noqa: E402
from stochgrad.cli import main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

PARETO = ["rl", "pareto", "--weights", "0,0.7,1", "--iterations", "30", "--batch", "4",
          "--restarts", "2", "--seeds", "2", "--seed", "4"]  # fmt: skip


def test_the_saved_policies_reproduce_the_reported_returns(tmp_path, capsys):
    assert main([*PARETO, "--out", str(tmp_path)]) == 0
    assert str(tmp_path / "pareto_policies.pt") in capsys.readouterr().out
    report = json.loads((tmp_path / "pareto.json").read_text())
    saved = load_state(tmp_path / "pareto_policies.pt")  # torch.load(weights_only=True)
    assert saved["format"] == "stochgrad.rl.pareto_policies/1" and saved["seeds"] == [4, 5]
    assert saved["weights"].tolist() == report["weights"] and saved["gamma"] == 0.99
    mdp = tabulate()
    np.testing.assert_array_equal(saved["cells"].numpy(), mdp.cells)
    assert tuple(saved["logits"].shape) == (2, 3, mdp.num_states, mdp.num_actions)
    for i, seed in enumerate(report["seeds"]):
        greedy = saved["logits"][i].argmax(-1).numpy()
        again = evaluate_in_env(mdp, greedy, saved["gamma"])
        np.testing.assert_array_equal(again, np.asarray(seed["reinforce_returns"]))
        np.testing.assert_array_equal(saved["returns"][i].numpy(), again)
    # resumed from the finished checkpoint: the same policies
    assert main([*PARETO, "--out", str(tmp_path)]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert bool((load_state(tmp_path / "pareto_policies.pt")["logits"] == saved["logits"]).all())
