"""``stochgrad greeks``: option price and Greeks by likelihood ratio, pathwise and mixed estimators.

Prices the option by Monte Carlo and estimates delta, gamma, vega and rho by every method valid
for the payoff, each with its standard error, a 95% interval and the per-path spread, against
QuantLib's analytic engines where one applies; estimators that do not apply are listed with the
reason. Barriers go up or down, out or in, on a call or a put (``--direction``, ``--knock``,
``--kind``). A payoff of one's own is a Python function of the paths ``[n, steps + 1]`` -> ``[n]``
given as ``--payoff-fn module:function`` (or ``file.py:function``), tried on a few paths before
the run. Writes the numbers (``greeks.json``) and a plot of the estimates with their intervals
(``greeks.png``) to ``--out``. The running sums are saved after every chunk of paths
(``greeks_checkpoint.pt``): an interrupted run resumes at the next chunk with the same options.
"""

from __future__ import annotations

import argparse
import math

from rich.console import Console

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import positive_float, positive_int

LEGEND = (
    "method: mc = plain Monte Carlo, lr = likelihood ratio, pw = pathwise, mixed = LR of the "
    "pathwise delta; se = standard error; sd/path = per-path standard deviation; "
    "z = (value − QuantLib) / se"
)
SHORT_METHODS = {"pathwise": "pw"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from stochgrad.apps.finance import MONITORING, PAYOFFS
    from stochgrad.apps.finance.market import DIRECTIONS, KINDS, KNOCKS
    from stochgrad.studies.greeks import MODELS, GreeksConfig

    d = GreeksConfig()
    p.description = __doc__.split("\n", 1)[1].strip()
    p.add_argument("--payoff", choices=PAYOFFS, default=d.payoff, help="the option")
    p.add_argument("--spot", type=positive_float, default=d.spot, help="spot price S0")
    p.add_argument("--strike", type=positive_float, default=d.strike, help="strike K")
    p.add_argument("--vol", type=positive_float, default=d.vol, help="GBM volatility")
    p.add_argument("--rate", type=float, default=d.rate, help="risk-free rate")
    p.add_argument("--maturity", type=positive_float, default=d.maturity, help="in years")
    p.add_argument("--dividend", type=float, default=d.dividend, help="continuous dividend yield q")
    p.add_argument(
        "--barrier",
        type=positive_float,
        default=None,
        help="barrier level H (default: 20%% above the spot, below it with --direction down)",
    )
    p.add_argument(
        "--direction", choices=DIRECTIONS, default=d.direction, help="barrier above or below spot"
    )
    p.add_argument(
        "--knock", choices=KNOCKS, default=d.knock, help="touching the barrier kills or starts it"
    )
    p.add_argument("--kind", choices=KINDS, default=d.kind, help="barrier: the payoff at maturity")
    p.add_argument(
        "--payoff-fn",
        metavar="MODULE:FUNCTION",
        default=None,
        help="one's own payoff, a function of the paths [n, steps + 1] -> [n] (column 0 the "
        "spot), importable from the current folder (or FILE.py:FUNCTION); replaces --payoff",
    )
    p.add_argument(
        "--reads-spot",
        action="store_true",
        help="--payoff-fn reads column 0, the spot (the LR delta then adds its derivative)",
    )
    p.add_argument(
        "--not-lipschitz",
        action="store_true",
        help="--payoff-fn jumps (a digital, say): pathwise and mixed estimators are refused",
    )
    p.add_argument(
        "--monitoring",
        choices=MONITORING,
        default=d.monitoring,
        help="barrier: Brownian-bridge correction (exact) or naive discrete monitoring",
    )
    p.add_argument(
        "--continuity-correction",
        action="store_true",
        help="--monitoring discrete: compare with QuantLib at the Broadie-Glasserman-Kou shifted "
        "barrier (else with the continuous barrier, which shows the discrete bias)",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="monitoring dates / time steps (default: asian 12, barrier 1 with the bridge "
        "and 250 discrete, heston 100, otherwise 1)",
    )
    p.add_argument("--paths", type=positive_int, default=d.paths, help="Monte Carlo paths")
    p.add_argument(
        "--chunk", type=positive_int, default=d.chunk, help="paths per chunk (and checkpoint)"
    )
    # the kit omits a default of 0 (0 == False): stated here until it is fixed there
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")
    p.add_argument("--float32", action="store_true", help="simulate in float32")
    p.add_argument("--model", choices=MODELS, default=d.model, help="price dynamics")
    p.add_argument(
        "--v0", type=positive_float, default=None, help="Heston v0 (default: the square of --vol)"
    )
    p.add_argument("--kappa", type=positive_float, default=d.kappa, help="Heston mean reversion")
    p.add_argument("--theta", type=positive_float, default=d.theta, help="Heston long-run variance")
    p.add_argument("--xi", type=positive_float, default=d.xi, help="Heston volatility of variance")
    p.add_argument("--rho", type=float, default=d.rho, help="Heston correlation, in (-1, 1)")
    _kit.add_output_options(p, "stochgrad-out/greeks")


def _config(args: argparse.Namespace):
    from stochgrad.studies.greeks import GreeksConfig

    if args.payoff_fn is not None and args.payoff != "call":
        raise _kit.UserError("give --payoff or --payoff-fn, not both")
    for flag in ("reads_spot", "not_lipschitz"):
        if getattr(args, flag) and args.payoff_fn is None:
            raise _kit.UserError(f"--{flag.replace('_', '-')} describes --payoff-fn: give it too")
    try:
        return GreeksConfig(
            payoff=args.payoff,
            spot=args.spot,
            strike=args.strike,
            vol=args.vol,
            rate=args.rate,
            maturity=args.maturity,
            dividend=args.dividend,
            barrier=args.barrier,
            monitoring=args.monitoring,
            steps=args.steps,
            model=args.model,
            v0=args.v0,
            kappa=args.kappa,
            theta=args.theta,
            xi=args.xi,
            rho=args.rho,
            paths=args.paths,
            chunk=args.chunk,
            seed=args.seed,
            float32=args.float32,
            direction=args.direction,
            knock=args.knock,
            kind=args.kind,
            payoff_fn=args.payoff_fn,
            reads_spot=args.reads_spot,
            lipschitz=not args.not_lipschitz,
            continuity_correction=args.continuity_correction,
        )
    except (TypeError, ValueError) as exc:  # a payoff function returning no tensor, too
        text = str(exc)
        for python, option in (("pathwise_ok=False", "--not-lipschitz"),
                               ("reads_spot=True", "--reads-spot"),
                               ("direction='up'", "--direction up"),
                               ("direction='down'", "--direction down")):  # fmt: skip
            text = text.replace(python, option)  # the message in the command's own terms
        raise _kit.UserError(text) from exc


def _title(study) -> str:
    cfg, res = study.config, study.result
    option, market, heston = res.option, res.market, res.heston
    model = "GBM" if heston is None else "Heston (full-truncation Euler)"
    steps = option.num_steps(heston)
    if cfg.payoff_fn is not None:
        what = cfg.payoff_fn + (", reads spot" if cfg.reads_spot else "")
        what += "" if cfg.lipschitz else ", not Lipschitz"
    else:
        what = f"{option.label} K={option.strike:g}"
        if option.payoff == "barrier":
            bgk = cfg.continuity_correction and option.monitoring == "discrete"
            what += f" H={option.barrier:g} ({option.monitoring}{', BGK' if bgk else ''})"
    return (
        what
        + f", {model}, S0={market.spot:g} r={market.rate:g} T={market.maturity:g}"
        + (f" q={market.dividend:g}" if market.dividend else "")
        + ("" if heston else f" vol={market.vol:g}")
        + f", {res.num_paths:,} paths, {steps} step{'s' if steps > 1 else ''}, seed {cfg.seed}"
    )


def _table(study):
    t = _kit.table(
        _title(study),
        ["Greek", "method", "value", "se", "95% CI", "sd/path", "QuantLib", "z"],
        left=2,
    )
    for e in study.result.estimates:
        lo, hi = e.ci95
        z = e.z
        style = _kit.z_style(z)
        t.add_row(
            e.greek,
            SHORT_METHODS.get(e.method, e.method),
            _kit.fmt(e.value, 5),
            _kit.fmt(e.stderr, 2),
            f"[{_kit.fmt(lo, 3)}, {_kit.fmt(hi, 3)}]",
            _kit.fmt(e.std, 3),
            "—" if e.reference is None else _kit.fmt(e.reference, 5),
            f"[{style}]{'—' if math.isnan(z) else f'{z:+.2f}'}[/{style}]",
        )
    return t


def _refused(study) -> list[str]:
    """One line per reason: the (Greek, method) pairs it refuses, then the reason."""
    by_reason: dict[str, list[str]] = {}
    for g, ms in study.result.refused.items():
        for meth, why in ms.items():
            by_reason.setdefault(why, []).append(f"{g} by {meth}")
    return [f"{', '.join(pairs)}: {why}" for why, pairs in by_reason.items()]


def _plot(path, res) -> None:
    from stochgrad.apps.finance import GREEKS

    names = [g for g in GREEKS if any(e.greek == g for e in res.estimates)]
    fig = _kit.figure(figsize=(3.0 * len(names), 3.4), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, g in zip(axes, names, strict=True):
        ests = [e for e in res.estimates if e.greek == g]
        xs = range(len(ests))
        ax.errorbar(
            xs,
            [e.value for e in ests],
            yerr=[e.ci95[1] - e.value for e in ests],
            fmt="o",
            capsize=4,
        )
        if ests[0].reference is not None:
            ax.axhline(ests[0].reference, color="C3", ls="--", label="QuantLib")
            ax.legend(fontsize=7)
        ax.set_xticks(list(xs), [e.method for e in ests])
        ax.set_title(g)
    fig.suptitle(f"{res.option.payoff}, {res.num_paths:,} paths, 95% intervals", fontsize=10)
    _kit.save_figure(fig, path)


def _json(study) -> dict:
    from dataclasses import asdict

    data = study.result.to_dict()
    data["config"] = asdict(study.config)
    data["quantlib"] = study.reference
    return data


def run(args: argparse.Namespace, console: Console) -> int:
    from stochgrad.studies.greeks import greeks_study

    config = _config(args)  # every setting checked before --out is touched
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint("greeks_checkpoint.pt")
        with _kit.progress(console, "greeks: paths", total=config.paths) as advance:
            study = greeks_study(
                config,
                checkpoint=ckpt,
                progress=advance,
                on_resume=lambda done, total: out.resumed(ckpt, f"{done:,} of {total:,} paths"),
            )
        if not study.quantlib:
            console.print(
                "QuantLib is not installed: no reference values (pip install 'stochgrad[finance]')"
            )
        console.print(_table(study))
        console.print(LEGEND)
        for line in _refused(study):
            console.print(line, style="dim", markup=False)
        res = study.result
        console.print(f"{res.seconds:.2f} s, {res.dtype}")
        _plot(out.path("greeks.png"), res)
        _kit.write_json(out.path("greeks.json"), _json(study))
    return 0
