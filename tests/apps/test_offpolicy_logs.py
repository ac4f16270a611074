"""Tests of off-policy learning from logs: LoggedData without the truth, the CSV/Parquet reader,
value estimates with standard errors, and learn_policy (split, reward model, evaluation)."""

from __future__ import annotations

import csv
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stochgrad.apps import offpolicy as op
from stochgrad.apps.offpolicy import (
    LoggedData,
    SyntheticBandit,
    cross_fitted_rewards,
    fit_reward_model,
    learn_policy,
    log_columns,
    offpolicy_value,
    on_policy_value,
    policy_probs,
    policy_value,
    read_log,
    train_policy,
)

F64 = torch.float64
DOCS = Path(__file__).resolve().parents[2] / "docs" / "offpolicy.md"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env() -> SyntheticBandit:
    return SyntheticBandit()


def write_csv(path: Path, columns: dict[str, object]) -> Path:
    """A log as the docs write one: the csv module, floats as repr (exact round trip)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        w.writerows(zip(*(np.asarray(c).tolist() for c in columns.values()), strict=True))
    return path


def bare(d: LoggedData) -> LoggedData:
    """What a real log holds: no logging policy, no true expected rewards."""
    return LoggedData(d.contexts, d.actions, d.rewards, d.propensities, num_actions=d.num_actions)


# ---------------------------------------------------------------------------------------------
# layer 1: seeded cases replayed exactly against the formulas
# ---------------------------------------------------------------------------------------------


def test_csv_round_trip_is_exact(env, tmp_path) -> None:
    d = env.sample(300, generator=np.random.default_rng(1))
    path = write_csv(tmp_path / "log.csv", log_columns(d, expected=True))
    back = read_log(path, expected_prefix="q_")
    for name in ("contexts", "actions", "rewards", "propensities", "behavior", "expected_rewards"):
        assert torch.equal(getattr(back, name), getattr(d, name)), name
    assert back.num_actions == 10 and back.context_names == tuple(f"x_{j}" for j in range(5))
    # by default the truth is not read, and without pi0_ columns only the propensities remain
    cols = {k: v for k, v in log_columns(d).items() if not k.startswith("pi0_")}
    plain = read_log(write_csv(tmp_path / "plain.csv", cols), num_actions=10)
    assert plain.behavior is None and plain.expected_rewards is None and not plain.has_truth
    assert torch.equal(plain.propensities, d.propensities)


def test_explicit_context_columns_in_their_order(tmp_path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "b,a,action,reward,propensity,extra\n1.5,-2,1,0,0.5,x\n0.25,3,0,1,1.0,y\n\n"
    )  # a blank line is no round; the text column "extra" is ignored
    d = read_log(path, context_cols=["a", "b"])
    assert d.contexts.tolist() == [[-2.0, 1.5], [3.0, 0.25]]
    assert d.context_names == ("a", "b") and d.num_actions == 2 and len(d) == 2


def test_value_estimates_by_hand() -> None:
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]], dtype=F64)
    actions = torch.tensor([1, 0, 1])
    r = torch.tensor([1.0, 0.0, 2.0], dtype=F64)
    p0 = torch.tensor([0.5, 0.25, 0.8], dtype=F64)
    q_hat = torch.tensor([[0.1, 0.9], [0.3, 0.2], [1.0, 1.5]], dtype=F64)
    w = np.array([0.8 / 0.5, 0.6 / 0.25, 0.5 / 0.8])
    rn = r.numpy()
    ips = offpolicy_value("ips", probs, actions, r, p0)
    np.testing.assert_allclose(ips.terms.numpy(), w * rn, rtol=1e-15)
    assert ips.value == pytest.approx(np.mean(w * rn), abs=1e-15)
    assert ips.stderr == pytest.approx(np.std(w * rn, ddof=1) / math.sqrt(3), rel=1e-13)
    assert ips.max_weight == pytest.approx(2.4) and ips.effective_rounds == pytest.approx(
        w.sum() ** 2 / (w**2).sum(), rel=1e-13
    )
    sn = offpolicy_value("snips", probs, actions, r, p0)
    v = (w * rn).sum() / w.sum()
    lin = v + w * (rn - v) / w.mean()  # the delta method's linearised terms
    assert sn.value == pytest.approx(v, abs=1e-15)
    assert sn.stderr == pytest.approx(np.std(lin, ddof=1) / math.sqrt(3), rel=1e-12)
    dr = offpolicy_value("dr", probs, actions, r, p0, q_hat)
    qn, pn = q_hat.numpy(), probs.numpy()
    terms = (pn * qn).sum(1) + w * (rn - qn[[0, 1, 2], [1, 0, 1]])
    np.testing.assert_allclose(dr.terms.numpy(), terms, rtol=1e-14)
    logging = on_policy_value(r)
    assert logging.value == 1.0 and logging.stderr == pytest.approx(1 / math.sqrt(3))
    diff = ips - logging  # paired: the per-round differences
    assert diff.stderr == pytest.approx(np.std(w * rn - rn, ddof=1) / math.sqrt(3), rel=1e-12)


def test_value_estimates_are_the_objectives_values(env) -> None:
    d = env.sample(50, generator=np.random.default_rng(2))
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0), dtype=F64)
    q_hat = torch.full((50, 10), 0.4, dtype=F64)
    logged = (d.actions, d.rewards, d.propensities)
    for k in ("ips", "snips", "dr"):
        obj = op.offpolicy_objective(k, logits, *logged, q_hat)
        est = offpolicy_value(k, torch.softmax(logits, -1), *logged, q_hat)
        assert est.value == pytest.approx(obj.value, abs=1e-14), k


def test_value_estimates_match_open_bandit_pipeline(env) -> None:
    """OBP's IPW, SNIPW and DR estimators (obp.ope) on the same log: the same values, and the
    same per-round terms for IPS and DR."""
    ope = pytest.importorskip("obp.ope")
    d = env.sample(2000, generator=np.random.default_rng(3))
    theta = 0.5 * torch.randn(10, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    pi = policy_probs(theta, d.contexts)
    q_hat = cross_fitted_rewards(d, generator=np.random.default_rng(0))
    kw = {
        "reward": d.rewards.numpy(),
        "action": d.actions.numpy(),
        "pscore": d.propensities.numpy(),
        "action_dist": pi.numpy()[:, :, None],
    }
    ref = {
        "ips": ope.InverseProbabilityWeighting(),
        "snips": ope.SelfNormalizedInverseProbabilityWeighting(),
        "dr": ope.DoublyRobust(),
    }
    for k, estimator in ref.items():
        extra = {"estimated_rewards_by_reg_model": q_hat.numpy()[:, :, None]} if k == "dr" else {}
        ours = offpolicy_value(k, pi, d.actions, d.rewards, d.propensities, q_hat)
        assert ours.value == pytest.approx(estimator.estimate_policy_value(**kw, **extra), 1e-12)
        if k != "snips":  # OBP's SNIPW terms are w r / mean(w), not the delta method's
            terms = estimator._estimate_round_rewards(
                position=np.zeros(len(d), dtype=int), **kw, **extra
            )
            np.testing.assert_allclose(ours.terms.numpy(), terms, rtol=1e-12, atol=1e-15)


def test_learn_policy_replays_split_reward_model_ascent_and_evaluation(env) -> None:
    d = bare(env.sample(600, generator=np.random.default_rng(4)))
    res = learn_policy(d, "dr", holdout=0.25, iterations=20, lr=0.1, seed=3)
    perm = np.random.default_rng([3, 0]).permutation(600)
    ev, tr = np.sort(perm[:150]), np.sort(perm[150:])
    train, held = d.select(tr), d.select(ev)
    q_train = cross_fitted_rewards(train, 2, generator=np.random.default_rng([3, 1]))
    theta = train_policy(train, "dr", iterations=20, lr=0.1, reward_estimates=q_train)
    assert torch.equal(res.theta, theta)
    model = fit_reward_model(train.contexts, train.actions, train.rewards, 10)
    q_eval = model.predict(held.contexts).numpy()
    pi = policy_probs(theta, held.contexts).numpy()
    a, r, p0 = held.actions.numpy(), held.rewards.numpy(), held.propensities.numpy()
    w = pi[np.arange(150), a] / p0
    dr_terms = (pi * q_eval).sum(1) + w * (r - q_eval[np.arange(150), a])
    assert res.value.estimator == "dr" and res.value.value == pytest.approx(dr_terms.mean(), 1e-13)
    assert res.value.stderr == pytest.approx(dr_terms.std(ddof=1) / math.sqrt(150), 1e-12)
    assert res.values["ips"].value == pytest.approx(np.mean(w * r), 1e-13)
    assert res.logging_value.value == pytest.approx(r.mean(), 1e-15)
    assert (res.train_rounds, res.eval_rounds, res.in_sample) == (450, 150, False)
    assert res.true_value is None and res.reward_model == "cross-fit"
    assert res.gain.value == pytest.approx(dr_terms.mean() - r.mean(), 1e-12)


def test_dr_without_a_reward_model_is_ips_and_holdout_zero_is_in_sample(env) -> None:
    d = bare(env.sample(300, generator=np.random.default_rng(5)))
    dr = learn_policy(d, "dr", reward_model="none", holdout=0.0, iterations=15)
    ips = learn_policy(d, "ips", reward_model="none", holdout=0.0, iterations=15)
    torch.testing.assert_close(dr.theta, ips.theta, rtol=0, atol=1e-15)
    assert torch.equal(ips.theta, train_policy(d, "ips", iterations=15))  # every round, as is
    assert dr.in_sample and dr.eval_rounds == dr.train_rounds == 300
    assert sorted(dr.values) == ["ips", "snips"] and dr.value.estimator == "ips"
    # a given reward model is used as given
    q = torch.full((300, 10), 0.25, dtype=F64)
    given = learn_policy(d, "dr", reward_model=q, holdout=0.0, iterations=15)
    assert torch.equal(given.theta, train_policy(d, "dr", iterations=15, reward_estimates=q))
    assert given.reward_model == "given" and "dr" in given.values


def test_a_resumed_ascent_equals_an_uninterrupted_one(env) -> None:
    d = bare(env.sample(200, generator=np.random.default_rng(6)))
    saved: list[dict] = []
    full = train_policy(d, "snips", iterations=25, save=saved.append, save_every=10)
    assert [s["k"] for s in saved] == [10, 20]
    steps: list[int] = []
    resumed = train_policy(d, "snips", iterations=25, state=saved[0], progress=steps.append)
    assert torch.equal(resumed, full) and steps == [10] + [1] * 15


def test_linear_reward_model_is_ridge_least_squares(env) -> None:
    d = env.sample(400, generator=np.random.default_rng(7))
    r = d.rewards + 0.5 * d.contexts[:, 0]  # not 0/1: a linear model
    model = fit_reward_model(d.contexts, d.actions, r, 10, C=2.0, kind="auto")
    assert model.kind == "linear"
    x1 = np.hstack([np.ones((400, 1)), d.contexts.numpy()])
    X = np.zeros((400, 10, 6))
    X[np.arange(400), d.actions.numpy()] = x1
    X = X.reshape(400, 60)
    beta = np.linalg.solve(X.T @ X + 0.5 * np.eye(60), X.T @ r.numpy())  # penalty 1 / C
    np.testing.assert_allclose(
        model.predict(d.contexts[:3]).numpy(), x1[:3] @ beta.reshape(10, 6).T, atol=1e-8
    )


def test_num_actions_and_names_of_a_bare_log() -> None:
    d = LoggedData(
        torch.zeros(3, 2, dtype=torch.float32), torch.tensor([0, 3, 1], dtype=torch.int32),
        torch.tensor([1, 0, 1]), torch.tensor([0.5, 0.5, 1.0]),
    )  # fmt: skip
    assert d.num_actions == 4 and d.contexts.dtype == F64 and d.actions.dtype == torch.int64
    assert d.context_names == ("x_0", "x_1") and d.select([2]).num_actions == 4
    assert train_policy(d, "ips", iterations=2).shape == (4, 3)


# ---------------------------------------------------------------------------------------------
# layer 2: many samples against the simulator's truth
# ---------------------------------------------------------------------------------------------


def test_value_estimates_and_their_stderr_against_the_true_value(env) -> None:
    """400 logs of 300 rounds on the same contexts: each estimator's mean is within 5 standard
    errors of the policy's true value on those contexts (SNIPS: its O(1/n) bias is below that),
    and the reported stderr matches the spread of the estimates over logs."""
    n, reps = 300, 400
    x = env.sample_contexts(n, generator=np.random.default_rng(8))
    q, pi0 = env.expected_reward(x), env.behavior_policy(x)
    theta = 0.5 * torch.randn(10, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    pi = policy_probs(theta, x)
    truth = policy_value(pi, q)
    g = np.random.default_rng(9)
    u_a, u_r = g.random((reps, n)), g.random((reps, n))
    a = torch.from_numpy((u_a[:, :, None] > np.cumsum(pi0.numpy(), -1)).sum(-1).clip(max=9))
    r = torch.from_numpy(u_r) < torch.gather(q.expand(reps, n, 10), 2, a[..., None])[..., 0]
    r = r.to(F64)
    rows = torch.arange(n)
    q_hat = torch.full((n, 10), 0.5, dtype=F64)  # a wrong model: DR stays unbiased
    for k in ("ips", "snips", "dr"):
        ests = [offpolicy_value(k, pi, a[j], r[j], pi0[rows, a[j]], q_hat) for j in range(reps)]
        values = np.array([e.value for e in ests])
        se_mean = values.std(ddof=1) / math.sqrt(reps)
        assert abs(values.mean() - truth) < 5 * se_mean, k
        ratio = np.mean([e.stderr**2 for e in ests]) / values.var(ddof=1)
        assert 0.8 < ratio < 1.25, (k, ratio)


def test_learning_from_a_csv_log_matches_memory_and_beats_the_logger(env, tmp_path) -> None:
    """A simulated log written to CSV and read back: the same numbers as the in-memory data
    (without the truth), a learned policy whose true value (from the simulator) beats the
    logging policy's, and held-out estimates (value, gain over the logger) within 5 stderr of
    the true ones."""
    d = env.sample(5000, generator=np.random.default_rng(10))
    path = write_csv(tmp_path / "log.csv", log_columns(d, behavior=False))
    from_file = read_log(path, num_actions=10)
    test_x = env.sample_contexts(20_000, generator=np.random.default_rng(11))
    q_test = env.expected_reward(test_x)
    logging_true = policy_value(env.behavior_policy(test_x), q_test)
    for k in ("ips", "snips", "dr"):
        res = learn_policy(from_file, k, iterations=150, lr=0.1, seed=1)
        full = learn_policy(d, k, iterations=150, lr=0.1, seed=1)  # in memory, with the truth
        assert torch.equal(res.theta, full.theta), k
        assert sorted(res.values) == sorted(full.values) == ["dr", "ips", "snips"]
        for e, v in full.values.items():
            assert (res.values[e].value, res.values[e].stderr) == (v.value, v.stderr), (k, e)
        assert res.true_value is None and full.true_value is not None
        true_value = policy_value(policy_probs(res.theta, test_x), q_test)
        assert true_value > logging_true + 0.25, (k, true_value, logging_true)
        # the held-out rounds are independent of the policy: unbiased for its true value there
        assert abs(full.value.value - full.true_value) < 5 * full.value.stderr, k
        assert abs(full.logging_value.value - full.true_logging_value) < (
            5 * full.logging_value.stderr
        )
        true_gain = full.true_value - full.true_logging_value
        assert abs(full.gain.value - true_gain) < 5 * full.gain.stderr, k
        if k != "ips":  # IPS on 1,000 held-out rounds is too noisy to be sure of the gain
            assert full.gain.value > 3 * full.gain.stderr, k  # the improvement is detected


# ---------------------------------------------------------------------------------------------
# layer 3: bad files and bad input
# ---------------------------------------------------------------------------------------------

GOOD = "x_0,x_1,action,reward,propensity,pi0_0,pi0_1\n0.1,0.2,1,1,0.75,0.25,0.75\n"
GOOD += "0.3,0.4,0,0,0.25,0.25,0.75\n-1,2,1,1,0.75,0.25,0.75\n"
BAD_FILES = {
    "missing columns": (
        GOOD.replace("reward", "r").replace("propensity", "p"),
        r"missing columns 'reward', 'propensity'",
    ),
    "NaN": (GOOD.replace("0.3,0.4", "nan,0.4"), r"column 'x_0', row 2 \(line 3\).*NaN"),
    "empty cell": (GOOD.replace("0.3,0.4", ",0.4"), r"column 'x_0', row 2 \(line 3\).*empty"),
    "text": (GOOD.replace("-1,2", "-1,abc"), r"column 'x_1', row 3 \(line 4\).*not a number"),
    "infinite": (GOOD.replace("-1,2", "-1,inf"), r"column 'x_1', row 3.*not finite"),
    "propensity 0": (
        GOOD.replace("0,0,0.25,0.25", "0,0,0,0.25"),
        r"column 'propensity', row 2 \(line 3\).*\(0, 1\], got 0",
    ),
    "propensity above 1": (
        GOOD.replace("1,1,0.75,0.25,0.75\n0.3", "1,1,1.5,0.25,0.75\n0.3"),
        r"column 'propensity', row 1 \(line 2\).*got 1.5",
    ),
    "action out of range": (
        GOOD.replace("-1,2,1", "-1,2,2"),
        r"column 'action', row 3 \(line 4\): action 2 is out of range: there are 2 actions",
    ),
    "action not an integer": (GOOD.replace("-1,2,1", "-1,2,0.5"), r"'action', row 3.*integers"),
    "negative action": (GOOD.replace("-1,2,1", "-1,2,-1"), r"'action', row 3.*integers"),
    "pi0 not summing to 1": (
        GOOD.replace("0,0,0.25,0.25,0.75", "0,0,0.25,0.25,0.7"),
        r"row 2 \(line 3\): the logging probabilities pi0_0 \.\. pi0_1 sum to 0\.95",
    ),
    "pi0 against propensity": (
        GOOD.replace("1,1,0.75,0.25,0.75\n0.3", "1,1,0.5,0.25,0.75\n0.3"),
        r"column 'propensity', row 1 \(line 2\): propensity 0\.5 disagrees with pi0_1 = 0\.75",
    ),
    "pi0 with a gap": (GOOD.replace("pi0_1", "pi0_2"), r"missing pi0_1"),
    "repeated column": (GOOD.replace("x_1", "x_0"), r"unique, repeated: x_0"),
    "ragged row": (
        GOOD.replace("0.3,0.4,0", "0.3,0,0.4,0"),
        r"line 3 has 8 fields where the header \(line 1\) has 7",
    ),
    "empty file": ("", r"empty file"),
    "header only": (GOOD.split("\n")[0] + "\n", r"0 rounds; learning needs at least 2"),
    "no context column": (GOOD.replace("x_", "z_"), r"no context columns: none starts with 'x_'"),
}


@pytest.mark.parametrize(("text", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_csv_files_name_file_column_and_row(text, message, tmp_path) -> None:
    path = tmp_path / "bad log.csv"
    path.write_text(text)
    assert read_log(write_csv(tmp_path / "ok.csv", _columns(GOOD))).num_actions == 2
    with pytest.raises(ValueError, match=message) as exc:
        read_log(path)
    assert str(exc.value).startswith(f"{path}: ")


def _columns(text: str) -> dict[str, list[str]]:
    rows = list(csv.reader(text.splitlines()))
    return {h: [r[j] for r in rows[1:]] for j, h in enumerate(rows[0])}


def test_other_bad_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_log(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"unknown log format '\.txt'.*\.csv, \.parquet"):
        read_log(tmp_path / "log.txt")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("x_0,action,reward,propensity\n\xe9,0,1,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read_log(latin)
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    with pytest.raises(ValueError, match=r"2 columns pi0_0 \.\. but num_actions is 3"):
        read_log(good, num_actions=3)
    with pytest.raises(ValueError, match=r"missing column 'x_9'"):
        read_log(good, context_cols=["x_0", "x_9"])
    with pytest.raises(ValueError, match="context_cols must be a non-empty list"):
        read_log(good, context_cols="x_0")
    with pytest.raises(ValueError, match="num_actions must be an int >= 2"):
        read_log(good, num_actions=1)
    d = read_log(good, behavior_prefix=None)  # the pi0_ columns ignored
    assert d.behavior is None and d.num_actions == 2


def test_parquet_needs_pyarrow_and_says_so(tmp_path, monkeypatch) -> None:
    path = tmp_path / "log.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"reading Parquet needs pyarrow \(pip install pyarrow"):
        read_log(path)


def test_parquet_logs_read_like_csv_and_bad_ones_are_named(env, tmp_path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    d = env.sample(200, generator=np.random.default_rng(12))
    cols = log_columns(d)
    pq.write_table(pa.table(cols), tmp_path / "log.parquet")
    back = read_log(tmp_path / "log.parquet")
    for name in ("contexts", "actions", "rewards", "propensities", "behavior"):
        assert torch.equal(getattr(back, name), getattr(d, name)), name
    cols["propensity"] = cols["propensity"].copy()
    cols["propensity"][6] = 0.0
    pq.write_table(pa.table(cols), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad.parquet: column 'propensity', row 7: .*got 0"):
        read_log(tmp_path / "bad.parquet")
    nulls = {"x_0": [1.0, None, 2.0], "action": [0, 1, 1], "reward": [1.0, 0.0, 1.0]}
    pq.write_table(pa.table({**nulls, "propensity": [0.5] * 3}), tmp_path / "null.parquet")
    with pytest.raises(ValueError, match=r"column 'x_0', row 2: the value is missing"):
        read_log(tmp_path / "null.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="junk.parquet: not a readable Parquet file"):
        read_log(tmp_path / "junk.parquet")


def test_bad_logged_data_and_learner_arguments(env) -> None:
    d = env.sample(20, generator=np.random.default_rng(13))
    x, a, r, p = d.contexts, d.actions, d.rewards, d.propensities
    with pytest.raises(ValueError, match=r"propensities must lie in \(0, 1\].*at index 3"):
        LoggedData(x, a, r, torch.where(torch.arange(20) == 3, 0.0, p))
    with pytest.raises(TypeError, match="actions must be an integer tensor"):
        LoggedData(x, a.to(F64), r, p)
    with pytest.raises(ValueError, match=r"rewards must be finite \(NaN or infinity at index 2\)"):
        LoggedData(x, a, torch.where(torch.arange(20) == 2, float("nan"), r), p)
    with pytest.raises(ValueError, match="actions must lie in 0..1"):
        LoggedData(x, a, r, p, num_actions=2)
    with pytest.raises(ValueError, match="behavior's rows must sum to 1"):
        LoggedData(x, a, r, p, behavior=d.behavior * 0.9)
    with pytest.raises(ValueError, match="propensities disagree with behavior at index 0"):
        LoggedData(x, a, r, p * 0.5, behavior=d.behavior)
    with pytest.raises(ValueError, match="context_names must name the 5 context features"):
        LoggedData(x, a, r, p, context_names=("a",))
    with pytest.raises(ValueError, match="contexts must be a non-empty"):
        LoggedData(x[0], a, r, p)
    with pytest.raises(ValueError, match="estimator must be one of"):
        learn_policy(d, "dm")
    with pytest.raises(ValueError, match="reward_model must be one of"):
        learn_policy(d, "dr", reward_model="oracle")
    with pytest.raises(ValueError, match=r"reward_estimates must be a tensor of shape \(20, 10\)"):
        learn_policy(d, "dr", reward_model=torch.zeros(20, 3, dtype=F64))
    with pytest.raises(ValueError, match="holdout must be < 1"):
        learn_policy(d, "ips", holdout=1.0)
    with pytest.raises(ValueError, match="leaves 19 to learn from and 1 to evaluate on"):
        learn_policy(d, "ips", holdout=0.05)
    with pytest.raises(TypeError, match="data must be a LoggedData"):
        learn_policy({"contexts": x}, "ips")
    with pytest.raises(ValueError, match="state is not a mid-run state"):
        train_policy(d, "ips", iterations=5, state={"value": torch.zeros(3), "k": 2})
    with pytest.raises(ValueError, match="kind must be one of"):
        fit_reward_model(x, a, r, 10, kind="forest")
    with pytest.raises(ValueError, match="estimator must be one of"):
        offpolicy_value("dm", policy_probs(torch.zeros(10, 6, dtype=F64), x), a, r, p)
    with pytest.raises(ValueError, match="reward_estimates must be a tensor"):
        offpolicy_value("dr", policy_probs(torch.zeros(10, 6, dtype=F64), x), a, r, p)
    with pytest.raises(ValueError, match="only estimates on the same rounds"):
        on_policy_value(r) - on_policy_value(r[:5])


# ---------------------------------------------------------------------------------------------
# the documentation's example
# ---------------------------------------------------------------------------------------------


def test_docs_your_own_logs_python_example_runs(tmp_path, monkeypatch, capsys) -> None:
    """The Python blocks of "Your own logs" in docs/offpolicy.md run, in order, and print a
    learned value above the logging one, as the page says."""
    section = DOCS.read_text().split("## Your own logs", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)
    assert blocks, "no python example in the section"
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "offpolicy_md"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/offpolicy.md, Your own logs, block {i + 1}", "exec"), ns)
    assert (tmp_path / "log.csv").exists()
    result = ns["result"]
    assert result.value.value > result.logging_value.value + 5 * result.gain.stderr
    assert ns["learned_true"] > ns["logging_true"] + 0.25
    assert "learned" in capsys.readouterr().out
