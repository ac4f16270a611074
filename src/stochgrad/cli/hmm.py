"""``stochgrad hmm fit``: fit a Poisson or Gaussian hidden Markov model to one series.

EM (Baum-Welch) or gradient ascent (L-BFGS on the Fisher-identity gradient), from seeded
random restarts run all at once; the best restart is kept. Prints the fitted parameters,
the log-likelihood, AIC and BIC, and writes ``hmm_fit.json`` (parameters, Viterbi states, every
restart's log-likelihood) and ``hmm_fit.png`` (the series with the Viterbi state means) to
``--out``. The work is checkpointed in ``hmm_checkpoint.pt`` while it runs (EM every few
iterations and when a restart converges, a gradient fit after each restart): rerunning the
same command resumes it; ``--restart`` starts afresh.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import non_negative_int, positive_int

#: Largest number of states whose transition rows are shown inside the parameter table.
_INLINE_ROWS = 5


def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad hmm fit``."""
    p.description = __doc__.split("\n", 1)[1].strip()
    p.add_argument(
        "data",
        nargs="?",
        type=Path,
        default=None,
        help="CSV file with a header; without it, the bundled earthquake counts (1900-2006)",
    )
    p.add_argument(
        "--column", default=None, help="column to fit (without it: the only data column)"
    )
    p.add_argument("--states", type=positive_int, default=2, help="number of hidden states")
    p.add_argument(
        "--emission", choices=("poisson", "gaussian"), default="poisson", help="emission family"
    )
    p.add_argument(
        "--method",
        choices=("em", "gradient"),
        default="em",
        help="EM (Baum-Welch) or L-BFGS on the Fisher gradient",
    )
    p.add_argument("--restarts", type=positive_int, default=10, help="random starts (seeded)")
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="base seed of the random starts"
    )
    p.add_argument("--max-iter", type=positive_int, default=1000, help="iterations per start")
    _kit.add_output_options(p, "stochgrad-out/hmm")


def _read(args: argparse.Namespace):
    """``(x, values, column name, source)`` of the series, checked for the emission family."""
    import importlib.resources

    import numpy as np

    from stochgrad.apps.hmm import earthquakes_path, load_series

    if args.data is None:
        with importlib.resources.as_file(earthquakes_path()) as p:
            x, values, name = load_series(p, args.column or "count")
        source = "earthquakes (bundled)"
    else:
        x, values, name = load_series(args.data, args.column)
        source = str(args.data)
    if args.emission == "poisson":
        bad = np.flatnonzero((values < 0) | (values != np.round(values)))
        if bad.size:
            i = int(bad[0])
            raise _kit.UserError(
                f"column {name!r} of {source}: a Poisson HMM needs counts (integers >= 0), "
                f"data row {i + 1} holds {values[i]:g}; use --emission gaussian for other values"
            )
    return x, values, name, source


def _sorted_by_mean(hmm):
    """The same model with its states ordered by their mean (a readable table)."""
    import torch

    order = torch.argsort(hmm.state_means()[:, 0])
    return hmm.with_params(
        (
            hmm.start_logits[order],
            hmm.trans_logits[order][:, order],
            *(p[order] for p in hmm.params()[2:]),
        )
    )


def _tables(model, states, title: str) -> list:
    K = model.num_states
    poisson = model.emission == "poisson"
    inline = K <= _INLINE_ROWS
    columns = ["state", "start prob", *(["rate"] if poisson else ["mean", "sd"])]
    columns += [*(["transition row"] if inline else []), "Viterbi count"]
    t = _kit.table(title, columns)
    if inline:
        t.columns[-2].justify = "left"  # the row of probabilities reads left to right
    P = model.transmat
    for k in range(K):
        row = [str(k), f"{float(model.startprob[k]):.4f}"]
        if poisson:
            row.append(f"{float(model.rates[k]):.4f}")
        else:
            row += [f"{float(model.means[k, 0]):.4f}", f"{float(model.sds[k, 0]):.4f}"]
        if inline:
            row.append("  ".join(f"{float(p):.4f}" for p in P[k]))
        row.append(str(int((states == k).sum())))
        t.add_row(*row)
    out = [t]
    if not inline:  # the transition matrix on its own, at most ten columns a table
        for lo in range(0, K, 10):
            cols = range(lo, min(K, lo + 10))
            m = _kit.table(
                "transition probabilities, from state (rows) to state (columns)",
                ["from", *(f"to {j}" for j in cols)],
            )
            for i in range(K):
                m.add_row(str(i), *(f"{float(P[i, j]):.4f}" for j in cols))
            out.append(m)
    return out


def _plot(path: Path, x, values, model, states, title: str, ylabel: str) -> None:
    means = model.state_means()[:, 0].numpy()
    fig = _kit.figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(x, values, "o-", color="0.55", ms=3, lw=0.8, label="data")
    ax.step(x, means[states], where="mid", color="C3", lw=1.8, label="Viterbi state mean")
    for k, m in enumerate(means):
        ax.axhline(m, color=f"C{k}", lw=0.6, ls=":")
    ax.set_xlabel("year" if x.size and x[0] > 1000 else "t")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    _kit.save_figure(fig, path)


def run_fit(args: argparse.Namespace, console: Console) -> int:
    """Fit, print the parameters and criteria, write ``hmm_fit.json`` and ``hmm_fit.png``."""
    import torch

    from stochgrad.apps.hmm import fit_hmm, information_criteria, viterbi

    x, values, name, source = _read(args)
    y = torch.as_tensor(values, dtype=torch.float64)
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint("hmm_checkpoint.pt")

        def resumed(done: int, iteration: int) -> None:
            what = f"{done} of {args.restarts} restarts finished"
            if iteration:
                what += f", EM at iteration {iteration}"
            out.resumed(ckpt, what)

        start = time.perf_counter()
        with _kit.progress(console, f"{args.method} fits", total=args.restarts) as advance:
            best, runs = fit_hmm(
                y,
                args.states,
                args.emission,
                method=args.method,
                restarts=args.restarts,
                seed=args.seed,
                max_iter=args.max_iter,
                checkpoint=ckpt,
                progress=advance,
                on_resume=resumed,
            )
        seconds = time.perf_counter() - start
        model = _sorted_by_mean(best.hmm)
        states = viterbi(model, y)[0][0].numpy()
        n = y.numel()
        p = model.num_free_parameters()
        aic, bic = information_criteria(best.log_likelihood, p, n)
        title = f"{args.states}-state {args.emission} HMM, {args.method} ({source}, column {name})"
        for t in _tables(model, states, title):
            console.print(t)
        lls = [f.log_likelihood for f in runs]
        hits = sum(
            abs(v - best.log_likelihood) < 1e-4 * max(1.0, abs(best.log_likelihood)) for v in lls
        )
        console.print(
            f"log-likelihood {best.log_likelihood:.4f} (-log L = {-best.log_likelihood:.4f}); "
            f"AIC {aic:.3f}; BIC {bic:.3f}\n"
            f"{p} parameters, {n} observations; best reached by {hits}/{len(runs)} restarts; "
            f"{seconds:.1f} s"
        )
        result = {
            "source": source,
            "column": name,
            "num_states": args.states,
            "emission": args.emission,
            "method": args.method,
            "restarts": args.restarts,
            "seed": args.seed,
            "log_likelihood": best.log_likelihood,
            "aic": aic,
            "bic": bic,
            "num_parameters": p,
            "num_observations": n,
            "params": model.to_dict(),
            "viterbi_states": states.tolist(),
            "restart_log_likelihoods": lls,
            "restart_converged": [f.converged for f in runs],
            "restart_iterations": [f.n_iter for f in runs],
            "seconds": seconds,
        }
        _kit.write_json(out.path("hmm_fit.json"), result)
        _plot(
            out.path("hmm_fit.png"),
            x,
            values,
            model,
            states,
            f"{args.states}-state {args.emission} HMM ({args.method}): "
            f"log L = {best.log_likelihood:.2f}",
            name,
        )
    return 0
