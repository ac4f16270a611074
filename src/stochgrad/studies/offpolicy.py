r"""The studies of off-policy learning: the learners compared over seeds, and the confounding
demonstration (``stochgrad offpolicy``).

- :func:`learners_study`: on each seed's logged rounds of the
  :class:`~stochgrad.apps.offpolicy.SyntheticBandit` (Open Bandit Pipeline style), every learner
  of :data:`~stochgrad.apps.offpolicy.LEARNERS` learns a policy; its true value on fresh
  contexts is set beside the logging policy's, a uniform policy's, the optimum's and the values
  OBP publishes for its example (:data:`PUBLISHED`). A cell is one (learner, seed).
- :func:`log_learning`: a policy learned from a CSV or Parquet log (contexts, actions, rewards,
  propensities: nothing more), its value and the logging policy's estimated on held-out
  rounds; one cell, its Adam state checkpointed as it goes.
- :func:`confounding_study`: on each seed's data set of the
  :class:`~stochgrad.apps.offpolicy.ConfoundedBandit`, the IPS gradient with the hidden
  confounder in the propensities and without it, against the exact gradient
  (:func:`confounding_demonstration`). A cell is one seed.

All three are grids on :func:`~stochgrad.studies.scaffold.run_grid`: each finished cell is saved
to the checkpoint at once, and every cell is a deterministic function of its key and the
settings, so a resumed study equals an uninterrupted one.

>>> res = learners_study(LearnersConfig(rounds=100, test_rounds=100, iterations=2, seeds=(0,),
...                                     learners=("ips",)))
>>> sorted(res.value)
['ips', 'logging', 'random']
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad.apps.offpolicy import (
    GRADIENT_LEARNERS,
    LEARNERS,
    REWARD_MODELS,
    ConfoundedBandit,
    LearnedPolicy,
    LoggedData,
    SyntheticBandit,
    cross_fitted_rewards,
    fit_reward_model,
    ips_gradient,
    learn_policy,
    policy_probs,
    policy_value,
    read_log,
    split_rounds,
    train_policy,
    true_gradient,
)
from stochgrad.checkpoint import (
    saved_float,
    saved_int,
    saved_tensor,
    saved_value,
)
from stochgrad.studies.scaffold import run_grid

__all__ = [
    "PUBLISHED",
    "ConfoundingConfig",
    "ConfoundingDemo",
    "ConfoundingResult",
    "LearnerRun",
    "LearnersConfig",
    "LearnersResult",
    "LogLearningConfig",
    "LogLearningResult",
    "LogLearningRun",
    "confounding_demonstration",
    "confounding_study",
    "learner_run",
    "learners_study",
    "log_learning",
]

#: Published values of OBP's off-policy learning example (10k train / 10k test rounds).
PUBLISHED = {"random": 0.500, "ips (OBP IPWLearner)": 0.782, "OBP NNPolicyLearner (IPW)": 0.736}

#: The reference policies every seed also gets (besides the learners).
REFERENCE_POLICIES = ("logging", "random")

_DTYPE = torch.float64


def _seeds(name: str, seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(check_seed(name, s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"{name} must be distinct seeds, at least one, got {list(seeds)}")
    return seeds


# ---------------------------------------------------------------------------------------------
# the learners compared over seeds
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LearnersConfig:
    """Settings of :func:`learners_study`.

    Attributes:
        rounds: logged training rounds per seed (OBP's example: 10 000).
        test_rounds: fresh contexts on which true values are computed.
        iterations, lr: Adam steps and step size of the policy-gradient learners.
        folds: cross-fitting folds of the DR reward model.
        C: inverse L2 penalty of the reward model.
        n_actions, dim_context, beta, random_state: the
            :class:`~stochgrad.apps.offpolicy.SyntheticBandit`.
        seeds: the seeds (one logged data set each).
        learners: a subset of :data:`~stochgrad.apps.offpolicy.LEARNERS`.

    A checkpoint must share every setting but ``seeds`` and ``learners`` (:meth:`settings`):
    adding seeds or learners reuses the finished cells.
    """

    rounds: int = 10_000
    test_rounds: int = 10_000
    iterations: int = 300
    lr: float = 0.05
    folds: int = 2
    C: float = 1.0
    n_actions: int = 10
    dim_context: int = 5
    beta: float = -3.0
    random_state: int = 12345
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    learners: tuple[str, ...] = LEARNERS

    def __post_init__(self) -> None:
        check_int("rounds", self.rounds, minimum=2)
        check_int("test_rounds", self.test_rounds, minimum=1)
        check_int("iterations", self.iterations, minimum=1)
        check_float("lr", self.lr, minimum=0.0, open_min=True)
        check_int("folds", self.folds, minimum=2)
        check_float("C", self.C, minimum=0.0, open_min=True)
        check_int("n_actions", self.n_actions, minimum=2)
        check_int("dim_context", self.dim_context, minimum=1)
        check_float("beta", self.beta)
        check_int("random_state", self.random_state, minimum=0, maximum=2**32 - 1)
        object.__setattr__(self, "seeds", _seeds("seeds", self.seeds))
        learners = tuple(self.learners) if not isinstance(self.learners, str) else ()
        if not learners or any(k not in LEARNERS for k in learners):
            raise ValueError(
                f"learners must be a non-empty subset of {LEARNERS}, got {list(self.learners)}"
            )
        object.__setattr__(self, "learners", tuple(dict.fromkeys(learners)))

    def settings(self) -> dict[str, Any]:
        """What a checkpoint must share with this run: every setting but the seeds and learners."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _GRID}

    @property
    def policies(self) -> tuple[str, ...]:
        """The reference policies and the learners, in the order of the cells."""
        return (*REFERENCE_POLICIES, *self.learners)


_GRID = ("seeds", "learners")


@dataclass
class LearnerRun:
    """True values of one policy for one seed.

    Attributes:
        key: the learner (a :data:`~stochgrad.apps.offpolicy.LEARNERS` entry) or a reference
            policy (``"logging"``, ``"random"``).
        seed: the seed.
        value: the true value of the learned (softmax) policy on the test contexts.
        greedy_value: that of acting on its most probable action.
        seconds: wall time of the run.
    """

    key: str
    seed: int
    value: float = float("nan")
    greedy_value: float = float("nan")
    seconds: float = 0.0

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LearnerRun:
        """Inverse of :meth:`to_state`; ``ValueError``/``TypeError`` naming a field that does
        not hold what :meth:`to_state` writes."""
        return cls(
            key=check_choice("key", saved_value(state, "key"), REFERENCE_POLICIES + LEARNERS),
            seed=check_seed("seed", saved_value(state, "seed")),
            value=saved_float(state, "value"),
            greedy_value=saved_float(state, "greedy_value"),
            seconds=saved_float(state, "seconds", minimum=0.0),
        )


def _check_key(key: tuple, saved: tuple) -> None:
    """Refuse a saved cell that is not the one its key stands for."""
    if tuple(saved) != tuple(key):
        raise ValueError(f"it holds the cell {'/'.join(map(str, saved))}")


def _seed_data(config: LearnersConfig, seed: int) -> tuple[SyntheticBandit, LoggedData, Tensor]:
    env = SyntheticBandit(config.n_actions, config.dim_context, config.beta, config.random_state)
    g = np.random.default_rng([seed, 0])
    train = env.sample(config.rounds, generator=g)
    test_x = env.sample_contexts(config.test_rounds, generator=np.random.default_rng([seed, 1]))
    return env, train, test_x


def learner_run(key: str, seed: int, config: LearnersConfig) -> LearnerRun:
    """Learn with ``key`` (a learner, or ``"logging"``/``"random"``) on seed ``seed``'s logged
    data; return the true values of the policy on the test contexts.

    ``value`` is the learned (softmax) policy's; ``greedy_value`` that of acting on its most
    probable action (for ``"dm"``, both are the greedy policy on :math:`\\hat q`).

    >>> r = learner_run("random", 0, LearnersConfig(rounds=50, test_rounds=50))
    >>> 0 < r.value < 1
    True
    """
    start = time.perf_counter()
    env, train, test_x = _seed_data(config, seed)
    q = env.expected_reward(test_x)
    A = config.n_actions
    if key == "logging":
        probs = env.behavior_policy(test_x)
        greedy = probs
    elif key == "random":
        probs = torch.full_like(q, 1.0 / A)
        greedy = probs
    elif key == "dm":
        model = fit_reward_model(train.contexts, train.actions, train.rewards, A, C=config.C)
        probs = torch.nn.functional.one_hot(model.predict(test_x).argmax(-1), A).to(_DTYPE)
        greedy = probs
    elif key in ("ips", "snips", "dr"):
        q_hat = None
        if key == "dr":
            q_hat = cross_fitted_rewards(
                train, config.folds, generator=np.random.default_rng([seed, 2]), C=config.C
            )
        theta = train_policy(
            train, key, iterations=config.iterations, lr=config.lr, reward_estimates=q_hat
        )
        probs = policy_probs(theta, test_x)
        greedy = torch.nn.functional.one_hot(probs.argmax(-1), A).to(_DTYPE)
    else:
        raise ValueError(f"key must be one of {REFERENCE_POLICIES + LEARNERS}, got {key!r}")
    return LearnerRun(
        key,
        seed,
        value=policy_value(probs, q),
        greedy_value=policy_value(greedy, q),
        seconds=time.perf_counter() - start,
    )


@dataclass
class LearnersResult:
    """The outcome of :func:`learners_study`.

    Attributes:
        config: the settings.
        seeds: the seeds.
        keys: the policies (reference policies first, then the learners).
        value: policy -> true value per seed.
        greedy_value: policy -> true value of its greedy version per seed.
        optimal_value: per seed, the value of acting greedily on the true expected reward.
        runs: ``(policy, seed) -> LearnerRun``.
        resumed: cells loaded from a checkpoint.
        seconds: wall time of the work done now.
    """

    config: LearnersConfig
    seeds: list[int]
    keys: list[str]
    value: dict[str, list[float]]
    greedy_value: dict[str, list[float]]
    optimal_value: list[float]
    runs: dict[tuple[str, int], LearnerRun]
    resumed: int = 0
    seconds: float = 0.0


def learners_study(
    config: LearnersConfig = LearnersConfig(),
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
    on_result: Callable[[tuple[str, int], LearnerRun], None] | None = None,
) -> LearnersResult:
    """True values of the learned policies, the logging policy and a uniform one, per seed.

    Args:
        config: the settings.
        checkpoint: a ``.pt`` file saving each finished (policy, seed) cell (``None``: none).
        resume: reuse the finished cells of ``checkpoint``.
        progress: advanced by one per cell.
        on_resume: called with the numbers of finished and partly run cells found in
            ``checkpoint``, before any work, when there are any.
        on_result: called with each cell's key and run as it finishes (not resumed ones).

    Returns:
        :class:`LearnersResult`.

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: ``checkpoint`` was made with other settings.
    """
    start = time.perf_counter()
    keys = [(k, s) for s in config.seeds for k in config.policies]
    out = run_grid(
        keys,
        lambda key, state, save: learner_run(key[0], key[1], config),
        config=config.settings(),
        result_type=LearnerRun,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        on_result=on_result,
        on_resume=on_resume,
        check_result=lambda key, run: _check_key(key, (run.key, run.seed)),
    )
    runs = out.results
    optimal = []
    for seed in config.seeds:
        env, _, test_x = _seed_data(config, seed)
        optimal.append(float(env.expected_reward(test_x).max(-1).values.mean()))
    policies = list(config.policies)
    return LearnersResult(
        config=config,
        seeds=list(config.seeds),
        keys=policies,
        value={k: [runs[(k, s)].value for s in config.seeds] for k in policies},
        greedy_value={k: [runs[(k, s)].greedy_value for s in config.seeds] for k in policies},
        optimal_value=optimal,
        runs=runs,
        resumed=out.resumed,
        seconds=time.perf_counter() - start,
    )


def run_study(
    config: LearnersConfig | None = None,
    seeds: Sequence[int] | int = 5,
    learners: Sequence[str] = LEARNERS,
    *,
    out_dir: str | Path | None = None,
    callback: Callable[[LearnerRun], None] | None = None,
    restart: bool = False,
) -> LearnersResult:
    """:func:`learners_study` with the signature of earlier releases (deprecated).

    ``seeds`` (a list, or a number ``n`` for ``0..n-1``) and ``learners`` replace the config's;
    the checkpoint is ``out_dir/offpolicy_checkpoint.pt``; ``callback`` gets each newly
    finished run; ``restart`` starts the checkpoint afresh.
    """
    config = LearnersConfig() if config is None else config
    if isinstance(seeds, (int, np.integer)):
        seeds = range(check_int("seeds", seeds, minimum=1))
    config = replace(config, seeds=tuple(int(s) for s in seeds), learners=tuple(learners))
    return learners_study(
        config,
        checkpoint=None if out_dir is None else Path(out_dir) / "offpolicy_checkpoint.pt",
        resume=not restart,
        on_result=None if callback is None else (lambda key, run: callback(run)),
    )


# ---------------------------------------------------------------------------------------------
# confounding
# ---------------------------------------------------------------------------------------------
_CASES = ("observed", "hidden")


@dataclass(frozen=True)
class ConfoundingDemo:
    """The IPS gradient under a hidden confounder, with and without it in the propensities.

    ``observed`` uses :math:`\\pi_0(a \\mid x, u)`, ``hidden`` :math:`\\pi_0(a \\mid x)`. Arrays
    are ``[A, d + 1]``; ``*_z`` are (estimate - truth) / stderr per parameter; the ``*_value``
    fields are the IPS value estimates and the true value of the policy. Items can also be read
    as from a dict (``demo["hidden_z"]``, ``demo["max_abs_z"]["hidden"]``), as the dict that
    earlier releases returned.
    """

    rounds: int
    seed: int
    action_strength: float
    reward_strength: float
    true: np.ndarray
    true_value: float
    observed: np.ndarray
    observed_stderr: np.ndarray
    observed_z: np.ndarray
    observed_value: float
    observed_value_stderr: float
    hidden: np.ndarray
    hidden_stderr: np.ndarray
    hidden_z: np.ndarray
    hidden_value: float
    hidden_value_stderr: float

    @property
    def max_abs_z(self) -> dict[str, float]:
        """Max |z| over the parameters, per case."""
        return {c: float(np.abs(getattr(self, f"{c}_z")).max()) for c in _CASES}

    def __getitem__(self, key: str) -> Any:
        if key == "max_abs_z" or key in {f.name for f in fields(self)}:
            return getattr(self, key)
        raise KeyError(key)

    def to_state(self) -> dict[str, Any]:
        return {
            k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ConfoundingDemo:
        """Inverse of :meth:`to_state`; ``ValueError``/``TypeError`` naming a field that does
        not hold what :meth:`to_state` writes (every array of ``true``'s ``[A, d + 1]`` shape,
        finite; :func:`confounding_study` also checks it against the bandit)."""
        true = saved_tensor(state, "true", shape=(None, None), dtype=_DTYPE, finite=True)
        shape = tuple(true.shape)
        cases: dict[str, Any] = {}
        for case in _CASES:
            for suffix, minimum in (("", None), ("_stderr", 0.0), ("_z", None)):
                name = f"{case}{suffix}"
                cases[name] = saved_tensor(
                    state, name, shape=shape, dtype=_DTYPE, finite=True, minimum=minimum
                ).numpy()
            cases[f"{case}_value"] = saved_float(state, f"{case}_value")
            cases[f"{case}_value_stderr"] = saved_float(state, f"{case}_value_stderr", minimum=0.0)
        return cls(
            rounds=saved_int(state, "rounds", minimum=2),
            seed=check_seed("seed", saved_value(state, "seed")),
            action_strength=saved_float(state, "action_strength"),
            reward_strength=saved_float(state, "reward_strength"),
            true=true.numpy(),
            true_value=saved_float(state, "true_value"),
            **cases,
        )

    def check(self, seed: int, config: ConfoundingConfig, env: ConfoundedBandit) -> None:
        """Raise ``ValueError`` unless this is the demonstration of ``seed`` under ``config``
        on ``env``."""
        saved = (self.rounds, self.seed, self.action_strength, self.reward_strength)
        expected = (config.rounds, seed, config.action_strength, config.reward_strength)
        if saved != expected:
            raise ValueError(f"it holds rounds, seed and strengths {saved}, not {expected}")
        shape = (env.base.n_actions, env.base.dim_context + 1)
        if self.true.shape != shape:
            raise ValueError(f"its arrays have shape {list(self.true.shape)}, not {list(shape)}")


def confounding_demonstration(
    rounds: int = 200_000,
    *,
    seed: int = 0,
    env: ConfoundedBandit | None = None,
    theta: Tensor | None = None,
) -> ConfoundingDemo:
    r"""IPS gradient with and without the confounder in the propensities, against the truth.

    One logged data set of ``rounds`` rounds (drawn with ``numpy.random.default_rng([seed,
    3])``); the policy :math:`\theta` (default: :math:`N(0, 0.5^2)` entries seeded with
    ``seed``) is fixed. The truth is :func:`~stochgrad.apps.offpolicy.true_gradient` with
    :math:`\bar q` on the logged contexts (exact: ``u`` is summed out).

    >>> demo = confounding_demonstration(2000, seed=0)
    >>> sorted(demo.max_abs_z)
    ['hidden', 'observed']
    """
    rounds = check_int("rounds", rounds, minimum=2)
    seed = check_seed("seed", seed)
    env = ConfoundedBandit() if env is None else env
    A, d = env.base.n_actions, env.base.dim_context
    if theta is None:
        gen = torch.Generator().manual_seed(seed)
        theta = 0.5 * torch.randn(A, d + 1, generator=gen, dtype=_DTYPE)
    data = env.sample(rounds, generator=np.random.default_rng([seed, 3]))
    lg = data.logged
    truth = true_gradient(theta, lg.contexts, lg.expected_rewards)
    true_value = policy_value(policy_probs(theta, lg.contexts), lg.expected_rewards)
    cases: dict[str, Any] = {}
    for name, prop in zip(_CASES, (data.propensities_given_u, lg.propensities), strict=True):
        est = ips_gradient(theta, lg.contexts, lg.actions, lg.rewards, prop)
        vals = est.info["weights"] * lg.rewards  # the weights the gradient used
        cases[name] = est.grad.numpy()
        cases[f"{name}_stderr"] = est.stderr.numpy()
        cases[f"{name}_z"] = ((est.grad - truth) / est.stderr).numpy()
        cases[f"{name}_value"] = float(vals.mean())
        cases[f"{name}_value_stderr"] = float(vals.std() / math.sqrt(rounds))
    return ConfoundingDemo(
        rounds=rounds,
        seed=seed,
        action_strength=env.action_strength,
        reward_strength=env.reward_strength,
        true=truth.numpy(),
        true_value=true_value,
        **cases,
    )


@dataclass(frozen=True)
class ConfoundingConfig:
    """Settings of :func:`confounding_study`.

    Attributes:
        rounds: logged rounds per seed.
        seeds: the seeds (one data set and one policy each); a checkpoint made with other
            seeds is extended, not refused.
        action_strength: :math:`\\kappa`, the confounder's pull on the logged action.
        reward_strength: :math:`\\lambda`, its pull on the reward.
    """

    rounds: int = 200_000
    seeds: tuple[int, ...] = (0,)
    action_strength: float = 1.5
    reward_strength: float = 1.5

    def __post_init__(self) -> None:
        check_int("rounds", self.rounds, minimum=2)
        object.__setattr__(self, "seeds", _seeds("seeds", self.seeds))
        check_float("action_strength", self.action_strength)
        check_float("reward_strength", self.reward_strength)

    def settings(self) -> dict[str, Any]:
        """What a checkpoint must share with this run: every setting but the seeds."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "seeds"}


@dataclass
class ConfoundingResult:
    """The outcome of :func:`confounding_study`: one :class:`ConfoundingDemo` per seed."""

    config: ConfoundingConfig
    demos: list[ConfoundingDemo]
    resumed: int = 0


def confounding_study(
    config: ConfoundingConfig = ConfoundingConfig(),
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> ConfoundingResult:
    """:func:`confounding_demonstration` on every seed, each saved to ``checkpoint`` at once.

    Args:
        config: the settings.
        checkpoint: a ``.pt`` file (``None``: nothing saved).
        resume: reuse the finished seeds of ``checkpoint``.
        progress: advanced by one per seed.
        on_resume: called with the numbers of finished and partly run cells found in
            ``checkpoint``, before any work, when there are any.

    Returns:
        :class:`ConfoundingResult`.

    Examples:
        >>> res = confounding_study(ConfoundingConfig(rounds=2000, seeds=(0, 1)))
        >>> [d.seed for d in res.demos]
        [0, 1]
    """
    env = ConfoundedBandit(SyntheticBandit(), config.action_strength, config.reward_strength)
    keys = [(s,) for s in config.seeds]
    out = run_grid(
        keys,
        lambda key, state, save: confounding_demonstration(config.rounds, seed=key[0], env=env),
        config=config.settings(),
        result_type=ConfoundingDemo,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        on_resume=on_resume,
        check_result=lambda key, demo: demo.check(key[0], config, env),
    )
    return ConfoundingResult(config, [out.results[k] for k in keys], out.resumed)


# ---------------------------------------------------------------------------------------------
# learning from a log file
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogLearningConfig:
    """Settings of :func:`log_learning`: the file, how to read it, and how to learn.

    Attributes:
        log: the CSV or Parquet log (:func:`~stochgrad.apps.offpolicy.read_log`).
        estimator: ``"ips"``, ``"snips"`` or ``"dr"``.
        context_cols: how to read the log (as in ``read_log``); likewise ``context_prefix``,
            ``action_col``, ``reward_col``, ``propensity_col``, ``behavior_prefix``,
            ``expected_prefix`` and ``num_actions``.
        reward_model: how to learn (as in :func:`~stochgrad.apps.offpolicy.learn_policy`);
            likewise ``holdout``, ``iterations``, ``lr``, ``folds``, ``C`` and ``seed``.

    A checkpoint must share every setting and the file's content (its SHA-256), not its path
    (:meth:`settings`).
    """

    log: str
    estimator: str = "snips"
    context_cols: tuple[str, ...] | None = None
    context_prefix: str = "x_"
    action_col: str = "action"
    reward_col: str = "reward"
    propensity_col: str = "propensity"
    behavior_prefix: str | None = "pi0_"
    expected_prefix: str | None = None
    num_actions: int | None = None
    reward_model: str = "cross-fit"
    holdout: float = 0.2
    iterations: int = 300
    lr: float = 0.05
    folds: int = 2
    C: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "log", str(self.log))
        check_choice("estimator", self.estimator, GRADIENT_LEARNERS)
        check_choice("reward_model", self.reward_model, REWARD_MODELS)
        check_float("holdout", self.holdout, minimum=0.0, maximum=1.0, open_max=True)
        check_int("iterations", self.iterations, minimum=1)
        check_float("lr", self.lr, minimum=0.0, open_min=True)
        check_int("folds", self.folds, minimum=2)
        check_float("C", self.C, minimum=0.0, open_min=True)
        check_seed("seed", self.seed)
        if self.num_actions is not None:
            check_int("num_actions", self.num_actions, minimum=2)
        if self.context_cols is not None:
            object.__setattr__(self, "context_cols", tuple(str(c) for c in self.context_cols))

    def read(self) -> LoggedData:
        """The log, read and checked."""
        return read_log(
            self.log,
            context_cols=self.context_cols,
            context_prefix=self.context_prefix,
            action_col=self.action_col,
            reward_col=self.reward_col,
            propensity_col=self.propensity_col,
            behavior_prefix=self.behavior_prefix,
            expected_prefix=self.expected_prefix,
            num_actions=self.num_actions,
        )

    def settings(self, digest: str) -> dict[str, Any]:
        """What a checkpoint must share with this run: every setting but the file's path, and
        the file's SHA-256 ``digest``."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "log"}
        return {"log_sha256": digest, **out}


def _file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class LogLearningRun:
    """The outcome of learning from a log: the policy and its estimated value (plain numbers).

    Attributes:
        theta: ``[A, d + 1]`` the learned policy's parameters.
        values: estimator -> ``{"value", "stderr", "max_weight", "effective_rounds"}`` of the
            learned policy on the evaluation rounds.
        logging_value, logging_stderr: the logging policy's (mean logged reward) there.
        gain, gain_stderr: learned (by the learning estimator) minus logging, paired.
        train_rounds, eval_rounds, in_sample: see
            :class:`~stochgrad.apps.offpolicy.LearnedPolicy`.
        true_value, true_logging_value: true values when the log carries them (else NaN).
        seconds: wall time of the learning.
    """

    theta: Tensor
    values: dict[str, dict[str, float]]
    logging_value: float
    logging_stderr: float
    gain: float
    gain_stderr: float
    train_rounds: int
    eval_rounds: int
    in_sample: bool
    true_value: float = float("nan")
    true_logging_value: float = float("nan")
    seconds: float = 0.0

    @classmethod
    def from_learned(cls, res: LearnedPolicy, seconds: float = 0.0) -> LogLearningRun:
        values = {
            k: {
                "value": v.value,
                "stderr": v.stderr,
                "max_weight": v.max_weight,
                "effective_rounds": v.effective_rounds,
            }
            for k, v in res.values.items()
        }
        gain = res.gain
        nan = float("nan")
        return cls(
            theta=res.theta,
            values=values,
            logging_value=res.logging_value.value,
            logging_stderr=res.logging_value.stderr,
            gain=gain.value,
            gain_stderr=gain.stderr,
            train_rounds=res.train_rounds,
            eval_rounds=res.eval_rounds,
            in_sample=res.in_sample,
            true_value=nan if res.true_value is None else res.true_value,
            true_logging_value=nan if res.true_logging_value is None else res.true_logging_value,
            seconds=seconds,
        )

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LogLearningRun:
        """Inverse of :meth:`to_state`; ``ValueError``/``TypeError`` naming a field that does
        not hold what :meth:`to_state` writes (:func:`log_learning` also checks it against the
        log)."""
        values = {}
        for name, value in saved_value(state, "values", dict).items():
            check_choice("values", name, GRADIENT_LEARNERS)
            try:
                values[name] = {
                    "value": saved_float(value, "value"),
                    "stderr": saved_float(value, "stderr", minimum=0.0),
                    "max_weight": saved_float(value, "max_weight", minimum=0.0),
                    "effective_rounds": saved_float(
                        value, "effective_rounds", finite=False, minimum=0.0
                    ),
                }
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"values[{name!r}]: {exc}") from None
        return cls(
            theta=saved_tensor(state, "theta", shape=(None, None), dtype=_DTYPE, finite=True),
            values=values,
            logging_value=saved_float(state, "logging_value"),
            logging_stderr=saved_float(state, "logging_stderr", minimum=0.0),
            gain=saved_float(state, "gain"),
            gain_stderr=saved_float(state, "gain_stderr", minimum=0.0),
            train_rounds=saved_int(state, "train_rounds", minimum=2),
            eval_rounds=saved_int(state, "eval_rounds", minimum=2),
            in_sample=saved_value(state, "in_sample", bool),
            true_value=_true_value(state, "true_value"),
            true_logging_value=_true_value(state, "true_logging_value"),
            seconds=saved_float(state, "seconds", minimum=0.0),
        )

    def check(self, config: LogLearningConfig, data: LoggedData) -> None:
        """Raise ``ValueError`` unless this run can be one learned from ``data`` under
        ``config``."""
        shape = (data.num_actions, data.contexts.shape[1] + 1)
        if tuple(self.theta.shape) != shape:
            raise ValueError(f"theta has shape {list(self.theta.shape)}, not {list(shape)}")
        n = len(data)
        train, evaluate = split_rounds(n, config.holdout, config.seed)
        rounds = (len(train), len(evaluate))
        if (self.train_rounds, self.eval_rounds) != rounds or self.in_sample != (
            config.holdout == 0
        ):
            raise ValueError(
                f"it learned from {self.train_rounds} and evaluated on {self.eval_rounds} of "
                f"the log's {n} rounds (holdout {config.holdout}: {rounds[0]} and {rounds[1]})"
            )
        if config.estimator not in self.values:
            raise ValueError(f"values has no {config.estimator!r} entry")


def _true_value(state: dict[str, Any], key: str) -> float:
    """A true value: finite, or NaN when the log does not carry the true expected rewards."""
    value = saved_float(state, key, finite=False)
    if math.isinf(value):
        raise ValueError(f"{key} must be finite or NaN, got {value}")
    return value


def _check_adam_state(state: Any, config: LogLearningConfig, data: LoggedData) -> None:
    """Raise ``ValueError``/``TypeError`` unless ``state`` is a mid-run Adam state of
    :func:`~stochgrad.apps.offpolicy.train_policy` on ``data`` under ``config``."""
    shape = (data.num_actions, data.contexts.shape[1] + 1)
    for name in ("value", "m", "v"):
        saved_tensor(
            state,
            name,
            shape=shape,
            dtype=_DTYPE,
            finite=True,
            minimum=0.0 if name == "v" else None,
        )
    saved_int(state, "k", minimum=1, maximum=config.iterations - 1)


@dataclass
class LogLearningResult:
    """What :func:`log_learning` returns.

    Attributes:
        config: the settings.
        run: the learned policy and its values.
        rounds: the log's rounds; num_actions: its actions.
        context_columns: the context features, in the order of ``theta``'s columns 1..d.
        has_behavior: whether the log holds the logging policy's probabilities of every action.
        log_sha256: the file's digest.
        resumed: whether the run was loaded finished from the checkpoint.
    """

    config: LogLearningConfig
    run: LogLearningRun
    rounds: int
    num_actions: int
    context_columns: list[str]
    has_behavior: bool
    log_sha256: str
    resumed: bool = False


def log_learning(
    config: LogLearningConfig,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[str], None] | None = None,
) -> LogLearningResult:
    """Read a log and :func:`~stochgrad.apps.offpolicy.learn_policy` from it, checkpointed.

    The Adam state is saved every 50 steps and the finished run at the end, so an interrupted
    run continues where it stopped and ends with the same numbers as an uninterrupted one.

    Args:
        config: the settings.
        checkpoint: a ``.pt`` file (``None``: nothing saved).
        resume: continue from ``checkpoint``.
        progress: advanced by one per Adam step.
        on_resume: called with what was found in ``checkpoint`` (``"finished"`` or ``"Adam step
            k of n"``), before that work is reused.

    Returns:
        :class:`LogLearningResult`.

    Raises:
        OSError, ImportError, ValueError: see :func:`~stochgrad.apps.offpolicy.read_log`.
        stochgrad.checkpoint.CheckpointMismatch: ``checkpoint`` was made with other settings
            or another file's content.

    >>> import csv, os, tempfile
    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit, log_columns
    >>> cols = log_columns(SyntheticBandit().sample(200, generator=np.random.default_rng(0)))
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> with open(path, "w", newline="") as fh:
    ...     w = csv.writer(fh); _ = w.writerow(cols); w.writerows(zip(*cols.values()))
    >>> res = log_learning(LogLearningConfig(path, "ips", reward_model="none", iterations=3))
    >>> res.rounds, res.num_actions, res.run.eval_rounds
    (200, 10, 40)
    """
    data = config.read()
    digest = _file_digest(config.log)

    def cell(key: tuple, state: dict[str, Any] | None, save: Callable) -> LogLearningRun:
        if state is not None and on_resume is not None:
            on_resume(f"Adam step {int(state.get('k', 0))} of {config.iterations}")
        start = time.perf_counter()
        res = learn_policy(
            data,
            config.estimator,
            reward_model=config.reward_model,
            holdout=config.holdout,
            iterations=config.iterations,
            lr=config.lr,
            folds=config.folds,
            C=config.C,
            seed=config.seed,
            progress=progress,
            state=state,
            save=save,
        )
        return LogLearningRun.from_learned(res, time.perf_counter() - start)

    grid = run_grid(
        [("learn", config.seed)],
        cell,
        config=config.settings(digest),
        result_type=LogLearningRun,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        cell_units=lambda key: config.iterations,  # learn_policy advances the bar itself
        on_resume=lambda done, partial: on_resume("finished") if done and on_resume else None,
        check_result=lambda key, run: run.check(config, data),
        check_state=lambda key, state: _check_adam_state(state, config, data),
    )
    return LogLearningResult(
        config=config,
        run=grid.results[("learn", config.seed)],
        rounds=len(data),
        num_actions=data.num_actions,
        context_columns=list(data.context_names),
        has_behavior=data.behavior is not None,
        log_sha256=digest,
        resumed=grid.resumed > 0,
    )
