"""Tests of the Bernoulli RBM: exact enumeration, the two-phase gradient, CD/PCD training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from stochgrad.apps import ebm
from stochgrad.apps.datasets import load_binary_digits as shared_digits_loader
from stochgrad.apps.ebm import (
    RBM,
    TrainConfig,
    all_binary,
    energy,
    exact_gradient,
    free_energy,
    gibbs_step,
    hidden_probs,
    load_binary_digits,
    log_likelihood,
    log_partition,
    negative_phase,
    negative_samples,
    positive_phase,
    sample_model,
    sampled_gradient,
    train_rbm,
    two_phase_gradient,
    visible_probs,
)
from stochgrad.checkpoint import CheckpointError, CheckpointMismatch, load_state
from stochgrad.gradient_estimate import GradientEstimate


def tiny_rbm(seed: int = 0, V: int = 6, H: int = 4, std: float = 1.0) -> RBM:
    g = torch.Generator().manual_seed(seed)
    return RBM(
        std * torch.randn(V, H, generator=g, dtype=torch.float64),
        0.5 * torch.randn(V, generator=g, dtype=torch.float64),
        0.5 * torch.randn(H, generator=g, dtype=torch.float64),
    )


TINY_DATA = torch.tensor(
    [
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 1],
        [1, 0, 1, 0, 1, 0],
        [1, 1, 0, 0, 0, 1],
        [0, 1, 1, 1, 0, 0],
    ],
    dtype=torch.float64,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_binary_digits()


def test_digits_are_the_shared_loader_in_float64(digits) -> None:
    assert load_binary_digits is shared_digits_loader
    train, test = digits
    assert train.dtype == test.dtype == torch.float64
    assert train.shape == (1437, 64) and test.shape == (360, 64)
    assert set(train.unique().tolist()) == {0.0, 1.0}


# -------------------------------------------------------------------------------------------
# (1) single cases against the formulas
# -------------------------------------------------------------------------------------------
def test_free_energy_and_log_partition_against_brute_force_numpy() -> None:
    rbm = tiny_rbm(1)
    W, b, c = (t.numpy() for t in rbm.params())
    vs, hs = all_binary(6).numpy(), all_binary(4).numpy()
    # -E for every (v, h) pair, in numpy: [64, 16]
    neg_e = vs @ W @ hs.T + (vs @ b)[:, None] + (hs @ c)[None, :]
    np.testing.assert_allclose(
        free_energy(rbm, all_binary(6)).numpy(), -logsumexp(neg_e, axis=1), rtol=1e-12
    )
    log_z = logsumexp(neg_e)
    assert float(log_partition(rbm)) == pytest.approx(log_z, rel=1e-12)
    assert float(log_partition(rbm, chunk=3)) == pytest.approx(log_z, rel=1e-12)
    ll = log_likelihood(rbm, all_binary(6))
    np.testing.assert_allclose(ll.numpy(), logsumexp(neg_e, axis=1) - log_z, rtol=1e-12)
    assert float(ll.exp().sum()) == pytest.approx(1.0, abs=1e-12)
    # energy of one (v, h) pair against the formula
    v, h = all_binary(6)[[37]], all_binary(4)[[9]]
    expected = -(v.numpy() @ W @ h.numpy().T).item() - v.numpy() @ b - h.numpy() @ c
    assert float(energy(rbm, v, h)) == pytest.approx(float(expected[0]), rel=1e-12)


def test_free_energy_and_conditionals_match_scikit_learn() -> None:
    from sklearn.neural_network import BernoulliRBM

    rbm = tiny_rbm(2)
    sk = BernoulliRBM(n_components=4)
    sk.components_ = rbm.W.T.numpy().copy()
    sk.intercept_visible_ = rbm.b.numpy().copy()
    sk.intercept_hidden_ = rbm.c.numpy().copy()
    vs = all_binary(6)
    np.testing.assert_allclose(
        free_energy(rbm, vs).numpy(), sk._free_energy(vs.numpy()), rtol=1e-12
    )
    np.testing.assert_allclose(hidden_probs(rbm, vs).numpy(), sk.transform(vs.numpy()), rtol=1e-12)
    back = RBM.from_sklearn(sk)
    for a, b in zip(back.params(), rbm.params(), strict=True):
        assert torch.equal(a, b)


def test_exact_gradient_against_both_layers_enumerated_and_autograd() -> None:
    rbm = tiny_rbm(3)
    # brute force over all 2^6 x 2^4 joint states, in numpy
    W, b, c = (t.numpy() for t in rbm.params())
    vs, hs = all_binary(6).numpy(), all_binary(4).numpy()
    neg_e = vs @ W @ hs.T + (vs @ b)[:, None] + (hs @ c)[None, :]
    p = np.exp(neg_e - logsumexp(neg_e))  # [64, 16]
    data = TINY_DATA.numpy()
    ph = 1 / (1 + np.exp(-(data @ W + c)))
    expected = (
        data.T @ ph / 5 - vs.T @ p @ hs,
        data.mean(0) - p.sum(1) @ vs,
        ph.mean(0) - p.sum(0) @ hs,
    )
    got = exact_gradient(rbm, TINY_DATA)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-10, atol=1e-12)
    # and the gradient of the exact log-likelihood by autograd
    params = [t.clone().requires_grad_(True) for t in rbm.params()]
    log_likelihood(RBM(*params), TINY_DATA).mean().backward()
    for g, q in zip(got, params, strict=True):
        torch.testing.assert_close(g, q.grad, rtol=1e-10, atol=1e-12)


def test_gibbs_step_replays_uniforms_exactly() -> None:
    rbm = tiny_rbm(4)
    v0 = TINY_DATA
    v1, h = gibbs_step(rbm, v0, generator=torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    u_h = torch.rand(5, 4, generator=g, dtype=torch.float64)
    h_exp = (u_h < torch.sigmoid(v0 @ rbm.W + rbm.c)).double()
    u_v = torch.rand(5, 6, generator=g, dtype=torch.float64)
    v_exp = (u_v < torch.sigmoid(h_exp @ rbm.W.T + rbm.b)).double()
    assert torch.equal(h, h_exp) and torch.equal(v1, v_exp)
    # two sweeps = gibbs_step twice
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    two = negative_samples(rbm, v0, 2, generator=g1)
    once, _ = gibbs_step(rbm, v0, generator=g2)
    assert torch.equal(two, gibbs_step(rbm, once, generator=g2)[0])


def test_sampled_gradient_replays_positive_minus_negative_phase() -> None:
    rbm = tiny_rbm(5)
    est = sampled_gradient(rbm, TINY_DATA, 7, generator=torch.Generator().manual_seed(9))
    v_neg = sample_model(rbm, 7, generator=torch.Generator().manual_seed(9))
    ph_data = torch.sigmoid(TINY_DATA @ rbm.W + rbm.c)
    ph_neg = torch.sigmoid(v_neg @ rbm.W + rbm.c)
    dW = TINY_DATA.T @ ph_data / 5 - v_neg[:, :, None] * ph_neg[:, None, :]
    torch.testing.assert_close(est.per_sample[0], dW, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(est.per_sample[1], TINY_DATA.mean(0) - v_neg)
    torch.testing.assert_close(est.per_sample[2], ph_data.mean(0) - ph_neg)
    torch.testing.assert_close(est.grad[0], dW.mean(0))
    assert not est.biased and est.num_samples == 7
    # CD-k: the negative samples are k sweeps from uniformly drawn data rows
    cd = sampled_gradient(
        rbm, TINY_DATA, 6, method="cd", k=2, generator=torch.Generator().manual_seed(3)
    )
    g = torch.Generator().manual_seed(3)
    start = TINY_DATA[torch.randint(5, (6,), generator=g)]
    v_cd = negative_samples(rbm, start, 2, generator=g)
    torch.testing.assert_close(cd.per_sample[1], TINY_DATA.mean(0) - v_cd)
    assert cd.biased


def test_positive_phase_is_fishers_identity_equal_to_autograd_of_the_free_energy() -> None:
    rbm = tiny_rbm(8)
    est = positive_phase(rbm, TINY_DATA)
    assert isinstance(est, GradientEstimate) and est.method == "fisher_exact"
    assert est.info["mode"] == "factors" and float(est.flat("stderr").abs().sum()) == 0
    # E_{h|v}[-grad E(v, h)] = -grad F(v): autograd of the free energy, an independent route
    params = [t.clone().requires_grad_(True) for t in rbm.params()]
    (-free_energy(RBM(*params), TINY_DATA).mean()).backward()
    for g, q in zip(est.grad, params, strict=True):
        torch.testing.assert_close(g, q.grad, rtol=1e-12, atol=1e-14)
    ph = torch.sigmoid(TINY_DATA @ rbm.W + rbm.c)
    torch.testing.assert_close(est.grad[0], TINY_DATA.T @ ph / 5, rtol=1e-12, atol=1e-14)


def test_negative_phase_terms_average_to_grad_log_z_over_the_model() -> None:
    rbm = tiny_rbm(9)
    vs = all_binary(6)
    terms = negative_phase(rbm, vs)  # one term per visible state
    ph = torch.sigmoid(vs @ rbm.W + rbm.c)
    torch.testing.assert_close(terms[0], vs[:, :, None] * ph[:, None, :], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(terms[1], vs)
    torch.testing.assert_close(terms[2], ph, rtol=1e-12, atol=1e-14)
    # weighted by the exact p(v): grad log Z by autograd of the enumerated partition function
    p = log_likelihood(rbm, vs).exp()
    params = [t.clone().requires_grad_(True) for t in rbm.params()]
    log_partition(RBM(*params)).backward()
    for t, q in zip(terms, params, strict=True):
        torch.testing.assert_close(torch.tensordot(p, t, 1), q.grad, rtol=1e-10, atol=1e-12)


def test_two_phase_gradient_is_a_gradient_estimate_with_the_chains_stderr() -> None:
    rbm = tiny_rbm(10)
    chains = all_binary(6)[[3, 17, 40, 63, 9]]
    est = two_phase_gradient(rbm, TINY_DATA, chains, method="rbm_cd1", biased=True)
    assert est.biased and est.method == "rbm_cd1" and est.num_samples == 5
    pos, neg = positive_phase(rbm, TINY_DATA).grad, negative_phase(rbm, chains)
    for i in range(3):
        torch.testing.assert_close(est.per_sample[i], pos[i] - neg[i])
        torch.testing.assert_close(est.stderr[i], neg[i].std(0) / 5**0.5, rtol=1e-12, atol=1e-14)
    decayed = two_phase_gradient(
        rbm, TINY_DATA, chains, method="rbm_cd1", biased=True, weight_decay=0.1
    )
    torch.testing.assert_close(decayed.grad[0], est.grad[0] - 0.1 * rbm.W)
    torch.testing.assert_close(decayed.stderr[0], est.stderr[0])
    torch.testing.assert_close(decayed.grad[1], est.grad[1])
    # a training step's direction: the same mean from one core call, no per-sample terms
    from stochgrad.apps.ebm.phases import _step

    step = _step(rbm, TINY_DATA, chains, 0.1)
    for a, b in zip(step, decayed.grad, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", ["cd", "pcd"])
def test_training_replays_the_update_rule(method: str) -> None:
    data = TINY_DATA[:4]
    cfg = TrainConfig(
        num_hidden=4,
        epochs=2,
        method=method,
        k=2,
        lr=0.1,
        lr_final_fraction=0.5,
        batch_size=2,
        num_chains=3 if method == "pcd" else None,
        momentum=0.5,
        weight_decay=0.01,
    )
    res = train_rbm(data, cfg)
    # replay by hand: same generator use order (weights, chains, per epoch a permutation, Gibbs)
    g = torch.Generator().manual_seed(cfg.seed)
    rbm = RBM.init(6, 4, generator=g, std=cfg.init_std, data=data)
    p = data.mean(0).clamp(0.01, 0.99)
    torch.testing.assert_close(rbm.b, torch.log(p / (1 - p)))
    W, b, c = (t.clone() for t in rbm.params())
    chains = data[torch.randint(4, (3,), generator=g)] if method == "pcd" else None
    dW, db, dc = torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(c)
    for lr in (0.1, 0.05):  # linear decay to half over two epochs
        order = torch.randperm(4, generator=g)
        for batch in (order[:2], order[2:]):
            cur = RBM(W, b, c)
            v_pos = data[batch]
            if chains is None:
                v_neg = negative_samples(cur, v_pos, 2, generator=g)
            else:
                chains = v_neg = negative_samples(cur, chains, 2, generator=g)
            hp, hn = hidden_probs(cur, v_pos), hidden_probs(cur, v_neg)
            dW = 0.5 * dW + lr * (v_pos.T @ hp / 2 - v_neg.T @ hn / len(v_neg) - 0.01 * W)
            db = 0.5 * db + lr * (v_pos.mean(0) - v_neg.mean(0))
            dc = 0.5 * dc + lr * (hp.mean(0) - hn.mean(0))
            W, b, c = W + dW, b + db, c + dc
    torch.testing.assert_close(res.rbm.W, W, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(res.rbm.b, b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(res.rbm.c, c, rtol=1e-12, atol=1e-14)
    assert res.train_ll[-1] == pytest.approx(float(log_likelihood(res.rbm, data).mean()))


# -------------------------------------------------------------------------------------------
# (2) many samples against exact values
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("V", "H"), [(4, 3), (3, 5)])  # hidden, then visible enumeration
def test_sample_model_and_gibbs_step_preserve_the_exact_distribution(V: int, H: int) -> None:
    rbm = tiny_rbm(7, V=V, H=H)
    p = log_likelihood(rbm, all_binary(V)).exp().numpy()
    g = torch.Generator().manual_seed(1)
    weights = 2.0 ** torch.arange(V - 1, -1, -1, dtype=torch.float64)
    v = sample_model(rbm, 40_000, generator=g)
    counts = np.bincount((v @ weights).long().numpy(), minlength=2**V)
    assert stats.chisquare(counts, 40_000 * p).pvalue > 1e-3
    # p(v) is stationary under a block-Gibbs sweep
    v2, _ = gibbs_step(rbm, v, generator=g)
    counts2 = np.bincount((v2 @ weights).long().numpy(), minlength=2**V)
    assert stats.chisquare(counts2, 40_000 * p).pvalue > 1e-3
    h = torch.ones(20_000, H, dtype=torch.float64)
    # visible_probs: the mean of v given h equals the conditional mean
    pv = visible_probs(rbm, h)
    vs = (torch.rand(pv.shape, generator=g, dtype=torch.float64) < pv).double()
    se = (pv[0] * (1 - pv[0]) / 20_000).sqrt()
    assert ((vs.mean(0) - pv[0]).abs() < 5 * se).all()


def test_training_on_digits_improves_exact_likelihood_and_matches_sklearn_scale(digits) -> None:
    train, test = digits
    cfg = TrainConfig(num_hidden=8, epochs=2, method="cd", batch_size=10, lr=0.1, init_std=0.1)
    res = train_rbm(train, cfg, test=test)
    assert len(res.train_ll) == 3 and len(res.test_ll) == 3
    # the start is the independent-pixel model (data log-odds biases, small weights)
    assert res.test_ll[-1] > res.test_ll[0] + 1.5
    assert res.test_ll[-1] == pytest.approx(float(log_likelihood(res.rbm, test).mean()))
    sk = ebm.fit_sklearn(train, num_hidden=8, epochs=2, lr=0.06, batch_size=20, seed=0)
    sk_ll = float(log_likelihood(sk, test).mean())
    assert -64 * np.log(2) < sk_ll < 0  # better than uniform pixels, a proper log-probability
    # same seed, same numbers
    again = train_rbm(train[:200], TrainConfig(num_hidden=3, epochs=1, batch_size=50))
    twice = train_rbm(train[:200], TrainConfig(num_hidden=3, epochs=1, batch_size=50))
    assert torch.equal(again.rbm.W, twice.rbm.W)


def test_checkpoint_resume_equals_uninterrupted(tmp_path, digits) -> None:
    train, test = digits[0][:300], digits[1][:50]
    for method in ("pcd", "cd"):
        cfg = TrainConfig(
            num_hidden=4,
            epochs=4,
            method=method,
            batch_size=30,
            momentum=0.5,
            lr_final_fraction=0.2,
        )
        ref = train_rbm(train, cfg, test=test)
        ckpt = tmp_path / f"{method}.pt"

        def interrupt(epoch: int, ll: dict) -> None:
            if epoch == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train_rbm(train, cfg, test=test, checkpoint=ckpt, callback=interrupt)
        seen: list[int] = []
        res = train_rbm(
            train, cfg, test=test, checkpoint=ckpt, callback=lambda e, ll, seen=seen: seen.append(e)
        )
        assert res.epochs_resumed == 2 and seen == [2, 3, 4]
        assert res.train_ll == ref.train_ll and res.test_ll == ref.test_ll
        for a, b in zip(res.rbm.params(), ref.rbm.params(), strict=True):
            assert torch.equal(a, b)
        with pytest.raises(CheckpointMismatch, match="epochs: 4 saved, 5 now"):
            train_rbm(
                train,
                TrainConfig(num_hidden=4, epochs=5, method=method),
                test=test,
                checkpoint=ckpt,
            )


def test_checkpoint_progress_resume_flag_and_bad_files(tmp_path, digits) -> None:
    train = digits[0][:200]
    cfg = TrainConfig(num_hidden=3, epochs=3, batch_size=50)
    ckpt = tmp_path / "rbm.pt"

    def stop(n: int) -> None:  # Ctrl-C after the first epoch's save
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_rbm(train, cfg, checkpoint=ckpt, progress=stop)
    assert load_state(ckpt)["epoch"] == 1
    ticks: list[int] = []
    found: list[int] = []
    res = train_rbm(train, cfg, checkpoint=ckpt, progress=ticks.append, on_resume=found.append)
    assert found == [1] and ticks == [1, 1, 1] and res.epochs_resumed == 1
    ref = train_rbm(train, cfg)
    assert res.train_ll == ref.train_ll and torch.equal(res.rbm.W, ref.rbm.W)
    # resume=False trains afresh (and overwrites the file)
    fresh = train_rbm(train, cfg, checkpoint=ckpt, resume=False, on_resume=found.append)
    assert fresh.epochs_resumed == 0 and found == [1] and fresh.train_ll == ref.train_ll
    for content in (b"", b"garbage"):
        ckpt.write_bytes(content)
        with pytest.raises(CheckpointError, match="rbm.pt"):
            train_rbm(train, cfg, checkpoint=ckpt)


# -------------------------------------------------------------------------------------------
# (3) bad input
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: RBM(torch.zeros(3, 2), torch.zeros(2), torch.zeros(2)), ValueError, "W must be"),
        (
            lambda: RBM(torch.full((1, 1), float("nan")), torch.zeros(1), torch.zeros(1)),
            ValueError,
            "finite",
        ),
        (
            lambda: RBM(np.zeros((1, 1)), torch.zeros(1), torch.zeros(1)),
            TypeError,
            "W must be a torch",
        ),
        (lambda: log_likelihood(tiny_rbm(), torch.full((2, 6), 0.5)), ValueError, "only 0 and 1"),
        (lambda: log_likelihood(tiny_rbm(), torch.zeros(2, 5)), ValueError, r"v must be \[N, 6\]"),
        (
            lambda: log_partition(RBM(torch.zeros(2, 17), torch.zeros(2), torch.zeros(17))),
            ValueError,
            "H must be <= 16",
        ),
        (
            lambda: exact_gradient(
                RBM(torch.zeros(2, 17), torch.zeros(2), torch.zeros(17)), torch.zeros(1, 2)
            ),
            ValueError,
            "H must be <= 16",
        ),
        (
            lambda: sample_model(
                RBM(torch.zeros(17, 17), torch.zeros(17), torch.zeros(17)),
                2,
                generator=torch.Generator(),
            ),
            ValueError,
            "V or H must be",
        ),
        (
            lambda: sampled_gradient(tiny_rbm(), TINY_DATA, 1, generator=torch.Generator()),
            ValueError,
            "num_samples",
        ),
        (
            lambda: sampled_gradient(
                tiny_rbm(), TINY_DATA, 5, method="pt", generator=torch.Generator()
            ),
            ValueError,
            "method",
        ),
        (
            lambda: negative_samples(tiny_rbm(), TINY_DATA, 0, generator=torch.Generator()),
            ValueError,
            "k must be",
        ),
        (
            lambda: two_phase_gradient(
                tiny_rbm(), TINY_DATA, torch.zeros(3, 5), method="x", biased=False
            ),
            ValueError,
            r"samples must be \[N, 6\]",
        ),
        (lambda: positive_phase(tiny_rbm(), torch.full((2, 6), 0.5)), ValueError, "data must"),
        (lambda: negative_phase(tiny_rbm(), TINY_DATA[0]), ValueError, "samples must be"),
        (lambda: TrainConfig(method="sgd"), ValueError, "method"),
        (lambda: TrainConfig(lr=0.0), ValueError, "lr"),
        (lambda: TrainConfig(momentum=1.0), ValueError, "momentum"),
        (lambda: TrainConfig(method="cd", num_chains=5), ValueError, "num_chains"),
        (lambda: TrainConfig(epochs=0), ValueError, "epochs"),
        (lambda: train_rbm(TINY_DATA, TrainConfig(num_hidden=17)), ValueError, "num_hidden"),
        (
            lambda: train_rbm(TINY_DATA, TrainConfig(num_hidden=2), test=torch.zeros(2, 3)),
            ValueError,
            "test",
        ),
        (lambda: train_rbm(TINY_DATA, "fast"), TypeError, "config"),
        (
            lambda: train_rbm(TINY_DATA, TrainConfig(num_hidden=2, lr=1e308, batch_size=1)),
            ValueError,
            "diverged",
        ),
        (lambda: load_binary_digits(test_size=5000), ValueError, "test_size"),
        (lambda: RBM.init(3, 0, generator=torch.Generator()), ValueError, "num_hidden"),
    ],
)
def test_bad_input_raises(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
