"""Tests of stochgrad.apps.rl.policy_gradient: exact formulas, an end-to-end run, resume, bad
input, safe checkpoints."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

import stochgrad as sg  # noqa: E402
from stochgrad.apps.rl import policy_gradient as PG  # noqa: E402
from stochgrad.checkpoint import CheckpointError, CheckpointMismatch  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# (1) exact formulas on tiny synthetic batches
# ---------------------------------------------------------------------------------------------
def _hand_returns(rewards, dones, gamma):
    """Reward-to-go by the definition: sum over the rest of the same episode."""
    T, N = rewards.shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            g, k = 0.0, t
            while k < T:
                g += gamma ** (k - t) * rewards[k, n]
                if dones[k, n]:
                    break
                k += 1
            out[t, n] = g
    return out


def _deprecated(name):
    with pytest.warns(DeprecationWarning, match=f"{name} is deprecated"):
        return getattr(PG, name)


def test_reward_to_go_of_the_trainer_matches_definition():
    rewards = np.array([[1.0, 0.5], [2.0, -1.0], [0.0, 3.0], [4.0, 1.0]])
    dones = np.array([[False, False], [True, False], [False, True], [False, False]])
    got = sg.reward_to_go(torch.tensor(rewards), 0.9, torch.tensor(dones)).numpy()
    np.testing.assert_allclose(got, _hand_returns(rewards, dones, 0.9), rtol=0, atol=1e-12)
    # the deprecated name keeps its arguments and numbers
    old = _deprecated("discounted_returns")(torch.tensor(rewards), torch.tensor(dones), 0.9)
    np.testing.assert_allclose(old.numpy(), got, rtol=0, atol=1e-12)


def test_discounted_returns_bootstrap_at_truncation_and_rollout_end():
    discounted_returns = _deprecated("discounted_returns")
    r = torch.tensor([[1.0], [1.0], [1.0]], dtype=torch.float64)
    dones = torch.tensor([[True], [False], [False]])
    term = torch.tensor([[False], [False], [False]])  # step 0 truncated (time limit)
    nv = torch.tensor([[10.0], [20.0], [30.0]], dtype=torch.float64)
    got = discounted_returns(r, dones, 0.5, terminated=term, next_values=nv).squeeze(1)
    # t=2: 1 + .5*30; t=1: 1 + .5*G_2; t=0: truncated -> 1 + .5*V(final obs)=1+5
    g2 = 1 + 0.5 * 30
    assert got.tolist() == [1 + 0.5 * 10, 1 + 0.5 * g2, g2]
    # a true termination is not bootstrapped
    got = discounted_returns(r, dones, 0.5, next_values=nv).squeeze(1)
    assert got[0].item() == 1.0


class _FirstCoordinate(torch.nn.Module):
    """A stand-in critic: V(s) = s[0], so that a test chooses the values through the states."""

    def forward(self, obs):
        return obs[..., :1]


def _trainer_with_rollout(baseline, gamma, lam, rewards, dones, terminated, values, next_values):
    """A trainer whose critic reads V off the states, and a rollout ``b`` built by hand."""
    T, N = rewards.shape
    t = PG.Trainer(PG.Config(num_envs=N, n_steps=T, baseline=baseline, gamma=gamma,
                             gae_lambda=lam))  # fmt: skip
    t.value = _FirstCoordinate()
    obs = torch.zeros(T, N, 4)
    obs[..., 0] = values
    nobs = torch.zeros(T, N, 4)
    nobs[..., 0] = next_values
    b = dict(obs=obs, next_obs=nobs, rewards=rewards, dones=dones, terminated=terminated)
    return t, b


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_trainer_advantages_are_gae_with_bootstrap_at_time_limits_and_rollout_end(lam):
    """GAE by the recursion, written out: delta_t = r_t + gamma V(s'_t) [not terminated] - V(s_t),
    A_t = delta_t + gamma lam A_{t+1} [episode goes on]; s'_t the state after step t (the final
    observation of an episode cut by a time limit), V(s'_t) = V(s_{t+1}) within an episode."""
    rng = np.random.default_rng(1)
    T, N, gamma = 5, 3, 0.9
    r = rng.normal(size=(T, N))
    v = rng.normal(size=(T, N))
    nv = np.vstack([v[1:], rng.normal(size=(1, N))])
    dones = np.zeros((T, N), dtype=bool)
    term = np.zeros((T, N), dtype=bool)
    dones[1, 0] = term[1, 0] = True  # a termination
    dones[2, 1] = True  # a time limit: bootstrapped with V(final observation)
    nv[1, 0] = 0.0  # never read: terminated
    nv[2, 1] = 7.5  # the final observation's value, not v[3, 1]
    f32 = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    t, b = _trainer_with_rollout("gae", gamma, lam, f32(r), torch.tensor(dones),
                                 torch.tensor(term), f32(v), f32(nv))  # fmt: skip
    adv, targets = t._advantages(b)
    hand = np.zeros((T, N))
    for n in range(N):
        acc = 0.0
        for k in reversed(range(T)):
            delta = r[k, n] + gamma * (0.0 if term[k, n] else nv[k, n]) - v[k, n]
            acc = delta + gamma * lam * (0.0 if (dones[k, n] or k == T - 1) else acc)
            hand[k, n] = acc
    np.testing.assert_allclose(adv.numpy(), hand, rtol=0, atol=1e-5)
    np.testing.assert_allclose(targets.numpy(), hand + v, rtol=0, atol=1e-5)
    t.envs.close()


def _captured_update(trainer):
    """Run one update; return the rollout, the policy before it and the gradient it used."""
    import copy

    seen = {}
    rollout = trainer._rollout

    def keep_rollout():
        seen["b"] = rollout()
        return seen["b"]

    def keep_grads():
        seen["grads"] = [p.grad.clone() for p in trainer.policy.parameters()]

    trainer._rollout = keep_rollout
    before = copy.deepcopy(trainer.policy)
    trainer.policy_opt.step = keep_grads  # the gradient, not a step
    stats = trainer.update()
    return seen["b"], before, seen["grads"], stats


def test_reinforce_update_is_the_score_function_formula():
    """One update of the trainer replayed: -grad = (1/NT) sum (G_t - mean G) grad log pi."""
    gamma = 0.9
    t = PG.Trainer(PG.Config(num_envs=3, n_steps=16, baseline="mean", gamma=gamma,
                             normalize_advantages=False, max_grad_norm=1e9))  # fmt: skip
    b, policy, grads, _ = _captured_update(t)
    T, N = 16, 3
    G = torch.tensor(_hand_returns(b["rewards"].double().numpy(), b["dones"].numpy(), gamma))
    adv = (G - G.mean()).float()
    logp = policy.dist(b["obs"]).log_prob(b["actions"])  # [T, N]
    hand = torch.autograd.grad((logp * adv).sum() / (T * N), list(policy.parameters()))
    for g, h in zip(grads, hand, strict=True):
        torch.testing.assert_close(-g, h, rtol=1e-4, atol=1e-6)
    t.envs.close()


def test_grad_snr_is_the_ratio_of_the_environments_batch_means():
    """With 8 environments the diagnostic's 8 batch means are the environments' gradients."""
    t = PG.Trainer(PG.Config(num_envs=PG.SNR_BATCHES, n_steps=6, baseline="none",
                             normalize_advantages=False, max_grad_norm=1e9))  # fmt: skip
    b, policy, grads, stats = _captured_update(t)
    T, E = 6, PG.SNR_BATCHES
    G = sg.reward_to_go(b["rewards"], t.config.gamma, b["dones"])
    logp = policy.dist(b["obs"]).log_prob(b["actions"])  # [T, E]
    params = list(policy.parameters())
    per_env = [
        torch.cat([g.reshape(-1) for g in torch.autograd.grad((logp[:, e] * G[:, e]).mean(),
                                                              params, retain_graph=True)])
        for e in range(E)
    ]  # fmt: skip
    m = torch.stack(per_env)  # [E, P] batch means
    grad = m.mean(0)
    var = (T * (m - grad) ** 2).sum(0) / (E - 1)  # variance of one step's term
    snr = float(grad.norm() / (var / (T * E)).sum().sqrt())
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.testing.assert_close(-flat, grad, rtol=1e-4, atol=1e-6)
    assert stats["grad_snr"] == pytest.approx(snr, rel=1e-4)
    t.envs.close()


def test_grad_snr_every_k_updates_and_resume_with_another_k(tmp_path):
    res = PG.train("CartPole-v1", "reinforce", 5 * 64, 0, num_envs=2, n_steps=32, snr_every=2)
    has = ["grad_snr" in s for s in res.history.update_stats]
    assert has == [True, False, True, False, True]
    assert all(np.isfinite(s["grad_snr"]) and s["grad_snr"] > 0
               for s in res.history.update_stats if "grad_snr" in s)  # fmt: skip
    off = PG.train("CartPole-v1", "reinforce", 128, 0, num_envs=2, n_steps=32, snr_every=0)
    assert not any("grad_snr" in s for s in off.history.update_stats)
    # a diagnostic changes no number of the run
    assert (
        off.history.episode_returns
        == PG.train(
            "CartPole-v1", "reinforce", 128, 0, num_envs=2, n_steps=32, snr_every=1
        ).history.episode_returns
    )
    ckpt = tmp_path / "c.pt"
    PG.train("CartPole-v1", "reinforce", 64, 0, checkpoint=ckpt, num_envs=2, n_steps=32)
    again = PG.train("CartPole-v1", "reinforce", 128, 0, checkpoint=ckpt, resume=True,
                     num_envs=2, n_steps=32, snr_every=1)  # fmt: skip
    assert again.resumed_from_steps == 64


def test_deprecated_reinforce_loss_is_the_surrogate():
    """Linear softmax policy, two short episodes: autograd == sum_t (e_a - p) s^T (G_t - b) / M."""
    reinforce_loss = _deprecated("reinforce_loss")
    gamma = 0.9
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(3, 2, generator=gen, dtype=torch.float64).requires_grad_()
    T, N = 4, 2
    S = torch.randn(T, N, 2, generator=gen, dtype=torch.float64)
    A = torch.tensor([[0, 2], [1, 1], [2, 0], [0, 1]])
    R = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, -1.0]], dtype=torch.float64)
    D = torch.tensor([[False, False], [True, False], [False, True], [False, False]])
    G = sg.reward_to_go(R, gamma, D)
    for baseline in ("none", "mean", "values"):
        values = torch.randn(T, N, generator=gen, dtype=torch.float64)
        b = {"none": torch.zeros(T, N), "mean": G.mean().expand(T, N), "values": values}[baseline]
        adv = G - b
        logits = S @ W.T  # [T, N, 3]
        logp = torch.log_softmax(logits, -1).gather(-1, A.unsqueeze(-1)).squeeze(-1)
        W.grad = None
        reinforce_loss(logp.reshape(-1), adv.reshape(-1)).backward()
        # by hand: d log softmax(W s)_a / dW = (onehot(a) - p) s^T
        hand = torch.zeros(3, 2, dtype=torch.float64)
        Gh = torch.tensor(_hand_returns(R.numpy(), D.numpy(), gamma))
        for t in range(T):
            for n in range(N):
                s = S[t, n]
                p = torch.softmax(W.detach() @ s, 0)
                e = torch.zeros(3, dtype=torch.float64)
                e[A[t, n]] = 1.0
                hand += torch.outer(e - p, s) * (Gh[t, n] - b[t, n])
        hand /= T * N
        torch.testing.assert_close(-W.grad, hand, rtol=1e-12, atol=1e-12)


def test_entropy_bonus_gradient():
    reinforce_loss = _deprecated("reinforce_loss")
    logits = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64, requires_grad=True)
    dist = torch.distributions.Categorical(logits=logits)
    lp = dist.log_prob(torch.tensor(1))
    reinforce_loss(lp.reshape(1), torch.zeros(1), dist.entropy().reshape(1), 0.5).backward()
    p = torch.softmax(logits.detach(), 0)
    logp = torch.log(p)
    # dH/dz_j = -p_j (log p_j + H)
    hand = -p * (logp - (p * logp).sum())
    torch.testing.assert_close(logits.grad, -0.5 * hand, rtol=1e-12, atol=1e-12)


def _hand_gae(r, v, nv, dones, gamma, lam):
    T, N = r.shape
    out = np.zeros((T, N))
    for n in range(N):
        acc = 0.0
        for t in reversed(range(T)):
            delta = r[t, n] + gamma * (0.0 if dones[t, n] else nv[t, n]) - v[t, n]
            acc = delta + gamma * lam * (0.0 if dones[t, n] else acc)
            out[t, n] = acc
    return out


def test_deprecated_gae_advantages_keep_their_numbers():
    gae_advantages = _deprecated("gae_advantages")
    discounted_returns = _deprecated("discounted_returns")
    rng = np.random.default_rng(0)
    T, N = 6, 3
    r, v = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    dones = rng.random((T, N)) < 0.3
    # next_values: v shifted in time within an episode, the final state's value at the end
    nv = np.vstack([v[1:], rng.normal(size=(1, N))])
    nv = np.where(dones, 0.0, nv)  # terminated: value 0 anyway
    tt = lambda x: torch.tensor(x)  # noqa: E731
    gamma = 0.95
    for lam in (0.0, 0.5, 0.9, 1.0):
        got = gae_advantages(tt(r), tt(v), tt(nv), tt(dones), gamma, lam).numpy()
        np.testing.assert_allclose(got, _hand_gae(r, v, nv, dones, gamma, lam), atol=1e-12)
    # lambda = 0: one-step TD errors
    got0 = gae_advantages(tt(r), tt(v), tt(nv), tt(dones), gamma, 0.0).numpy()
    np.testing.assert_allclose(got0, r + gamma * np.where(dones, 0, nv) - v, atol=1e-12)
    # lambda = 1: bootstrapped discounted returns minus values
    got1 = gae_advantages(tt(r), tt(v), tt(nv), tt(dones), gamma, 1.0)
    G = discounted_returns(tt(r), tt(dones), gamma, next_values=tt(nv))
    torch.testing.assert_close(got1, G - tt(v), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# (2) end to end, checkpoints, resume
# ---------------------------------------------------------------------------------------------
def test_short_cartpole_run_writes_checkpoint_and_evaluates(tmp_path):
    ckpt = tmp_path / "run.pt"
    res = PG.train("CartPole-v1", "reinforce", 5000, 1, checkpoint=ckpt, checkpoint_every=3)
    t = res.trainer
    assert t.env_steps >= 5000 and t.env_steps % res.config.batch == 0
    assert ckpt.exists()
    assert len(t.history.update_steps) == t.updates
    assert t.history.episode_returns and all(r >= 1 for r in t.history.episode_returns)
    # every step belongs to a finished or the current episode
    assert sum(t.history.episode_lengths) + int(t.ep_length.sum()) == t.env_steps
    config, state = PG.load_checkpoint(ckpt)
    assert state["env_steps"] == t.env_steps and config.seed == 1
    returns = PG.evaluate(ckpt, episodes=2)
    assert len(returns) == 2 and all(1 <= r <= 500 for r in returns)


@pytest.mark.parametrize(
    ("algo", "baseline", "extra"),
    [("reinforce", "value", {}), ("reinforce", "none", {}), ("trpo", "gae", {"value_batch": 48})],
)
def test_resume_is_bit_identical(tmp_path, algo, baseline, extra):
    if algo == "trpo":
        pytest.importorskip("stochgrad.natural")
    kw = dict(num_envs=2, n_steps=64, baseline=baseline, entropy_coef=0.01, **extra)
    k = 4 * 128
    straight = PG.train("CartPole-v1", algo, 2 * k, 3, **kw)
    ckpt = tmp_path / "c.pt"
    first = PG.train("CartPole-v1", algo, k, 3, checkpoint=ckpt, **kw)
    assert first.trainer.env_steps == k
    resumed = PG.train("CartPole-v1", algo, 2 * k, 3, checkpoint=ckpt, resume=True, **kw)
    assert resumed.resumed_from_steps == k
    assert resumed.trainer.env_steps == straight.trainer.env_steps == 2 * k
    h1, h2 = straight.history, resumed.history
    assert h1.episode_returns == h2.episode_returns
    assert h1.episode_end_steps == h2.episode_end_steps
    assert h1.update_mean100 == h2.update_mean100 or np.allclose(
        h1.update_mean100, h2.update_mean100, equal_nan=True
    )
    pairs = zip(
        straight.trainer.policy.parameters(), resumed.trainer.policy.parameters(), strict=True
    )
    for a, b in pairs:
        assert torch.equal(a, b)
    vpairs = zip(
        straight.trainer.value.parameters(), resumed.trainer.value.parameters(), strict=True
    )
    for a, b in vpairs:
        assert torch.equal(a, b)


def test_resume_refuses_other_settings(tmp_path):
    ckpt = tmp_path / "c.pt"
    PG.train("CartPole-v1", "reinforce", 64, 0, checkpoint=ckpt, num_envs=2, n_steps=32)
    with pytest.raises(CheckpointMismatch, match="other settings.*n_steps: 32 saved, 16 now"):
        PG.train(
            "CartPole-v1", "reinforce", 128, 0, checkpoint=ckpt, resume=True, num_envs=2, n_steps=16
        )


def test_gaussian_policy_on_pendulum():
    res = PG.train("Pendulum-v1", "reinforce", 400, 0, num_envs=2, n_steps=100)
    assert isinstance(res.trainer.policy, PG.GaussianPolicy)
    assert res.trainer.env_steps == 400 and len(res.history.episode_returns) == 2  # 200-step eps


# ---------------------------------------------------------------------------------------------
# (3) bad input
# ---------------------------------------------------------------------------------------------
def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="algo"):
        PG.train("CartPole-v1", "ppo2", 100)
    with pytest.raises(ValueError, match="env_id"):
        PG.train("NoSuchEnv-v9", "reinforce", 100)
    for steps in (0, -5):
        with pytest.raises(ValueError, match="steps"):
            PG.train("CartPole-v1", "reinforce", steps)
    with pytest.raises(ValueError, match="baseline"):
        PG.train("CartPole-v1", "reinforce", 100, baseline="median")
    with pytest.raises(ValueError, match="gamma"):
        _deprecated("discounted_returns")(
            torch.ones(2, 1), torch.zeros(2, 1, dtype=torch.bool), 1.5
        )
    with pytest.raises(ValueError, match="lam"):
        z = torch.zeros(2, 1)
        _deprecated("gae_advantages")(z, z, z, z.bool(), 0.9, -0.1)
    with pytest.raises(ValueError, match="snr_every"):
        PG.Config(snr_every=-1)
    with pytest.raises(ValueError, match="baseline 'mean' needs"):
        PG.Config(baseline="mean", num_envs=1, n_steps=1)
    with pytest.raises(ValueError, match="episodes"):
        PG.evaluate("nothing.pt", 0)
    with pytest.raises(CheckpointError, match="exist.pt: no such file"):
        PG.evaluate("does/not/exist.pt", 1)
    with pytest.raises(TypeError, match="steps"):
        PG.train("CartPole-v1", "reinforce", 10.5)
    with pytest.raises(ValueError, match="num_envs"):
        PG.train("CartPole-v1", "reinforce", 100, num_envs=0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        PG.train("CartPole-v1", "reinforce", 100, checkpoint_every=0)


# ---------------------------------------------------------------------------------------------
# TRPO (needs stochgrad.natural)
# ---------------------------------------------------------------------------------------------
def test_trpo_steps_stay_in_the_trust_region(tmp_path):
    pytest.importorskip("stochgrad.natural")
    ckpt = tmp_path / "trpo.pt"
    res = PG.train("CartPole-v1", "trpo", 2048, 0, checkpoint=ckpt, num_envs=2, n_steps=256)
    c = res.config
    assert (c.gae_lambda, c.value_iters, c.value_batch) == (0.98, 20, 512)
    assert (c.cg_damping, c.target_kl, c.num_envs) == (1e-3, 0.01, 2)
    stats = res.history.update_stats
    assert len(stats) == 4 and res.trainer.env_steps == 2048
    for s in stats:
        assert s["kl"] <= c.target_kl + 1e-9
        if s["accepted"]:
            assert s["loss_new"] < s["loss_old"]
    assert any(s["accepted"] for s in stats)
    resumed = PG.train(
        "CartPole-v1", "trpo", 2560, 0, checkpoint=ckpt, resume=True, num_envs=2, n_steps=256
    )
    assert resumed.resumed_from_steps == 2048 and resumed.trainer.env_steps == 2560


def test_trpo_rejects_baselines_without_a_critic():
    with pytest.raises(ValueError, match="baseline"):
        PG.train("CartPole-v1", "trpo", 100, baseline="none")


@pytest.mark.parametrize(
    ("env_id", "baseline"),
    [("CartPole-v1", "mean"), ("Acrobot-v1", "gae"), ("CartPole-v1", "none")],
)
def test_other_baselines_and_envs_run(env_id, baseline):
    before = torch.get_rng_state()
    res = PG.train(env_id, "reinforce", 256, 0, num_envs=2, n_steps=64, baseline=baseline)
    assert torch.equal(torch.get_rng_state(), before)  # global RNG untouched
    assert res.trainer.env_steps == 256 and len(res.history.update_steps) == 2
    assert all(np.isfinite(s["policy_loss"]) for s in res.history.update_stats)
    assert ("value_loss" in res.history.update_stats[0]) == (baseline == "gae")


# ---------------------------------------------------------------------------------------------
# checkpoints hold no pickled objects; progress; moved names
# ---------------------------------------------------------------------------------------------
class _Marker:
    """Unpickling this creates a file: a harmless stand-in for a planted payload running code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _planted(path, marker):
    """A checkpoint as the earlier release wrote it (the environments pickled), with a payload
    in place of the environments; every other field is genuine."""
    from dataclasses import asdict

    res = PG.train("CartPole-v1", "reinforce", 64, 0, num_envs=2, n_steps=32)
    state = {k: v for k, v in res.trainer.state().items() if k != "env_actions"}
    state["envs"] = torch.frombuffer(bytearray(pickle.dumps(_Marker(marker))), dtype=torch.uint8)
    torch.save({"config": asdict(res.config), "state": state}, path)


def test_a_planted_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload-ran"
    ckpt = tmp_path / "planted.pt"
    _planted(ckpt, marker)
    with pytest.raises(CheckpointError) as exc:
        PG.train("CartPole-v1", "reinforce", 128, 0, checkpoint=ckpt, resume=True, num_envs=2,
                 n_steps=32)  # fmt: skip
    assert "\n" not in str(exc.value) and str(ckpt) in str(exc.value)
    assert "earlier release" in str(exc.value)
    assert not marker.exists()
    # its policy can still be evaluated: the pickled environments are left unread
    assert len(PG.evaluate(ckpt, episodes=1)) == 1
    assert not marker.exists()
    # a whole file that is a pickled object is refused by the loader itself
    torch.save(_Marker(marker), tmp_path / "object.pt")
    for call in (PG.load_checkpoint, PG.evaluate):
        with pytest.raises(CheckpointError, match="not a stochgrad file") as exc:
            call(tmp_path / "object.pt")
        assert "\n" not in str(exc.value)
    assert not marker.exists()


def test_checkpoint_holds_only_tensors_and_plain_values(tmp_path):
    ckpt = tmp_path / "c.pt"
    PG.train("CartPole-v1", "reinforce", 128, 0, checkpoint=ckpt, num_envs=2, n_steps=32)
    blob = torch.load(ckpt, weights_only=True)  # would raise on any pickled object
    actions = blob["state"]["env_actions"]
    assert actions.shape == (64, 2) and set(actions.unique().tolist()) <= {0, 1}
    assert "envs" not in blob["state"]


def test_environments_that_do_not_replay_are_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    PG.train("CartPole-v1", "reinforce", 64, 0, checkpoint=ckpt, num_envs=2, n_steps=32)
    blob = torch.load(ckpt, weights_only=True)
    blob["state"]["env_actions"] = 1 - blob["state"]["env_actions"]  # other actions
    blob.pop("stochgrad_sha256")  # as if written so: the digest would refuse an altered file
    torch.save(blob, ckpt)
    with pytest.raises(CheckpointError, match="did not replay"):
        PG.train("CartPole-v1", "reinforce", 128, 0, checkpoint=ckpt, resume=True, num_envs=2,
                 n_steps=32)  # fmt: skip


def test_progress_counts_environment_steps_after_each_checkpoint(tmp_path):
    ckpt = tmp_path / "c.pt"
    seen, updates, saved = [], [], []

    def progress(n):
        seen.append(n)
        saved.append(ckpt.exists())

    PG.train("CartPole-v1", "reinforce", 100, 0, checkpoint=ckpt, checkpoint_every=1,
             num_envs=2, n_steps=32, progress=progress,
             on_update=lambda t, s: updates.append(s["env_steps"]))  # fmt: skip
    assert seen == [64, 36] and updates == [64, 128] and all(saved)
    seen.clear()
    found = []
    PG.train("CartPole-v1", "reinforce", 256, 0, checkpoint=ckpt, resume=True, num_envs=2,
             n_steps=32, progress=seen.append, on_resume=found.append)  # fmt: skip
    assert found == [128] and seen == [128, 64, 64]


def test_moved_names_warn():
    with pytest.warns(DeprecationWarning, match="ADVANTAGE_BASELINES"):
        assert PG.BASELINES == PG.ADVANTAGE_BASELINES == ("none", "mean", "value", "gae")
    with pytest.warns(DeprecationWarning, match="stochgrad.cli.rl.plot_learning_curve"):
        from stochgrad.cli.rl import plot_learning_curve

        assert PG.plot_learning_curve is plot_learning_curve
    with pytest.raises(AttributeError):
        PG.no_such_name  # noqa: B018
    from stochgrad.apps.rl import returns

    for name in ("discounted_returns", "gae_advantages", "reinforce_loss"):
        with pytest.warns(DeprecationWarning, match=f"returns.{name} is deprecated"):
            assert callable(getattr(returns, name))
    with pytest.raises(AttributeError):
        returns.no_such_name  # noqa: B018
