"""Fine-tuning the SMILES GRU by policy gradient: REINFORCE with a baseline, and REINVENT.

The policy :math:`P_\\theta` writes a SMILES token by token; the reward :math:`S(x) \\in [0, 1]`
is computed on the finished molecule. Two objectives:

* ``"reinforce"``: maximise :math:`\\mathbb{E}_{P_\\theta}[S(x)] - \\beta\\,
  \\mathrm{KL}(P_\\theta \\| P_\\mathrm{prior})` by the score function
  (log-derivative trick) of the *sequence* log-likelihood (the sum of its tokens'),

  .. math:: \\nabla_\\theta \\approx \\frac{1}{n}\\sum_i A_i\\,
            \\nabla_\\theta \\log P_\\theta(x_i), \\qquad
            R_i = S(x_i) - \\beta\\,[\\log P_\\theta(x_i) - \\log P_\\mathrm{prior}(x_i)],

  computed by the engine's :func:`stochgrad.surrogate.surrogate_loss` with the advantage
  :math:`A_i` of a rule of :mod:`stochgrad.baselines` (``AgentConfig.advantage``):
  ``"loo"`` (default, RLOO: :math:`R_i` minus the mean of the others in its group; Kool et al.
  2019, "Buy 4 REINFORCE samples, get a baseline for free"), ``"grpo"`` (the group-normalised
  :math:`(R_i - \\bar R_g)/s_g` of GRPO, Shao et al. 2024; biased), ``"grpo_unscaled"``
  (:math:`R_i - \\bar R_g`, "Dr. GRPO"; biased by :math:`(n_g-1)/n_g`) or ``"none"``. The
  generator is unconditional, so a group is the samples of one step: the whole batch by
  default (the replayed molecules included), or consecutive chunks of ``group_size``
  molecules (the replayed ones forming groups of their own). The KL term is the
  prior-likelihood anchor: its score-function gradient is
  :math:`\\mathbb{E}[(\\log P_\\theta - \\log P_\\mathrm{prior}) \\nabla \\log P_\\theta]`.
* ``"reinvent"`` (Olivecrona et al. 2017, "Molecular de-novo design through deep
  reinforcement learning", J. Cheminform.): regress the agent's log-likelihood onto the
  augmented likelihood, loss :math:`(\\log P_\\mathrm{prior}(x) + \\sigma S(x) -
  \\log P_\\theta(x))^2`, plus the penalty :math:`5000 \\cdot (-1/\\log P_\\theta(x))` of
  its published code, which discourages collapse onto a few high-likelihood strings. The
  paper used :math:`\\sigma = 60`; the default here is the PMO benchmark's tuned
  :math:`\\sigma = 500` (Gao et al. 2022), batch 64, learning rate 5e-4. This loss is kept as
  it is: it is not a score-function estimator (its gradient is not an estimate of the
  gradient of an expectation), so no advantage rule applies to it.

Both add experience replay: the best molecules seen so far are kept, and a few, drawn with
probability proportional to their score, join every batch's loss (Olivecrona et al. 2017;
the PMO benchmark's REINVENT replays 24 per step).

Every ``AgentConfig.diagnose_every`` steps the gradient's spread is logged
(``AgentStep.grad_variance``, ``AgentStep.grad_snr``): the engine's
:meth:`stochgrad.surrogate.Surrogate.estimate` from :data:`DIAGNOSTIC_BATCHES` batch means.
For REINFORCE it is the policy-gradient surrogate's; REINVENT's gradient is also a weighted sum
of the sequences' :math:`\\nabla \\log P_\\theta(x_i)` (with weights
:math:`\\partial \\ell_i / \\partial \\log P_\\theta(x_i)` of its per-molecule loss), so the
same estimate gives its spread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad.apps.molecules.data import tokenize
from stochgrad.apps.molecules.model import SmilesGRU
from stochgrad.apps.molecules.scoring import BatchScore, Oracle, canonical, top_auc
from stochgrad.checkpoint import CheckpointError, check_settings, load_state, save_state
from stochgrad.checkpoint import field as state_field
from stochgrad.surrogate import Surrogate, surrogate_loss

__all__ = [
    "ADVANTAGES",
    "DIAGNOSTIC_BATCHES",
    "AgentConfig",
    "AgentStep",
    "AgentResult",
    "METHODS",
    "optimize",
    "policy_loss",
    "reinforce_surrogate",
    "step_groups",
]

#: The fine-tuning objectives: REINVENT's augmented likelihood, REINFORCE's score function.
METHODS = ("reinvent", "reinforce")
#: The advantage rules of REINFORCE (rules of :mod:`stochgrad.baselines`).
ADVANTAGES = ("loo", "grpo", "grpo_unscaled", "none")
#: Batch means of the gradient diagnostic of :func:`optimize`.
DIAGNOSTIC_BATCHES = 8


@dataclass(frozen=True)
class AgentConfig:
    """Settings of the policy-gradient fine-tuning.

    Attributes:
        method: ``"reinvent"`` (augmented likelihood) or ``"reinforce"`` (score function).
        sigma: REINVENT's score weight.
        beta: REINFORCE's KL weight (prior anchor).
        batch_size: molecules sampled per step.
        lr: Adam learning rate.
        replay_size: molecules kept in the replay memory (the best seen).
        replay_batch: molecules replayed per step (0 turns replay off).
        max_steps: a hard cap on steps (the oracle budget normally stops first).
        patience: stop after this many consecutive steps in which the 100 best scores did not
            change (PMO's early stop, once over 100 molecules are scored; 0: never). A converged
            agent that only resamples known molecules spends no oracle calls, so without it a
            run may never reach its budget; PMO's AUC counts the unspent calls at the final value.
        checkpoint_every: steps between checkpoints.
        likelihood_penalty: weight ``c`` of the term :math:`c \\cdot \\frac1n\\sum_i
            -1/\\log P_\\theta(x_i)` added to the loss, which pushes down the likelihood of
            the sampled sequences and so keeps the agent from collapsing onto a few strings.
            ``None``: 5000 for REINVENT, as in its published code (and PMO's), 0 for REINFORCE.
        advantage: REINFORCE's advantage rule (:data:`ADVANTAGES`): ``"loo"`` (RLOO,
            unbiased), ``"grpo"``, ``"grpo_unscaled"`` (biased) or ``"none"``.
        group_size: the molecules of one advantage group: ``None``, all of a step's (sampled
            and replayed); ``k``, consecutive chunks of ``k`` (it must divide ``batch_size``
            and ``replay_batch``; the replayed molecules form groups of their own).
        diagnose_every: steps between gradient diagnostics (:data:`DIAGNOSTIC_BATCHES` batch
            means, about two steps' time with the shipped prior; 0: none). It changes no
            number of the run.
    """

    method: str = "reinvent"
    sigma: float = 500.0
    beta: float = 0.05
    batch_size: int = 64
    lr: float = 5e-4
    replay_size: int = 100
    replay_batch: int = 24
    max_steps: int = 2000
    patience: int = 5
    checkpoint_every: int = 10
    likelihood_penalty: float | None = None
    advantage: str = "loo"
    group_size: int | None = None
    diagnose_every: int = 20

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        check_float("sigma", self.sigma, minimum=0.0)
        check_float("beta", self.beta, minimum=0.0)
        check_int("batch_size", self.batch_size, minimum=2)
        check_float("lr", self.lr, minimum=0.0, open_min=True)
        check_int("replay_size", self.replay_size, minimum=0)
        if check_int("replay_batch", self.replay_batch, minimum=0) > self.replay_size:
            raise ValueError(
                f"replay_batch must be <= replay_size ({self.replay_size}), got {self.replay_batch}"
            )
        check_int("max_steps", self.max_steps, minimum=1)
        check_int("patience", self.patience, minimum=0)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1)
        if self.likelihood_penalty is not None:
            check_float("likelihood_penalty", self.likelihood_penalty, minimum=0.0)
        check_choice("advantage", self.advantage, ADVANTAGES)
        check_int("diagnose_every", self.diagnose_every, minimum=0)
        if self.group_size is not None:
            check_int("group_size", self.group_size, minimum=2)
            if self.batch_size % self.group_size or self.replay_batch % self.group_size:
                raise ValueError(
                    f"group_size must divide batch_size ({self.batch_size}) and replay_batch "
                    f"({self.replay_batch}), got {self.group_size}"
                )

    @property
    def penalty(self) -> float:
        """The likelihood penalty in force (``likelihood_penalty`` or the method's default)."""
        if self.likelihood_penalty is not None:
            return self.likelihood_penalty
        return 5e3 if self.method == "reinvent" else 0.0


def step_groups(rows: int, batch_size: int, group_size: int | None) -> torch.Tensor | None:
    """The advantage groups of a step's ``rows`` molecules (``batch_size`` sampled, then the
    replayed ones): ``None`` (one group) or consecutive chunks of ``group_size``.

    >>> step_groups(6, 4, 2).tolist()
    [0, 0, 1, 1, 2, 2]
    """
    if group_size is None:
        return None
    check_int("group_size", group_size, minimum=1)
    if batch_size % group_size or (rows - batch_size) % group_size:
        raise ValueError(
            f"group_size {group_size} must divide the sampled ({batch_size}) and replayed "
            f"({rows - batch_size}) molecules"
        )
    return torch.arange(rows) // group_size


def _check_inputs(agent_logp, prior_logp, score) -> None:
    for name, t in (("agent_logp", agent_logp), ("prior_logp", prior_logp), ("score", score)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(
                f"{name} must be a floating-point tensor, got "
                f"{getattr(t, 'dtype', type(t).__name__)}"
            )
        if t.device != agent_logp.device:
            raise ValueError(f"{name} must be on the device of agent_logp ({agent_logp.device})")
    if agent_logp.shape != prior_logp.shape or agent_logp.shape != score.shape:
        raise ValueError(
            f"agent_logp, prior_logp, score must have one shape, got {tuple(agent_logp.shape)}, "
            f"{tuple(prior_logp.shape)}, {tuple(score.shape)}"
        )
    if agent_logp.dim() != 1 or agent_logp.shape[0] < 2:
        raise ValueError("agent_logp must be 1-D with at least 2 entries (the group baselines)")
    for name, t in (("agent_logp", agent_logp), ("prior_logp", prior_logp), ("score", score)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} has non-finite entries")
    for name, t in (("agent_logp", agent_logp), ("prior_logp", prior_logp)):
        if bool((t > 0).any()):
            raise ValueError(f"{name} must hold log-probabilities of sequences, <= 0")


def _check_groups(groups, n: int, device: torch.device) -> None:
    if groups is None:
        return
    if not isinstance(groups, torch.Tensor) or groups.is_floating_point() or groups.is_complex():
        raise TypeError(
            f"groups must be an integer tensor of labels, got "
            f"{getattr(groups, 'dtype', type(groups).__name__)}"
        )
    if groups.dtype == torch.bool or tuple(groups.shape) != (n,):
        raise ValueError(
            f"groups must be [{n}] integer labels, got {groups.dtype} {list(groups.shape)}"
        )
    if groups.device != device:
        raise ValueError(
            f"groups must be on the device of agent_logp ({device}), got {groups.device}"
        )


def reinforce_surrogate(
    agent_logp: torch.Tensor,
    prior_logp: torch.Tensor,
    score: torch.Tensor,
    *,
    beta: float = 0.05,
    advantage: str = "loo",
    groups: torch.Tensor | None = None,
) -> Surrogate:
    """REINFORCE's surrogate of the KL-anchored reward, through the engine.

    :func:`stochgrad.surrogate.surrogate_loss` of the sequence log-likelihoods with the values
    :math:`R_i = S(x_i) - \\beta[\\log P_\\theta(x_i) - \\log P_\\mathrm{prior}(x_i)]`
    (detached), the ``advantage`` rule of :mod:`stochgrad.baselines` within ``groups`` and
    ``maximize=True``: ``loss.backward()`` gives minus the estimate of
    :math:`\\nabla(\\mathbb E[S] - \\beta\\,\\mathrm{KL})`.

    Args:
        agent_logp: ``[n]`` differentiable :math:`\\log P_\\theta(x_i)`.
        prior_logp: ``[n]`` :math:`\\log P_\\mathrm{prior}(x_i)`.
        score: ``[n]`` rewards.
        beta: the KL weight.
        advantage: a rule of :data:`ADVANTAGES`.
        groups: ``[n]`` group labels (:func:`step_groups`), or ``None`` for one group.

    Returns:
        The :class:`~stochgrad.surrogate.Surrogate` (``loss``, ``advantages``, ``estimate``).

    >>> a = torch.tensor([-10.0, -20.0, -5.0], requires_grad=True)
    >>> s = reinforce_surrogate(a, a.detach(), torch.tensor([0.5, 0.0, 1.0]))
    >>> s.advantages  # leave-one-out
    tensor([ 0.0000, -0.7500,  0.7500])
    """
    _check_inputs(agent_logp, prior_logp, score)
    check_choice("advantage", advantage, ADVANTAGES)
    beta = check_float("beta", beta, minimum=0.0)
    _check_groups(groups, agent_logp.shape[0], agent_logp.device)
    reward = score.detach() - beta * (agent_logp.detach() - prior_logp.detach())
    if not bool(torch.isfinite(reward).all()):
        raise ValueError("beta and score give non-finite rewards (overflow); use smaller values")
    return surrogate_loss(
        agent_logp, reward, advantage=None if advantage == "none" else advantage,
        groups=groups, maximize=True,
    )  # fmt: skip


def _reinvent_weights(agent_logp, prior_logp, score, sigma, likelihood_penalty) -> torch.Tensor:
    """:math:`w_i = \\partial \\ell_i / \\partial \\log P_\\theta(x_i)` of REINVENT's
    per-molecule loss: its gradient is :math:`\\frac1n \\sum_i w_i \\nabla \\log P_\\theta(x_i)`."""
    logp = agent_logp.detach()
    w = -2.0 * (prior_logp.detach() + sigma * score.detach() - logp)
    if likelihood_penalty:
        w = w + likelihood_penalty / logp.clamp(max=-1e-6) ** 2
    return w


def policy_loss(
    method: str,
    agent_logp: torch.Tensor,
    prior_logp: torch.Tensor,
    score: torch.Tensor,
    *,
    sigma: float = 500.0,
    beta: float = 0.05,
    likelihood_penalty: float = 0.0,
    advantage: str = "loo",
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """The per-batch loss whose gradient is the policy-gradient step.

    Args:
        method: ``"reinvent"`` or ``"reinforce"``.
        agent_logp: ``[n]`` differentiable :math:`\\log P_\\theta(x_i)`.
        prior_logp: ``[n]`` :math:`\\log P_\\mathrm{prior}(x_i)` (no gradient).
        score: ``[n]`` rewards in [0, 1].
        sigma: REINVENT's score weight.
        beta: REINFORCE's KL weight.
        likelihood_penalty: weight ``c`` of :math:`c \\cdot \\frac{1}{n}\\sum_i -1/\\log
            P_\\theta(x_i)`, added to either loss (REINVENT's code uses 5000).
        advantage: REINFORCE's advantage rule (:data:`ADVANTAGES`; default leave-one-out).
        groups: REINFORCE's advantage groups (``None``: one group).

    Returns:
        A scalar: REINVENT :math:`\\frac{1}{n}\\sum_i(\\log P_\\mathrm{prior} + \\sigma S -
        \\log P_\\theta)^2`; REINFORCE the loss of :func:`reinforce_surrogate`,
        :math:`-\\frac{1}{n}\\sum_i A_i\\log P_\\theta(x_i)`; plus the likelihood penalty.

    Raises:
        ValueError: for an unknown method, mismatched shapes or non-finite inputs.

    >>> a = torch.tensor([-10.0, -20.0], requires_grad=True)
    >>> p, s = torch.tensor([-12.0, -18.0]), torch.tensor([0.1, 0.0])
    >>> loss = policy_loss("reinvent", a, p, s, sigma=60.0)
    >>> float(loss.detach())  # ((-12 + 6 + 10)^2 + (-18 + 20)^2) / 2
    10.0
    """
    _check_inputs(agent_logp, prior_logp, score)
    check_choice("method", method, METHODS)
    likelihood_penalty = check_float("likelihood_penalty", likelihood_penalty, minimum=0.0)
    # every argument is checked, also those the method does not use: a typo is never silent
    sigma = check_float("sigma", sigma, minimum=0.0)
    beta = check_float("beta", beta, minimum=0.0)
    check_choice("advantage", advantage, ADVANTAGES)
    _check_groups(groups, agent_logp.shape[0], agent_logp.device)
    if method == "reinvent":
        augmented = prior_logp.detach() + sigma * score.detach()
        loss = ((augmented - agent_logp) ** 2).mean()
    else:
        loss = reinforce_surrogate(
            agent_logp, prior_logp, score, beta=beta, advantage=advantage, groups=groups
        ).loss
    if likelihood_penalty:
        # a sequence's log-likelihood is < 0; the clamp only guards a fully collapsed agent
        loss = loss + likelihood_penalty * (-1.0 / agent_logp.clamp(max=-1e-6)).mean()
    if not bool(torch.isfinite(loss.detach())):
        raise ValueError(
            "the loss is not finite: score, sigma or likelihood_penalty too large for the dtype"
        )
    return loss


def _diagnose(config: AgentConfig, agent, agent_logp, prior_logp, score, groups):
    """``(variance, snr)`` of this step's gradient (before its backward): the engine's estimate
    from :data:`DIAGNOSTIC_BATCHES` batch means (see the module docstring)."""
    if config.method == "reinforce":
        sur = reinforce_surrogate(agent_logp, prior_logp, score, beta=config.beta,
                                  advantage=config.advantage, groups=groups)  # fmt: skip
    else:
        w = _reinvent_weights(agent_logp, prior_logp, score, config.sigma, config.penalty)
        sur = surrogate_loss(agent_logp, -w)  # the ascent direction: -dloss, as REINFORCE's
    n = agent_logp.shape[0]
    est = sur.estimate(agent, batches=min(DIAGNOSTIC_BATCHES, n))
    return float(est.flat("variance").sum()), est.snr_of_mean()


@dataclass
class AgentStep:
    """What one step saw: oracle calls so far, batch mean score, validity, best so far, and on
    the diagnosed steps (``AgentConfig.diagnose_every``) the gradient's spread: the summed
    variance of one molecule's term (over all weights) and the signal-to-noise ratio
    :math:`\\lVert\\hat g\\rVert/\\lVert\\mathrm{se}(\\hat g)\\rVert` (``None`` elsewhere)."""

    calls: int
    mean_score: float
    validity: float
    top1: float
    top10: float
    loss: float
    grad_variance: float | None = None
    grad_snr: float | None = None


@dataclass
class AgentResult:
    """A finished (or budget-capped) optimisation run (``unscored``: the molecules a
    :class:`~stochgrad.apps.molecules.scoring.BatchScore` returned NaN for)."""

    steps: list[AgentStep]
    history: list[tuple[str, float]]
    budget: int
    seconds: float
    samples: int
    config: dict[str, Any] = field(default_factory=dict)
    unscored: list[str] = field(default_factory=list)

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` best molecules, best first."""
        return sorted(self.history, key=lambda kv: -kv[1])[:k]

    @property
    def auc_top10(self) -> float:
        """PMO's AUC of the top-10 curve over the budget."""
        return top_auc([s for _, s in self.history], self.budget) if self.history else 0.0


def _top100(oracle: Oracle) -> list[float]:
    return sorted((v for _, v in oracle.history), reverse=True)[:100]


def _replay_add(
    memory: dict[str, float], voc: Any, smiles: list[str | None], scores: np.ndarray, size: int
) -> None:
    for s, v in zip(smiles, scores.tolist(), strict=True):
        # canonical SMILES may use a token the vocabulary lacks: those cannot be replayed
        if v > 0 and s and all(t in voc.index for t in tokenize(s)):
            memory[s] = v
    if len(memory) > size:
        keep = sorted(memory.items(), key=lambda kv: -kv[1])[:size]
        memory.clear()
        memory.update(keep)


def _rng_to_state(rng: np.random.Generator) -> dict[str, Any]:
    """numpy's PCG64 state with its 128-bit integers as byte tensors (``weights_only``-safe)."""
    st = rng.bit_generator.state
    return {
        "bit_generator": st["bit_generator"],
        "state": _int_bytes(st["state"]["state"]),
        "inc": _int_bytes(st["state"]["inc"]),
        "has_uint32": int(st["has_uint32"]),
        "uinteger": int(st["uinteger"]),
    }


def _rng_from_state(rng: np.random.Generator, saved: dict[str, Any]) -> None:
    rng.bit_generator.state = {
        "bit_generator": str(saved["bit_generator"]),
        "state": {"state": _bytes_int(saved["state"]), "inc": _bytes_int(saved["inc"])},
        "has_uint32": int(saved["has_uint32"]),
        "uinteger": int(saved["uinteger"]),
    }


def _int_bytes(value: int) -> torch.Tensor:
    return torch.tensor(list(int(value).to_bytes(16, "little")), dtype=torch.uint8)


def _bytes_int(t: torch.Tensor) -> int:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.numel() != 16:
        raise TypeError("a random state must be a tensor of 16 bytes")
    return int.from_bytes(bytes(t.tolist()), "little")


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that must agree for a checkpoint to continue, flat (so that a mismatch
    names each one); the checkpoint and diagnostic intervals may change, and a checkpoint of an
    earlier release (before ``advantage`` and ``group_size``) used their defaults."""
    config = settings.get("config")
    out = {k: v for k, v in settings.items() if k != "config" or not isinstance(config, dict)}
    out.update(config if isinstance(config, dict) else {})
    out.pop("checkpoint_every", None)
    out.pop("diagnose_every", None)
    out.setdefault("advantage", "loo")
    out.setdefault("group_size", None)
    return out


def optimize(
    agent: SmilesGRU,
    prior: SmilesGRU,
    oracle: Oracle,
    config: AgentConfig = AgentConfig(),
    *,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    restart: bool = False,
    callback: Callable[[AgentStep], None] | None = None,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
    objective: str | None = None,
) -> AgentResult:
    """Fine-tune ``agent`` (in place) until the oracle budget is spent.

    Each step samples ``batch_size`` SMILES from the agent (no gradient), scores them with the
    oracle (invalid: 0; with your own function, a
    :class:`~stochgrad.apps.molecules.scoring.BatchScore`, its NaN scores 0 too and an exception
    it raises stops the run as a :class:`~stochgrad.apps.molecules.scoring.ScoreError`, the
    last checkpoint kept), recomputes agent and prior log-likelihoods by teacher forcing, adds
    ``replay_batch`` molecules from the replay memory, and takes one Adam step on
    :func:`policy_loss` (REINFORCE: the engine's surrogate, :func:`reinforce_surrogate`, with
    ``config.advantage`` within the groups of :func:`step_groups`). Every
    ``config.diagnose_every`` steps (the first included) the step's gradient variance and
    signal-to-noise ratio are estimated before the step (:class:`AgentStep`). With
    ``checkpoint``, the agent, optimiser, oracle cache, replay
    memory, random states and curve are saved every ``checkpoint_every`` steps and at the end
    (:func:`stochgrad.checkpoint.save_state`: tensors, strings and numbers only, read back with
    ``weights_only=True``); a resumed run continues to the same result as an uninterrupted one.

    The run stops when the budget is spent, after ``max_steps`` steps, or when the 100 best
    scores have not changed for ``patience`` steps (PMO's rule).

    Args:
        agent: the policy, usually a copy of the prior.
        prior: the frozen prior.
        oracle: the scoring oracle with its budget.
        config: settings.
        seed: seed of the sampler and the replay draws.
        checkpoint: ``.pt`` file for checkpoints (``None``: none).
        restart: ignore an existing checkpoint.
        callback: called with every :class:`AgentStep`.
        progress: ``progress(n)`` advances a progress bar by ``n`` oracle calls: once by the
            calls found in a checkpoint, then after every step (after its checkpoint is saved)
            by the calls it spent.
        on_resume: called once as ``on_resume(steps_done, oracle_calls)`` when a checkpoint
            was loaded.
        objective: a name of what the oracle scores, kept in the checkpoint: a checkpoint
            naming another is refused (one naming none, written before this argument, is
            accepted). ``None``: the name of a :class:`~stochgrad.apps.molecules.scoring.
            BatchScore` oracle's function, else none.

    Returns:
        The :class:`AgentResult`.

    Raises:
        ValueError: if agent and prior vocabularies differ.
        stochgrad.checkpoint.CheckpointMismatch: the checkpoint has other settings.
        stochgrad.checkpoint.CheckpointError: the checkpoint is corrupt or foreign (a file
            holding Python objects other than tensors and plain values is never unpickled).
    """
    if agent.vocab.tokens != prior.vocab.tokens:
        raise ValueError("agent and prior must share one vocabulary")
    seed = check_seed("seed", seed)
    voc = agent.vocab
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(agent.parameters(), lr=config.lr)
    prior.eval()
    memory: dict[str, float] = {}
    steps: list[AgentStep] = []
    seconds, samples, stall = 0.0, 0, 0
    if objective is None:
        objective = oracle.score.name if isinstance(oracle.score, BatchScore) else None
    elif not isinstance(objective, str):
        raise TypeError(f"objective must be a str or None, got {type(objective).__name__}")
    settings = {"config": asdict(config), "seed": seed, "budget": oracle.budget}
    settings["objective"] = objective
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists() and not restart:
        state = load_state(path)
        saved = _comparable(state_field(state, "settings", path, dict))
        saved.setdefault("objective", objective)  # a checkpoint from before the name was kept
        check_settings(saved, _comparable(settings), path)
        try:
            agent.load_state_dict(state_field(state, "agent", path, dict))
            opt.load_state_dict(state_field(state, "optimizer", path, dict))
            gen.set_state(state_field(state, "generator", path, torch.Tensor))
            _rng_from_state(rng, state_field(state, "rng", path, dict))
            memory.update(
                zip(
                    map(str, state_field(state, "memory_smiles", path, list)),
                    map(float, state_field(state, "memory_scores", path, list)),
                    strict=True,
                )
            )
            history = list(
                zip(
                    map(str, state_field(state, "history_smiles", path, list)),
                    map(float, state_field(state, "history_scores", path, list)),
                    strict=True,
                )
            )
            cache = dict(
                zip(
                    map(str, state_field(state, "cache_smiles", path, list)),
                    map(float, state_field(state, "cache_scores", path, list)),
                    strict=True,
                )
            )
            steps = [AgentStep(**s) for s in state_field(state, "steps", path, list)]
            seconds = float(state_field(state, "seconds", path, (int, float)))
            samples = int(state_field(state, "samples", path, int))
            stall = int(state_field(state, "stall", path, int))
            unscored = [str(v) for v in state.get("unscored", [])]  # absent before BatchScore
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CheckpointError(
                f"{path}: not a checkpoint of this agent ({first}); delete it, or rerun the "
                "command with --restart, to start afresh"
            ) from None
        oracle.cache.clear()
        oracle.cache.update(cache)
        oracle.history[:] = history
        oracle.unscored[:] = unscored
        if on_resume is not None:
            on_resume(len(steps), oracle.calls)
        if progress is not None and oracle.calls:
            progress(oracle.calls)

    def save() -> None:
        if path is None:
            return
        state = {
            "settings": settings,
            "agent": agent.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "rng": _rng_to_state(rng),
            "memory_smiles": list(memory),
            "memory_scores": list(memory.values()),
            "cache_smiles": list(oracle.cache),
            "cache_scores": list(oracle.cache.values()),
            "history_smiles": [s for s, _ in oracle.history],
            "history_scores": [float(v) for _, v in oracle.history],
            "unscored": list(oracle.unscored),
            "steps": [asdict(s) for s in steps],
            "seconds": seconds,
            "samples": samples,
            "stall": stall,
        }
        save_state(state, path)

    start = time.perf_counter() - seconds
    while not oracle.exhausted and len(steps) < config.max_steps:
        if config.patience and stall >= config.patience:
            break
        before = _top100(oracle)
        calls_before = oracle.calls
        agent.eval()
        with torch.no_grad():
            ids, _ = agent.sample(config.batch_size, generator=gen)
        smiles = voc.decode_batch(ids)
        samples += len(smiles)
        scores = oracle(smiles)
        canon = [canonical(s) for s in smiles]
        rows, batch_scores = ids, torch.as_tensor(scores, dtype=torch.float32)
        if config.replay_batch > 0 and len(memory) >= config.replay_batch:
            names = list(memory)
            w = np.array([memory[s] for s in names])
            pick = rng.choice(len(names), config.replay_batch, replace=False, p=w / w.sum())
            replay = [names[i] for i in pick]
            rep_ids = voc.encode_batch(replay)
            width = max(rows.shape[1], rep_ids.shape[1])
            rows = torch.cat(
                [
                    torch.nn.functional.pad(rows, (0, width - rows.shape[1]), value=voc.pad_index),
                    torch.nn.functional.pad(
                        rep_ids, (0, width - rep_ids.shape[1]), value=voc.pad_index
                    ),
                ]
            )
            batch_scores = torch.cat(
                [batch_scores, torch.tensor([memory[s] for s in replay], dtype=torch.float32)]
            )
        agent.train()
        agent_logp = agent.log_likelihood(rows)
        with torch.no_grad():
            prior_logp = prior.log_likelihood(rows)
        groups = step_groups(rows.shape[0], config.batch_size, config.group_size)
        loss = policy_loss(
            config.method,
            agent_logp,
            prior_logp,
            batch_scores,
            sigma=config.sigma,
            beta=config.beta,
            likelihood_penalty=config.penalty,
            advantage=config.advantage,
            groups=groups,
        )
        variance = snr = None
        if config.diagnose_every and len(steps) % config.diagnose_every == 0:
            variance, snr = _diagnose(config, agent, agent_logp, prior_logp, batch_scores, groups)
        opt.zero_grad()
        loss.backward()
        opt.step()
        _replay_add(memory, voc, canon, scores, config.replay_size)
        top = sorted((v for _, v in oracle.history), reverse=True)[:10]
        valid = float(np.mean([c is not None for c in canon]))
        step = AgentStep(
            calls=oracle.calls,
            mean_score=float(scores.mean()),
            validity=valid,
            top1=top[0] if top else 0.0,
            top10=float(np.mean(top)) if top else 0.0,
            loss=float(loss.detach()),
            grad_variance=variance,
            grad_snr=snr,
        )
        steps.append(step)
        if oracle.calls > 100:
            stall = stall + 1 if _top100(oracle) == before else 0
        seconds = time.perf_counter() - start
        if len(steps) % config.checkpoint_every == 0:
            save()
        if callback is not None:
            callback(step)
        if progress is not None:
            progress(oracle.calls - calls_before)
    seconds = time.perf_counter() - start
    save()
    agent.eval()
    return AgentResult(
        steps=steps,
        history=list(oracle.history),
        budget=oracle.budget,
        seconds=seconds,
        samples=samples,
        config=settings,
        unscored=list(oracle.unscored),
    )
