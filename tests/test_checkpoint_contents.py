"""Checkpoints with the right fields but wrong contents are refused in one line.

A file written by this release carries a SHA-256 digest of its contents, so any change to it
is refused; files of earlier releases carry none, and only the loaders' own checks stand
between them and wrong numbers. Here every resumable command writes a checkpoint (finished
runs, and a run in progress where the command saves one), which is rewritten without its
digest, as an earlier release would have written it, with one field altered: a tensor of the
wrong shape or dtype, a list where a tensor belongs, a number where a dict belongs, NaN where
finite numbers are needed, a negative count, a missing key. The rerun must end with exit
status 2 and one line ``error: ...`` naming the file, never a traceback, an internal error or
wrong numbers; the same file left unaltered must still be resumed.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stochgrad.checkpoint import (
    DIGEST_FIELD,
    CheckpointError,
    load_state,
    saved_float,
    saved_int,
    saved_numbers,
    saved_tensor,
    saved_value,
    state_digest,
)
from stochgrad.cli import _kit, main
from stochgrad.studies.scaffold import (
    run_grid,
    saved_generator_state,
    saved_module_state,
    saved_optimizer_state,
)
from tests.helpers import unwrapped

pytestmark = pytest.mark.usefixtures("one_thread")

NAN = float("nan")


@dataclass(frozen=True)
class Command:
    """A resumable command at tiny settings; ``partial``: it saves a run in progress."""

    line: str
    checkpoints: tuple[str, ...]
    partial: bool = False


LOG = "log.csv"  # written into the folder of ``offpolicy learn`` (see _write_log)
COMMANDS = {
    "demo": Command("demo --samples 200 --deltas 1 --sigmas 1", ("demo_checkpoint.pt",)),
    "compare": Command("compare --samples 200 --points 1", ("compare_checkpoint.pt",)),
    "relax-toy": Command(
        "relax-toy --iterations 20 --seeds 1 --probe-every 10 --probe-samples 50 "
        "--half-samples 100 --warmup 5 --estimators exact,disarm",
        ("relax_toy_checkpoint.pt",),
    ),
    "bbvi": Command(
        "bbvi --steps 4 --samples 3 --estimators loo --eval-every 2 --checkpoint-every 2 "
        "--variance-repeats 2 --nodes 64",
        ("bbvi_checkpoint.pt",),
        partial=True,
    ),
    "discrete-vae": Command(
        "discrete-vae --steps 4 --seeds 1 --samples 2 --latents 4 --hidden 8 --eval-every 2 "
        "--probe-every 2 --probe-calls 2 --checkpoint-every 2 --iwae-k 2 --estimators reinforce",
        ("discrete_vae_checkpoint.pt",),
        partial=True,
    ),
    "offpolicy": Command(
        "offpolicy --rounds 200 --test-rounds 100 --seeds 1 --learners snips --iterations 3 "
        "--confounding --confounding-rounds 200",
        ("offpolicy_checkpoint.pt", "offpolicy_confounding_checkpoint.pt"),
    ),
    "offpolicy learn": Command(
        f"offpolicy learn --log {LOG} --iterations 60 --reward-model none",
        ("offpolicy_learn_checkpoint.pt",),
        partial=True,
    ),
    "design eig": Command("design eig --outer 50 --inner 20", ("design_eig_linear_checkpoint.pt",)),
    "rl pareto": Command(
        "rl pareto --weights 0,1 --iterations 12 --batch 4 --restarts 1 --seeds 1",
        ("pareto_checkpoint.pt",),
    ),
    "rl options": Command("rl options --episodes 20 --seeds 1", ("fourrooms_checkpoint.pt",)),
}


def _write_log(folder: Path) -> None:
    from stochgrad.apps.offpolicy import SyntheticBandit, log_columns

    cols = log_columns(SyntheticBandit().sample(300, generator=np.random.default_rng(0)))
    with open(folder / LOG, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(zip(*(c.tolist() for c in cols.values()), strict=True))


def _argv(name: str, folder: Path) -> list[str]:
    argv = [a if a != LOG else str(folder / LOG) for a in COMMANDS[name].line.split()]
    return [*argv, "--out", str(folder)]


def _has_partial(path: Path) -> bool:
    try:
        return bool(load_state(path)["partial"])
    except Exception:  # not written yet, or being replaced
        return False


def _interrupt_once_partial(path: Path) -> Callable[[], None]:
    """A progress hook raising KeyboardInterrupt (Ctrl-C) once ``path`` holds a run in
    progress."""

    def hook() -> None:
        if path.is_file() and _has_partial(path):
            _kit.PROGRESS_HOOKS.remove(hook)
            raise KeyboardInterrupt

    return hook


def make_checkpoints(name: str, keep: Path) -> Path:
    """Run command ``name`` in ``keep/work``; keep its checkpoints as written in ``keep``:
    finished (``<file>``) and, for commands that save runs in progress, interrupted at the first
    such save (``partial-<file>``)."""
    cmd = COMMANDS[name]
    work = keep / "work"
    work.mkdir()
    if LOG in cmd.line.split():
        _write_log(work)
    before = torch.get_num_threads()
    try:
        if cmd.partial:
            hook = _interrupt_once_partial(work / cmd.checkpoints[0])
            _kit.PROGRESS_HOOKS.append(hook)
            try:
                assert main(_argv(name, work)) == 130
            finally:
                if hook in _kit.PROGRESS_HOOKS:
                    _kit.PROGRESS_HOOKS.remove(hook)
            shutil.copy(work / cmd.checkpoints[0], keep / f"partial-{cmd.checkpoints[0]}")
        assert main(_argv(name, work)) == 0
    finally:
        torch.set_num_threads(before)
    for ckpt in cmd.checkpoints:
        shutil.copy(work / ckpt, keep / ckpt)
    return keep


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Callable[[str], Path]:
    """``made(command)``: the folder of :func:`make_checkpoints` for ``command`` (made once)."""
    cache: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in cache:
            cache[name] = make_checkpoints(name, tmp_path_factory.mktemp(name.replace(" ", "-")))
        return cache[name]

    return make


def _rewrite(path: Path, change: Callable[[dict[str, Any]], None] | None) -> None:
    """Rewrite ``path`` without its digest (as earlier releases wrote it), ``change``d."""
    state = load_state(path)  # checked, and the digest removed
    assert DIGEST_FIELD not in state
    if change is not None:
        change(state)
    torch.save(state, path)


def _setup(made, tmp_path: Path, name: str, source: str) -> tuple[Path, Path]:
    """A fresh folder for ``name`` holding one checkpoint copied from :func:`made`; returns
    ``(folder, checkpoint)``."""
    folder = tmp_path / "out"
    folder.mkdir()
    if LOG in COMMANDS[name].line.split():
        _write_log(folder)
    ckpt_name = source.removeprefix("partial-")
    shutil.copy(made(name) / source, folder / ckpt_name)
    return folder, folder / ckpt_name


# ---------------------------------------------------------------------------------------------
# where the fields are
# ---------------------------------------------------------------------------------------------
def run(state: dict[str, Any], key: tuple | None = None) -> dict[str, Any]:
    """The state of the finished run ``key`` (default: the first)."""
    for k, r in state["runs"]:
        if key is None or tuple(k) == key:
            return r
    raise AssertionError(f"no run {key}")


def part(state: dict[str, Any]) -> dict[str, Any]:
    """The state of the first run in progress."""
    return state["partial"][0][1]


def first_tensor(d: dict[str, Any]) -> str:
    return next(k for k, v in d.items() if isinstance(v, torch.Tensor))


def _nan_first(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = NAN
    return t


def setitem(where: Callable, key: Any, value: Callable[[Any], Any]) -> Callable:
    """A change: ``where(state)[key] = value(where(state)[key])``."""

    def change(state: dict[str, Any]) -> None:
        d = where(state)
        d[key] = value(d[key])

    return change


def delitem(where: Callable, key: Any) -> Callable:
    def change(state: dict[str, Any]) -> None:
        del where(state)[key]

    return change


def shorter(v: Any) -> Any:
    return v[:-1]


def as_float32(v: torch.Tensor) -> torch.Tensor:
    return v.to(torch.float32)


def as_list(v: torch.Tensor) -> list:
    return v.tolist()


def with_nan(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return _nan_first(v)
    if isinstance(v, (list, tuple)):
        return type(v)([NAN, *v[1:]])
    return NAN


def const(value: Any) -> Callable[[Any], Any]:
    return lambda v: value


def _optimizer_tensor(state: dict[str, Any]) -> dict[str, Any]:
    """The first per-parameter optimiser state of the run in progress (Adam's moments)."""
    return part(state)["optimizer"]["state"][0]


def _bbvi_run(state: dict[str, Any]) -> dict[str, Any]:
    return run(state, ("loo", 0))


def _bbvi_optimum(state: dict[str, Any]) -> dict[str, Any]:
    return run(state, ("optimum",))


def _bbvi_variance(state: dict[str, Any]) -> dict[str, Any]:
    return next(r for k, r in state["runs"] if k[0] == "variance")


def _model(state: dict[str, Any]) -> dict[str, Any]:
    return part(state)["model"]


def _learned_values(state: dict[str, Any]) -> dict[str, Any]:
    return run(state)["values"]["snips"]


CONFOUNDING = "offpolicy_confounding_checkpoint.pt"
# (command, checkpoint as written ("partial-" a run in progress), what is altered, how)
CASES: list[tuple[str, str, str, Callable]] = [
    ("demo", "demo_checkpoint.pt", "grad of shape [1]", setitem(run, "grad", shorter)),
    ("demo", "demo_checkpoint.pt", "variance float32", setitem(run, "variance", as_float32)),
    ("demo", "demo_checkpoint.pt", "stderr a list", setitem(run, "stderr", as_list)),
    ("demo", "demo_checkpoint.pt", "variance NaN", setitem(run, "variance", with_nan)),
    ("demo", "demo_checkpoint.pt", "closed missing", delitem(run, "closed")),
    ("demo", "demo_checkpoint.pt", "sigma another", setitem(run, "sigma", const(7.0))),
    ("compare", "compare_checkpoint.pt", "mc 2-D", setitem(run, "mc", lambda v: v[None])),
    ("compare", "compare_checkpoint.pt", "quad NaN", setitem(run, "quad", with_nan)),
    ("compare", "compare_checkpoint.pt", "k text", setitem(run, "k", const("one"))),
    ("compare", "compare_checkpoint.pt", "mc_se missing", delitem(run, "mc_se")),
    ("relax-toy", "relax_toy_checkpoint.pt", "theta short", setitem(run, "theta", shorter)),
    ("relax-toy", "relax_toy_checkpoint.pt", "probe_iterations float",
     setitem(run, "probe_iterations", lambda v: v.double())),
    ("relax-toy", "relax_toy_checkpoint.pt", "loss NaN", setitem(run, "loss", with_nan)),
    ("relax-toy", "relax_toy_checkpoint.pt", "evaluations -1",
     setitem(run, "evaluations", const(-1))),
    ("relax-toy", "relax_toy_checkpoint.pt", "theta a list", setitem(run, "theta", as_list)),
    ("relax-toy", "relax_toy_checkpoint.pt", "probe_variance missing",
     delitem(run, "probe_variance")),
    ("relax-toy", "relax_toy_checkpoint.pt", "another run's key",
     setitem(run, "key", const("disarm"))),
    ("bbvi", "bbvi_checkpoint.pt", "mu short", setitem(_bbvi_run, "mu", shorter)),
    ("bbvi", "bbvi_checkpoint.pt", "mu and log_sigma of 30 features",
     lambda s: [setitem(_bbvi_run, k, shorter)(s) for k in ("mu", "log_sigma")]),
    ("bbvi", "bbvi_checkpoint.pt", "curve_elbo a number",
     setitem(_bbvi_run, "curve_elbo", const(1.0))),
    ("bbvi", "bbvi_checkpoint.pt", "final_elbo NaN", setitem(_bbvi_run, "final_elbo", with_nan)),
    ("bbvi", "bbvi_checkpoint.pt", "optimum a number", setitem(_bbvi_optimum, "value", const(3.0))),
    ("bbvi", "bbvi_checkpoint.pt", "optimum elbo NaN",
     setitem(lambda s: _bbvi_optimum(s)["value"], "elbo", with_nan)),
    ("bbvi", "bbvi_checkpoint.pt", "variance cell short",
     setitem(_bbvi_variance, "value", shorter)),
    ("bbvi", "partial-bbvi_checkpoint.pt", "mu of shape [30]", setitem(part, "mu", shorter)),
    ("bbvi", "partial-bbvi_checkpoint.pt", "rng int64", setitem(part, "rng", lambda v: v.long())),
    ("bbvi", "partial-bbvi_checkpoint.pt", "log_sigma NaN", setitem(part, "log_sigma", with_nan)),
    ("bbvi", "partial-bbvi_checkpoint.pt", "step -2", setitem(part, "step", const(-2))),
    ("bbvi", "partial-bbvi_checkpoint.pt", "optimizer missing", delitem(part, "optimizer")),
    ("bbvi", "partial-bbvi_checkpoint.pt", "a number for the state",
     setitem(lambda s: s["partial"][0], 1, const(3.0))),
    ("discrete-vae", "discrete_vae_checkpoint.pt", "test_elbo NaN",
     setitem(run, "test_elbo", with_nan)),
    ("discrete-vae", "discrete_vae_checkpoint.pt", "eval_steps short",
     setitem(run, "eval_steps", shorter)),
    ("discrete-vae", "discrete_vae_checkpoint.pt", "samples_per_step -6",
     setitem(run, "samples_per_step", const(-6))),
    ("discrete-vae", "discrete_vae_checkpoint.pt", "variance a tensor",
     setitem(run, "variance", lambda v: torch.tensor(v))),
    ("discrete-vae", "discrete_vae_checkpoint.pt", "eval_steps of other steps",
     setitem(run, "eval_steps", lambda v: [0, 1, *v[2:]])),
    ("discrete-vae", "partial-discrete_vae_checkpoint.pt", "a weight of another shape",
     lambda s: setitem(_model, first_tensor(_model(s)), lambda v: v[:-1])(s)),
    ("discrete-vae", "partial-discrete_vae_checkpoint.pt", "Adam moment float16",
     setitem(_optimizer_tensor, "exp_avg", lambda v: v.half())),
    ("discrete-vae", "partial-discrete_vae_checkpoint.pt", "result a number",
     setitem(part, "result", const(3))),
    ("discrete-vae", "partial-discrete_vae_checkpoint.pt", "a generator missing",
     delitem(lambda s: part(s)["generators"], "train")),
    ("discrete-vae", "partial-discrete_vae_checkpoint.pt", "train_elbos NaN",
     setitem(part, "train_elbos", lambda v: [NAN] if not v else with_nan(v))),
    ("offpolicy", "offpolicy_checkpoint.pt", "value NaN", setitem(run, "value", with_nan)),
    ("offpolicy", "offpolicy_checkpoint.pt", "greedy_value a list",
     setitem(run, "greedy_value", lambda v: [v])),
    ("offpolicy", "offpolicy_checkpoint.pt", "seed missing", delitem(run, "seed")),
    ("offpolicy", "offpolicy_checkpoint.pt", "another policy's run",
     setitem(run, "key", const("random"))),
    ("offpolicy", CONFOUNDING, "hidden of shape [9, 6]", setitem(run, "hidden", shorter)),
    ("offpolicy", CONFOUNDING, "observed_z float32", setitem(run, "observed_z", as_float32)),
    ("offpolicy", CONFOUNDING, "true NaN", setitem(run, "true", with_nan)),
    ("offpolicy", CONFOUNDING, "rounds -1", setitem(run, "rounds", const(-1))),
    ("offpolicy", CONFOUNDING, "another seed's", setitem(run, "seed", const(5))),
    ("offpolicy learn", "offpolicy_learn_checkpoint.pt", "theta of shape [10, 5]",
     setitem(run, "theta", lambda v: v[:, :-1])),
    ("offpolicy learn", "offpolicy_learn_checkpoint.pt", "theta NaN",
     setitem(run, "theta", with_nan)),
    ("offpolicy learn", "offpolicy_learn_checkpoint.pt", "values a number",
     setitem(run, "values", const(0.5))),
    ("offpolicy learn", "offpolicy_learn_checkpoint.pt", "eval_rounds -1",
     setitem(run, "eval_rounds", const(-1))),
    ("offpolicy learn", "offpolicy_learn_checkpoint.pt", "a value's stderr missing",
     delitem(_learned_values, "stderr")),
    ("offpolicy learn", "partial-offpolicy_learn_checkpoint.pt", "m of shape [10, 5]",
     setitem(part, "m", lambda v: v[:, :-1])),
    ("offpolicy learn", "partial-offpolicy_learn_checkpoint.pt", "v NaN",
     setitem(part, "v", with_nan)),
    ("offpolicy learn", "partial-offpolicy_learn_checkpoint.pt", "value float32",
     setitem(part, "value", as_float32)),
    ("offpolicy learn", "partial-offpolicy_learn_checkpoint.pt", "k -3",
     setitem(part, "k", const(-3))),
    ("offpolicy learn", "partial-offpolicy_learn_checkpoint.pt", "k past the iterations",
     setitem(part, "k", const(60))),
    ("offpolicy learn", "partial-offpolicy_learn_checkpoint.pt", "m missing", delitem(part, "m")),
    ("design eig", "design_eig_linear_checkpoint.pt", "estimate NaN",
     setitem(run, "estimate", with_nan)),
    ("design eig", "design_eig_linear_checkpoint.pt", "stderr of shape [1, 1]",
     setitem(run, "stderr", lambda v: v[None])),
    ("design eig", "design_eig_linear_checkpoint.pt", "replicate -1",
     setitem(run, "replicate", const(-1))),
    ("rl pareto", "pareto_checkpoint.pt", "returns of shape [1, 2]",
     setitem(run, "returns", shorter)),
    ("rl pareto", "pareto_checkpoint.pt", "recovered float",
     setitem(run, "recovered", lambda v: v.double())),
    ("rl pareto", "pareto_checkpoint.pt", "policy_logits NaN",
     setitem(run, "policy_logits", with_nan)),
    ("rl options", "fourrooms_checkpoint.pt", "vartheta of another shape",
     setitem(run, "vartheta", shorter)),
    ("rl options", "fourrooms_checkpoint.pt", "steps a list", setitem(run, "steps", as_list)),
    ("rl options", "fourrooms_checkpoint.pt", "mean_steps NaN",
     setitem(run, "mean_steps", with_nan)),
]  # fmt: skip


def _case_id(case: tuple) -> str:
    name, source, what, _ = case
    kind = "mid-run" if source.startswith("partial-") else "finished"
    which = "confounding " if source == CONFOUNDING else ""
    return f"{name}: {which}{kind}: {what}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_altered_contents_are_one_error_line_naming_the_file(case, made, tmp_path, capsys):
    name, source, _, change = case
    folder, ckpt = _setup(made, tmp_path, name, source)
    _rewrite(ckpt, change)
    capsys.readouterr()
    code = main(_argv(name, folder))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "internal error" not in err
    assert str(ckpt) in lines[0] and "--restart" in lines[0]


SOURCES = sorted({(c[0], c[1]) for c in CASES})


@pytest.mark.parametrize("name, source", SOURCES, ids=[f"{n}: {s}" for n, s in SOURCES])
def test_an_unaltered_file_without_a_digest_is_still_resumed(name, source, made, tmp_path,
                                                            capsys):  # fmt: skip
    folder, ckpt = _setup(made, tmp_path, name, source)
    _rewrite(ckpt, None)
    capsys.readouterr()
    assert main(_argv(name, folder)) == 0, capsys.readouterr().err
    assert unwrapped(f"resumed from {ckpt}") in unwrapped(capsys.readouterr().out)


def test_every_case_alters_the_file(made):
    """A change that changed nothing would make its case test the wrong thing."""
    for case in CASES:
        name, source, _, change = case
        state = load_state(made(name) / source)
        before = state_digest(state)
        change(state)
        assert state_digest(state) != before, _case_id(case)


# ---------------------------------------------------------------------------------------------
# the checks the loaders are made of
# ---------------------------------------------------------------------------------------------
T = torch.zeros(2, dtype=torch.float64)
BAD_FIELDS = [
    (saved_value, {"a": 1}, "b", {}, ValueError, "no field 'b'"),
    (saved_value, [1], "a", {}, TypeError, "expected a dict holding 'a', got list"),
    (saved_value, {"a": True}, "a", {"kind": int}, TypeError, "a must be an int, got bool"),
    (saved_tensor, {"a": [0.0, 0.0]}, "a", {}, TypeError, "a must be a tensor, got list"),
    (saved_tensor, {"a": T.to_sparse()}, "a", {}, TypeError, "a must be a dense tensor"),
    (saved_tensor, {"a": T}, "a", {"dtype": torch.float32}, TypeError, "torch.float32 tensor"),
    (saved_tensor, {"a": T}, "a", {"shape": (3,)}, ValueError, "a must have shape [3], got [2]"),
    (saved_tensor, {"a": T}, "a", {"shape": (None, 2)}, ValueError, "shape [*, 2], got [2]"),
    (saved_tensor, {"a": T / 0}, "a", {"finite": True}, ValueError, "2 non-finite value(s)"),
    (saved_tensor, {"a": T - 1}, "a", {"minimum": 0.0}, ValueError, "a must be >= 0.0, got -1.0"),
    (saved_numbers, {"a": T}, "a", {}, TypeError, "a must be a list or tuple, got Tensor"),
    (saved_numbers, {"a": [1.0]}, "a", {"length": 2}, ValueError, "a must hold 2 value(s), got 1"),
    (saved_numbers, {"a": [1, 2.5]}, "a", {"kind": int}, TypeError, "a[1] must be an int"),
    (saved_numbers, {"a": [1.0, "2"]}, "a", {}, TypeError, "a[1] must be a real number, got str"),
    (saved_numbers, {"a": [math.inf]}, "a", {}, ValueError, "a[0] must be finite, got inf"),
    (saved_numbers, {"a": [0, -1]}, "a", {"minimum": 0}, ValueError, "a[1] must be >= 0, got -1"),
    (saved_int, {"a": 2.0}, "a", {}, TypeError, "a must be an int, got float"),
    (saved_int, {"a": 7}, "a", {"maximum": 6}, ValueError, "a must be <= 6, got 7"),
    (saved_float, {"a": "x"}, "a", {}, TypeError, "a must be a real number, got str"),
    (saved_float, {"a": -math.inf}, "a", {}, ValueError, "a must be finite, got -inf"),
    (saved_float, {"a": -0.5}, "a", {"minimum": 0.0}, ValueError, "a must be >= 0.0, got -0.5"),
]  # fmt: skip


@pytest.mark.parametrize("check, state, key, kw, error, says", BAD_FIELDS,
                         ids=[f"{c[0].__name__}: {c[5]}" for c in BAD_FIELDS])  # fmt: skip
def test_a_field_that_does_not_hold_what_was_written_is_named(check, state, key, kw, error, says):
    if "kind" in kw and check is saved_numbers:
        kw = dict(kw)
        kind = kw.pop("kind")
        with pytest.raises(error) as exc:
            check(state, key, kind, **kw)
    else:
        with pytest.raises(error) as exc:
            check(state, key, **kw)
    assert says in str(exc.value)


def test_fields_that_hold_what_was_written_come_back():
    state = {"t": T, "n": 3, "x": 0.5, "xs": (1.0, 2), "ks": [0, 2], "nan": NAN}
    assert saved_tensor(state, "t", shape=(2,), dtype=torch.float64, finite=True) is T
    assert saved_tensor(state, "t", shape=(None,), minimum=0.0) is T
    assert saved_int(state, "n", minimum=3, maximum=3) == 3
    assert saved_float(state, "x", minimum=0.5) == 0.5 and saved_float(state, "n") == 3.0
    assert math.isnan(saved_float(state, "nan", finite=False))
    assert saved_numbers(state, "xs", length=2) == [1.0, 2.0]
    assert saved_numbers(state, "ks", int, minimum=0) == [0, 2]


def _adam_state(shape: tuple[int, ...]) -> tuple[torch.optim.Optimizer, dict[str, Any]]:
    w = torch.zeros(shape, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1)
    w.grad = torch.ones(shape)
    opt.step()
    return torch.optim.Adam([torch.zeros(shape, requires_grad=True)], lr=0.1), opt.state_dict()


def _with(saved: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    import copy

    saved = copy.deepcopy(saved)
    change(saved)
    return saved


BAD_OPTIMIZER = {
    "exp_avg float64": (lambda s: s["state"][0].update(exp_avg=s["state"][0]["exp_avg"].double()),
                        "exp_avg of parameter 0 must be a torch.float32 tensor"),
    "exp_avg_sq negative": (lambda s: s["state"][0]["exp_avg_sq"].fill_(-1.0),
                            "exp_avg_sq of parameter 0 must be >= 0.0"),
    "step NaN": (lambda s: s["state"][0]["step"].fill_(NAN), "step must be finite"),
    "another parameter": (lambda s: s["state"].update({1: {}}), "unknown parameter 1"),
    "two groups": (lambda s: s["param_groups"].append(dict(s["param_groups"][0])),
                   "param_groups must hold 1 group(s), got 2"),
    "another beta": (lambda s: s["param_groups"][0].update(betas=(0.5, 0.999)), "betas of group 0"),
    "lr NaN": (lambda s: s["param_groups"][0].update(lr=NAN), "lr must be finite"),
}  # fmt: skip


@pytest.mark.parametrize("what", BAD_OPTIMIZER)
def test_an_optimizer_state_that_does_not_fit_the_run_is_named(what):
    fresh, saved = _adam_state((3,))
    assert saved_optimizer_state({"opt": saved}, "opt", fresh) is saved
    change, says = BAD_OPTIMIZER[what]
    with pytest.raises((ValueError, TypeError)) as exc:
        saved_optimizer_state({"opt": _with(saved, change)}, "opt", fresh)
    assert str(exc.value).startswith("opt: ") and says in str(exc.value)


def test_a_module_or_generator_state_that_does_not_fit_is_named():
    net = torch.nn.Linear(2, 1)
    assert saved_module_state({"m": net.state_dict()}, "m", net)
    for change, says in (
        (lambda s: s.pop("bias"), "entries differ from the model's (bias)"),
        (lambda s: s.update(bias=s["bias"].double()), "bias must be a torch.float32 tensor"),
        (lambda s: s["weight"].fill_(NAN), "weight must be finite"),
    ):
        with pytest.raises((ValueError, TypeError), match="^m: ") as exc:
            saved_module_state({"m": _with(net.state_dict(), change)}, "m", net)
        assert says in str(exc.value)
    rng = torch.Generator().get_state()
    assert saved_generator_state({"rng": rng}, "rng") is rng
    with pytest.raises(ValueError, match="rng must have shape"):
        saved_generator_state({"rng": rng[:-1]}, "rng")


def test_run_grid_refuses_a_cell_failing_its_check_naming_file_and_cell(tmp_path):
    @dataclass
    class Square:
        value: int

        def to_state(self) -> dict[str, Any]:
            return {"value": self.value}

        @classmethod
        def from_state(cls, s: dict[str, Any]) -> Square:
            return cls(saved_int(s, "value"))

    def check(key: tuple, result: Square) -> None:
        if result.value != key[0] ** 2:
            raise ValueError(f"value {result.value} is not {key[0]} squared")

    ckpt = tmp_path / "c.pt"
    grid = dict(config={"power": 2}, result_type=Square, checkpoint=ckpt, check_result=check)
    run_grid([(2,), (3,)], lambda key, state, save: Square(key[0] ** 2), **grid)
    assert run_grid([(2,), (3,)], lambda *a: None, **grid).resumed == 2  # a valid file resumes
    _rewrite(ckpt, lambda s: s["runs"][1][1].update(value=8))
    with pytest.raises(CheckpointError) as exc:
        run_grid([(2,), (3,)], lambda *a: None, **grid)
    assert str(exc.value).startswith(f"{ckpt}: its finished run 3 cannot be used (value 8 is")
    assert "--restart" in str(exc.value)
    assert run_grid([(2,)], lambda *a: None, **grid).resumed == 1  # unwanted cells: not checked
