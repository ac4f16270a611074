"""The RBM studies: the bias of CD-k, and the digits against scikit-learn."""

from __future__ import annotations

import warnings

import pytest
import torch

from stochgrad.apps.ebm import TrainConfig, fit_sklearn, load_binary_digits, log_likelihood
from stochgrad.checkpoint import load_state
from stochgrad.studies.rbm import RbmDigitsConfig, cd_bias_study, rbm_digits_study
from tests.apps.test_ebm import TINY_DATA, tiny_rbm

pytestmark = pytest.mark.usefixtures("one_thread")


def test_exact_negative_phase_is_unbiased_and_cd1_is_biased() -> None:
    rbm = tiny_rbm(6, std=1.5)
    rows = cd_bias_study(rbm, TINY_DATA, ks=(1, 10), num_samples=100_000, seed=0)
    exact, cd1, cd10 = rows
    assert exact["estimator"] == "exact samples"
    assert exact["max_abs_z"] < 5.0  # 34 coordinates, each within 5 standard errors
    assert exact["chi2_pvalue"] > 1e-3
    assert cd1["estimator"] == "CD-1"
    assert cd1["max_abs_z"] > 10.0 and cd1["chi2_pvalue"] < 1e-12
    assert cd1["relative_bias"] > 5 * cd1["stderr_norm"] / cd1["grad_norm"]
    # more Gibbs sweeps, less bias
    assert cd10["bias_norm"] < cd1["bias_norm"]


def test_cd_bias_study_keeps_working_from_the_app_with_a_warning() -> None:
    from stochgrad.apps import ebm

    with pytest.warns(DeprecationWarning, match="stochgrad.studies.rbm.cd_bias_study"):
        moved = ebm.cd_bias_study
    assert moved is cd_bias_study
    with pytest.raises(AttributeError):
        ebm.no_such_name  # noqa: B018


def test_cd_bias_study_bad_input() -> None:
    with pytest.raises(ValueError, match="ks"):
        cd_bias_study(tiny_rbm(0, std=1.0), TINY_DATA, ks=(0,), num_samples=10)
    with pytest.raises(ValueError, match="num_samples"):
        cd_bias_study(tiny_rbm(0, std=1.0), TINY_DATA, num_samples=1)


def test_digits_study_scores_ours_and_sklearn_exactly_and_resumes(tmp_path) -> None:
    cfg = TrainConfig(num_hidden=3, epochs=2, batch_size=100)
    config = RbmDigitsConfig(cfg, compare_sklearn=True)
    ckpt = tmp_path / "rbm.pt"
    ticks: list[int] = []
    res = rbm_digits_study(config, checkpoint=ckpt, progress=ticks.append)
    assert ticks == [1, 1] and load_state(ckpt)["epoch"] == 2
    assert (res.train_rows, res.test_rows) == (1437, 360)
    train, test = load_binary_digits()
    tr = res.training
    assert len(tr.train_ll) == len(tr.test_ll) == 3
    assert tr.test_ll[-1] == pytest.approx(float(log_likelihood(tr.rbm, test).mean()), rel=1e-12)
    sk = fit_sklearn(train, num_hidden=3, epochs=2, lr=cfg.lr, batch_size=100, seed=0)
    assert torch.equal(sk.W, res.sklearn.rbm.W)
    assert res.sklearn.test_ll == pytest.approx(float(log_likelihood(sk, test).mean()), rel=1e-12)
    assert res.sklearn.settings["n_components"] == 3
    assert res.test_ll_difference == tr.test_ll[-1] - res.sklearn.test_ll
    # the same call again: everything from the checkpoint, the same numbers
    found: list[int] = []
    again = rbm_digits_study(config, checkpoint=ckpt, on_resume=found.append)
    assert found == [2] and again.training.epochs_resumed == 2
    assert again.training.test_ll == tr.test_ll
    alone = rbm_digits_study(RbmDigitsConfig(cfg))
    assert alone.sklearn is None and alone.test_ll_difference is None
    assert alone.training.test_ll == tr.test_ll


def test_digits_study_bad_config() -> None:
    with pytest.raises(TypeError, match="train"):
        RbmDigitsConfig(train={"num_hidden": 3})
    with pytest.raises(TypeError, match="config"):
        rbm_digits_study("fast")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RbmDigitsConfig()  # the default is valid and quiet
