"""Train an nn.Module with a discrete choice inside, by the surrogate layer with a group baseline.

A router network reads an input x and picks one of K experts; the reward is 1 when it picks the
expert a hidden rule assigns to x, else 0: a black box, not differentiable in the choice. For
each input the router draws G choices (a group); the leave-one-out advantage within each group
(RLOO) is an unbiased baseline that costs nothing extra. ``stochgrad.surrogate_loss`` turns the
log-probabilities of the choices and their rewards into a loss for ``backward()``; its
``estimate`` gives the gradient's signal-to-noise ratio when asked.

Run: ``python docs/examples/categorical_choice.py`` (about 10 s on a CPU).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import stochgrad as sg

DIM, EXPERTS, GROUP, BATCH = 8, 5, 4, 64


class Router(nn.Module):
    """x [B, DIM] -> logits [B, EXPERTS] of a categorical choice."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DIM, 32), nn.Tanh(), nn.Linear(32, EXPERTS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train(steps: int = 400, advantage: str = "loo", seed: int = 0) -> list[dict]:
    """Train a router; return the log (step, accuracy, SNR of the gradient every 50 steps)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rule = torch.randn(DIM, EXPERTS, generator=g)  # the hidden rule: expert = argmax(x @ rule)
    router = Router()
    opt = torch.optim.Adam(router.parameters(), lr=1e-2)
    log = []
    for step in range(steps):
        x = torch.randn(BATCH, DIM, generator=g)
        best = (x @ rule).argmax(1)
        dist = torch.distributions.Categorical(logits=router(x))
        choice = dist.sample((GROUP,)).T  # [BATCH, GROUP]: G draws per input
        reward = (choice == best.unsqueeze(1)).double().reshape(-1)
        log_prob = dist.log_prob(choice.T).T.reshape(-1)  # one per draw, differentiable
        groups = torch.arange(BATCH).repeat_interleave(GROUP)  # the draws of one input
        s = sg.surrogate_loss(log_prob, reward, advantage=advantage, groups=groups, maximize=True)
        entry = {"step": step, "accuracy": float((dist.probs.argmax(1) == best).double().mean())}
        if step % 50 == 0:  # diagnostics on request: per-sample terms (256 samples)
            entry["snr"] = s.estimate(router).snr_of_mean()
        opt.zero_grad()
        s.loss.backward()
        opt.step()
        log.append(entry)
    return log


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--advantage", default="loo", help="loo, grpo, grpo_unscaled, mean, none")
    args = p.parse_args()
    for e in train(args.steps, args.advantage):
        if "snr" in e or e["step"] == args.steps - 1:
            snr = f"  gradient SNR {e['snr']:.2f}" if "snr" in e else ""
            print(f"step {e['step']:4d}  greedy accuracy {e['accuracy']:.3f}{snr}")
