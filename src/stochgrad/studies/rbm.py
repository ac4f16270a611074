r"""The RBM studies: the bias of CD-k against the exact gradient, and the digits against
scikit-learn.

- :func:`cd_bias_study`: the two-phase gradient with exact negative samples (unbiased) and with
  CD-k negative samples, against the exact gradient by enumeration (``docs/rbm.md``, check 1).
- :func:`rbm_digits_study`: train on the binarised digits (CD-k or PCD), exact train and test
  log-likelihood per epoch, optionally beside :class:`sklearn.neural_network.BernoulliRBM` scored
  by the same exact function (``stochgrad rbm``; ``docs/rbm.md``, check 2). Training is
  checkpointed after every epoch and resumes exactly.

Examples:
    >>> from stochgrad.apps.ebm import RBM, all_binary
    >>> rbm = RBM.init(3, 2, generator=torch.Generator().manual_seed(0), std=1.0)
    >>> rows = cd_bias_study(rbm, all_binary(3)[:4], ks=(1,), num_samples=100)
    >>> [r["estimator"] for r in rows]
    ['exact samples', 'CD-1']
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_int, check_seed
from stochgrad.apps.datasets import load_binary_digits
from stochgrad.apps.ebm import (
    RBM,
    TrainConfig,
    TrainResult,
    exact_gradient,
    fit_sklearn,
    log_likelihood,
    log_partition,
    sampled_gradient,
    train_rbm,
)

__all__ = [
    "RbmDigitsConfig",
    "RbmDigitsResult",
    "SklearnScores",
    "cd_bias_study",
    "rbm_digits_study",
]


# ---------------------------------------------------------------------------------------------
# the bias of CD-k
# ---------------------------------------------------------------------------------------------
def cd_bias_study(
    rbm: RBM,
    data: Tensor,
    *,
    ks: tuple[int, ...] = (1, 3, 10),
    num_samples: int = 200_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    r"""Bias of CD-k (and of the exact-sample estimator, the control) against the exact gradient.

    For each estimator with mean :math:`\hat g` of :math:`n` per-sample terms (sample covariance
    :math:`\hat\Sigma`): the z-scores :math:`z = (\hat g - g) / \mathrm{se}` per parameter, the
    norm of the estimated bias :math:`\|\hat g - g\|` relative to :math:`\|g\|`, and the joint
    (Hotelling-type, large-:math:`n`) statistic

    .. math:: T = n\, (\hat g - g)^\top \hat\Sigma^{+} (\hat g - g) \sim \chi^2_r
        \quad (r = \operatorname{rank} \hat\Sigma)

    under "no bias", with its p-value (the :math:`VH + V + H` coordinates are strongly
    correlated, all being functions of the same negative sample, so a sum of squared z-scores
    would not be :math:`\chi^2`). One generator, seeded by ``seed``, serves the estimators in
    turn (exact samples first, then CD-k in the order of ``ks``).

    Returns:
        One dict per estimator: ``estimator``, ``num_samples``, ``max_abs_z``, ``chi2``,
        ``chi2_df``, ``chi2_pvalue``, ``bias_norm``, ``grad_norm``, ``relative_bias``,
        ``stderr_norm`` and ``noise_ratio`` = ``bias_norm / stderr_norm``. Without bias
        :math:`\mathbb E\|\hat g - g\|^2 = \sum \mathrm{se}^2`, so ``noise_ratio`` is near 1;
        unlike the z-scores and :math:`T` it stays valid when some coordinates are rare events
        (a pixel that is almost never on has a tiny, badly estimated standard error).

    Reference: Carreira-Perpiñán & Hinton (AISTATS 2005), "On contrastive divergence learning".
    """
    from scipy import stats

    for k in ks:
        check_int("ks", k, minimum=1)
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    exact = torch.cat([t.reshape(-1) for t in exact_gradient(rbm, data)])
    rows = []
    for method, k in [("exact", 1)] + [("cd", int(k)) for k in ks]:
        est = sampled_gradient(rbm, data, num_samples, method=method, k=k, generator=g)
        grad = torch.cat([t.reshape(-1) for t in est.grad])
        se = torch.cat([t.reshape(-1) for t in est.stderr])
        z = (grad - exact) / se
        terms = torch.cat([t.reshape(num_samples, -1) for t in est.per_sample], 1)
        cov = torch.cov(terms.T)
        rank = int(torch.linalg.matrix_rank(cov, hermitian=True))
        d = grad - exact
        chi2 = float(num_samples * d @ torch.linalg.pinv(cov, hermitian=True) @ d)
        rows.append(
            {
                "estimator": "exact samples" if method == "exact" else f"CD-{k}",
                "num_samples": num_samples,
                "max_abs_z": float(z.abs().max()),
                "chi2": chi2,
                "chi2_df": rank,
                "chi2_pvalue": float(stats.chi2.sf(chi2, rank)),
                "bias_norm": float((grad - exact).norm()),
                "grad_norm": float(exact.norm()),
                "relative_bias": float((grad - exact).norm() / exact.norm()),
                "stderr_norm": float(se.norm()),
                "noise_ratio": float((grad - exact).norm() / se.norm()),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# the digits, ours vs scikit-learn
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RbmDigitsConfig:
    """Settings of :func:`rbm_digits_study`.

    Attributes:
        train: the training settings (:class:`~stochgrad.apps.ebm.TrainConfig`).
        compare_sklearn: also fit scikit-learn's ``BernoulliRBM`` with the same hidden units,
            epochs, batch size, learning rate and seed, and score it exactly.
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    compare_sklearn: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        if not isinstance(self.compare_sklearn, bool):
            raise TypeError(
                f"compare_sklearn must be a bool, got {type(self.compare_sklearn).__name__}"
            )


@dataclass
class SklearnScores:
    """scikit-learn's ``BernoulliRBM`` on the digits, scored exactly.

    Attributes:
        rbm: its parameters as an :class:`~stochgrad.apps.ebm.RBM`.
        train_ll, test_ll: exact mean log-likelihoods (nats per image).
        settings: the ``BernoulliRBM`` arguments.
        seconds: wall time of the fit.
    """

    rbm: RBM
    train_ll: float
    test_ll: float
    settings: dict[str, Any]
    seconds: float


@dataclass
class RbmDigitsResult:
    """The outcome of :func:`rbm_digits_study`.

    Attributes:
        config: the settings.
        train_rows, test_rows: sizes of the split.
        training: our training (model, exact curves, epochs resumed, seconds).
        sklearn: scikit-learn's model and scores (``None`` unless asked for).
    """

    config: RbmDigitsConfig
    train_rows: int
    test_rows: int
    training: TrainResult
    sklearn: SklearnScores | None = None

    @property
    def test_ll_difference(self) -> float | None:
        """Our final test log-likelihood minus scikit-learn's (``None`` without it)."""
        if self.sklearn is None:
            return None
        return self.training.test_ll[-1] - self.sklearn.test_ll

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain values (what ``stochgrad rbm`` writes to ``rbm.json``)."""
        tr = self.training
        out: dict[str, Any] = {
            "data": {"train_rows": self.train_rows, "test_rows": self.test_rows, "pixels": 64},
            "config": asdict(self.config.train),
            "train_ll": tr.train_ll,
            "test_ll": tr.test_ll,
            "final": {"train_ll": tr.train_ll[-1], "test_ll": tr.test_ll[-1]},
            "epochs_resumed": tr.epochs_resumed,
            "seconds": tr.seconds,
        }
        if self.sklearn is not None:
            sk = self.sklearn
            out["sklearn"] = {
                "train_ll": sk.train_ll,
                "test_ll": sk.test_ll,
                "settings": sk.settings,
                "seconds": sk.seconds,
            }
            out["test_ll_difference"] = self.test_ll_difference
        return out


def rbm_digits_study(
    config: RbmDigitsConfig | None = None,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> RbmDigitsResult:
    """Train on the binarised digits and score exactly, optionally beside scikit-learn.

    Args:
        config: the settings (default :class:`RbmDigitsConfig`).
        checkpoint: ``.pt`` file of the training, saved after every epoch (``None``: none).
        resume: continue from ``checkpoint`` when it exists.
        progress: advanced by one per epoch (resumed epochs at once), after the epoch's save.
        on_resume: called with the epochs found in ``checkpoint``, before any work.

    Returns:
        :class:`RbmDigitsResult`.

    >>> res = rbm_digits_study(RbmDigitsConfig(TrainConfig(num_hidden=2, epochs=1, batch_size=100)))
    >>> len(res.training.test_ll), res.training.test_ll[-1] < 0
    (2, True)
    """
    config = RbmDigitsConfig() if config is None else config
    if not isinstance(config, RbmDigitsConfig):
        raise TypeError(f"config must be an RbmDigitsConfig, got {type(config).__name__}")
    cfg = config.train
    train, test = load_binary_digits()
    training = train_rbm(
        train,
        cfg,
        test=test,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        on_resume=on_resume,
    )
    sklearn = None
    if config.compare_sklearn:
        t0 = time.perf_counter()
        sk = fit_sklearn(
            train,
            num_hidden=cfg.num_hidden,
            epochs=cfg.epochs,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
        )
        log_z = log_partition(sk)
        sklearn = SklearnScores(
            sk,
            float(log_likelihood(sk, train, log_z=log_z).mean()),
            float(log_likelihood(sk, test, log_z=log_z).mean()),
            {
                "n_components": cfg.num_hidden,
                "n_iter": cfg.epochs,
                "learning_rate": cfg.lr,
                "batch_size": cfg.batch_size,
                "random_state": cfg.seed,
            },
            time.perf_counter() - t0,
        )
    return RbmDigitsResult(config, int(train.shape[0]), int(test.shape[0]), training, sklearn)


def run_rbm(
    config: TrainConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    compare_sklearn: bool = False,
    restart: bool = False,
    callback: Any = None,
) -> dict[str, Any]:
    """Deprecated (removed in the next release): :func:`rbm_digits_study`, as a dict.

    With ``out_dir`` the training is checkpointed in ``out_dir/rbm_checkpoint.pt`` (resumed
    unless ``restart``); the files and figures are the command's (``stochgrad rbm``).
    ``callback`` is no longer called: pass ``progress=`` to :func:`rbm_digits_study`.
    """
    warnings.warn(
        "run_rbm is deprecated: use stochgrad.studies.rbm.rbm_digits_study(...).to_dict(); "
        "files and figures are written by `stochgrad rbm`",
        DeprecationWarning,
        stacklevel=2,
    )
    ckpt = None if out_dir is None else Path(out_dir) / "rbm_checkpoint.pt"
    config = TrainConfig() if config is None else config
    res = rbm_digits_study(RbmDigitsConfig(config, compare_sklearn), checkpoint=ckpt,
                           resume=not restart)  # fmt: skip
    return res.to_dict()
