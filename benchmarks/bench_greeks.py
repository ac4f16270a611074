r"""Benchmark and validation: option Greeks by likelihood ratio, pathwise and mixed estimators.

Four measurements, all in one run, written to ``benchmarks/results/greeks.json`` and ``greeks.md``:

1. **Accuracy against QuantLib**: every estimate (price, delta, gamma, vega, rho by every valid
   method) for a call, a put, a cash-or-nothing digital, a geometric-average Asian call on 12
   dates and a continuously monitored up-and-out call (Brownian bridge), on several parameter
   sets including a short maturity ``T = 0.05`` and a dividend yield ``q = 0.04``; the
   z-score ``(estimate - QuantLib) / stderr`` of each, and the largest ``|z|``.
2. **Per-path standard deviations** of pathwise vs likelihood-ratio delta and vega (and mixed vs
   LR gamma), for the call, put, Asian and bridge barrier.
3. **Barrier monitoring**: naive discrete monitoring on m dates vs the Brownian-bridge product
   against QuantLib's ``AnalyticBarrierEngine`` (also ``docs/greeks_barrier_bias.png`` with
   ``--figure``); and the Heston full-truncation Euler bias against ``AnalyticHestonEngine``
   (price, delta, and vega :math:`\partial V/\partial v_0` against central differences of its
   price in :math:`v_0`).
4. **Throughput** of the likelihood-ratio delta of a European call (price and delta, each with
   its standard error): :func:`stochgrad.apps.finance.estimate_greeks` with torch on 2 threads,
   chunks of 2^20 paths, against a hand-written chunked numpy version (one thread, numpy's
   ``standard_normal``) measured in the same run, interleaved; float64 (and float32 for torch).

Run: ``.venv/bin/python benchmarks/bench_greeks.py`` (``--quick`` for a smoke run,
``--figure`` to redraw the docs figure).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

# On a shared machine OpenMP's default active spin-waiting makes torch's 2-thread elementwise
# kernels several times slower than 1 thread (a descheduled worker stalls the other); passive
# waiting avoids it. Set before torch is imported; an explicit setting is respected.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from stochgrad.apps.finance import (  # noqa: E402
    Heston,
    Market,
    Option,
    estimate_greeks,
    quantlib_reference,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = HERE.parent / "docs"

MARKETS = {
    "S100 K100 vol0.2 r0.05 T1": (Market(100.0, 0.2, 0.05, 1.0), 100.0, 120.0),
    "S100 K105 vol0.3 r0.02 T0.05": (Market(100.0, 0.3, 0.02, 0.05), 105.0, 110.0),
    "S90 K100 vol0.25 r0.0 T0.5": (Market(90.0, 0.25, 0.0, 0.5), 100.0, 115.0),
    "S110 K100 vol0.4 r0.08 T2": (Market(110.0, 0.4, 0.08, 2.0), 100.0, 160.0),
    "S100 K95 vol0.25 r0.05 q0.04 T0.75": (Market(100.0, 0.25, 0.05, 0.75, 0.04), 95.0, 125.0),
}


def accuracy(paths: int) -> list[dict]:
    rows = []
    for name, (mk, K, H) in MARKETS.items():
        for opt in (
            Option("call", K),
            Option("put", K),
            Option("digital", K),
            Option("geometric", K, steps=12),
            Option("barrier", K, barrier=H),
        ):
            ref = quantlib_reference(opt, mk)
            res = estimate_greeks(opt, mk, paths, seed=2024, reference=ref)
            for e in res.estimates:
                rows.append(
                    {
                        "market": name,
                        "payoff": opt.payoff,
                        "greek": e.greek,
                        "method": e.method,
                        "value": e.value,
                        "stderr": e.stderr,
                        "quantlib": e.reference,
                        "z": e.z,
                    }
                )
    return rows


def spreads(paths: int) -> list[dict]:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    rows = []
    for label, opt in (
        ("call K100", Option("call", 100.0)),
        ("put K100", Option("put", 100.0)),
        ("asian K100, 12 dates", Option("asian", 100.0, steps=12)),
        ("up-and-out K100 H120, bridge, 1 step", Option("barrier", 100.0, barrier=120.0)),
        (
            "up-and-out K100 H120, bridge, 12 steps",
            Option("barrier", 100.0, barrier=120.0, steps=12),
        ),
        ("digital K100", Option("digital", 100.0)),
    ):
        res = estimate_greeks(opt, mk, paths, greeks=["delta", "vega", "gamma"], seed=7)
        row = {"option": label}
        for g, m in (
            ("delta", "lr"),
            ("delta", "pathwise"),
            ("vega", "lr"),
            ("vega", "pathwise"),
            ("gamma", "lr"),
            ("gamma", "mixed"),
        ):
            try:
                row[f"{g} {m}"] = res.get(g, m).std
            except KeyError:
                row[f"{g} {m}"] = None
        rows.append(row)
    return rows


def barrier_bias(paths: int) -> list[dict]:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    ref = quantlib_reference(Option("barrier", 100.0, barrier=120.0), mk)["price"]
    rows = []
    for monitoring, steps in [("discrete", m) for m in (4, 12, 52, 250)] + [
        ("bridge", m) for m in (1, 4, 52)
    ]:
        opt = Option("barrier", 100.0, barrier=120.0, steps=steps, monitoring=monitoring)
        e = estimate_greeks(opt, mk, paths, greeks=[], seed=3, reference={"price": ref}).get(
            "price", "mc"
        )
        rows.append(
            {
                "monitoring": monitoring,
                "steps": steps,
                "price": e.value,
                "stderr": e.stderr,
                "quantlib": ref,
                "bias": e.value - ref,
                "z": e.z,
            }
        )
    return rows


def heston_bias(paths: int) -> list[dict]:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    h = Heston(0.04, 1.5, 0.04, 0.5, -0.7)
    rows = []
    for steps in (8, 16, 32, 64, 128):
        opt = Option("call", 100.0, steps=steps)
        ref = quantlib_reference(opt, mk, h)
        res = estimate_greeks(
            opt,
            mk,
            paths,
            heston=h,
            greeks=["delta", "vega"],
            methods=["pathwise"],
            seed=5,
            reference=ref,
        )
        for g in ("price", "delta", "vega"):
            e = res.get(g, "mc" if g == "price" else "pathwise")
            rows.append(
                {
                    "steps": steps,
                    "greek": g,
                    "value": e.value,
                    "stderr": e.stderr,
                    "quantlib": e.reference,
                    "bias": e.value - e.reference,
                    "z": e.z,
                }
            )
    return rows


def numpy_lr_delta(n: int, chunk: int, seed: int) -> tuple[float, float, float, float]:
    """Hand-written numpy: price and LR delta of a call, streaming sums, float64."""
    s0, K, vol, r, T = 100.0, 100.0, 0.2, 0.05, 1.0
    rng = np.random.default_rng(seed)
    a, b = (r - 0.5 * vol * vol) * T, vol * math.sqrt(T)
    disc, c = math.exp(-r * T), 1.0 / (s0 * vol * math.sqrt(T))
    sp = sp2 = sd = sd2 = 0.0
    done = 0
    while done < n:
        m = min(chunk, n - done)
        z = rng.standard_normal(m)
        f = np.maximum(s0 * np.exp(a + b * z) - K, 0.0)
        f *= disc
        d = f * z
        d *= c
        sp += f.sum()
        sp2 += f @ f
        sd += d.sum()
        sd2 += d @ d
        done += m
    price, delta = sp / n, sd / n
    return (
        price,
        math.sqrt((sp2 / n - price**2) / (n - 1)),
        delta,
        math.sqrt((sd2 / n - delta**2) / (n - 1)),
    )


def throughput(n: int, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    mk, opt = Market(100.0, 0.2, 0.05, 1.0), Option("call", 100.0)
    chunk = 1 << 20

    def ours(dtype: torch.dtype, rng: str):
        g = np.random.default_rng(0) if rng == "numpy" else torch.Generator().manual_seed(0)
        return estimate_greeks(
            opt, mk, n, greeks=["delta"], methods=["lr"], generator=g, chunk_size=chunk, dtype=dtype
        )

    impls = {
        "stochgrad float64, torch normals": (torch.float64, "torch"),
        "stochgrad float64, numpy normals (default)": (torch.float64, "numpy"),
        "stochgrad float32, torch normals": (torch.float32, "torch"),
        "numpy float64 (hand-written)": None,
    }
    # warm-up (first torch calls allocate and dispatch)
    ours(torch.float64, "torch")
    numpy_lr_delta(chunk, chunk, 0)
    times: dict[str, list[float]] = {name: [] for name in impls}
    values = {}
    for _ in range(repeats):  # interleaved, so load drift on the machine hits all alike
        for name, spec in impls.items():
            t0 = time.perf_counter()
            if spec is None:
                p, pse, d, dse = numpy_lr_delta(n, chunk, 0)
                values[name] = {"delta": d, "delta_stderr": dse, "price": p, "price_stderr": pse}
            else:
                res = ours(*spec)
                e = res.get("delta", "lr")
                values[name] = {
                    "delta": e.value,
                    "delta_stderr": e.stderr,
                    "price": res.get("price", "mc").value,
                }
            times[name].append(time.perf_counter() - t0)
    out = {
        "paths": n,
        "repeats": repeats,
        "torch_threads": threads,
        "chunk": chunk,
        "load_average": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "implementations": {},
    }
    for name, ts in times.items():
        med = statistics.median(ts)
        out["implementations"][name] = {
            "median_s": med,
            "paths_per_s": n / med,
            "times_s": ts,
            **values[name],
        }
    ref = out["implementations"]["numpy float64 (hand-written)"]["paths_per_s"]
    for v in out["implementations"].values():
        v["ratio_to_numpy"] = v["paths_per_s"] / ref
    return out


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for mon, color in (("discrete", "C1"), ("bridge", "C0")):
        rs = [r for r in rows if r["monitoring"] == mon]
        ax.errorbar(
            [r["steps"] for r in rs],
            [r["price"] for r in rs],
            yerr=[1.96 * r["stderr"] for r in rs],
            fmt="o-",
            color=color,
            capsize=3,
            label="naive discrete monitoring" if mon == "discrete" else "Brownian bridge",
        )
    ax.axhline(rows[0]["quantlib"], color="C3", ls="--", label="QuantLib (continuous)")
    ax.set_xscale("log")
    ax.set_xlabel("monitoring dates m")
    ax.set_ylabel("price")
    ax.set_title("Up-and-out call K=100 H=120, S0=100 vol=0.2 r=0.05 T=1")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _f(v, d=4) -> str:
    if v is None:
        return "—"
    return f"{v:.{d}g}"


def markdown(res: dict) -> str:
    lines = [
        "# Greeks: likelihood ratio, pathwise and mixed estimators",
        "",
        f"Generated by `benchmarks/bench_greeks.py` on {res['date']} ({res['machine']}).",
    ]
    for key in ("throughput", "throughput_1_thread"):
        tp = res[key]
        load = ", ".join(f"{x:.1f}" for x in tp["load_average"])
        lines += [
            "",
            f"## Throughput: likelihood-ratio delta of a European call, torch threads = "
            f"{tp['torch_threads']}",
            "",
            f"{tp['paths']:,} paths (price and delta with standard errors), chunks of "
            f"{tp['chunk']:,}, median of {tp['repeats']} interleaved runs; load average of the "
            f"machine after the runs: {load}; OMP_WAIT_POLICY={tp['omp_wait_policy']}. The "
            "numpy version is single-threaded.",
            "",
            "| implementation | median s | paths/s | ratio to numpy | delta | stderr |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, v in tp["implementations"].items():
            lines.append(
                f"| {name} | {v['median_s']:.3f} | {v['paths_per_s'] / 1e6:.2f} M | "
                f"{v['ratio_to_numpy']:.2f} | {v['delta']:.5f} | {v['delta_stderr']:.1e} |"
            )
    lines += [
        "",
        "## Per-path standard deviation of the estimators (S0=100, K=100, vol=0.2, r=0.05, T=1)",
        "",
        "| option | delta LR | delta pathwise | vega LR | vega pathwise | gamma LR | gamma mixed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["spreads"]:
        lines.append(
            f"| {r['option']} | "
            + " | ".join(
                _f(r[k])
                for k in (
                    "delta lr",
                    "delta pathwise",
                    "vega lr",
                    "vega pathwise",
                    "gamma lr",
                    "gamma mixed",
                )
            )
            + " |"
        )
    acc = res["accuracy"]
    worst = max(acc, key=lambda r: abs(r["z"]))
    lines += [
        "",
        f"## Accuracy against QuantLib ({res['accuracy_paths']:,} paths per case)",
        "",
        f"{len(acc)} estimates; largest |z| = {abs(worst['z']):.2f} ({worst['payoff']} "
        f"{worst['greek']} by {worst['method']}, {worst['market']}); "
        f"{sum(abs(r['z']) < 4 for r in acc)} of {len(acc)} within 4 standard errors.",
        "",
        "| market | payoff | greek | method | estimate | stderr | QuantLib | z |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in acc:
        lines.append(
            f"| {r['market']} | {r['payoff']} | {r['greek']} | {r['method']} | "
            f"{r['value']:.6g} | {r['stderr']:.2g} | {r['quantlib']:.6g} | {r['z']:+.2f} |"
        )
    lines += [
        "",
        f"## Up-and-out barrier: naive discrete monitoring vs Brownian bridge "
        f"({res['barrier_paths']:,} paths)",
        "",
        "| monitoring | dates | price | stderr | QuantLib | bias | z |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["barrier"]:
        lines.append(
            f"| {r['monitoring']} | {r['steps']} | {r['price']:.5f} | {r['stderr']:.1e} | "
            f"{r['quantlib']:.5f} | {r['bias']:+.5f} | {r['z']:+.1f} |"
        )
    lines += [
        "",
        f"## Heston call, full-truncation Euler vs AnalyticHestonEngine ({res['heston_paths']:,} "
        "paths; v0=0.04 kappa=1.5 theta=0.04 xi=0.5 rho=-0.7, S0=K=100, r=0.05, T=1)",
        "",
        "| steps | greek | estimate | stderr | QuantLib | bias | z |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["heston"]:
        lines.append(
            f"| {r['steps']} | {r['greek']} | {r['value']:.5f} | {r['stderr']:.1e} | "
            f"{r['quantlib']:.5f} | {r['bias']:+.5f} | {r['z']:+.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--figure", action="store_true", help="write docs/greeks_barrier_bias.png")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for throughput")
    parser.add_argument("--only-throughput", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    q = args.quick
    start = time.perf_counter()
    res: dict = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"numpy {np.__version__}",
    }
    size, reps = (2_000_000, 1) if q else (20_000_000, 5)
    res["throughput"] = throughput(size, reps, args.threads)
    res["throughput_1_thread"] = throughput(size, reps, 1)
    for key in ("throughput", "throughput_1_thread"):
        for name, v in res[key]["implementations"].items():
            print(
                f"{key}: {name}: {v['paths_per_s'] / 1e6:.2f} M paths/s, "
                f"ratio {v['ratio_to_numpy']:.2f}"
            )
    if not args.only_throughput:
        torch.set_num_threads(1)
        res["accuracy_paths"] = 20_000 if q else 400_000
        res["accuracy"] = accuracy(res["accuracy_paths"])
        res["spreads"] = spreads(20_000 if q else 400_000)
        res["barrier_paths"] = 20_000 if q else 200_000
        res["barrier"] = barrier_bias(res["barrier_paths"])
        res["heston_paths"] = 10_000 if q else 200_000
        res["heston"] = heston_bias(res["heston_paths"])
        if args.figure:
            figure(res["barrier"], DOCS / "greeks_barrier_bias.png")
    res["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "greeks.json").write_text(json.dumps(res, indent=1))
    if not args.only_throughput:
        (args.out / "greeks.md").write_text(markdown(res))
    print(
        f"wrote {args.out}/greeks.json{'' if args.only_throughput else ' and greeks.md'}; "
        f"{res['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
