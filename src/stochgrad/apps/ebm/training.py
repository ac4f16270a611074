r"""Training an RBM by SGD on the two-phase gradient: CD-k or persistent CD, checkpointed per epoch.

Each update on a minibatch :math:`B` (rows in a seeded random order each epoch):

.. math::

    g_W = \tfrac1{|B|}\textstyle\sum_{v \in B} v\,\sigma(c + W^\top v)^\top
          - \tfrac1M \sum_{m} v'_m\,\sigma(c + W^\top v'_m)^\top - \lambda W, \quad
    \Delta \leftarrow \mu \Delta + \eta_e\, g, \quad \theta \leftarrow \theta + \Delta,

with :math:`v'_m` after ``k`` Gibbs sweeps from the minibatch (CD, Hinton 2002) or from
persistent chains (PCD, Tieleman 2008; "stochastic maximum likelihood", Younes 1989). The step's
gradient :math:`g` is :func:`~stochgrad.apps.ebm.phases.two_phase_gradient`: both phases by
Fisher's identity in the core (:func:`stochgrad.fisher.fisher_gradient` with the hidden units'
posterior marginals, at the minibatch and at the chain states; biased, as the chains are not at
the model's distribution), its mean only.

References:
    Hinton (2002), Neural Computation 14; Tieleman (ICML 2008); Younes (1989), Probability
    Theory and Related Fields 82; Hinton (2010), "A practical guide to training restricted
    Boltzmann machines", UTML TR 2010-003.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_probability,
    check_seed,
)
from stochgrad.apps.ebm.exact import MAX_ENUMERATE, _check_enumerable, log_partition
from stochgrad.apps.ebm.model import DTYPE, RBM, _check_binary, free_energy
from stochgrad.apps.ebm.phases import _step
from stochgrad.apps.ebm.sampling import negative_samples
from stochgrad.checkpoint import check_settings, field, load_state, save_state

__all__ = [
    "DEFAULT_CHAINS",
    "TRAIN_METHODS",
    "TrainConfig",
    "TrainResult",
    "fit_sklearn",
    "train_rbm",
]

#: Persistent chains of PCD unless configured.
DEFAULT_CHAINS = 100
#: The training methods: contrastive divergence and persistent contrastive divergence.
TRAIN_METHODS = ("cd", "pcd")


@dataclass(frozen=True)
class TrainConfig:
    r"""Settings of :func:`train_rbm`.

    Attributes:
        num_hidden: hidden units H.
        epochs: passes over the training set.
        method: ``"cd"`` (chains restarted at the minibatch) or ``"pcd"`` (persistent chains).
        k: Gibbs sweeps per update.
        lr: learning rate of the first epoch (the step on the minibatch-mean gradient, as in
            scikit-learn).
        lr_final_fraction: the last epoch's rate as a fraction of ``lr``, reached by a linear
            decay per epoch (1: constant rate).
        batch_size: training rows per update.
        num_chains: PCD chains (``None``: :data:`DEFAULT_CHAINS`; scikit-learn uses
            ``batch_size``); with ``"cd"`` it must be ``None``.
        momentum: classical momentum in [0, 1).
        weight_decay: L2 penalty on ``W`` (added as ``-weight_decay * W`` to the gradient).
        init_std: standard deviation of the initial weights.
        data_visible_bias: initialise ``b`` at the data's log-odds (otherwise 0).
        seed: seed of the initial weights, the minibatch order and all Gibbs sampling.

    The defaults were chosen on the digits (16 hidden units, 20 epochs, lr 0.06, batch 10, by the
    exact test log-likelihood; see ``docs/rbm.md``): 100 persistent chains, weights
    :math:`\mathcal N(0, 0.1^2)`, visible biases at the data's log-odds, momentum 0.7, rate
    decaying linearly to a tenth.
    """

    num_hidden: int = 16
    epochs: int = 20
    method: str = "pcd"
    k: int = 1
    lr: float = 0.06
    lr_final_fraction: float = 0.1
    batch_size: int = 10
    num_chains: int | None = None
    momentum: float = 0.7
    weight_decay: float = 0.0
    init_std: float = 0.1
    data_visible_bias: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("num_hidden", self.num_hidden, minimum=1)
        check_int("epochs", self.epochs, minimum=1)
        check_int("k", self.k, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_seed("seed", self.seed)
        check_bool("data_visible_bias", self.data_visible_bias)
        check_choice("method", self.method, TRAIN_METHODS)
        if self.num_chains is not None:
            check_int("num_chains", self.num_chains, minimum=1)
            if self.method == "cd":
                raise ValueError("num_chains applies to method='pcd' only; leave it None for 'cd'")
        check_float("lr", self.lr, minimum=0.0, open_min=True)
        check_float("init_std", self.init_std, minimum=0.0, open_min=True)
        check_probability("lr_final_fraction", self.lr_final_fraction)
        check_float("momentum", self.momentum, minimum=0.0, maximum=1.0, open_max=True)
        check_float("weight_decay", self.weight_decay, minimum=0.0)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based): linear from ``lr`` to
        ``lr * lr_final_fraction`` at the last epoch.

        >>> TrainConfig(epochs=3, lr=0.1, lr_final_fraction=0.5).lr_at(2)
        0.05
        """
        if self.epochs == 1:
            return self.lr
        return self.lr * (1.0 + (self.lr_final_fraction - 1.0) * epoch / (self.epochs - 1))


@dataclass
class TrainResult:
    """Outcome of :func:`train_rbm`.

    Attributes:
        rbm: the trained model.
        train_ll: exact mean train log-likelihood (nats per row) after each epoch, index 0 the
            initial model.
        test_ll: the same on the test rows (empty without test data).
        epochs_resumed: epochs loaded from a checkpoint instead of trained.
        seconds: wall time of this call.
    """

    rbm: RBM
    train_ll: list[float]
    test_ll: list[float]
    epochs_resumed: int = 0
    seconds: float = 0.0


def _mean_ll(rbm: RBM, data: Tensor | None, log_z: Tensor) -> float:
    if data is None:
        return float("nan")
    return float((-free_energy(rbm, data) - log_z).mean())


def _settings(config: TrainConfig, train: Tensor, test: Tensor | None) -> dict[str, Any]:
    """What a checkpoint must agree on: the configuration and the data it was trained on."""
    return {
        **asdict(config),
        "train_data": float(
            (train * torch.arange(1, train.numel() + 1).reshape(train.shape)).sum()
        ),
        "test_rows": 0 if test is None else int(test.shape[0]),
    }


def train_rbm(
    train: Tensor,
    config: TrainConfig | None = None,
    *,
    test: Tensor | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    r"""Train an RBM by SGD on the positive-minus-negative-phase gradient (CD-k or PCD).

    The update is in the module docstring. After every epoch the exact mean log-likelihood of
    the training (and test) rows is recorded (:func:`~stochgrad.apps.ebm.exact.log_likelihood`,
    so :math:`H \le 16`) and, when ``checkpoint`` is given, everything (parameters, velocities,
    chains, the generator's state, the curves) is saved atomically
    (:func:`stochgrad.checkpoint.save_state`): a run interrupted at any point and started again
    with the same arguments continues from the last finished epoch and ends with the same
    numbers as an uninterrupted one.

    Args:
        train: [N, V] binary training rows.
        config: :class:`TrainConfig` (default settings if ``None``).
        test: [M, V] binary rows evaluated after each epoch.
        checkpoint: a ``.pt`` file to resume from and save to.
        resume: continue from ``checkpoint`` when it exists (otherwise it is overwritten).
        progress: ``progress(n)``: ``n`` more epochs finished, called after each epoch's save
            (resumed epochs are reported at once, at the start).
        on_resume: called with the number of epochs found in the checkpoint, before any work.
        callback: called after each epoch with ``(epoch, {"train_ll": ..., "test_ll": ...})``
            (epochs are 1-based; resumed epochs are reported once, at the start).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: bad data, or training that diverged (non-finite parameters or
            log-likelihood: lower the rate).
        stochgrad.checkpoint.CheckpointMismatch: a checkpoint written with other settings or
            data.
        stochgrad.checkpoint.CheckpointError: a corrupt or foreign checkpoint.

    >>> from stochgrad.apps.ebm.model import all_binary
    >>> data = all_binary(4)[[3, 5, 12]]
    >>> res = train_rbm(data, TrainConfig(num_hidden=2, epochs=2, batch_size=2))
    >>> len(res.train_ll)
    3
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(train, Tensor) or train.ndim != 2:
        raise ValueError(f"train must be an [N, V] tensor, got {getattr(train, 'shape', train)!r}")
    cpu = torch.device("cpu")  # the model is trained on the CPU
    train = _check_binary("train", train, train.shape[1], cpu)
    V = train.shape[1]
    if test is not None:
        test = _check_binary("test", test, V, cpu)
    _check_enumerable("num_hidden", config.num_hidden, MAX_ENUMERATE)
    start_time = time.perf_counter()
    settings = _settings(config, train, test)

    g = torch.Generator().manual_seed(config.seed)
    rbm = RBM.init(
        V,
        config.num_hidden,
        generator=g,
        std=config.init_std,
        data=train if config.data_visible_bias else None,
    )
    vel = [torch.zeros_like(t) for t in rbm.params()]
    chains = None
    if config.method == "pcd":
        m = config.num_chains or DEFAULT_CHAINS
        chains = train[torch.randint(train.shape[0], (m,), generator=g)].clone()
    log_z = log_partition(rbm)
    train_ll, test_ll = [_mean_ll(rbm, train, log_z)], [_mean_ll(rbm, test, log_z)]
    epoch0 = 0

    ckpt = None if checkpoint is None else Path(checkpoint)
    if ckpt is not None and resume and ckpt.exists():
        state = load_state(ckpt)
        check_settings(field(state, "settings", ckpt, dict), settings, ckpt)
        rbm = RBM(field(state, "W", ckpt, Tensor), field(state, "b", ckpt), field(state, "c", ckpt))
        vel = list(field(state, "vel", ckpt, list))
        chains = field(state, "chains", ckpt)
        g.set_state(field(state, "generator", ckpt, Tensor))
        train_ll = list(field(state, "train_ll", ckpt, list))
        test_ll = list(field(state, "test_ll", ckpt, list))
        epoch0 = int(field(state, "epoch", ckpt, int))
        if epoch0 > 0:
            if on_resume is not None:
                on_resume(epoch0)
            if progress is not None:
                progress(epoch0)
            if callback is not None:
                callback(epoch0, {"train_ll": train_ll[-1], "test_ll": test_ll[-1]})

    def save(epoch: int) -> None:
        state = {
            "settings": settings,
            "epoch": epoch,
            "W": rbm.W,
            "b": rbm.b,
            "c": rbm.c,
            "vel": vel,
            "chains": chains,
            "generator": g.get_state(),
            "train_ll": train_ll,
            "test_ll": test_ll,
        }
        save_state(state, ckpt)

    W, b, c = rbm.params()
    n = train.shape[0]
    for epoch in range(epoch0, config.epochs):
        lr = config.lr_at(epoch)
        order = torch.randperm(n, generator=g)
        for batch in order.split(config.batch_size):  # SGD steps are sequential
            v_pos = train[batch]
            if chains is None:
                v_neg = negative_samples(rbm, v_pos, config.k, generator=g)
            else:
                chains = negative_samples(rbm, chains, config.k, generator=g)
                v_neg = chains
            # two_phase_gradient's direction without per-sample terms (a step needs no stderr)
            grads = _step(rbm, v_pos, v_neg, config.weight_decay)
            for p, d, gr in zip((W, b, c), vel, grads, strict=True):
                d.mul_(config.momentum).add_(gr, alpha=lr)
                p.add_(d)
        try:
            if not all(torch.isfinite(t).all() for t in (W, b, c)):
                raise ValueError("non-finite parameters")
            log_z = log_partition(rbm)
            train_ll.append(_mean_ll(rbm, train, log_z))
            test_ll.append(_mean_ll(rbm, test, log_z))
            if not math.isfinite(train_ll[-1]):
                raise ValueError("non-finite log-likelihood")
        except ValueError as exc:
            raise ValueError(f"training diverged in epoch {epoch + 1} ({exc}); lower lr") from exc
        if ckpt is not None:
            save(epoch + 1)
        if progress is not None:
            progress(1)
        if callback is not None:
            callback(epoch + 1, {"train_ll": train_ll[-1], "test_ll": test_ll[-1]})
    return TrainResult(
        rbm=rbm,
        train_ll=train_ll,
        test_ll=test_ll if test is not None else [],
        epochs_resumed=epoch0,
        seconds=time.perf_counter() - start_time,
    )


def fit_sklearn(
    train: Tensor, *, num_hidden: int, epochs: int, lr: float, batch_size: int, seed: int
) -> RBM:
    """Fit :class:`sklearn.neural_network.BernoulliRBM` (PCD-1, ``batch_size`` chains) and
    return its parameters as an :class:`~stochgrad.apps.ebm.model.RBM`, to be scored with
    :func:`~stochgrad.apps.ebm.exact.log_likelihood`.

    >>> from stochgrad.apps.ebm.model import all_binary
    >>> rbm = fit_sklearn(all_binary(3), num_hidden=2, epochs=1, lr=0.1, batch_size=4, seed=0)
    >>> rbm.W.shape
    torch.Size([3, 2])
    """
    from sklearn.neural_network import BernoulliRBM

    model = BernoulliRBM(
        n_components=check_int("num_hidden", num_hidden, minimum=1),
        learning_rate=lr,
        batch_size=check_int("batch_size", batch_size, minimum=1),
        n_iter=check_int("epochs", epochs, minimum=1),
        random_state=seed,
    )
    model.fit(train.to(DTYPE).numpy())
    return RBM.from_sklearn(model)
