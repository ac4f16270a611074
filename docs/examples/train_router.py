"""Train an nn.Module with a discrete choice inside: a mixture of experts with hard routing.

A router network reads an input x and picks one of K linear experts; only the chosen expert
predicts y. The target is piecewise linear (a different line in each quadrant of the plane), so
the model fits well only once the router has learned which expert covers which quadrant. The
choice is a sample, not a differentiable function of the router's weights, so:

- the experts get the ordinary gradient of the squared error of the expert that was chosen;
- the router gets the score-function gradient, through ``stochgrad.surrogate_loss``: the
  log-probabilities of the choices and their rewards (minus the squared error), with a group of
  G choices per input and the leave-one-out advantage within each group (RLOO).

The sum of the two losses has, as its gradient, an unbiased estimate of the gradient of the
expected squared error with respect to every weight (Schulman et al. 2015, "Gradient estimation
using stochastic computation graphs"). The page docs/training.md walks through it.

Run: ``python docs/examples/train_router.py`` (about 10 s on a CPU);
``--figure docs/training_loss.png`` draws the curves of ``--advantage loo`` and ``none``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

import stochgrad as sg
from stochgrad.baselines import resolve_baseline

DIM, EXPERTS, GROUP, BATCH = 2, 4, 4, 64


class Draws(NamedTuple):
    """What one forward pass of :class:`HardMixture` returns, ``[B, G]`` (entropy ``[B]``)."""

    choice: torch.Tensor  # the expert drawn for each input, G times
    log_prob: torch.Tensor  # log p(choice | x): differentiable in the router's weights
    prediction: torch.Tensor  # the chosen expert's prediction: differentiable in the experts'
    entropy: torch.Tensor  # [B] the router's entropy per input


class HardMixture(nn.Module):
    """x [B, DIM] -> G draws of an expert per input, and the chosen experts' predictions."""

    def __init__(self):
        super().__init__()
        self.router = nn.Sequential(nn.Linear(DIM, 32), nn.Tanh(), nn.Linear(32, EXPERTS))
        self.experts = nn.Linear(DIM, EXPERTS)  # expert k predicts w_k . x + b_k

    def forward(self, x: torch.Tensor, group: int, generator: torch.Generator) -> Draws:
        dist = torch.distributions.Categorical(logits=self.router(x))
        choice = torch.multinomial(
            dist.probs.detach(), group, replacement=True, generator=generator
        )
        log_prob = dist.log_prob(choice.T).T  # Categorical broadcasts over a leading dim
        return Draws(choice, log_prob, self.experts(x).gather(1, choice), dist.entropy())

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction of the most probable expert (no sampling), ``[B]``."""
        best = self.router(x).argmax(1, keepdim=True)
        return self.experts(x).gather(1, best).squeeze(1)


def make_target(generator: torch.Generator):
    """A random piecewise-linear target: one line per quadrant of the plane."""
    slopes = 2.0 * torch.randn(EXPERTS, DIM, generator=generator)
    offsets = torch.randn(EXPERTS, generator=generator)

    def target(x: torch.Tensor) -> torch.Tensor:
        angle = torch.atan2(x[:, 1], x[:, 0]) + math.pi  # [0, 2 pi]
        quadrant = (angle / (2 * math.pi / EXPERTS)).long().clamp(max=EXPERTS - 1)
        return (slopes[quadrant] * x).sum(1) + offsets[quadrant]

    return target


def single_line_error(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error of the best single line (least squares): what one expert can do."""
    design = torch.cat([x, torch.ones(len(x), 1)], 1)
    coef = torch.linalg.lstsq(design, y.unsqueeze(1)).solution
    return float(((design @ coef).squeeze(1) - y).pow(2).mean())


def train(
    steps: int = 1000,
    advantage: str | None = "loo",
    seed: int = 0,
    lr: float = 3e-2,
    entropy: float = 0.2,
    diagnose_every: int = 50,
) -> list[dict]:
    """Train a :class:`HardMixture`; return one entry per step.

    Each entry has ``step``, ``loss`` (the mean squared error of the drawn experts on the
    minibatch) and ``test_error`` (of the most probable expert on 1,000 held-out inputs); every
    ``diagnose_every`` steps also ``snr``, the router gradient's signal-to-noise ratio from
    :meth:`stochgrad.surrogate.Surrogate.estimate`, and ``noise_ratio``, the norm of the
    standard errors of the same draws' gradient without a baseline over that with the rule
    (above 1: the rule removes noise). ``entropy`` weighs a bonus
    for the router's entropy, decaying linearly to 0: it keeps every expert in use early on (an
    expert the router stops choosing gets no gradient and would never recover).
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the weights' initialisation
    target = make_target(g)
    model = HardMixture()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)  # a smaller step at the end
    x_test = torch.randn(1000, DIM, generator=g)
    y_test = target(x_test)
    groups = torch.arange(BATCH).repeat_interleave(GROUP)  # the G draws of one input
    log = []
    for step in range(steps):
        x = torch.randn(BATCH, DIM, generator=g)
        draws = model(x, GROUP, g)
        error = (draws.prediction - target(x).unsqueeze(1)) ** 2  # [B, G]
        s = sg.surrogate_loss(
            draws.log_prob.reshape(-1),  # one log-probability per draw
            -error.detach().reshape(-1),  # its reward
            advantage=advantage,
            groups=groups,
            maximize=True,  # backward() gives minus the gradient: the step raises the reward
        )
        entry = {"step": step, "loss": float(error.detach().mean())}
        if diagnose_every and step % diagnose_every == 0:  # before backward() frees the graph
            est = s.estimate(model.router)  # per-draw terms: 256 backward rows of the router
            entry["snr"] = est.snr_of_mean()
            plain = sg.surrogate_loss(draws.log_prob.reshape(-1), -error.detach().reshape(-1))
            noise = plain.estimate(model.router).flat("stderr").norm()  # same draws, no baseline
            entry["noise_ratio"] = float(noise / est.flat("stderr").norm())
        bonus = entropy * (1 - step / steps) * draws.entropy.mean()
        opt.zero_grad()
        (error.mean() + s.loss - bonus).backward()  # experts: pathwise; router: score function
        opt.step()
        schedule.step()
        entry["test_error"] = float((model.predict(x_test) - y_test).pow(2).mean())
        log.append(entry)
    return log


def reference_error(seed: int = 0) -> float:
    """The best single line's test error on the task of ``seed`` (the same target and inputs)."""
    g = torch.Generator().manual_seed(seed)
    target = make_target(g)
    x_test = torch.randn(1000, DIM, generator=g)
    return single_line_error(x_test, target(x_test))


def plot(logs: dict[str, list[dict]], reference: float, path: Path) -> None:
    """Training loss and test error per step per rule; the first rule's noise ratio."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax_loss, ax_snr = fig.subplots(1, 2, width_ratios=[2, 1])
    for (name, log), colour in zip(logs.items(), ("C0", "C1"), strict=False):
        steps = [e["step"] for e in log]
        loss = torch.tensor([e["loss"] for e in log])
        width = 25  # a running mean over 25 steps: the minibatch loss is noisy
        smooth = loss.unfold(0, width, 1).mean(1)
        ax_loss.plot(steps[width - 1 :], smooth, colour, label=f"{name}: training loss")
        ax_loss.plot(steps, [e["test_error"] for e in log], colour, ls=":", label=f"{name}: test")
    name, log = next(iter(logs.items()))
    diag = [e for e in log if "noise_ratio" in e]
    ax_snr.plot([e["step"] for e in diag], [e["noise_ratio"] for e in diag], "C0", marker="o")
    ax_loss.axhline(reference, color="grey", lw=1, label="best single line")
    ax_loss.set(yscale="log", xlabel="step", ylabel="mean squared error")
    ax_loss.legend(fontsize=8)
    ax_snr.axhline(1.0, color="grey", lw=1)
    ax_snr.set(
        yscale="log",
        xlabel="step",
        ylabel="router gradient stderr:\nno baseline / " + name,
        title=f"the same draws, training with {name}",
    )
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps")
    p.add_argument("--advantage", default="loo", help="loo, grpo, grpo_unscaled, mean, none")
    p.add_argument("--seed", type=int, default=0, help="seed of the task, data and weights")
    p.add_argument("--entropy", type=float, default=0.2, help="initial weight of the bonus")
    p.add_argument("--figure", type=Path, default=None, help="also train with no baseline; plot")
    args = p.parse_args(argv)
    if args.steps < 30:
        p.error(f"--steps must be >= 30 (the curves average 25 steps), got {args.steps}")
    if args.figure is not None and not args.figure.parent.is_dir():
        p.error(f"--figure: no directory {args.figure.parent}")
    if args.advantage == "optimal":
        p.error("--advantage: 'optimal' does not work within groups")
    try:
        resolve_baseline(args.advantage)
    except ValueError as exc:
        p.error(f"--advantage: {exc}")
    if not args.entropy >= 0:
        p.error(f"--entropy must be >= 0, got {args.entropy}")
    logs = {args.advantage: train(args.steps, args.advantage, args.seed, entropy=args.entropy)}
    if args.figure is not None and args.advantage != "none":
        logs["none"] = train(args.steps, None, args.seed, entropy=args.entropy)
    reference = reference_error(args.seed)
    print(f"best single line: test error {reference:.3f}")
    for name, log in logs.items():
        for e in log:
            if e["step"] % 100 == 0 or e["step"] == args.steps - 1:
                snr = f"  router SNR {e['snr']:5.2f}" if "snr" in e else ""
                if "snr" in e and name != "none":
                    snr += f"  stderr without baseline / {name} {e['noise_ratio']:5.2f}"
                print(
                    f"{name:>5} step {e['step']:4d}  loss {e['loss']:7.3f}  "
                    f"test error {e['test_error']:7.3f}{snr}"
                )
    if args.figure is not None:
        plot(logs, reference, args.figure)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
