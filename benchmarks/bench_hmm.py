r"""Benchmark: HMMs on the earthquake counts, stochgrad against hmmlearn and autograd.

Measured, in one run:

1. the log-likelihood of the *same* parameters, ours (log-space forward algorithm in torch)
   vs hmmlearn's ``score``: relative difference (Poisson, 2 and 3 states, at hmmlearn's fitted
   parameters; Gaussian with diagonal covariance, D = 2, random parameters and data);
2. the fitted log-likelihood: ours by EM and by L-BFGS on the Fisher gradient (10 seeded random
   starts each) vs hmmlearn's best of 10 restarts (``PoissonHMM(random_state=0..9,
   n_iter=5000, tol=1e-10)``), with the wall time of each;
3. the Fisher-identity gradient (:func:`~stochgrad.apps.hmm.likelihood_gradient`, computed by
   :func:`stochgrad.fisher_gradient` from the forward-backward marginals) vs autograd through
   the forward algorithm (max abs difference) and vs central finite differences (max relative
   difference);
4. the sampled Fisher identity (FFBS, 10 000 posterior paths): the largest
   :math:`|\hat g - g| / \mathrm{stderr}` over the coordinates with a spread, at fixed
   parameters away from the maximum (:data:`MC_MODELS`).

Writes ``benchmarks/results/hmm.json`` and ``hmm.md``.
Run: ``.venv/bin/python benchmarks/bench_hmm.py`` (``--quick``: fewer restarts and samples).

``--speed`` measures fitting times instead: EM and the gradient fit (10 restarts, 2 and 3
states) against hmmlearn's 10 restarts, each timed inside a long-lived worker process (start-up
and imports excluded, one warm-up run first), interleaved (ours, [before,] hmmlearn, ours, ...)
``--reps`` times, the order rotating and ``--pause`` seconds idle before each run; it reports
medians and ratios and writes ``hmm_speed.json`` and ``hmm_speed.md``. ``--before SRC`` adds
the code under ``SRC`` (a copy of ``src`` from before a change) as a third contestant,
interleaved with the others. Example:
``.venv/bin/python benchmarks/bench_hmm.py --speed --before /tmp/before/src``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hmmlearn import hmm as hl

from stochgrad.apps.hmm import (
    HMM,
    fit_hmm,
    likelihood_gradient,
    load_earthquakes,
    log_likelihood,
    sampled_likelihood_gradient,
)
from stochgrad.checkpoint import write_text

MC_MODELS = {
    2: HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[15.0, 25.0]),
    3: HMM.from_probabilities(
        [0.2, 0.5, 0.3],
        [[0.8, 0.15, 0.05], [0.1, 0.85, 0.05], [0.05, 0.15, 0.8]],
        rates=[12.0, 19.0, 29.0],
    ),
}


def hmmlearn_best(X: np.ndarray, K: int, restarts: int) -> tuple[float, hl.PoissonHMM, float]:
    start = time.perf_counter()
    best, best_model = -math.inf, None
    for rs in range(restarts):
        m = hl.PoissonHMM(n_components=K, random_state=rs, n_iter=5000, tol=1e-10)
        m.fit(X)
        s = m.score(X)
        if s > best:
            best, best_model = s, m
    return best, best_model, time.perf_counter() - start


def from_hmmlearn(m: hl.PoissonHMM) -> HMM:
    return HMM.from_probabilities(m.startprob_, m.transmat_, rates=m.lambdas_[:, 0])


def grad_checks(hmm: HMM, y: torch.Tensor) -> dict[str, float]:
    exact = likelihood_gradient(hmm, y).grad
    params = [p.clone().requires_grad_() for p in hmm.params()]
    log_likelihood(hmm.with_params(params), y).sum().backward()
    auto = max(float((p.grad - e).abs().max()) for p, e in zip(params, exact, strict=True))
    h, rel = 1e-5, 0.0
    base = [p.detach().clone() for p in hmm.params()]
    for i, p in enumerate(base):
        for idx in itertools.product(*(range(n) for n in p.shape)):
            up, dn = [b.clone() for b in base], [b.clone() for b in base]
            up[i][idx] += h
            dn[i][idx] -= h
            fd = float(
                log_likelihood(hmm.with_params(up), y).sum()
                - log_likelihood(hmm.with_params(dn), y).sum()
            ) / (2 * h)
            rel = max(rel, abs(fd - float(exact[i][idx])) / max(1.0, abs(fd)))
    return {"fisher_vs_autograd_max_abs": auto, "fisher_vs_fd_max_rel": rel}


# A worker times fits inside one process: one line "em|gradient|hmmlearn K" in, one JSON out.
WORKER = r"""
import json, math, sys, time, warnings
import torch
torch.set_num_threads(1)
from stochgrad.apps.hmm import fit_hmm, load_earthquakes
y = load_earthquakes()
X = y.numpy().astype(int)[:, None]
R = int(sys.argv[1])
def hmmlearn_fit(K):
    from hmmlearn import hmm as hl
    best = -math.inf
    for rs in range(R):
        m = hl.PoissonHMM(n_components=K, random_state=rs, n_iter=5000, tol=1e-10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(X)
        best = max(best, m.score(X))
    return best
for line in sys.stdin:
    what, K = line.split()
    start = time.perf_counter()
    if what == "hmmlearn":
        ll = hmmlearn_fit(int(K))
    else:
        ll = fit_hmm(y, int(K), method=what, restarts=R, seed=0)[0].log_likelihood
    print(json.dumps({"seconds": time.perf_counter() - start, "ll": ll}), flush=True)
"""


class Worker:
    """A process running :data:`WORKER` on the package under ``src``."""

    def __init__(self, src: Path, restarts: int):
        env = dict(os.environ, PYTHONPATH=str(src))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(restarts)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def run(self, what: str, K: int) -> dict:
        self.proc.stdin.write(f"{what} {K}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker stopped while running {what} {K}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def speed(args: argparse.Namespace) -> None:
    """Interleaved fitting times: ours (and ``--before``) vs hmmlearn, medians and ratios."""
    here = Path(__file__).resolve().parents[1] / "src"
    workers = {"ours": Worker(here, args.restarts)}
    if args.before is not None:
        workers["before"] = Worker(args.before.resolve(), args.restarts)
    tasks = [(m, K) for m in ("em", "gradient") for K in (2, 3)]
    times: dict[str, list[float]] = {}
    lls: dict[str, float] = {}
    try:
        for K in (2, 3):  # warm-up: imports, first calls
            for w in workers.values():
                for m in ("em", "gradient"):
                    w.run(m, K)
            workers["ours"].run("hmmlearn", K)
        for rep in range(args.reps):
            for m, K in tasks:
                runs = [(name, m) for name in workers]
                if m == "em":
                    runs.append(("hmmlearn", "hmmlearn"))
                shift = rep % len(runs)  # each contestant goes first in turn
                for name, what in runs[shift:] + runs[:shift]:
                    w = workers["ours" if name == "hmmlearn" else name]
                    # let the previous run's leftovers (BLAS threads spinning in another
                    # worker) die down: they would otherwise slow the next one on few cores
                    time.sleep(args.pause)
                    out = w.run(what, K)
                    key = f"{name} {m} K={K}"
                    times.setdefault(key, []).append(out["seconds"])
                    lls[key] = out["ll"]
    finally:
        for w in workers.values():
            w.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"median_seconds": med, "seconds": times, "best_log_likelihood": lls}
    res["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "loadavg": os.getloadavg(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "restarts": args.restarts,
        "reps": args.reps,
        "pause_seconds": args.pause,
        "before": None if args.before is None else str(args.before),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    md = [
        "# HMM fitting time on the earthquake counts (Poisson, seconds, medians)",
        "",
        f"{args.restarts} seeded restarts per fit; {args.reps} interleaved repetitions (order "
        f"rotating, {args.pause:g} s idle before each run); each fit timed inside a warm worker "
        "process. hmmlearn: `PoissonHMM(n_iter=5000, tol=1e-10)`, one fit per restart.",
        "",
    ]
    has_before = args.before is not None
    head = "| fit | states | ours |" + (" before | ours / before |" if has_before else "")
    head += " hmmlearn | ours / hmmlearn |" + (" before / hmmlearn |" if has_before else "")
    md += [head, "|" + "---|" * (head.count("|") - 1)]
    for m, K in tasks:
        ours = med[f"ours {m} K={K}"]
        row = f"| {m} | {K} | {ours:.3f} |"
        if has_before:
            before = med[f"before {m} K={K}"]
            row += f" {before:.3f} | {ours / before:.2f} |"
        if m == "em":
            hl_s = med[f"hmmlearn em K={K}"]
            row += f" {hl_s:.3f} | {ours / hl_s:.2f} |"
            row += f" {before / hl_s:.2f} |" if has_before else ""
        else:
            row += " | |" + (" |" if has_before else "")
        md.append(row)
    md += ["", f"Load average at the end: {res['machine']['loadavg']}."]
    write_text(args.out / "hmm_speed.json", json.dumps(res, indent=1))
    write_text(args.out / "hmm_speed.md", "\n".join(md) + "\n")
    print("\n".join(md))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--speed", action="store_true", help="fitting times only (see above)")
    parser.add_argument("--before", type=Path, default=None, help="with --speed: older src")
    parser.add_argument("--reps", type=int, default=5, help="with --speed: repetitions")
    parser.add_argument("--restarts", type=int, default=10, help="with --speed: restarts")
    parser.add_argument(
        "--pause", type=float, default=1.0, help="with --speed: seconds idle before each run"
    )
    args = parser.parse_args()
    if args.speed:
        speed(args)
        return
    torch.set_num_threads(1)
    restarts = 3 if args.quick else 10
    samples = 1000 if args.quick else 10_000
    y = load_earthquakes()
    X = y.numpy().astype(int)[:, None]
    rows, res = [], {"fits": {}, "same_params": {}, "gradient": {}}
    for K in (2, 3):
        theirs, model, t_h = hmmlearn_best(X, K, restarts)
        ref = from_hmmlearn(model)
        ours_same = float(log_likelihood(ref, y)[0])
        same = abs(ours_same - model.score(X)) / abs(model.score(X))
        res["same_params"][f"poisson_{K}"] = {
            "ours": ours_same,
            "hmmlearn": model.score(X),
            "rel_diff": same,
        }
        fit = {"hmmlearn_best": theirs, "hmmlearn_seconds": t_h}
        for method in ("em", "gradient"):
            t0 = time.perf_counter()
            best, runs = fit_hmm(y, K, "poisson", method=method, restarts=restarts, seed=0)
            fit[method] = best.log_likelihood
            fit[f"{method}_seconds"] = time.perf_counter() - t0
            fit[f"{method}_restart_lls"] = [r.log_likelihood for r in runs]
            fit[f"{method}_rates"] = sorted(best.hmm.rates.tolist())
        res["fits"][f"poisson_{K}"] = fit
        res["gradient"][f"poisson_{K}"] = grad_checks(ref, y)
        # away from the MLE (where the gradient is ~0 and the start distribution degenerate)
        mc_model = MC_MODELS[K]
        gen = torch.Generator().manual_seed(0)
        est = sampled_likelihood_gradient(mc_model, y, samples, generator=gen)
        exact = likelihood_gradient(mc_model, y).grad
        z = max(
            float(((m - e)[s > 0] / s[s > 0]).abs().max())
            for m, e, s in zip(est.grad, exact, est.stderr, strict=True)
        )
        res["gradient"][f"poisson_{K}"]["mc_max_abs_z"] = z
        res["gradient"][f"poisson_{K}"]["mc_samples"] = samples
        rows.append((K, fit, same, res["gradient"][f"poisson_{K}"]))

    g = torch.Generator().manual_seed(3)
    gh = HMM.from_probabilities(
        [0.6, 0.4],
        [[0.7, 0.3], [0.25, 0.75]],
        means=torch.randn(2, 2, generator=g, dtype=torch.float64),
        sds=0.5 + torch.rand(2, 2, generator=g, dtype=torch.float64),
    )
    yg = torch.randn(200, 2, generator=g, dtype=torch.float64)
    ref = hl.GaussianHMM(n_components=2, covariance_type="diag", init_params="")
    ref.startprob_, ref.transmat_ = gh.startprob.numpy(), gh.transmat.numpy()
    ref.means_, ref.covars_ = gh.means.numpy(), gh.sds.square().numpy()
    ours_g = float(log_likelihood(gh, yg)[0])
    res["same_params"]["gaussian_diag_2x2"] = {
        "ours": ours_g,
        "hmmlearn": ref.score(yg.numpy()),
        "rel_diff": abs(ours_g - ref.score(yg.numpy())) / abs(ref.score(yg.numpy())),
    }
    res["gradient"]["gaussian_diag_2x2"] = grad_checks(gh, yg[None].expand(3, -1, -1))
    res["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "loadavg": os.getloadavg(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "restarts": restarts,
    }
    write_text(args.out / "hmm.json", json.dumps(res, indent=1))  # NaN kept, as before
    md = [
        "# HMMs on the earthquake counts (1900-2006), stochgrad vs hmmlearn",
        "",
        f"{restarts} random starts each; log-likelihoods (higher is better).",
        "",
        "| states | hmmlearn best | ours EM (minus hmmlearn) | ours gradient, L-BFGS (minus hmmlearn) | s hmmlearn / EM / gradient | same-params rel. diff | Fisher vs autograd (max abs) | Fisher vs FD (max rel) | MC max abs z |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for K, fit, same, gr in rows:
        md.append(
            f"| {K} | {fit['hmmlearn_best']:.9f} | {fit['em']:.9f} ({fit['em'] - fit['hmmlearn_best']:+.1e}) | "
            f"{fit['gradient']:.9f} ({fit['gradient'] - fit['hmmlearn_best']:+.1e}) | "
            f"{fit['hmmlearn_seconds']:.2f} / {fit['em_seconds']:.2f} / {fit['gradient_seconds']:.2f} | "
            f"{same:.1e} | {gr['fisher_vs_autograd_max_abs']:.1e} | {gr['fisher_vs_fd_max_rel']:.1e} | "
            f"{gr['mc_max_abs_z']:.2f} |"
        )
    gs = res["same_params"]["gaussian_diag_2x2"]
    gg = res["gradient"]["gaussian_diag_2x2"]
    md += [
        "",
        f"Gaussian (diagonal, K = 2, D = 2, T = 200): same-params rel. diff {gs['rel_diff']:.1e}; "
        f"Fisher vs autograd {gg['fisher_vs_autograd_max_abs']:.1e}, vs FD {gg['fisher_vs_fd_max_rel']:.1e}.",
        "",
        "Zucchini & MacDonald (2009) report -log L = 341.88 (2 states) and 329.46 (3 states) with the",
        "initial distribution fixed to the stationary one; hmmlearn and stochgrad fit it freely.",
        "",
        f"Load average during the run: {res['machine']['loadavg']}.",
    ]
    write_text(args.out / "hmm.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
