r"""Benchmark: EIG estimators of ``stochgrad.apps.design`` against Pyro's ``nmc_eig`` and the closed form.

The model is the one of Pyro's own OED tests: :math:`y = X\theta + \varepsilon`,
:math:`\theta \sim N(0, \mathrm{diag}(1, 1.5^2))`, :math:`\varepsilon \sim N(0, I_3)`,
:math:`X = [[1,0],[0,1],[0,1]]`; closed form
:math:`\mathrm{EIG} = \frac12\log\det(I + X\Sigma X^\top) = \frac12\log 11 = 1.19895`.

Each estimator is called ``--repeats`` times with N outer and M inner samples (float64 throughout):

1. ``stochgrad`` NMC (:func:`stochgrad.apps.design.nmc_eig`, fresh inner samples per outer);
2. ``stochgrad`` PCE lower bound (:func:`stochgrad.apps.design.pce_eig`);
3. Pyro 1.9 ``pyro.contrib.oed.eig.nmc_eig`` (M inner samples shared by all outer samples;
   Pyro 1.9 has no PCE estimator). Pyro returns a bare number, so its standard error is the
   spread over the repeats.

Reported: mean over repeats, its standard error, z against the closed form, z between stochgrad
and Pyro (joint standard error), and the median wall time per call with the ratio to Pyro's
(interleaved round by round). Writes ``<out>/design.json`` and ``<out>/design.md``.

Run: ``.venv/bin/python benchmarks/bench_design.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from stochgrad.apps.design import LinearGaussianModel, nmc_eig, pce_eig

PRIOR_SD = (1.0, 1.5)
X = ((1.0, 0.0), (0.0, 1.0), (0.0, 1.0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outer", type=int, default=2000)
    parser.add_argument("--inner", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="N = M = 200, 3 repeats")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.outer, args.inner, args.repeats = 200, 200, 3
    torch.set_num_threads(1)

    import pyro
    from pyro.contrib.oed.eig import nmc_eig as pyro_nmc_eig
    from pyro.contrib.oed.glmm import known_covariance_linear_model

    f64 = torch.float64
    sd = torch.tensor(PRIOR_SD, dtype=f64)
    design = torch.tensor(X, dtype=f64)
    model = LinearGaussianModel(torch.diag(sd**2), noise_sd=1.0)
    exact = float(model.exact_eig(design))
    pyro_model = known_covariance_linear_model(
        torch.zeros(2, dtype=f64), sd, torch.tensor(1.0, dtype=f64)
    )
    n, m = args.outer, args.inner

    def ours_nmc(r: int) -> tuple[float, float]:
        e = nmc_eig(
            model, design, num_outer=n, num_inner=m, generator=torch.Generator().manual_seed(r)
        )
        return e.value, e.stderr

    def ours_pce(r: int) -> tuple[float, float]:
        e = pce_eig(
            model, design, num_outer=n, num_inner=m, generator=torch.Generator().manual_seed(r)
        )
        return e.value, e.stderr

    def pyro_nmc(r: int) -> tuple[float, float]:
        pyro.set_rng_seed(r)
        return float(pyro_nmc_eig(pyro_model, design, "y", "w", N=n, M=m)), math.nan

    impls = {"stochgrad_nmc": ours_nmc, "stochgrad_pce": ours_pce, "pyro_nmc_eig": pyro_nmc}
    values: dict[str, list[float]] = {k: [] for k in impls}
    seconds: dict[str, list[float]] = {k: [] for k in impls}
    for r in range(args.repeats):  # interleaved: machine load hits all alike
        for key, fn in impls.items():
            t0 = time.perf_counter()
            v, _ = fn(1000 + r)
            seconds[key].append(time.perf_counter() - t0)
            values[key].append(v)
    rows = {}
    for key in impls:
        vals = values[key]
        mean = statistics.fmean(vals)
        se = statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else math.nan
        rows[key] = {
            "mean": mean,
            "stderr": se,
            "z_vs_closed_form": (mean - exact) / se,
            "median_seconds": statistics.median(seconds[key]),
        }
    pyro_row = rows["pyro_nmc_eig"]
    for key in ("stochgrad_nmc", "stochgrad_pce"):
        joint = math.hypot(rows[key]["stderr"], pyro_row["stderr"])
        rows[key]["z_vs_pyro"] = (rows[key]["mean"] - pyro_row["mean"]) / joint
        rows[key]["time_ratio_to_pyro"] = rows[key]["median_seconds"] / pyro_row["median_seconds"]
    result = {
        "problem": "linear-Gaussian, prior sd (1, 1.5), noise sd 1, X = [[1,0],[0,1],[0,1]]",
        "closed_form": exact,
        "outer": n,
        "inner": m,
        "repeats": args.repeats,
        "rows": rows,
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "design.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"EIG of Pyro's linear test model, closed form {exact:.5f}; N = {n}, M = {m}, "
        f"{args.repeats} repeats (float64, 1 thread)",
        "",
        "| estimator | mean of repeats | stderr | z vs closed form | z vs Pyro | median s/call | time / Pyro |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row in rows.items():
        lines.append(
            f"| {key} | {row['mean']:.5f} | {row['stderr']:.5f} | {row['z_vs_closed_form']:+.2f} | "
            f"{row.get('z_vs_pyro', math.nan):+.2f} | {row['median_seconds']:.3f} | "
            f"{row.get('time_ratio_to_pyro', 1.0):.2f} |"
        )
    (args.out / "design.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
