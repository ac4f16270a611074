"""Tests of the HMM application: forward-backward, Viterbi, Fisher's identity, EM, checkpoints."""

from __future__ import annotations

import copy
import itertools
import math
import threading
import warnings

import numpy as np
import pytest
import torch

from stochgrad.apps.hmm import (
    HMM,
    EMState,
    baum_welch,
    baum_welch_batched,
    emission_log_prob,
    fit_gradient,
    fit_gradient_batched,
    fit_hmm,
    forward_backward,
    information_criteria,
    joint_log_prob,
    likelihood_gradient,
    load_earthquakes,
    load_series,
    log_likelihood,
    random_hmm,
    sample_posterior,
    sampled_likelihood_gradient,
    viterbi,
)
from stochgrad.apps.hmm.emissions import _stacked_emission
from stochgrad.apps.hmm.inference import _forward_backward_logs, _posterior_marginals
from stochgrad.checkpoint import CheckpointError, CheckpointMismatch, load_state
from stochgrad.gradient_estimate import GradientEstimate

hmmlearn_hmm = pytest.importorskip("hmmlearn.hmm")

F64 = torch.float64

# the time loop is many tiny ops: extra threads only add contention on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quakes() -> torch.Tensor:
    return load_earthquakes()


def poisson3() -> HMM:
    return HMM.from_probabilities(
        [0.2, 0.5, 0.3],
        [[0.8, 0.15, 0.05], [0.1, 0.85, 0.05], [0.05, 0.15, 0.8]],
        rates=[12.0, 19.0, 29.0],
    )


def gaussian2(D: int = 2) -> HMM:
    g = torch.Generator().manual_seed(3)
    return HMM.from_probabilities(
        [0.6, 0.4],
        [[0.7, 0.3], [0.25, 0.75]],
        means=torch.randn(2, D, generator=g, dtype=F64),
        sds=0.5 + torch.rand(2, D, generator=g, dtype=F64),
    )


def joint_by_definition(hmm: HMM, y: torch.Tensor, z) -> torch.Tensor:
    """log p(y, z) of one sequence for paths ``z`` ``[N, T]`` (or one path), from the definition."""
    Z = torch.as_tensor(z).reshape(-1, len(y))
    log_pi = torch.log_softmax(hmm.start_logits, -1)
    log_P = torch.log_softmax(hmm.trans_logits, -1)
    log_e = emission_log_prob(hmm, y)[0]  # [T, K]
    T = Z.shape[1]
    out = log_pi[Z[:, 0]] + log_P[Z[:, :-1], Z[:, 1:]].sum(1) + log_e[torch.arange(T), Z].sum(1)
    return out if torch.as_tensor(z).ndim == 2 else out[0]


# ---------------------------------------------------------------------------------------------
# (1) exact: forward-backward, Viterbi and the scores against enumeration / the formula
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["poisson", "gaussian"])
def test_forward_backward_and_viterbi_match_enumeration(model: str) -> None:
    if model == "poisson":
        hmm, y = poisson3(), torch.tensor([11.0, 20.0, 30.0, 18.0, 25.0], dtype=F64)
    else:
        hmm = gaussian2()
        y = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    K, T = hmm.num_states, 5
    paths = list(itertools.product(range(K), repeat=T))
    lj = joint_by_definition(hmm, y, paths)
    ll = torch.logsumexp(lj, 0)
    w = (lj - ll).exp()
    Z = torch.tensor(paths)
    gamma = torch.stack([torch.stack([w[Z[:, t] == k].sum() for k in range(K)]) for t in range(T)])
    xi = torch.stack(
        [
            torch.stack(
                [
                    torch.stack([w[(Z[:, t] == i) & (Z[:, t + 1] == j)].sum() for j in range(K)])
                    for i in range(K)
                ]
            )
            for t in range(T - 1)
        ]
    )
    post = forward_backward(hmm, y)
    torch.testing.assert_close(post.log_likelihood[0], ll, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_likelihood(hmm, y)[0], ll, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(post.gamma[0], gamma, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(post.xi[0], xi, rtol=1e-10, atol=1e-12)
    path, best = viterbi(hmm, y)
    assert path[0].tolist() == list(paths[int(lj.argmax())])
    torch.testing.assert_close(best[0], lj.max(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("model", ["poisson", "gaussian"])
def test_fisher_gradient_equals_autograd_and_finite_differences(model: str) -> None:
    g = torch.Generator().manual_seed(7)
    if model == "poisson":
        hmm = poisson3()
        y = torch.poisson(torch.full((3, 40), 18.0, dtype=F64), generator=g)
    else:
        hmm = gaussian2(D=2)
        y = torch.randn(3, 40, 2, generator=g, dtype=F64)
    est = likelihood_gradient(hmm, y)
    assert isinstance(est, GradientEstimate) and est.method == "fisher_exact"
    assert est.info["mode"] == "factors" and est.num_samples == 1
    assert all(bool((s == 0).all()) for s in est.stderr)
    params = [p.clone().requires_grad_() for p in hmm.params()]
    ll = log_likelihood(hmm.with_params(params), y).sum()
    ll.backward()
    assert est.info["log_likelihood"] == pytest.approx(float(ll.detach()), rel=1e-13)
    for posterior in (None, forward_backward(hmm, y)):  # scan marginals, or log-space ones
        exact = likelihood_gradient(hmm, y, posterior=posterior).grad
        for p, e in zip(params, exact, strict=True):
            torch.testing.assert_close(e, p.grad, rtol=0.0, atol=1e-10)

    # central finite differences on every coordinate
    h = 1e-5
    base = [p.detach().clone() for p in hmm.params()]
    for i, p in enumerate(base):
        fd = torch.empty_like(p)
        for idx in itertools.product(*(range(n) for n in p.shape)):
            up = [b.clone() for b in base]
            dn = [b.clone() for b in base]
            up[i][idx] += h
            dn[i][idx] -= h
            lu = log_likelihood(hmm.with_params(up), y).sum()
            ld = log_likelihood(hmm.with_params(dn), y).sum()
            fd[idx] = (lu - ld) / (2 * h)
        torch.testing.assert_close(est.grad[i], fd, rtol=1e-5, atol=1e-5)


def test_joint_log_prob_is_the_definition_and_differentiable() -> None:
    hmm = gaussian2(D=1)
    y = torch.tensor([0.3, -1.2, 0.8, 2.0], dtype=F64)
    z = torch.tensor([[[0, 1, 1, 0]], [[1, 1, 0, 0]]])  # [S=2, B=1, T=4]
    params = [p.clone().requires_grad_() for p in hmm.params()]
    ours = joint_log_prob(hmm.with_params(params), y, z)
    ref = joint_by_definition(hmm.with_params(params), y, z[:, 0])
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=1e-13)
    g_ours = torch.autograd.grad(ours[1], params, retain_graph=True)
    g_ref = torch.autograd.grad(ref[1], params)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_sampled_gradient_replays_the_draws() -> None:
    """One seeded estimate = the mean over the same FFBS paths of autograd of log p(y, z)."""
    hmm = poisson3()
    y = torch.tensor([[10.0, 22.0, 31.0, 18.0], [12.0, 13.0, 28.0, 30.0]], dtype=F64)
    est = sampled_likelihood_gradient(hmm, y, 40, generator=torch.Generator().manual_seed(2))
    assert est.method == "fisher_sampled" and est.num_samples == 40 and not est.biased
    z = sample_posterior(hmm, y, 40, generator=torch.Generator().manual_seed(2))
    params = [p.clone().requires_grad_() for p in hmm.params()]
    model = hmm.with_params(params)
    rows = []
    for s in range(40):  # by hand: one path at a time, both sequences
        lp = sum(joint_by_definition(model, y[b], z[s, b]) for b in range(2))
        rows.append(torch.autograd.grad(lp, params))
    for j in range(3):
        per = torch.stack([r[j] for r in rows])
        torch.testing.assert_close(est.per_sample[j], per, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(est.grad[j], per.mean(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(est.stderr[j], per.std(0) / 40**0.5, rtol=1e-10, atol=1e-12)
    assert est.info["log_likelihood"] == pytest.approx(float(log_likelihood(hmm, y).sum()))


def test_deprecated_gradient_names_still_work() -> None:
    import stochgrad.apps.hmm as app
    from stochgrad.apps.hmm import score

    hmm = poisson3()
    y = torch.tensor([11.0, 20.0, 30.0], dtype=F64)
    for module in (app, score):
        with pytest.warns(DeprecationWarning, match="likelihood_gradient"):
            old = module.fisher_gradient
        assert old is likelihood_gradient
        with pytest.warns(DeprecationWarning, match="sampled_likelihood_gradient"):
            assert module.monte_carlo_gradient is sampled_likelihood_gradient
        with pytest.warns(DeprecationWarning, match="joint_log_prob"):
            complete_data_score = module.complete_data_score
        z = torch.tensor([[[0, 2, 1]], [[1, 1, 1]]])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            score_rows = complete_data_score(hmm, y, z)
        params = [p.clone().requires_grad_() for p in hmm.params()]
        grads = torch.autograd.grad(
            joint_by_definition(hmm.with_params(params), y, z[1, 0]), params
        )
        for rows, g in zip(score_rows, grads, strict=True):
            torch.testing.assert_close(rows[1], g, rtol=1e-12, atol=1e-12)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        score.nothing  # noqa: B018


def test_scan_marginals_equal_log_space_forward_backward(quakes: torch.Tensor) -> None:
    """The parallel-prefix posterior of EM and the gradient fit against the log-space one:
    stacked models, several sequences, T = 1 and 2, and a case only log space can hold."""
    g = torch.Generator().manual_seed(0)
    y = torch.stack([quakes[:60], quakes[40:100]])  # [B=2, T=60]
    lgamma_y = torch.lgamma(y + 1.0)[..., None]
    hmms = [random_hmm(quakes, 3, generator=g) for _ in range(4)]
    start = torch.stack([h.start_logits for h in hmms])
    trans = torch.stack([h.trans_logits for h in hmms])
    rates = torch.stack([h.log_rates for h in hmms])
    log_start = torch.log_softmax(start, -1)[:, None, :]
    log_P = torch.log_softmax(trans, -1)
    log_e = _stacked_emission(y, [rates], lgamma_y)
    for T in (60, 2, 1):
        fast = _posterior_marginals(log_start, log_P, log_e[:, :, :T])
        ref = _forward_backward_logs(log_start, log_P, log_e[:, :, :T])
        torch.testing.assert_close(fast.log_likelihood, ref.log_likelihood, rtol=1e-14, atol=0.0)
        torch.testing.assert_close(fast.gamma, ref.gamma, rtol=0.0, atol=1e-12)
        torch.testing.assert_close(fast.xi, ref.xi, rtol=0.0, atol=1e-12)
    # every model's numbers are its own: the same bits alone as in the stack
    full = _posterior_marginals(log_start, log_P, log_e)
    for r in range(4):
        alone = _posterior_marginals(log_start[r : r + 1], log_P[r : r + 1], log_e[r : r + 1])
        for a, b in zip(alone, full, strict=True):
            assert torch.equal(a[0], b[r])
    # state 0 is certain at t = 0 but its emission is 1000 nats below state 1's: the scaled
    # scan would underflow to 0 / 0; the log-space pass answers for that model alone
    odd = HMM.from_probabilities([1.0, 0.0], [[0.5, 0.5], [0.5, 0.5]], rates=[1000.0, 1.0])
    fine = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], rates=[1.0, 3.0])
    yy = torch.tensor([[0.0, 1.0, 0.0]], dtype=F64)
    ls = torch.stack([torch.log_softmax(h.start_logits, -1) for h in (odd, fine)])[:, None]
    lp = torch.stack([torch.log_softmax(h.trans_logits, -1) for h in (odd, fine)])
    le = torch.stack([emission_log_prob(h, yy) for h in (odd, fine)])
    both = _posterior_marginals(ls, lp, le)
    ref = _forward_backward_logs(ls[:1], lp[:1], le[:1])
    assert float(both.log_likelihood[0, 0]) < -999
    for a, b in zip(both, (ref.log_likelihood, ref.gamma, ref.xi), strict=True):
        assert torch.equal(a[:1], b)
    for a, b in zip(both, _posterior_marginals(ls[1:], lp[1:], le[1:]), strict=True):
        assert torch.equal(a[1:], b)  # the other model keeps its scan numbers


def test_ffbs_replays_gumbel_max_formula() -> None:
    """One seeded draw equals the backward recursion with the same uniforms, by hand."""
    hmm = poisson3()
    y = torch.tensor([[10.0, 22.0, 31.0]], dtype=F64)
    z = sample_posterior(hmm, y, 1, generator=torch.Generator().manual_seed(5))
    post = forward_backward(hmm, y)
    g = torch.Generator().manual_seed(5)
    gumbel = lambda: -torch.log(-torch.log(torch.rand(1, 1, 3, dtype=F64, generator=g)))  # noqa: E731
    la, P = post.log_alpha[0], hmm.transmat
    z2 = int((la[2] + gumbel()[0, 0]).argmax())
    z1 = int((la[1] + P[:, z2].log() + gumbel()[0, 0]).argmax())
    z0 = int((la[0] + P[:, z1].log() + gumbel()[0, 0]).argmax())
    assert z[0, 0].tolist() == [z0, z1, z2]
    again = sample_posterior(hmm, y, 1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(z, again)


def test_information_criteria_formula() -> None:
    aic, bic = information_criteria(-341.8787, 6, 107)
    assert aic == pytest.approx(2 * 341.8787 + 12)
    assert bic == pytest.approx(2 * 341.8787 + 6 * math.log(107))
    assert poisson3().num_free_parameters() == 2 + 6 + 3
    assert gaussian2(D=2).num_free_parameters() == 1 + 2 + 8


# ---------------------------------------------------------------------------------------------
# (2) many samples / outside library
# ---------------------------------------------------------------------------------------------


def test_ffbs_path_frequencies_match_posterior() -> None:
    hmm = poisson3()
    y = torch.tensor([14.0, 21.0, 27.0], dtype=F64)
    paths = list(itertools.product(range(3), repeat=3))
    lj = joint_by_definition(hmm, y, paths)
    p = (lj - torch.logsumexp(lj, 0)).exp()
    n = 20_000
    z = sample_posterior(hmm, y, n, generator=torch.Generator().manual_seed(0))[:, 0]
    code = z[:, 0] * 9 + z[:, 1] * 3 + z[:, 2]
    freq = torch.bincount(code, minlength=27).double() / n
    se = (p * (1 - p) / n).sqrt()
    assert bool(((freq - p).abs() <= 5 * se + 1e-12).all())


@pytest.mark.parametrize("model", ["poisson", "gaussian"])
@pytest.mark.parametrize("num_samples", [500, 2000])  # per-path terms, and 64 batch means
def test_sampled_fisher_gradient_is_unbiased(model: str, num_samples: int, quakes) -> None:
    if model == "poisson":
        hmm, y = poisson3(), quakes
    else:
        hmm = gaussian2(D=2)
        y = torch.randn(2, 30, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    exact = likelihood_gradient(hmm, y).grad
    gen = torch.Generator().manual_seed(11)
    est = sampled_likelihood_gradient(hmm, y, num_samples, generator=gen)
    assert est.info.get("batch_means") == (64 if num_samples > 1024 else None)
    first = forward_backward(hmm, y).gamma[:, 0].mean(0)  # p(z_1 = k | y), per sequence
    for j, (e, m, s) in enumerate(zip(exact, est.grad, est.stderr, strict=True)):
        spread = s > 0
        if j == 0 and not bool(spread.all()):
            # a first state no path took (quakes[0] = 13 is far from state 2's rate 29): the
            # estimate misses exactly its posterior mass, and missing it was not unlikely
            miss = first[~spread]
            assert bool(((m - e)[~spread].abs() <= y.shape[0] * miss + 1e-12).all())
            assert bool(((1.0 - miss) ** num_samples > 1e-3).all())
        else:
            assert bool(spread.all())
        z = (m - e)[spread] / s[spread]
        assert float(z.abs().max()) < 5.0, z


def test_log_likelihood_equals_hmmlearn_poisson(quakes: torch.Tensor) -> None:
    hmm = poisson3()
    ref = hmmlearn_hmm.PoissonHMM(n_components=3, init_params="")
    ref.startprob_ = hmm.startprob.numpy()
    ref.transmat_ = hmm.transmat.numpy()
    ref.lambdas_ = hmm.rates.numpy()[:, None]
    X = quakes.numpy().astype(int)[:, None]
    ours = float(log_likelihood(hmm, quakes)[0])
    theirs = ref.score(X)
    assert abs(ours - theirs) / abs(theirs) < 1e-6
    # posterior marginals and Viterbi path too
    np.testing.assert_allclose(
        forward_backward(hmm, quakes).gamma[0].numpy(), ref.predict_proba(X), atol=1e-8
    )
    logprob, path = ref.decode(X, algorithm="viterbi")
    vpath, vbest = viterbi(hmm, quakes)
    assert vpath[0].tolist() == path.tolist()
    assert float(vbest[0]) == pytest.approx(logprob, rel=1e-9)


def test_log_likelihood_equals_hmmlearn_gaussian_diag() -> None:
    hmm = gaussian2(D=2)
    y = torch.randn(60, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    ref = hmmlearn_hmm.GaussianHMM(n_components=2, covariance_type="diag", init_params="")
    ref.startprob_ = hmm.startprob.numpy()
    ref.transmat_ = hmm.transmat.numpy()
    ref.means_ = hmm.means.numpy()
    ref.covars_ = hmm.sds.square().numpy()
    ours = float(log_likelihood(hmm, y)[0])
    theirs = ref.score(y.numpy())
    assert abs(ours - theirs) / abs(theirs) < 1e-6


def test_em_steps_equal_hmmlearn_poisson_em(quakes: torch.Tensor) -> None:
    """Five Baum-Welch iterations from the same start give hmmlearn's parameters."""
    hmm = poisson3()
    ours = baum_welch(hmm, quakes, max_iter=5, tol=0.0).hmm
    ref = hmmlearn_hmm.PoissonHMM(n_components=3, init_params="", n_iter=5, tol=0.0)
    ref.startprob_ = hmm.startprob.numpy()
    ref.transmat_ = hmm.transmat.numpy()
    ref.lambdas_ = hmm.rates.numpy()[:, None]
    ref.fit(quakes.numpy().astype(int)[:, None])
    np.testing.assert_allclose(ours.rates.numpy(), ref.lambdas_[:, 0], rtol=1e-8)
    np.testing.assert_allclose(ours.transmat.numpy(), ref.transmat_, atol=1e-8)
    np.testing.assert_allclose(ours.startprob.numpy(), ref.startprob_, atol=1e-8)


def _hmmlearn_best(quakes: torch.Tensor, K: int) -> float:
    X = quakes.numpy().astype(int)[:, None]
    best = -math.inf
    for rs in range(10):
        m = hmmlearn_hmm.PoissonHMM(n_components=K, random_state=rs, n_iter=2000, tol=1e-8)
        m.fit(X)
        best = max(best, m.score(X))
    return best


@pytest.mark.parametrize(("K", "published"), [(2, -341.88), (3, -329.46)])
def test_em_fit_at_least_hmmlearn_best_of_10(
    quakes: torch.Tensor, K: int, published: float
) -> None:
    best, runs = fit_hmm(quakes, K, "poisson", method="em", restarts=10, seed=0)
    theirs = _hmmlearn_best(quakes, K)
    assert best.log_likelihood >= theirs - 1e-9 * abs(theirs), (best.log_likelihood, theirs)
    # Zucchini & MacDonald's values fix the initial distribution; a free one can only do better
    assert best.log_likelihood >= published - 0.01
    assert best.log_likelihood - published < 1.5
    hist = np.array(runs[0].history)
    assert np.all(np.diff(hist) >= -1e-9)  # EM never decreases the likelihood


def test_gradient_fit_reaches_em_optimum(quakes: torch.Tensor) -> None:
    init = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[15.0, 25.0])
    em = baum_welch(init, quakes)
    gr = fit_gradient(init, quakes)
    assert gr.converged and em.converged
    assert gr.log_likelihood == pytest.approx(em.log_likelihood, abs=1e-6)
    np.testing.assert_allclose(
        np.sort(gr.hmm.rates.numpy()), np.sort(em.hmm.rates.numpy()), rtol=1e-4
    )


def test_gaussian_em_fit_recovers_simulated_means() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.zeros(3, 80, dtype=torch.int64)
    u = torch.rand(3, 80, generator=g)
    for t in range(1, 80):  # sticky two-state chain
        z[:, t] = torch.where(u[:, t] < 0.1, 1 - z[:, t - 1], z[:, t - 1])
    mu = torch.tensor([[-2.0], [2.0]], dtype=F64)
    y = mu[z] + 0.5 * torch.randn(3, 80, 1, generator=g, dtype=F64)
    best, _ = fit_hmm(y, 2, "gaussian", restarts=2, seed=1, max_iter=200)
    m = np.sort(best.hmm.means[:, 0].numpy())
    np.testing.assert_allclose(m, [-2.0, 2.0], atol=0.1)
    np.testing.assert_allclose(best.hmm.sds.numpy(), 0.5, atol=0.05)


# ---------------------------------------------------------------------------------------------
# checkpoint
# ---------------------------------------------------------------------------------------------


def _same_fits(a: list, b: list) -> None:
    """Equal to the last bit: log-likelihoods, iterations, histories and parameters."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.log_likelihood, x.n_iter, x.converged) == (
            y.log_likelihood,
            y.n_iter,
            y.converged,
        )
        assert x.history == y.history
        for p, q in zip(x.hmm.params(), y.hmm.params(), strict=True):
            assert torch.equal(p, q)


def _stop_at(call: int):
    """A progress callback raising KeyboardInterrupt (as Ctrl-C would) at its ``call``-th call."""
    calls = []

    def progress(n: int) -> None:
        calls.append(n)
        if len(calls) == call:
            raise KeyboardInterrupt

    return progress, calls


def test_em_interrupted_mid_run_resumes_from_the_saved_iteration(quakes, tmp_path) -> None:
    """The defect of the earlier release: EM (all restarts stacked) saved nothing until every
    restart had finished, so an interruption lost all of them."""
    ckpt = tmp_path / "ck.pt"
    kw = dict(restarts=4, max_iter=300, seed=3)
    progress, calls = _stop_at(1)
    with pytest.raises(KeyboardInterrupt):
        fit_hmm(quakes, 3, checkpoint=ckpt, checkpoint_every=5, progress=progress, **kw)
    assert calls == [0]  # the first save: iteration 5, no restart finished yet
    saved = load_state(ckpt)
    assert saved["runs"] == [] and saved["em"]["iteration"] == 5
    assert saved["em"]["restarts"] == [0, 1, 2, 3]
    resumed: list = []
    ticks: list = []
    best, runs = fit_hmm(
        quakes,
        3,
        checkpoint=ckpt,
        checkpoint_every=5,
        progress=ticks.append,
        on_resume=lambda *a: resumed.append(a),
        **kw,
    )
    assert resumed == [(0, 5)]
    assert sum(ticks) == 4  # every restart reported once
    fresh, runs_f = fit_hmm(quakes, 3, **kw)
    _same_fits(runs, runs_f)
    assert best.log_likelihood == fresh.log_likelihood
    assert len({r.n_iter for r in runs}) > 1  # restarts did finish at different iterations
    # finished: the checkpoint holds every restart, and a rerun only reads it
    saved = load_state(ckpt)
    assert saved["em"] is None and [r for r, _ in saved["runs"]] == [0, 1, 2, 3]
    again: list = []
    _, runs_again = fit_hmm(quakes, 3, checkpoint=ckpt, on_resume=lambda *a: again.append(a), **kw)
    assert again == [(4, 0)]
    _same_fits(runs_again, runs_f)


def test_em_interrupted_after_a_restart_converged(quakes, tmp_path) -> None:
    ckpt = tmp_path / "ck.pt"
    kw = dict(restarts=4, max_iter=300, seed=3, checkpoint_every=1000)
    progress, calls = _stop_at(1)
    with pytest.raises(KeyboardInterrupt):
        fit_hmm(quakes, 3, checkpoint=ckpt, progress=progress, **kw)
    assert calls == [1]  # saved when the first restart converged
    em = load_state(ckpt)["em"]
    assert sum(em["converged"]) == 1 and len(em["active"]) == 3
    ticks: list = []
    _, runs = fit_hmm(quakes, 3, checkpoint=ckpt, progress=ticks.append, **kw)
    assert ticks[0] == 1 and sum(ticks) == 4
    _same_fits(runs, fit_hmm(quakes, 3, **kw)[1])


def test_gradient_fit_is_saved_restart_by_restart(tmp_path) -> None:
    y = torch.tensor([0.0, 1.0, 0.0, 8.0, 9.0, 11.0, 1.0, 0.0, 7.0, 10.0], dtype=F64)
    ckpt = tmp_path / "ck.pt"
    kw = dict(method="gradient", restarts=3, max_iter=15, seed=1)
    progress, calls = _stop_at(2)
    with pytest.raises(KeyboardInterrupt):
        fit_hmm(y, 2, checkpoint=ckpt, progress=progress, **kw)
    assert calls == [1, 1]
    saved = sorted(r for r, _ in load_state(ckpt)["runs"])  # the first two to finish
    assert len(saved) == 2
    assert not [t for t in threading.enumerate() if t.name.startswith("stochgrad-lbfgs")]
    resumed: list = []
    _, runs = fit_hmm(y, 2, checkpoint=ckpt, on_resume=lambda *a: resumed.append(a), **kw)
    assert resumed == [(2, 0)]
    _same_fits(runs, fit_hmm(y, 2, **kw)[1])  # the third, alone, ends as it did in the stack


@pytest.mark.parametrize("emission", ["poisson", "gaussian"])
def test_gradient_fit_batched_equals_each_start_alone(quakes: torch.Tensor, emission) -> None:
    """Lockstep L-BFGS-B: each start follows the path it follows alone, to the last bit."""
    if emission == "poisson":
        y = quakes
    else:
        y = torch.randn(2, 40, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
        y[:, 10:25] += 2.5
    starts = [
        random_hmm(y, 2, emission, generator=torch.Generator().manual_seed(s)) for s in range(3)
    ]
    order: list[int] = []
    together = fit_gradient_batched(starts, y, max_iter=25, on_finish=lambda i, f: order.append(i))
    assert sorted(order) == [0, 1, 2]
    for h, f in zip(starts, together, strict=True):
        alone = fit_gradient(h, y, max_iter=25)
        _same_fits([f], [alone])
        assert f.method == "gradient" and len(f.history) >= f.n_iter
    if emission == "poisson":  # a gradient fit from the EM optimum stays there
        best = fit_hmm(quakes, 2, restarts=2, seed=0)[0]
        again = fit_gradient(best.hmm, quakes, max_iter=50)
        assert again.log_likelihood == pytest.approx(best.log_likelihood, abs=1e-8)


def test_gradient_fit_stops_every_start_on_interrupt(quakes: torch.Tensor) -> None:
    starts = [random_hmm(quakes, 3, generator=torch.Generator().manual_seed(s)) for s in range(4)]

    def interrupt(i: int, fit) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_gradient_batched(starts, quakes, max_iter=3, on_finish=interrupt)
    assert not [t for t in threading.enumerate() if t.name.startswith("stochgrad-lbfgs")]
    with pytest.raises(ValueError, match="non-empty"):
        fit_gradient_batched([], quakes)
    with pytest.raises(ValueError, match="num_states"):
        fit_gradient_batched(
            [starts[0], random_hmm(quakes, 2, generator=torch.Generator())], quakes
        )
    with pytest.raises(ValueError, match="max_iter"):
        fit_gradient_batched(starts, quakes, max_iter=0)


def test_checkpoint_of_other_settings_or_corrupt_is_refused(quakes, tmp_path) -> None:
    ckpt = tmp_path / "ck.pt"
    fit_hmm(quakes, 2, restarts=3, max_iter=15, checkpoint=ckpt)
    with pytest.raises(CheckpointMismatch, match="num_states: 2 saved, 3 now"):
        fit_hmm(quakes, 3, restarts=3, max_iter=15, checkpoint=ckpt)
    with pytest.raises(ValueError, match="other settings"):  # CheckpointMismatch is one
        fit_hmm(quakes[:50], 2, restarts=3, max_iter=15, checkpoint=ckpt)
    # resume=False starts afresh, overwriting it
    fit_hmm(quakes, 3, restarts=3, max_iter=15, checkpoint=ckpt, resume=False)
    assert load_state(ckpt)["settings"]["num_states"] == 3
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="ck.pt"):
        fit_hmm(quakes, 3, restarts=3, max_iter=15, checkpoint=ckpt)


@pytest.mark.parametrize("emission", ["poisson", "gaussian"])
def test_batched_em_continues_exactly_from_a_state(quakes, emission) -> None:
    if emission == "poisson":
        y = quakes
    else:
        y = torch.randn(2, 40, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
        y[:, 10:25] += 2.5
    starts = [
        random_hmm(y, 3, emission, generator=torch.Generator().manual_seed(s)) for s in range(3)
    ]
    kept: list[EMState] = []

    def keep(state: EMState, finished: list[int]) -> None:
        if state.iteration == 7:  # a copy: the next iteration updates the state in place
            kept.append(EMState.from_state(copy.deepcopy(state.to_state())))

    whole = baum_welch_batched(starts, y, max_iter=120, on_iteration=keep)
    assert len(kept) == 1 and kept[0].iteration == 7
    _same_fits(baum_welch_batched(starts, y, max_iter=120, state=kept[0]), whole)
    with pytest.raises(ValueError, match="does not match"):
        baum_welch_batched(starts[:2], y, state=kept[0])


def test_load_series(tmp_path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("year,a,b\n2000,1,2\n2001,3,4\n")
    x, v, name = load_series(p, "b")
    assert x.tolist() == [2000, 2001] and v.tolist() == [2, 4] and name == "b"
    with pytest.raises(ValueError, match="one data column"):
        load_series(p)
    p.write_text("a\n1\nx\n")
    with pytest.raises(ValueError, match=r"numeric: data row 2 \(line 3\) holds 'x'"):
        load_series(p)
    p.write_text("a\n1\ninf\n")
    with pytest.raises(ValueError, match="non-finite"):
        load_series(p)
    p.write_text("")
    with pytest.raises(ValueError, match="header and at least one data row"):
        load_series(p)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_series(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_series(tmp_path)


# ---------------------------------------------------------------------------------------------
# (3) bad input
# ---------------------------------------------------------------------------------------------


def test_bad_input_raises(quakes: torch.Tensor) -> None:
    hmm = poisson3()
    with pytest.raises(ValueError, match="non-negative integer"):
        log_likelihood(hmm, [1.0, -2.0])
    with pytest.raises(ValueError, match="non-negative integer"):
        log_likelihood(hmm, [1.5])
    with pytest.raises(ValueError, match="D = 2"):
        log_likelihood(gaussian2(D=2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="finite"):
        forward_backward(gaussian2(D=1), [0.0, float("nan")])
    with pytest.raises(ValueError, match="emission"):
        HMM("binomial", torch.zeros(2, dtype=F64), torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="trans_logits"):
        HMM(
            "poisson",
            torch.zeros(2, dtype=F64),
            torch.zeros(3, 3, dtype=F64),
            log_rates=torch.zeros(2, dtype=F64),
        )
    with pytest.raises(ValueError, match="rows summing to 1"):
        HMM.from_probabilities([0.5, 0.6], [[1, 0], [0, 1]], rates=[1, 2])
    with pytest.raises(ValueError, match="rates"):
        HMM.from_probabilities([0.5, 0.5], [[1, 0], [0, 1]], rates=[1, -2])
    with pytest.raises(ValueError, match="num_samples"):
        sample_posterior(hmm, quakes, 0)
    with pytest.raises(ValueError, match="z must hold integer states in 0..2"):
        joint_log_prob(hmm, quakes, torch.full((1, 1, 107), 3))
    with pytest.raises(ValueError, match=r"z must be \[S, B, T\]"):
        joint_log_prob(hmm, quakes, torch.zeros(2, 1, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="z must hold integer"):
        joint_log_prob(hmm, quakes, torch.zeros(1, 1, 107))
    with pytest.raises(ValueError, match="num_samples"):
        sampled_likelihood_gradient(hmm, quakes, 1)
    with pytest.raises(ValueError, match="posterior does not match"):
        likelihood_gradient(hmm, quakes, posterior=forward_backward(hmm, quakes[:50]))
    with pytest.raises(TypeError, match="posterior must be a Posterior"):
        likelihood_gradient(hmm, quakes, posterior=torch.zeros(3))
    with pytest.raises(ValueError, match="method"):
        fit_hmm(quakes, 2, method="newton")
    with pytest.raises(ValueError, match="restarts"):
        fit_hmm(quakes, 2, restarts=0)
    with pytest.raises(ValueError, match="num_states"):
        random_hmm(quakes, 0, generator=torch.Generator())
    with pytest.raises(ValueError, match="max_iter"):
        baum_welch(hmm, quakes, max_iter=0)


@pytest.mark.parametrize("emission", ["poisson", "gaussian"])
def test_batched_em_matches_hand_m_step_and_single_runs(quakes: torch.Tensor, emission) -> None:
    if emission == "poisson":
        y, yb = quakes, quakes.reshape(1, -1)
    else:
        y = torch.randn(2, 60, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
        y[:, 20:40] += 3.0
        yb = y
    starts = [
        random_hmm(y, 3, emission, generator=torch.Generator().manual_seed(s)) for s in range(4)
    ]
    # one EM step from each start, against the M-step written out from forward_backward
    for h, f in zip(starts, baum_welch_batched(starts, y, max_iter=1), strict=True):
        post = forward_backward(h, y)
        g = post.gamma
        pi = g[:, 0].sum(0)
        P = post.xi.sum((0, 1))
        torch.testing.assert_close(f.hmm.startprob, pi / pi.sum(), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(
            f.hmm.transmat, P / P.sum(-1, keepdim=True), rtol=1e-12, atol=1e-14
        )
        w = g.sum((0, 1))
        if emission == "poisson":
            rates = (g * yb[..., None]).sum((0, 1)) / w
            torch.testing.assert_close(f.hmm.rates, rates, rtol=1e-12, atol=0.0)
        else:
            mu = torch.einsum("btk,btd->kd", g, yb) / w[:, None]
            torch.testing.assert_close(f.hmm.means, mu, rtol=1e-12, atol=1e-12)
        assert f.history[0] == pytest.approx(float(log_likelihood(h, y).sum()), rel=1e-13)
    # the stacked run stops each start where it would stop alone (a tolerance well above
    # rounding, which can move a gain of ~1e-11 across the default one)
    together = baum_welch_batched(starts, y, max_iter=300, tol=1e-8)
    for h, f in zip(starts, together, strict=True):
        alone = baum_welch(h, y, max_iter=300, tol=1e-8)
        assert (f.n_iter, f.converged) == (alone.n_iter, alone.converged)
        assert f.log_likelihood == pytest.approx(alone.log_likelihood, rel=1e-12)
    assert len({f.n_iter for f in together}) > 1  # starts did leave the batch at different times


def test_batched_em_bad_input(quakes: torch.Tensor) -> None:
    two = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[10.0, 20.0])
    three = random_hmm(quakes, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="non-empty"):
        baum_welch_batched([], quakes)
    with pytest.raises(ValueError, match="non-empty"):
        baum_welch_batched([two, "model"], quakes)
    with pytest.raises(ValueError, match="num_states"):
        baum_welch_batched([two, three], quakes)
    with pytest.raises(ValueError, match="tol"):
        baum_welch_batched([two], quakes, tol=float("nan"))


def test_earthquakes_match_published_summary(quakes: torch.Tensor) -> None:
    # Zucchini & MacDonald (2009), Sec. 1.2: 107 counts, mean 19.364, variance 51.573
    assert quakes.shape == (107,)
    assert float(quakes.mean()) == pytest.approx(19.364, abs=1e-3)
    assert float(quakes.var()) == pytest.approx(51.573, abs=1e-3)
