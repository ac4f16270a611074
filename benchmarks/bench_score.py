r"""Benchmark: score-function gradient of E[(x - 2)^2], x ~ Normal(mu, sigma), stochgrad vs peers.

The problem: :math:`\theta = (\mu, \sigma) = (0.5, 1.0)`, :math:`f(x) = (x - a)^2`, :math:`a = 2`,
true gradient :math:`\nabla_\theta \mathbb{E}[f] = (2(\mu - a), 2\sigma) = (-3, 2)`. Every
implementation computes the score-function (REINFORCE) estimate without a baseline,

.. math::  \hat g = \frac1n \sum_i f(x_i)\, \nabla_\theta \log p(x_i; \theta),

at n = 1e2, 1e3, 1e5, 1e6, in one process, and is timed against a hand-written torch surrogate
measured in the same run (interleaved round by round, so drift on a shared machine hits all alike):

1. ``stochgrad``: ``sg.score_function(f, dist_fn, theta, num_samples=n, generator=g)`` (also gives
   per-sample terms, variance and standard error);
2. hand-written torch surrogate ``(f(x).detach() * d.log_prob(x)).mean().backward()`` (mean only);
3. numpy closed form (float64);
4. Pyro ``TraceGraph_ELBO`` (defaults; with validation off; and ``JitTraceGraph_ELBO``), with a
   model/guide pair whose ELBO gradient is exactly the score-function estimate of
   :math:`-\nabla \mathbb{E}[f]` (see :func:`make_pyro`);
5. storchastic ``ScoreFunction`` with ``storch.add_cost`` / ``storch.backward``. Importing
   storchastic monkey-patches torch globally (``torch.is_tensor``, ``Tensor.to/le/gt`` and
   ``Distribution.set_default_validate_args(False)``), so it is timed last, after everything else,
   together with a re-timing of the hand-written surrogate under the patched torch.

Peak memory growth (``ru_maxrss``, one fresh subprocess per implementation and n) is measured for
stochgrad and the hand-written surrogate at n = 1e5 and 1e6.

Writes ``benchmarks/results/score_function.json`` and ``score_function.md``.
Run: ``.venv/bin/python benchmarks/bench_score.py`` (``make bench``); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib.metadata as _md
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

A = 2.0
THETA = (0.5, 1.0)
TRUE_GRAD = (2.0 * (THETA[0] - A), 2.0 * THETA[1])  # (-3, 2)
SIZES = (100, 1_000, 100_000, 1_000_000)
REPEATS = {100: 300, 1_000: 300, 100_000: 60, 1_000_000: 30}
WARMUP = 5
MEMORY_SIZES = (100_000, 1_000_000)
HEAD_TO_HEAD_SIZES = (1_000,)
Z_TOL = 5.0
SEED = 0
RESULTS = Path(__file__).resolve().parent / "results"

Pair = tuple[float, float]


def f(x):
    """The cost, batched: works on torch tensors, numpy arrays and storchastic tensors."""
    return (x - A) ** 2


def analytic_sd() -> Pair:
    r"""Standard deviation of one per-sample term :math:`f(x)\nabla\log p(x)` (no baseline).

    With :math:`x = \mu + \sigma e`, :math:`k = (\mu - a)/\sigma`, the terms are
    :math:`\sigma (k+e)^2 e` and :math:`\sigma (k+e)^2 (e^2 - 1)`; Gaussian moments give
    variances :math:`\sigma^2(k^4 + 14k^2 + 15)` and :math:`\sigma^2(2k^4 + 60k^2 + 74)`.
    """
    mu, sigma = THETA
    k = (mu - A) / sigma
    return (
        sigma * math.sqrt(k**4 + 14 * k**2 + 15),
        sigma * math.sqrt(2 * k**4 + 60 * k**2 + 74),
    )


# ------------------------------------------------------------------------------------------------
# implementations: make_*(n) -> (call, extract); call() is timed, extract(out) is not
# ------------------------------------------------------------------------------------------------
def _pair(t) -> Pair:
    t = t.detach().reshape(-1).tolist() if isinstance(t, torch.Tensor) else list(np.ravel(t))
    return (float(t[0]), float(t[1]))


def make_stochgrad(n: int):
    import stochgrad as sg

    theta = torch.tensor(THETA)
    g = torch.Generator().manual_seed(SEED)

    def dist_fn(th):
        return torch.distributions.Normal(th[0], th[1])

    def call():
        return sg.score_function(f, dist_fn, theta, num_samples=n, generator=g)

    def extract(est):
        return {"grad": _pair(est.grad), "stderr": _pair(est.stderr)}

    return call, extract


def make_hand(n: int):
    th = torch.tensor(THETA, requires_grad=True)

    def call():
        th.grad = None
        d = torch.distributions.Normal(th[0], th[1])
        x = d.sample((n,))
        (f(x).detach() * d.log_prob(x)).mean().backward()
        return th.grad

    return call, lambda out: {"grad": _pair(out)}


def make_numpy(n: int):
    rng = np.random.default_rng(SEED)
    mu, sigma = THETA

    def call():
        x = rng.normal(mu, sigma, n)
        fx = f(x)
        z = x - mu
        score_mu = z / sigma**2
        score_sigma = (z * z - sigma**2) / sigma**3
        return np.array([np.mean(fx * score_mu), np.mean(fx * score_sigma)])

    return call, lambda out: {"grad": _pair(out)}


def make_pyro(n: int, variant: str):
    r"""Pyro model/guide whose TraceGraph_ELBO loss gradient is the score-function estimate of E[f].

    Guide: :math:`q_\phi(x) = \prod_i \mathrm{Normal}(x_i; \mathrm{loc}, \mathrm{scale})`, marked
    non-reparameterisable (``has_rsample_(False)``), so TraceGraph_ELBO uses the score function.
    Model: the *same* Normal with its parameters detached, :math:`p(x) = q_{\bar\phi}(x)`, times
    the cost factor :math:`e^{-f(x)}` (``pyro.factor``). So
    :math:`\mathrm{ELBO}(\phi) = -\mathbb{E}_q[f] - \mathrm{KL}(q_\phi \| q_{\bar\phi})`.

    TraceGraph_ELBO's surrogate for a non-reparameterised site is
    :math:`\sum_i \log q_\phi(x_i)\,\mathrm{stopgrad}(c_i)` plus terms without gradient (the
    sample is not reparameterised and the model's parameters are detached; a non-reparameterised
    site's entropy term is zero, so :math:`\log q` enters only through the score). The downstream
    cost of sample i is :math:`c_i = (-f(x_i) + \log p(x_i) - \log q_\phi(x_i))/n = -f(x_i)/n`
    *exactly*, because :math:`\log p` and :math:`\log q` are the same formula at the same values
    (the KL term and its noisy score-function entropy gradient vanish per sample, not just in
    expectation). The plate keeps the cost per sample (no cross terms) and
    ``poutine.scale(1/n)`` turns the sum into a mean (Pyro scales the cost, not the score). Hence
    :math:`\nabla_\phi \mathrm{loss} = \frac1n\sum_i f(x_i)\nabla_\phi\log q_\phi(x_i)`: the
    no-baseline score-function estimate of :math:`\nabla\mathbb{E}[f]`, sign included.
    """
    import pyro
    import pyro.distributions as pdist
    from pyro import poutine
    from pyro.infer import JitTraceGraph_ELBO, TraceGraph_ELBO

    names = (f"{variant}_{n}_loc", f"{variant}_{n}_scale")  # own parameters per variant and n

    def model():
        loc = pyro.param(names[0]).detach()
        scale = pyro.param(names[1]).detach()
        with pyro.plate("samples", n), poutine.scale(scale=1.0 / n):
            x = pyro.sample("x", pdist.Normal(loc, scale))
            pyro.factor("cost", -f(x))

    def guide():
        loc = pyro.param(names[0], torch.tensor(THETA[0]))
        scale = pyro.param(names[1], torch.tensor(THETA[1]))  # no constraint: grad is d/d scale
        with pyro.plate("samples", n), poutine.scale(scale=1.0 / n):
            pyro.sample("x", pdist.Normal(loc, scale).has_rsample_(False))

    elbo = JitTraceGraph_ELBO() if variant == "jit" else TraceGraph_ELBO()
    validate = variant != "novalidate"
    guide()  # create the params
    loc = pyro.param(names[0]).unconstrained()
    scale = pyro.param(names[1]).unconstrained()

    def call():
        loc.grad = None
        scale.grad = None
        # ``pyro.validation_enabled`` also toggles torch's default ``validate_args``; the context
        # manager restores both after the call.
        with pyro.validation_enabled(validate), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # JIT tracer warnings
            elbo.loss_and_grads(model, guide)
        return loc.grad, scale.grad

    return call, lambda out: {"grad": (float(out[0]), float(out[1]))}


def make_storch(n: int):
    import storch
    from storch.method import ScoreFunction

    mu = torch.tensor(THETA[0], requires_grad=True)
    sigma = torch.tensor(THETA[1], requires_grad=True)
    method = ScoreFunction("x", n_samples=n)

    def call():
        mu.grad = None
        sigma.grad = None
        x = method(torch.distributions.Normal(mu, sigma))
        storch.add_cost(f(x), "f")
        storch.backward()
        return mu.grad, sigma.grad

    return call, lambda out: {"grad": (float(out[0]), float(out[1]))}


IMPLS: dict[str, dict] = {
    "stochgrad": {"label": "stochgrad `score_function`", "make": make_stochgrad},
    "torch_hand": {"label": "hand-written torch surrogate", "make": make_hand},
    "numpy": {"label": "numpy closed form (float64)", "make": make_numpy},
    "pyro_tracegraph": {
        "label": "Pyro `TraceGraph_ELBO` (defaults)",
        "make": lambda n: make_pyro(n, "default"),
        "needs": "pyro",
    },
    "pyro_tracegraph_novalidate": {
        "label": "Pyro `TraceGraph_ELBO`, validation off",
        "make": lambda n: make_pyro(n, "novalidate"),
        "needs": "pyro",
    },
    "pyro_jit_tracegraph": {
        "label": "Pyro `JitTraceGraph_ELBO`",
        "make": lambda n: make_pyro(n, "jit"),
        "needs": "pyro",
    },
    "storchastic": {
        "label": "storchastic `ScoreFunction`",
        "make": make_storch,
        "needs": "storch",
    },
}
MAIN_GROUP = [k for k in IMPLS if k != "storchastic"]
REF = "torch_hand"


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
def time_group(
    keys: list[str], n: int, repeats: int, progress, task
) -> tuple[dict[str, dict], dict[str, str]]:
    """Time ``keys`` at ``n``, interleaved round by round (the order rotates every round)."""
    calls: dict[str, tuple[Callable, Callable]] = {}
    errors: dict[str, str] = {}
    for key in keys:
        torch.manual_seed(SEED)
        try:
            call, extract = IMPLS[key]["make"](n)
            for _ in range(WARMUP):
                call()
            calls[key] = (call, extract)
        except Exception as exc:  # a peer failing must not stop the benchmark
            errors[key] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    times: dict[str, list[float]] = {k: [] for k in calls}
    outs: dict[str, list[dict]] = {k: [] for k in calls}
    order = list(calls)
    gc.collect()
    for r in range(repeats):
        rot = order[r % len(order) :] + order[: r % len(order)] if order else []
        for key in rot:
            call, extract = calls[key]
            try:
                t0 = time.perf_counter()
                out = call()
                dt = time.perf_counter() - t0
            except Exception as exc:
                errors[key] = f"{type(exc).__name__}: {exc}"
                order.remove(key)
                continue
            times[key].append(dt)
            outs[key].append(extract(out))
            del out
        progress.advance(task)
    results = {k: summarise(times[k], outs[k], n) for k in calls if k not in errors}
    ref = REF if REF in results else None
    for k, rec in results.items():
        if ref is not None and len(times[k]) == len(times[ref]):
            # per-round ratio against the reference timed in the same round: robust to drift
            rec["paired_ratio"] = statistics.median(
                a / b for a, b in zip(times[k], times[ref], strict=True)
            )
    return results, errors


def summarise(times: list[float], outs: list[dict], n: int) -> dict:
    ms = [t * 1e3 for t in times]
    q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    sd = analytic_sd()
    se1 = tuple(s / math.sqrt(n) for s in sd)
    last = outs[-1]["grad"]
    mean = tuple(statistics.fmean(o["grad"][i] for o in outs) for i in range(2))
    se_mean = tuple(s / math.sqrt(len(outs)) for s in se1)
    z_last = tuple((last[i] - TRUE_GRAD[i]) / se1[i] for i in range(2))
    z_mean = tuple((mean[i] - TRUE_GRAD[i]) / se_mean[i] for i in range(2))
    res = {
        "median_ms": statistics.median(ms),
        "p25_ms": q[0],
        "p75_ms": q[2],
        "min_ms": min(ms),
        "repeats": len(ms),
        "grad": last,
        "analytic_stderr": se1,
        "z": z_last,
        "grad_mean_over_repeats": mean,
        "z_mean_over_repeats": z_mean,
        "agrees": all(abs(z) < Z_TOL for z in (*z_last, *z_mean)),
    }
    if "stderr" in outs[-1]:
        own = outs[-1]["stderr"]
        res["reported_stderr"] = own
        res["z_own_stderr"] = tuple((last[i] - TRUE_GRAD[i]) / own[i] for i in range(2))
        res["agrees"] = res["agrees"] and all(abs(z) < Z_TOL for z in res["z_own_stderr"])
    return res


# ------------------------------------------------------------------------------------------------
# memory: one fresh subprocess per (implementation, n)
# ------------------------------------------------------------------------------------------------
def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_child(key: str, n: int) -> None:
    """Print the peak RSS growth caused by one call at ``n`` (after warm-up at n = 1000).

    ``ru_maxrss`` is the peak since process start, which importing torch already sets higher than
    one call needs; so the peak is reset first (Linux ``/proc/self/clear_refs``, value 5) and
    read back as ``VmHWM``. Without that interface it falls back to the ``ru_maxrss`` difference.
    """
    call, _ = IMPLS[key]["make"](1_000)
    for _ in range(3):
        call()
    call, _ = IMPLS[key]["make"](n)
    gc.collect()
    method = "VmHWM after resetting it via /proc/self/clear_refs"
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base = _proc_status_kib("VmRSS")
    except OSError:
        base = None
    if base is None:
        method = "ru_maxrss difference"
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = call()
    if method.startswith("VmHWM"):
        peak = _proc_status_kib("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del out
    rec = {"base_kib": base, "peak_kib": peak, "growth_bytes": (peak - base) * 1024}
    print(json.dumps({**rec, "method": method}))


def measure_memory(key: str, n: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", key, str(n)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
    except Exception as exc:
        err = getattr(exc, "stderr", "") or ""
        return {"error": f"{type(exc).__name__}: {exc} {err[-500:]}"}
    rec["growth_mib"] = rec["growth_bytes"] / 2**20
    rec["bytes_per_sample"] = rec["growth_bytes"] / n
    # what must be held anyway: per-sample terms [n, num_params] in float32
    rec["per_sample_tensor_mib"] = n * 2 * 4 / 2**20
    return rec


# ------------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return None


def machine_info() -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        git = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent
        )
        commit = git.stdout.strip() if git.returncode == 0 else ""
    except OSError:
        commit = ""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "numpy": np.__version__,
        "stochgrad": _version("stochgrad"),
        "pyro-ppl": _version("pyro-ppl"),
        "storchastic": _version("storchastic"),
        "git_commit": commit or None,
        "torch_default_validate_args": bool(torch.distributions.Distribution._validate_args),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def requirement_checks(timings: dict) -> list[dict]:
    def ms(key, n, stat="median_ms"):
        rec = timings.get(str(n), {}).get(key)
        return rec[stat] if isinstance(rec, dict) and stat in rec else None

    checks = []

    def add(name, a_key, b_key, n, factor, how):
        a, b = ms(a_key, n), ms(b_key, n)
        ok = None if a is None or b is None else bool(a * factor <= b)
        speed = None if a is None or b is None else b / a
        amin, bmin = ms(a_key, n, "min_ms"), ms(b_key, n, "min_ms")
        speed_min = None if amin is None or bmin is None else bmin / amin
        checks.append(
            {
                "requirement": name,
                "n": n,
                "stochgrad_ms": a,
                "other": b_key,
                "other_ms": b,
                "other_over_stochgrad": speed,
                "other_over_stochgrad_min": speed_min,
                "needed": how,
                "met": ok,
            }
        )

    add("at least as fast as hand-written torch", "stochgrad", "torch_hand", 1_000, 1.0, ">= 1")
    for key in ("pyro_tracegraph", "pyro_tracegraph_novalidate", "pyro_jit_tracegraph"):
        add(f">= 5x faster than {IMPLS[key]['label']}", "stochgrad", key, 1_000, 5.0, ">= 5")
    add(">= 2x faster than storchastic", "stochgrad", "storchastic", 1_000, 2.0, ">= 2")
    add("at most 1.5x hand-written torch", "stochgrad", "torch_hand", 1_000_000, 1 / 1.5, ">= 0.67")
    return checks


def _fmt(v, spec=".3f"):
    return "—" if v is None else format(v, spec)


def _load(v) -> str:
    return "n/a" if not v else "(" + ", ".join(f"{x:.2f}" for x in v) + ")"


def _sizes(n: int) -> str:
    return f"1e{round(math.log10(n))}" if n >= 10 and 10 ** round(math.log10(n)) == n else str(n)


def write_markdown(report: dict, path: Path) -> None:
    m = report["machine"]
    lines = [
        "# Score-function gradient benchmark",
        "",
        f"`{report['command']}` on {m['date_utc']}: {m['cpu_model'] or 'CPU'} "
        f"({m['cpu_count']} CPUs, {m['cpu_affinity']} usable), torch {m['torch']} with "
        f"{m['torch_num_threads']} threads (default, not changed), numpy {m['numpy']}, "
        f"pyro-ppl {m['pyro-ppl']}, storchastic {m['storchastic']}, Python {m['python']}. "
        f"Load average (1, 5, 15 min) at start {_load(m.get('load_average_at_start'))}, "
        f"at end {_load(report.get('load_average_at_end'))}: the machine is shared, so other "
        "work may have run during the measurement.",
        "",
        "Problem: x ~ Normal(mu, sigma), (mu, sigma) = (0.5, 1.0), f(x) = (x - 2)^2, true gradient "
        "(-3, 2); score function without baseline. Median wall time of one gradient over the "
        "repeats after warm-up; ratio = median / hand-written torch median at the same n, "
        "same run (> 1 is slower); paired = median over rounds of (time / hand-written time in "
        "the same round), which is less sensitive to load drifting during the run; the minimum is "
        "the least disturbed call. "
        "`z` = (grad - true) / analytic standard error at that n (for stochgrad also with its "
        "own reported stderr); `ok` = every |z| < 5, including "
        "the mean over all timed repeats.",
        "",
        "| implementation | n | median ms | p25–p75 ms | min ms | ratio vs hand | paired "
        "| grad (mu, sigma) | z (mu, sigma) | ok |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|:-:|",
    ]
    timings = report["timings"]
    for key, meta in IMPLS.items():
        for n in report["sizes"]:
            rec = timings.get(str(n), {}).get(key)
            if rec is None:
                continue
            if "median_ms" not in rec:
                msg = rec.get("status", "error")
                lines.append(f"| {meta['label']} | {_sizes(n)} | {msg} | | | | | | | |")
                continue
            g, z = rec["grad"], rec["z"]
            zs = f"{z[0]:+.1f}, {z[1]:+.1f}"
            if "z_own_stderr" in rec:
                zo = rec["z_own_stderr"]
                zs += f" (own: {zo[0]:+.1f}, {zo[1]:+.1f})"
            lines.append(
                f"| {meta['label']} | {_sizes(n)} | {rec['median_ms']:.3f} "
                f"| {rec['p25_ms']:.3f}–{rec['p75_ms']:.3f} | {rec['min_ms']:.3f} "
                f"| {_fmt(rec.get('ratio'), '.2f')} "
                f"| {_fmt(rec.get('paired_ratio'), '.2f')} | {g[0]:+.4f}, {g[1]:+.4f} | {zs} "
                f"| {'yes' if rec['agrees'] else 'NO'} |"
            )
    hs = report.get("storch_same_process_hand_ms")
    if hs:
        vals = ", ".join(f"{_sizes(int(n))}: {v:.3f}" for n, v in hs.items())
        lines += [
            "",
            "storchastic is timed last because importing it patches torch globally (it also turns "
            "off torch's `validate_args` default). The hand-written surrogate re-timed in that "
            f"patched process, interleaved with storchastic (median ms): {vals}; storchastic's "
            "*paired* ratio is against this re-timed surrogate, its *ratio vs hand* against the "
            "main (unpatched) one.",
        ]
    lines += [
        "",
        "## Peak memory growth of one call (peak RSS, fresh subprocess per row)",
        "",
        "| implementation | n | peak RSS growth MiB | bytes / sample "
        "| [n, 2] float32 per-sample tensor MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["memory"]:
        if "error" in row:
            lines.append(f"| {IMPLS[row['impl']]['label']} | {_sizes(row['n'])} | {row['error']} |")
            continue
        lines.append(
            f"| {IMPLS[row['impl']]['label']} | {_sizes(row['n'])} | {row['growth_mib']:.1f} "
            f"| {row['bytes_per_sample']:.1f} | {row['per_sample_tensor_mib']:.1f} |"
        )
    lines += [
        "",
        "## Requirements (stochgrad vs the others, median times from this run)",
        "",
        "| requirement | n | stochgrad ms | other ms | other / stochgrad | needed | met "
        "| same with min times |",
        "|---|---:|---:|---:|---:|---:|:-:|---:|",
    ]
    for c in report["requirements"]:
        met = "—" if c["met"] is None else ("yes" if c["met"] else "**no**")
        lines.append(
            f"| {c['requirement']} | {_sizes(c['n'])} | {_fmt(c['stochgrad_ms'])} "
            f"| {_fmt(c['other_ms'])} | {_fmt(c['other_over_stochgrad'], '.2f')} "
            f"| {c['needed']} | {met} | {_fmt(c['other_over_stochgrad_min'], '.2f')} |"
        )
    if report["unavailable"]:
        lines += ["", "## Unavailable or failed", ""]
        for key, err in report["unavailable"].items():
            lines.append(f"- {key}: `{err.splitlines()[0]}`")
    lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    path.write_text("\n".join(lines))


NOTES = [
    "stochgrad does more per call than the hand-written surrogate: it returns the [n, 2] "
    "per-sample terms, their variance and the standard error, and validates f's output; "
    "the hand-written surrogate and the peers return only the mean gradient.",
    "Pyro: the guide samples x ~ Normal(loc, scale) marked non-reparameterised "
    "(`has_rsample_(False)`) in a plate of size n under `poutine.scale(1/n)`; the model "
    "samples x from the same Normal with detached parameters and adds `pyro.factor('cost', "
    "-f(x))`. The per-sample downstream cost is then exactly -f(x_i)/n (log p - log q = 0 "
    "per sample), so the loss gradient is the no-baseline score-function estimate of "
    "grad E[f]. Three variants: defaults (validation on), validation off "
    "(`pyro.validation_enabled(False)`, which also switches off torch's `validate_args`), "
    "and `JitTraceGraph_ELBO` (traced once per n during warm-up).",
    "storchastic: `ScoreFunction('x', n_samples=n)` applied to `Normal(mu, sigma)`, "
    "`storch.add_cost(f(x), 'f')`, `storch.backward()`, as in its README.",
    "numpy runs in float64 (its natural dtype); the torch implementations in float32.",
    "All implementations are timed in one process, interleaved round by round with a rotating "
    "order; warm-up of 5 calls each. The machine may be shared, so look at the p25–p75 spread.",
    "Head to head: before the main group, stochgrad and the hand-written surrogate alone are "
    "interleaved at n = 1e3 (a training loop calling the estimator again and again). In the main "
    "group the peers' code (Pyro's in particular) runs between the calls and evicts caches; "
    "stochgrad runs more Python per call than the surrogate, so it loses more there.",
]


def run(args) -> dict:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True)
    sizes = SIZES
    repeats = {n: max(5, REPEATS[n] // 10) for n in sizes} if args.quick else dict(REPEATS)
    machine = machine_info()  # before importing the peers
    unavailable: dict[str, str] = {}
    try:
        import pyro  # noqa: F401
    except Exception as exc:
        unavailable["pyro"] = f"{type(exc).__name__}: {exc}"
    storch_ok = True
    try:
        import importlib.util

        if importlib.util.find_spec("storch") is None:
            raise ImportError("No module named 'storch'")
    except Exception as exc:
        unavailable["storch"] = f"{type(exc).__name__}: {exc}"
        storch_ok = False

    main_keys = [k for k in MAIN_GROUP if IMPLS[k].get("needs") not in unavailable]
    timings: dict[str, dict] = {str(n): {} for n in sizes}
    for k in MAIN_GROUP + ["storchastic"]:
        need = IMPLS[k].get("needs")
        if need in unavailable:
            for n in sizes:
                timings[str(n)][k] = {"status": "unavailable", "error": unavailable[need]}
    storch_hand: dict[str, float] = {}
    head_to_head: dict[str, dict] = {}
    memory: list[dict] = []
    loads: dict[str, tuple | None] = {}  # 1/5/15-minute load average as each group starts

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        for n in HEAD_TO_HEAD_SIZES:
            # Only stochgrad and its reference, interleaved: the regime of a training loop that
            # calls the estimator again and again, without the peers' code between the calls.
            task = progress.add_task(f"head to head, n={_sizes(n)}", total=repeats[n])
            loads[f"head {n}"] = os.getloadavg() if hasattr(os, "getloadavg") else None
            res, _ = time_group(["stochgrad", REF], n, repeats[n], progress, task)
            head_to_head[str(n)] = res
        for n in sizes:
            task = progress.add_task(f"main group, n={_sizes(n)}", total=repeats[n])
            loads[f"main {n}"] = os.getloadavg() if hasattr(os, "getloadavg") else None
            res, errs = time_group(main_keys, n, repeats[n], progress, task)
            timings[str(n)].update(res)
            for k, e in errs.items():
                timings[str(n)][k] = {"status": "error", "error": e}
        mem_task = progress.add_task("memory (subprocesses)", total=2 * len(MEMORY_SIZES))
        for key in ("stochgrad", "torch_hand"):
            for n in MEMORY_SIZES:
                memory.append({"impl": key, "n": n, **measure_memory(key, n)})
                progress.advance(mem_task)
        if storch_ok:
            try:
                import storch  # noqa: F401  (patches torch: must come after everything else)
            except Exception as exc:
                storch_ok = False
                unavailable["storch"] = f"{type(exc).__name__}: {exc}"
                for n in sizes:
                    timings[str(n)]["storchastic"] = {"status": "unavailable", "error": str(exc)}
        if storch_ok:
            for n in sizes:
                task = progress.add_task(f"storchastic, n={_sizes(n)}", total=repeats[n])
                loads[f"storch {n}"] = os.getloadavg() if hasattr(os, "getloadavg") else None
                res, errs = time_group(["storchastic", REF], n, repeats[n], progress, task)
                if "storchastic" in res:
                    timings[str(n)]["storchastic"] = res["storchastic"]
                for k, e in errs.items():
                    timings[str(n)][k if k != REF else "storch_hand"] = {
                        "status": "error",
                        "error": e,
                    }
                if REF in res:
                    storch_hand[str(n)] = res[REF]["median_ms"]

    for n in sizes:
        ref = timings[str(n)].get(REF, {}).get("median_ms")
        for rec in timings[str(n)].values():
            if "median_ms" in rec and ref:
                rec["ratio"] = rec["median_ms"] / ref
                rec["min_ratio"] = rec["min_ms"] / timings[str(n)][REF]["min_ms"]

    report = {
        "benchmark": "score_function_normal",
        "command": "python benchmarks/bench_score.py" + (" --quick" if args.quick else ""),
        "problem": {
            "distribution": "Normal(mu, sigma)",
            "theta": THETA,
            "f": "(x - 2)^2",
            "true_grad": TRUE_GRAD,
            "baseline": None,
            "per_sample_sd_analytic": analytic_sd(),
        },
        "sizes": list(sizes),
        "repeats": {str(n): repeats[n] for n in sizes},
        "warmup": WARMUP,
        "reference": REF,
        "machine": machine,
        "implementations": {k: v["label"] for k, v in IMPLS.items()},
        "timings": timings,
        "storch_same_process_hand_ms": storch_hand,
        "load_average_by_group": loads,
        "memory": memory,
        "unavailable": unavailable,
        "notes": NOTES,
    }
    report["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    report["head_to_head"] = head_to_head
    report["requirements"] = requirement_checks(timings)
    for n_key, res in head_to_head.items():
        storch = timings.get(n_key, {}).get("storchastic", {})
        if "stochgrad" in res and REF in res and "median_ms" in storch and n_key in storch_hand:
            # Each against the hand-written surrogate timed alongside it (storchastic patches
            # torch on import, so it is timed in a group of its own, after everything else).
            ours = res["stochgrad"]["median_ms"] / res[REF]["median_ms"]
            theirs = storch["median_ms"] / storch_hand[n_key]
            report["requirements"].insert(
                0,
                {
                    "requirement": ">= 2x faster than storchastic (ms columns here: time / time "
                    "of hand-written torch timed alongside)",
                    "n": int(n_key),
                    "stochgrad_ms": ours,
                    "other": "storchastic",
                    "other_ms": theirs,
                    "other_over_stochgrad": theirs / ours,
                    "other_over_stochgrad_min": None,
                    "needed": ">= 2",
                    "met": bool(theirs >= 2 * ours),
                },
            )
        if "stochgrad" in res and REF in res:
            a, b = res["stochgrad"]["median_ms"], res[REF]["median_ms"]
            report["requirements"].insert(
                0,
                {
                    "requirement": "at least as fast as hand-written torch (head to head)",
                    "n": int(n_key),
                    "stochgrad_ms": a,
                    "other": REF,
                    "other_ms": b,
                    "other_over_stochgrad": b / a,
                    "other_over_stochgrad_min": res[REF]["min_ms"] / res["stochgrad"]["min_ms"],
                    "needed": ">= 1",
                    "met": bool(a <= b),
                },
            )
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON and markdown")
    p.add_argument("--memory-child", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]))
        return 0
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "score_function.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, args.out / "score_function.md")
    print((args.out / "score_function.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
