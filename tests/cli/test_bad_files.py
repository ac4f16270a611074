"""Every checkpoint, model or state file a command reads, spoiled every way a file gets spoiled.

Each command is run on an output folder (or with a ``--model``/checkpoint argument) holding an
empty, truncated, random, foreign, planted or wrongly-filled file where its checkpoint belongs.
The rule: one line ``error: ...`` on stderr naming the file and how to start afresh, exit
status 2, no traceback, and nothing in a planted file ever runs.
"""

from __future__ import annotations

import csv
import io
import pickle
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from stochgrad.apps.molecules.model import default_prior_path
from stochgrad.checkpoint import DIGEST_FIELD, RunCheckpoint, state_digest
from stochgrad.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


class _Payload:
    """Unpickling this would create ``path``: a harmless stand-in for a planted file's code."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes/readme.txt", "a zip archive, not a PyTorch file")
    return buf.getvalue()


#: A well-formed torch file (the zip format every checkpoint has), cut short below.
_GOOD_TORCH = _torch_bytes(
    {"config": {"steps": 3}, "runs": [], "partial": [], "w": torch.arange(256.0)}
)


def _cuts(good: bytes) -> dict[str, bytes]:
    n = len(good)
    return {
        "truncated to 1 byte": good[:1],
        "truncated at 10%": good[: n // 10],
        "truncated at 50%": good[: n // 2],
        "truncated at 90%": good[: 9 * n // 10],
        "last byte missing": good[:-1],
    }


def _common(marker: Path) -> dict[str, bytes]:
    """Spoilt files of any kind."""
    return {
        "empty": b"",
        "random bytes": random.Random(0).randbytes(3000),
        "zip, not PyTorch": _zip_bytes(),
        "planted pickle": pickle.dumps(_Payload(marker), protocol=2),
        "planted pickle in a torch file": _torch_bytes({"config": _Payload(marker)}),
        "latin-1 text": "état, données\n".encode("latin-1"),
    }


def torch_variants(marker: Path, other_kind: bytes) -> dict[str, bytes]:
    """Spoilt ``.pt`` files: cut, random, foreign, planted, or torch files of other contents."""
    return {
        **_common(marker),
        **_cuts(_GOOD_TORCH),
        "torch file holding a list": _torch_bytes([1, 2, 3]),
        "torch file holding a tensor": _torch_bytes(torch.zeros(3)),
        "torch file, dict of other keys": _torch_bytes({"unrelated": torch.ones(2)}),
        "JSON object": b'{"step": 3}',
        "a stochgrad file of another kind": other_kind,
    }


# ---------------------------------------------------------------------------------------------
# the commands and the files they read
# ---------------------------------------------------------------------------------------------
def _counts(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "counts.csv"
    rows = ["gene," + ",".join(f"cell{j}" for j in range(30))]
    rows += [f"gene{i}," + ",".join(map(str, rng.poisson(5, 30))) for i in range(2)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _log(folder: Path) -> Path:
    from stochgrad.apps.offpolicy import SyntheticBandit
    from stochgrad.apps.offpolicy.logfile import log_columns

    cols = log_columns(SyntheticBandit().sample(300, generator=np.random.default_rng(0)))
    path = folder / "log.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(zip(*(c.tolist() for c in cols.values()), strict=True))
    return path


# name -> (argv given the work folder and the output folder, the file spoilt, its kind)
Argv = Callable[[Path, Path], list]
COMMANDS: dict[str, tuple[Argv, str, str]] = {
    "demo": (lambda w, o: ["demo", "--samples", "600", "--deltas", "0,1", "--sigmas", "1,2",
                           "--out", o], "demo_checkpoint.pt", "pt"),
    "compare": (lambda w, o: ["compare", "--samples", "600", "--points", "2", "--out", o],
                "compare_checkpoint.pt", "pt"),
    "bbvi": (lambda w, o: ["bbvi", "--steps", "3", "--samples", "3", "--estimators", "loo",
                           "--nodes", "64", "--out", o], "bbvi_checkpoint.pt", "pt"),
    "design eig": (lambda w, o: ["design", "eig", "--model", "linear", "--outer", "20",
                                 "--inner", "8", "--out", o],
                   "design_eig_linear_checkpoint.pt", "pt"),
    "design optimize": (lambda w, o: ["design", "optimize", "--model", "linear", "--steps", "3",
                                      "--outer", "8", "--inner", "8", "--out", o],
                        "design_linear_checkpoint.pt", "pt"),
    "discrete-vae": (lambda w, o: ["discrete-vae", "--steps", "4", "--seeds", "1", "--samples",
                                   "6", "--latents", "4", "--hidden", "8", "--eval-every", "2",
                                   "--probe-every", "2", "--probe-calls", "2", "--iwae-k", "2",
                                   "--out", o],
                     "discrete_vae_checkpoint.pt", "pt"),
    "greeks": (lambda w, o: ["greeks", "--payoff", "put", "--paths", "2000", "--chunk", "1000",
                             "--out", o], "greeks_checkpoint.pt", "pt"),
    "hmm fit": (lambda w, o: ["hmm", "fit", "--restarts", "2", "--max-iter", "20", "--out", o],
                "hmm_checkpoint.pt", "pt"),
    "molecules pretrain": (lambda w, o: ["molecules", "pretrain", "--corpus", "nci", "--smiles",
                                         "32", "--hidden", "8", "--layers", "1", "--embedding",
                                         "4", "--epochs", "1", "--device", "cpu", "--out", o],
                           "prior.pt", "pt"),
    "molecules optimize": (lambda w, o: ["molecules", "optimize", "--objective", "qed",
                                         "--budget", "16", "--batch-size", "8", "--replay", "2",
                                         "--max-steps", "2", "--out", o], "agent.pt", "pt"),
    "molecules sample --model": (lambda w, o: ["molecules", "sample", "--model", w / "m.pt",
                                               "--n", "4", "--out", o], "@m.pt", "model"),
    "molecules optimize --model": (lambda w, o: ["molecules", "optimize", "--model", w / "m.pt",
                                                 "--budget", "16", "--batch-size", "8",
                                                 "--out", o], "@m.pt", "model"),
    "offpolicy": (lambda w, o: ["offpolicy", "--rounds", "200", "--test-rounds", "100",
                                "--seeds", "1", "--out", o], "offpolicy_checkpoint.pt", "pt"),
    "offpolicy learn": (lambda w, o: ["offpolicy", "learn", "--log", _log(w), "--iterations",
                                      "5", "--out", o], "offpolicy_learn_checkpoint.pt", "pt"),
    "rbm": (lambda w, o: ["rbm", "--hidden", "4", "--epochs", "1", "--batch", "200",
                          "--out", o], "rbm_checkpoint.pt", "pt"),
    "relax-toy": (lambda w, o: ["relax-toy", "--iterations", "10", "--seeds", "1",
                                "--estimators", "exact", "--out", o],
                  "relax_toy_checkpoint.pt", "pt"),
    "rl train": (lambda w, o: ["rl", "train", "--steps", "64", "--num-envs", "2", "--n-steps",
                               "16", "--out", o], "CartPole-v1_reinforce_s0.pt", "pt"),
    "rl eval": (lambda w, o: ["rl", "eval", w / "policy.pt", "--episodes", "1", "--out", o],
                "@policy.pt", "pt"),
    "rl pareto": (lambda w, o: ["rl", "pareto", "--weights", "0,1", "--iterations", "2",
                                "--batch", "2", "--restarts", "1", "--seeds", "1", "--out", o],
                  "pareto_checkpoint.pt", "pt"),
    "rl options": (lambda w, o: ["rl", "options", "--episodes", "2", "--seeds", "1", "--out", o],
                   "fourrooms_checkpoint.pt", "pt"),
    "telegraph fit": (lambda w, o: ["telegraph", "fit", _counts(w), "--backend", "serial",
                                    "--no-ci", "--out", o], "fit_checkpoint.pt", "pt"),
    "telegraph recover": (lambda w, o: ["telegraph", "recover", "--grid", "2", "--cells", "50",
                                        "--replicates", "1", "--method", "exact", "--backend",
                                        "serial", "--out", o], "recover_checkpoint.pt", "pt"),
}  # fmt: skip


def _other_kind(kind: str, folder: Path) -> bytes:
    """A genuine stochgrad file, but not of ``kind``: a study checkpoint where a model belongs,
    the shipped SMILES model where a checkpoint belongs."""
    if kind == "model":
        ckpt = RunCheckpoint(folder / "other.pt", {"steps": 3})
        ckpt.save()
        return ckpt.path.read_bytes()
    return default_prior_path().read_bytes()


_NAMES = list(torch_variants(Path("m"), b""))
CASES = [(name, v) for name in COMMANDS for v in _NAMES]


def _run_spoilt(tmp_path: Path, capsys, name: str, data: Callable[[Path], bytes]) -> None:
    """Run command ``name`` with ``data(work folder)`` where its file belongs; check the rule."""
    argv_of, target, _ = COMMANDS[name]
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    path = work / target[1:] if target.startswith("@") else out / target
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data(work))
    argv = [str(a) for a in argv_of(work, out)]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    line = lines[0]
    assert path.name in line, line
    assert any(hint in line for hint in ("--restart", "--model")), line


@pytest.mark.parametrize(("name", "variant"), CASES, ids=[f"{n}: {v}" for n, v in CASES])
def test_a_spoilt_file_is_one_error_line(tmp_path, capsys, name, variant):
    marker = tmp_path / "marker"
    kind = COMMANDS[name][2]
    _run_spoilt(
        tmp_path,
        capsys,
        name,
        lambda work: torch_variants(marker, _other_kind(kind, work))[variant],
    )
    assert not marker.exists(), "a planted file ran code"


# ---------------------------------------------------------------------------------------------
# genuine files of each kind, with the wrong contents
# ---------------------------------------------------------------------------------------------
#: Top-level fields holding a file's settings or format: left alone, so that the damage is
#: found past the settings check.
_SETTINGS = {"config", "settings", "format", "vocab"}


def _map_arrays(value, fn):
    """``value`` with every tensor, list of numbers and float replaced by ``fn`` of it."""
    if (
        isinstance(value, (torch.Tensor, float))
        or isinstance(value, list)
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_arrays(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_arrays(v, fn) for v in value)
    return value


def _longer(value):
    if isinstance(value, torch.Tensor):
        return torch.zeros(value.numel() + 3, dtype=value.dtype)
    return [*value, 0.0, 0.0, 0.0] if isinstance(value, list) else [value, 0.0]


def _spoil(state: dict, how: str) -> dict:
    """``state`` with its contents (not its settings) spoilt ``how``; its digest is kept, as a
    file edited by hand or spliced from others would keep it."""
    rest = sorted(k for k in state if k not in _SETTINGS and k != DIGEST_FIELD)
    if how == "a field missing":
        return {k: v for k, v in state.items() if k != rest[-1]}
    fn = _longer if how == "arrays of the wrong shape" else (lambda v: "an array was here")
    return {k: (v if k in _SETTINGS else _map_arrays(v, fn)) for k, v in state.items()}


#: Commands whose own file a successful run leaves, to be spoilt. ``@`` files come from
#: another command: the SMILES model from a tiny pretraining, the policy from ``rl train``.
_SOURCE = {"molecules sample --model": ("molecules pretrain", "prior_weights.pt"),
           "molecules optimize --model": ("molecules pretrain", "prior_weights.pt"),
           "rl eval": ("rl train", "CartPole-v1_reinforce_s0.pt")}  # fmt: skip
_GENUINE: dict[str, bytes] = {}


def _genuine(name: str, folder: Path) -> bytes:
    """The file ``name`` reads, as a successful run of the command that writes it leaves it."""
    source, filename = _SOURCE.get(name, (name, COMMANDS[name][1]))
    key = f"{source}/{filename}"
    if key not in _GENUINE:
        out = folder / "genuine"
        assert main([str(a) for a in COMMANDS[source][0](folder, out)]) == 0
        _GENUINE[key] = (out / filename).read_bytes()
    return _GENUINE[key]


HOW = ["a field missing", "arrays of the wrong shape", "arrays of the wrong type"]
CUTS = list(_cuts(b"x" * 100))[1:]  # a genuine file cut short (cut to 1 byte: tested above)
GENUINE_CASES = [(name, how) for name in COMMANDS for how in [*CUTS, *HOW]]


@pytest.mark.parametrize(
    ("name", "how"), GENUINE_CASES, ids=[f"{n}: {h}" for n, h in GENUINE_CASES]
)
def test_a_genuine_file_cut_short_or_with_wrong_contents_is_one_error_line(
    tmp_path, capsys, name, how
):
    def data(work: Path) -> bytes:
        good = _genuine(name, work)
        if how in CUTS:
            return _cuts(good)[how]
        state = torch.load(io.BytesIO(good), weights_only=True)  # the digest kept
        assert DIGEST_FIELD in state
        spoilt = _spoil(state, how)
        assert state_digest(spoilt) != state_digest(state), "nothing was spoilt"
        return _torch_bytes(spoilt)

    _run_spoilt(tmp_path, capsys, name, data)
