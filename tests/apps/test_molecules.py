"""Tests of stochgrad.apps.molecules: tokenizer, GRU, scores, metrics, policy gradient.

The command ``stochgrad molecules`` is tested in tests/cli/test_molecules.py.
"""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from rdkit import Chem, DataStructs, RDConfig  # noqa: E402
from rdkit.Chem import QED, Crippen, rdFingerprintGenerator  # noqa: E402

from stochgrad.apps.molecules.agent import (  # noqa: E402
    AgentConfig,
    optimize,
    policy_loss,
    reinforce_surrogate,
    step_groups,
)
from stochgrad.apps.molecules.data import (  # noqa: E402
    Vocabulary,
    load_corpus,
    load_nci,
    tokenize,
)
from stochgrad.apps.molecules.metrics import internal_diversity, moses_metrics  # noqa: E402
from stochgrad.apps.molecules.model import (  # noqa: E402
    GRUConfig,
    PretrainConfig,
    SmilesGRU,
    default_prior_path,
    load_model,
    load_prior,
    pretrain,
    save_model,
    training_data,
)
from stochgrad.apps.molecules.scoring import (  # noqa: E402
    CELECOXIB,
    Oracle,
    _sascorer,
    make_objective,
    penalized_logp,
    qed_score,
    tanimoto_similarity,
    top_auc,
)
from stochgrad.checkpoint import CheckpointError, CheckpointMismatch, load_state  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = GRUConfig(embedding=8, hidden=16, layers=1, max_length=20)


@pytest.fixture(scope="module")
def nci() -> list[str]:
    return load_nci(300)


@pytest.fixture(scope="module")
def vocab(nci) -> Vocabulary:
    return Vocabulary.from_smiles(nci)


# ----------------------------------------------------------------------------- tokenizer
def test_tokenize_keeps_multicharacter_atoms_whole():
    toks = tokenize("C[C@@H](Cl)c1cc[nH]c1Br.C%10CC%10[N+](=O)[O-]")
    for atom in ("[C@@H]", "Cl", "[nH]", "Br", "%10", "[N+]", "[O-]"):
        assert atom in toks
    assert "C" in toks and "l" not in toks and "r" not in toks


def test_round_trip_on_nci_and_bracket_atoms(nci, vocab):
    for s in nci:
        assert "".join(tokenize(s)) == s
        assert vocab.decode(vocab.encode(s)) == s
    batch = vocab.encode_batch(nci[:20])
    assert batch[:, 0].eq(vocab.start_index).all()
    assert vocab.decode_batch(batch) == nci[:20]
    assert Vocabulary.from_state_dict(vocab.state_dict()).tokens == vocab.tokens


def test_tokenizer_bad_input():
    with pytest.raises(ValueError, match="smiles"):
        tokenize("C[C@@H")  # unclosed bracket
    with pytest.raises(TypeError, match="smiles"):
        tokenize(3)  # type: ignore[arg-type]
    voc = Vocabulary.from_smiles(["CCO"])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        voc.encode("CCCl")
    with pytest.raises(ValueError, match="non-empty"):
        voc.encode_batch([])


# ----------------------------------------------------------------------------- model
def test_sample_log_likelihood_replays_softmax_formula(vocab):
    torch.manual_seed(0)
    model = SmilesGRU(vocab, TINY).eval()
    ids, logp = model.sample(8, generator=torch.Generator().manual_seed(1))
    ids2, logp2 = model.sample(8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ids, ids2) and torch.equal(logp, logp2)
    with torch.no_grad():
        assert torch.allclose(logp, model.log_likelihood(ids), atol=1e-5)
        # one sequence by hand: sum_t log softmax(logits_t)[x_{t+1}] up to the end token
        row = ids[0]
        logits, _ = model(row[None, :-1])
        lp = torch.log_softmax(logits[0], -1)
        total = 0.0
        for t in range(row.numel() - 1):
            if row[t + 1] == vocab.pad_index:
                break
            total += float(lp[t, row[t + 1]])
        assert math.isclose(total, float(logp[0]), rel_tol=1e-5, abs_tol=1e-5)


def test_first_token_frequencies_match_softmax(vocab):
    torch.manual_seed(0)
    model = SmilesGRU(vocab, TINY).eval()
    n = 20_000
    with torch.no_grad():
        ids, _ = model.sample(n, generator=torch.Generator().manual_seed(2), max_length=1)
        logits, _ = model(torch.full((1, 1), vocab.start_index))
        p = torch.softmax(logits[0, 0], -1).numpy()
    freq = np.bincount(ids[:, 1].numpy(), minlength=len(vocab)) / n
    stderr = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) <= 5 * stderr + 1e-12)


def test_model_bad_input(vocab):
    with pytest.raises(ValueError, match="config"):
        SmilesGRU(vocab, GRUConfig(hidden=0))
    model = SmilesGRU(vocab, TINY)
    with pytest.raises(ValueError, match="num"):
        model.sample(0)
    with pytest.raises(ValueError, match="ids"):
        model.log_likelihood(torch.zeros(3, dtype=torch.long))
    with pytest.raises(FileNotFoundError):
        load_model("does/not/exist.pt")


def test_pretrain_resume_equals_uninterrupted(nci, tmp_path):
    cfg = PretrainConfig(epochs=2, batch_size=16, lr=1e-2, checkpoint_every=2)
    data = nci[:48]
    full, losses = pretrain(data, tmp_path / "a.pt", gru=TINY, config=cfg)

    class Stop(Exception):
        pass

    def interrupt(step: int, loss: float) -> None:
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        pretrain(data, tmp_path / "b.pt", gru=TINY, config=cfg, callback=interrupt)
    resumed, losses_b = pretrain(data, tmp_path / "b.pt", gru=TINY, config=cfg)
    assert losses_b == losses and len(losses) == 6
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(cfg.seed)
    untrained = SmilesGRU(full.vocab, TINY)
    batch = full.vocab.encode_batch(data)
    with torch.no_grad():
        assert full.log_likelihood(batch).mean() > untrained.log_likelihood(batch).mean()
    again = load_model(tmp_path / "b.pt")
    assert torch.equal(next(again.parameters()), next(resumed.parameters()))
    with pytest.raises(ValueError, match="other settings"):
        pretrain(data, tmp_path / "b.pt", gru=TINY, config=PretrainConfig(epochs=3))
    # continuing with more epochs keeps the finished steps and adds the new ones
    longer = PretrainConfig(epochs=3, batch_size=16, lr=1e-2, checkpoint_every=2)
    _, losses_c = pretrain(data, tmp_path / "b.pt", gru=TINY, config=longer)
    assert losses_c[:6] == losses and len(losses_c) == 9
    with pytest.raises(ValueError, match="other settings"):
        pretrain(data, tmp_path / "b.pt", gru=TINY, config=cfg)  # fewer epochs


def test_pretrain_refuses_unknown_or_missing_device(nci, tmp_path):
    cfg = PretrainConfig(epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="device"):
        pretrain(nci[:16], tmp_path / "a.pt", gru=TINY, config=cfg, device="gpu0")
    with pytest.raises(ValueError, match="device"):
        pretrain(nci[:16], tmp_path / "a.pt", gru=TINY, config=cfg, device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            pretrain(nci[:16], tmp_path / "a.pt", gru=TINY, config=cfg, device="cuda")
    assert not (tmp_path / "a.pt").exists()


def test_saved_model_holds_cpu_tensors(vocab, tmp_path):
    from stochgrad.apps.molecules.model import save_model

    torch.manual_seed(0)
    model = SmilesGRU(vocab, TINY)
    save_model(model, tmp_path / "m.pt", data={"n": 3}, extra=[torch.ones(2)])
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in state["weights"].values())
    assert state["data"] == {"n": 3} and torch.equal(state["extra"][0], torch.ones(2))
    assert torch.equal(load_model(tmp_path / "m.pt").head.weight, model.head.weight)


# ----------------------------------------------------------------------------- scoring
def test_scores_match_rdkit():
    smi = ["CC(=O)Oc1ccccc1C(=O)O", "C1CCCCCCC1", CELECOXIB]
    for s in smi:
        mol = Chem.MolFromSmiles(s)
        assert qed_score(s) == QED.qed(mol)
        ring = max(len(r) for r in mol.GetRingInfo().AtomRings())
        expected = Crippen.MolLogP(mol) - _sascorer().calculateScore(mol) - max(0, ring - 6)
        assert math.isclose(penalized_logp(s), expected, rel_tol=1e-12)
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    a, b = (gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in (smi[0], CELECOXIB))
    assert tanimoto_similarity(smi[0], CELECOXIB) == DataStructs.TanimotoSimilarity(a, b)
    assert RDConfig.RDContribDir  # SA score comes from RDKit's Contrib
    # invalid SMILES score 0 in every objective
    for name in ("qed", "logp", "similarity"):
        assert make_objective(name, target=CELECOXIB)("C1CC(") == 0.0


def test_oracle_counts_unique_valid_molecules():
    o = Oracle(qed_score, budget=3)
    out = o(["CCO", "OCC", "C(", "c1ccccc1", "CCO", "CCN", "CCCC"])
    assert o.calls == 3 and o.exhausted
    assert [h[0] for h in o.history] == ["CCO", "c1ccccc1", "CCN"]
    assert out[0] == out[1] == out[4] == qed_score("CCO")
    assert out[2] == 0.0 and out[6] == 0.0  # invalid; new after the budget
    assert o.top(1)[0][0] == max(o.history, key=lambda kv: kv[1])[0]


def test_top_auc_closed_forms():
    # constant score c from the first call: the curve rises 0 -> c over the first freq_log calls
    c, budget, freq = 0.7, 1000, 100
    assert math.isclose(top_auc([c] * budget, budget), c * (budget - freq / 2) / budget)
    # a run stopping at 250 calls of a budget of 1000: trapezoids to 200, then the tail at c
    expected = (freq * c / 2 + freq * c + 50 * c + 750 * c) / budget
    assert math.isclose(top_auc([c] * 250, budget), expected)
    # top-1 of an increasing sequence, freq 1: mean of the running maximum with the 0 start
    vals = [0.1, 0.5, 0.3, 0.9]
    expected = (0.1 / 2 + (0.1 + 0.5) / 2 + (0.5 + 0.5) / 2 + (0.5 + 0.9) / 2) / 4
    assert math.isclose(top_auc(vals, 4, top_n=1, freq_log=1), expected)


def test_scoring_bad_input():
    with pytest.raises(ValueError, match="target"):
        make_objective("similarity", target="C1CC(")
    with pytest.raises(ValueError, match="name"):
        make_objective("banana")
    with pytest.raises(ValueError, match="weights"):
        make_objective("sum", weights={"qed": 0.5, "logp": 0.6})
    with pytest.raises(ValueError, match="budget"):
        Oracle(qed_score, budget=0)
    with pytest.raises(ValueError, match="finite"):
        Oracle(lambda s: float("nan"), budget=2)(["CCO"])
    with pytest.raises(ValueError, match="scores"):
        top_auc([], 10)


# ----------------------------------------------------------------------------- metrics
def test_internal_diversity_matches_rdkit_bulk_tanimoto(nci):
    smi = nci[:60]
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smi]
    sims = [DataStructs.BulkTanimotoSimilarity(fp, fps) for fp in fps]
    expected = 1.0 - float(np.mean(sims))
    assert math.isclose(internal_diversity(smi, chunk=7), expected, rel_tol=1e-6)


def test_moses_metrics_definitions():
    gen = ["CCO", "OCC", "C(", "c1ccccc1", "CCN", ""]
    m = moses_metrics(gen, ["CCO", "NCC"], unique_at=3)
    assert m.validity == 4 / 6
    assert m.uniqueness == 2 / 3  # first 3 valid: CCO, CCO, c1ccccc1
    assert m.novelty == 1 / 3  # distinct {CCO, c1ccccc1, CCN}; CCO and CCN in train
    with pytest.raises(ValueError, match="generated"):
        moses_metrics([])
    with pytest.raises(ValueError, match="invalid|valid SMILES"):
        internal_diversity(["C("])


# ----------------------------------------------------------------------------- policy gradient
def test_policy_loss_formulas():
    a = torch.tensor([-10.0, -20.0, -5.0], requires_grad=True)
    p = torch.tensor([-12.0, -18.0, -6.0])
    s = torch.tensor([0.5, 0.0, 1.0])
    loss = policy_loss("reinvent", a, p, s, sigma=60.0)
    expected = ((p + 60 * s - a.detach()) ** 2).mean()
    assert torch.allclose(loss, expected)
    loss.backward()
    assert torch.allclose(a.grad, -2 * (p + 60 * s - a.detach()) / 3)
    a.grad = None
    beta = 0.1
    r = s - beta * (a.detach() - p)
    b = torch.stack([(r.sum() - r[i]) / 2 for i in range(3)])
    loss = policy_loss("reinforce", a, p, s, beta=beta)
    loss.backward()
    assert torch.allclose(a.grad, -(r - b) / 3)
    # REINVENT's likelihood penalty c * mean(-1 / log P): gradient c / (3 log P^2)
    a.grad = None
    base = policy_loss("reinvent", a, p, s, sigma=500.0)
    loss = policy_loss("reinvent", a, p, s, sigma=500.0, likelihood_penalty=5e3)
    assert torch.allclose(loss - base, 5e3 * (-1 / a.detach()).mean())
    loss.backward()
    regress = -2 * (p + 500 * s - a.detach()) / 3
    assert torch.allclose(a.grad, regress + 5e3 / (3 * a.detach() ** 2))


def test_agent_config_likelihood_penalty_defaults():
    assert AgentConfig().penalty == 5e3 and AgentConfig().sigma == 500.0
    assert AgentConfig(method="reinforce").penalty == 0.0
    assert AgentConfig(method="reinforce", likelihood_penalty=10.0).penalty == 10.0
    assert AgentConfig(likelihood_penalty=0.0).penalty == 0.0
    with pytest.raises(ValueError, match="likelihood_penalty"):
        AgentConfig(likelihood_penalty=-1.0)
    with pytest.raises(ValueError, match="likelihood_penalty"):
        AgentConfig(likelihood_penalty=float("nan"))


def test_reinforce_gradient_mean_matches_exact_gradient(vocab):
    # one-token sequences: E[S] = sum_k softmax(logits)_k S(k) is enumerable
    torch.manual_seed(0)
    model = SmilesGRU(vocab, TINY)
    reward = torch.rand(len(vocab), generator=torch.Generator().manual_seed(3))
    head = model.head.bias
    start = torch.full((1, 1), vocab.start_index)
    logits, _ = model(start)
    exact = torch.autograd.grad((torch.softmax(logits[0, 0], -1) * reward).sum(), head)[0]
    gen = torch.Generator().manual_seed(4)
    grads = []
    for _ in range(80):
        with torch.no_grad():
            ids, _ = model.sample(64, generator=gen, max_length=1)
        loss = policy_loss(
            "reinforce",
            model.log_likelihood(ids),
            torch.zeros(64),
            reward[ids[:, 1]],
            beta=0.0,
        )
        grads.append(-torch.autograd.grad(loss, head)[0])
    g = torch.stack(grads)
    mean, se = g.mean(0), g.std(0) / math.sqrt(len(grads))
    assert torch.all((mean - exact).abs() <= 5 * se + 1e-6)


@pytest.mark.parametrize(
    ("advantage", "group_size", "factor"),
    [("loo", None, 1.0), ("loo", 2, 1.0), ("none", None, 1.0), ("grpo_unscaled", 2, 0.5)],
)
def test_reinforce_rules_on_one_token_sequences(vocab, advantage, group_size, factor):
    """The mean of many steps against the enumerated gradient of E[S]: unbiased rules within 5
    stderr of it; the group mean of 2 (Dr. GRPO) within 5 stderr of half of it, and beyond 5 of
    it (f - mean of 2 = (f - the other) / 2)."""
    torch.manual_seed(0)
    model = SmilesGRU(vocab, TINY)
    reward = torch.rand(len(vocab), generator=torch.Generator().manual_seed(3))
    head = model.head.bias
    logits, _ = model(torch.full((1, 1), vocab.start_index))
    exact = torch.autograd.grad((torch.softmax(logits[0, 0], -1) * reward).sum(), head)[0]
    gen = torch.Generator().manual_seed(4)
    groups = step_groups(64, 64, group_size)
    grads = []
    for _ in range(80):
        with torch.no_grad():
            ids, _ = model.sample(64, generator=gen, max_length=1)
        logp = model.log_likelihood(ids)
        sur = reinforce_surrogate(logp, torch.zeros(64), reward[ids[:, 1]], beta=0.0,
                                  advantage=advantage, groups=groups)  # fmt: skip
        grads.append(-torch.autograd.grad(sur.loss, head)[0])  # maximize=True: minus
    g = torch.stack(grads)
    mean, se = g.mean(0), g.std(0) / math.sqrt(len(grads))
    assert torch.all((mean - factor * exact).abs() <= 5 * se + 1e-6)
    if factor != 1.0:
        assert torch.any((mean - exact).abs() > 5 * se)


def test_reinforce_surrogate_advantages_by_hand():
    a = torch.tensor([-10.0, -20.0, -5.0, -7.0], requires_grad=True)
    p = torch.tensor([-12.0, -18.0, -6.0, -7.5])
    s = torch.tensor([0.5, 0.0, 1.0, 0.25])
    beta = 0.1
    r = s - beta * (a.detach() - p)
    groups = step_groups(4, 2, 2)
    assert groups.tolist() == [0, 0, 1, 1]
    loo = reinforce_surrogate(a, p, s, beta=beta, advantage="loo", groups=groups)
    hand = torch.stack([r[0] - r[1], r[1] - r[0], r[2] - r[3], r[3] - r[2]])
    torch.testing.assert_close(loo.advantages, hand)
    grpo = reinforce_surrogate(a, p, s, beta=beta, advantage="grpo")
    centred = r - r.mean()
    torch.testing.assert_close(grpo.advantages, centred / (centred.std() + 1e-4))
    loss = policy_loss("reinforce", a, p, s, beta=beta, advantage="grpo_unscaled", groups=groups)
    loss.backward()
    half = torch.stack([r[0] - r[1], r[1] - r[0], r[2] - r[3], r[3] - r[2]]) / 2
    torch.testing.assert_close(a.grad, -half / 4)
    with pytest.raises(ValueError, match="advantage"):
        reinforce_surrogate(a, p, s, advantage="mean")
    with pytest.raises(ValueError, match="group_size"):
        step_groups(6, 4, 3)


def test_reinvent_gradient_is_a_weighted_sum_of_sequence_scores():
    """REINVENT's loss is no score-function estimator, but its gradient is
    (1/n) sum_i w_i grad log P(x_i): the weights the gradient diagnostic uses."""
    from stochgrad.apps.molecules.agent import _reinvent_weights

    a = torch.tensor([-10.0, -20.0, -5.0], requires_grad=True)
    p, s = torch.tensor([-12.0, -18.0, -6.0]), torch.tensor([0.5, 0.0, 1.0])
    loss = policy_loss("reinvent", a, p, s, sigma=60.0, likelihood_penalty=5e3)
    (g,) = torch.autograd.grad(loss, a)
    torch.testing.assert_close(g, _reinvent_weights(a, p, s, 60.0, 5e3) / 3)


@pytest.mark.parametrize(("method", "advantage"), [("reinforce", "grpo"), ("reinvent", "loo")])
def test_optimize_logs_the_gradient_diagnostic(vocab, tmp_path, method, advantage):
    cfg = AgentConfig(method=method, advantage=advantage, group_size=4, batch_size=8,
                      replay_size=8, replay_batch=4, max_steps=5, diagnose_every=2,
                      patience=0)  # fmt: skip
    result, _ = _agent_run(vocab, tmp_path / "a.pt", cfg)
    logged = [s.grad_snr is not None for s in result.steps]
    assert logged == [True, False, True, False, True]
    for st in result.steps[::2]:  # a tiny random prior: often no valid molecule, reward 0
        assert 0 <= st.grad_variance < math.inf and st.grad_snr >= 0
        if method == "reinvent":  # its weights are never all 0
            assert st.grad_variance > 0 and st.grad_snr < math.inf
    # a diagnostic changes no number of the run; its interval may change on resume
    quiet = AgentConfig(**{**cfg.__dict__, "diagnose_every": 0})
    other, _ = _agent_run(vocab, tmp_path / "b.pt", quiet)
    assert [s.loss for s in other.steps] == [s.loss for s in result.steps]
    assert all(s.grad_snr is None for s in other.steps)
    again, _ = _agent_run(vocab, tmp_path / "a.pt", quiet)
    assert len(again.steps) == 5


def test_agent_checkpoint_of_an_earlier_release_resumes_with_the_default_rule(vocab, tmp_path):
    from stochgrad.checkpoint import save_state

    cfg = AgentConfig(batch_size=8, replay_size=8, replay_batch=2, max_steps=2)
    _agent_run(vocab, tmp_path / "a.pt", cfg)
    state = load_state(tmp_path / "a.pt")
    for key in ("advantage", "group_size", "diagnose_every"):
        del state["settings"]["config"][key]
    save_state(state, tmp_path / "a.pt")
    resumed: list = []
    result, _ = _agent_run(vocab, tmp_path / "a.pt", cfg, on_resume=lambda *a: resumed.append(a))
    assert len(resumed) == 1 and len(result.steps) == 2
    grpo = AgentConfig(batch_size=8, replay_size=8, replay_batch=2, max_steps=2, advantage="grpo")
    with pytest.raises(CheckpointMismatch, match="advantage: 'loo' saved, 'grpo' now"):
        _agent_run(vocab, tmp_path / "a.pt", grpo)


def test_policy_loss_bad_input():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="shape"):
        policy_loss("reinvent", x, torch.zeros(2), x)
    with pytest.raises(ValueError, match="non-finite"):
        policy_loss("reinvent", x, x, torch.tensor([0.0, float("nan"), 0.0]))
    with pytest.raises(ValueError, match="method"):
        policy_loss("ppo", x, x, x)
    with pytest.raises(ValueError, match="likelihood_penalty"):
        policy_loss("reinvent", x - 1, x, x, likelihood_penalty=-1.0)
    with pytest.raises(ValueError, match="method"):
        AgentConfig(method="ppo")
    with pytest.raises(ValueError, match="batch_size"):
        AgentConfig(batch_size=1)
    with pytest.raises(ValueError, match="patience"):
        AgentConfig(patience=-1)
    with pytest.raises(ValueError, match="replay_batch"):
        AgentConfig(replay_batch=200)
    with pytest.raises(ValueError, match="replay_batch"):
        AgentConfig(replay_batch=-1)
    with pytest.raises(ValueError, match="advantage"):
        AgentConfig(advantage="mean")
    with pytest.raises(ValueError, match="group_size must divide"):
        AgentConfig(group_size=16)  # batch 64, replay 24
    with pytest.raises(ValueError, match="group_size"):
        AgentConfig(group_size=1)
    with pytest.raises(ValueError, match="diagnose_every"):
        AgentConfig(diagnose_every=-1)


def test_agent_resume_equals_uninterrupted(vocab, tmp_path):
    torch.manual_seed(0)
    prior = SmilesGRU(vocab, TINY)
    cfg = AgentConfig(batch_size=8, replay_size=8, replay_batch=2, max_steps=5, checkpoint_every=2)

    def run(path, callback=None):
        agent = copy.deepcopy(prior)
        oracle = Oracle(make_objective("qed"), budget=1000)
        return optimize(
            agent, prior, oracle, cfg, seed=5, checkpoint=path, callback=callback
        ), agent

    full, agent_a = run(tmp_path / "a.pt")

    class Stop(Exception):
        pass

    def interrupt(step):
        if len(seen) == 3:
            raise Stop
        seen.append(step)

    seen: list = []
    with pytest.raises(Stop):
        run(tmp_path / "b.pt", interrupt)
    resumed, agent_b = run(tmp_path / "b.pt")
    assert len(full.steps) == 5
    assert full.history == resumed.history
    assert [s.loss for s in full.steps] == [s.loss for s in resumed.steps]
    for a, b in zip(agent_a.state_dict().values(), agent_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_agent_random_state_round_trips_as_tensors():
    from stochgrad.apps.molecules.agent import _rng_from_state, _rng_to_state

    rng = np.random.default_rng(7)
    rng.random(3)
    saved = _rng_to_state(rng)
    assert isinstance(saved["state"], torch.Tensor) and isinstance(saved["inc"], torch.Tensor)
    p = np.arange(1, 11) / 55
    expected = rng.choice(10, 4, replace=False, p=p)
    other = np.random.default_rng(0)
    _rng_from_state(other, saved)
    assert np.array_equal(other.choice(10, 4, replace=False, p=p), expected)


def _agent_run(vocab, path, cfg, **kwargs):
    torch.manual_seed(0)
    prior = SmilesGRU(vocab, TINY)
    oracle = Oracle(make_objective("qed"), budget=1000)
    result = optimize(copy.deepcopy(prior), prior, oracle, cfg, seed=1, checkpoint=path, **kwargs)
    return result, oracle


def test_agent_checkpoint_holds_only_tensors_and_plain_values(vocab, tmp_path):
    cfg = AgentConfig(batch_size=8, replay_size=8, replay_batch=2, max_steps=3, checkpoint_every=2)
    result, oracle = _agent_run(vocab, tmp_path / "a.pt", cfg)
    state = load_state(tmp_path / "a.pt")  # torch.load(weights_only=True)
    assert state["history_smiles"] == [s for s, _ in oracle.history]
    assert state["history_scores"] == [v for _, v in oracle.history]
    assert dict(zip(state["cache_smiles"], state["cache_scores"], strict=True)) == oracle.cache
    assert all(isinstance(s, str) for s in state["memory_smiles"])
    assert all(isinstance(v, float) for v in state["memory_scores"])
    assert isinstance(state["generator"], torch.Tensor)
    assert len(state["steps"]) == len(result.steps) == 3


def test_agent_progress_and_resume_callbacks(vocab, tmp_path):
    cfg = AgentConfig(batch_size=8, replay_size=8, replay_batch=2, max_steps=3, checkpoint_every=2)
    ticks: list[int] = []
    _, oracle = _agent_run(vocab, tmp_path / "a.pt", cfg, progress=ticks.append)
    assert len(ticks) == 3 and sum(ticks) == oracle.calls
    resumed: list = []
    ticks = []
    result, _ = _agent_run(
        vocab, tmp_path / "a.pt", cfg, progress=ticks.append, on_resume=lambda *a: resumed.append(a)
    )
    assert resumed == [(3, oracle.calls)] and len(result.steps) == 3
    assert ticks == ([oracle.calls] if oracle.calls else [])


def test_agent_checkpoint_from_other_settings_is_refused(vocab, tmp_path):
    cfg = AgentConfig(batch_size=8, replay_size=8, replay_batch=2, max_steps=2, checkpoint_every=2)
    _agent_run(vocab, tmp_path / "a.pt", cfg)
    other = AgentConfig(sigma=60.0, batch_size=8, replay_size=8, replay_batch=2, max_steps=2)
    with pytest.raises(CheckpointMismatch, match=r"a\.pt.*sigma: 500\.0 saved, 60\.0 now"):
        _agent_run(vocab, tmp_path / "a.pt", other)
    # the checkpoint interval is not a setting of the result
    again = AgentConfig(
        batch_size=8, replay_size=8, replay_batch=2, max_steps=2, checkpoint_every=1
    )
    assert len(_agent_run(vocab, tmp_path / "a.pt", again)[0].steps) == 2


class _Payload:
    """Unpickling this would create ``path``: a harmless stand-in for a planted file's code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_optimize_never_unpickles_a_planted_checkpoint(vocab, tmp_path):
    marker = tmp_path / "marker"
    torch.save({"settings": _Payload(marker)}, tmp_path / "agent.pt")
    cfg = AgentConfig(batch_size=8, replay_size=8, replay_batch=2, max_steps=2)
    with pytest.raises(CheckpointError, match="agent.pt") as exc:
        _agent_run(vocab, tmp_path / "agent.pt", cfg)
    assert "\n" not in str(exc.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "kind", ["empty", "truncated", "random bytes", "pickle", "payload", "tensors, not a model"]
)
def test_load_model_refuses_bad_files_in_one_line(vocab, tmp_path, kind):
    good = tmp_path / "good.pt"
    save_model(SmilesGRU(vocab, TINY), good)
    bad, marker = tmp_path / "bad.pt", tmp_path / "marker"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        bad.write_bytes(good.read_bytes()[:300])
    elif kind == "random bytes":
        bad.write_bytes(np.random.default_rng(0).bytes(500))
    elif kind == "pickle":
        bad.write_bytes(pickle.dumps({"vocab": {"tokens": ["<pad>", "^", "$"]}}))
    elif kind == "payload":
        torch.save({"vocab": _Payload(marker)}, bad)
    else:
        torch.save({"weights": {"w": torch.ones(2)}}, bad)
    with pytest.raises(CheckpointError, match="bad.pt") as exc:
        load_model(bad)
    assert "\n" not in str(exc.value)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="bad.pt"):
        training_data(bad)


def test_pretrain_progress_resume_and_corrupt_checkpoint(nci, tmp_path):
    cfg = PretrainConfig(epochs=2, batch_size=16, lr=1e-2, checkpoint_every=2)
    ticks: list[int] = []
    pretrain(nci[:48], tmp_path / "a.pt", gru=TINY, config=cfg, progress=ticks.append)
    assert ticks == [1] * 6
    resumed: list = []
    ticks = []
    pretrain(
        nci[:48],
        tmp_path / "a.pt",
        gru=TINY,
        config=cfg,
        progress=ticks.append,
        on_resume=lambda *a: resumed.append(a),
    )
    assert resumed == [(6, 6)] and ticks == [6]
    other = PretrainConfig(epochs=2, batch_size=16, lr=2e-2, checkpoint_every=2)
    with pytest.raises(CheckpointMismatch, match=r"lr: 0\.01 saved, 0\.02 now"):
        pretrain(nci[:48], tmp_path / "a.pt", gru=TINY, config=other)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        pretrain(nci[:48], tmp_path / "bad.pt", gru=TINY, config=cfg)
    with pytest.raises(ValueError, match="epochs"):
        PretrainConfig(epochs=0)
    with pytest.raises(TypeError, match="batch_size"):
        PretrainConfig(batch_size=16.0)


def test_sample_smiles_reports_progress(vocab):
    torch.manual_seed(0)
    model = SmilesGRU(vocab, TINY).eval()
    ticks: list[int] = []
    gen = torch.Generator().manual_seed(0)
    smiles = model.sample_smiles(23, generator=gen, batch_size=10, progress=ticks.append)
    assert len(smiles) == 23 and ticks == [10, 10, 3]
    plain = model.sample_smiles(23, generator=torch.Generator().manual_seed(0), batch_size=10)
    assert plain == smiles


def test_load_corpus():
    assert load_corpus("nci", 5) == load_nci(5)
    with pytest.raises(ValueError, match="corpus"):
        load_corpus("zinc", 5)
    with pytest.raises(ValueError, match="n must be >= 1"):
        load_corpus("nci", 0)


def test_shipped_prior_loads_and_samples():
    path = default_prior_path()
    if not path.exists():
        pytest.skip("no shipped prior")
    model = load_prior()
    assert not model.training
    assert training_data(path) == {"corpus": "moses", "n": 200_000, "seed": 0}
    model.vocab.encode(CELECOXIB)  # every token of the target is in the vocabulary
    smiles = model.sample_smiles(200, generator=torch.Generator().manual_seed(0))
    valid = sum(Chem.MolFromSmiles(s) is not None for s in smiles) / len(smiles)
    # measured 0.951 at 10,000 samples; at 200 samples the stderr is 0.015: 5 stderr below
    assert valid > 0.87
    from stochgrad.apps.molecules import load_prior as exported

    assert exported is load_prior


def test_agent_resume_with_replay_equals_uninterrupted(tmp_path):
    # chains of C, N and O atoms are valid SMILES: the oracle, the replay memory and its
    # random draws all take part, and must all be restored
    voc = Vocabulary.from_smiles(["CCO", "CN"])
    torch.manual_seed(0)
    prior = SmilesGRU(voc, GRUConfig(embedding=8, hidden=16, layers=1, max_length=12))
    cfg = AgentConfig(
        batch_size=8, replay_size=6, replay_batch=3, max_steps=6, checkpoint_every=2, patience=0
    )

    def run(path, callback=None):
        agent = copy.deepcopy(prior)
        oracle = Oracle(make_objective("qed"), budget=1000)
        result = optimize(agent, prior, oracle, cfg, seed=3, checkpoint=path, callback=callback)
        return result, agent

    full, agent_a = run(tmp_path / "a.pt")
    assert full.history and len(load_state(tmp_path / "a.pt")["memory_smiles"]) == 6

    class Stop(Exception):
        pass

    def interrupt(step):
        if len(seen) == 2:
            raise Stop  # at step 3: the checkpoint of step 2 holds a memory to replay from
        seen.append(step)

    seen: list = []
    with pytest.raises(Stop):
        run(tmp_path / "b.pt", interrupt)
    saved = load_state(tmp_path / "b.pt")
    assert len(saved["steps"]) == 2 and len(saved["memory_smiles"]) >= cfg.replay_batch
    resumed, agent_b = run(tmp_path / "b.pt")
    assert full.history == resumed.history
    assert [s.loss for s in full.steps] == [s.loss for s in resumed.steps]
    for a, b in zip(agent_a.state_dict().values(), agent_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
