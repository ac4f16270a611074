"""De novo design benchmark: prior metrics, Celecoxib rediscovery and QED, against published values.

    python benchmarks/bench_molecules.py [--model runs/molecules/prior_weights.pt]
        [--budget 10000] [--seed 0] [--samples 10000] [--runs runs/molecules/bench]

Runs ``stochgrad molecules sample`` (MOSES metrics of the prior at ``--samples`` molecules) and
``stochgrad molecules optimize`` for Celecoxib rediscovery (Tanimoto similarity on Morgan r2
2048-bit fingerprints) and QED, each within ``--budget`` oracle calls (unique valid molecules,
PMO convention), and records top-1, top-10, top-100, PMO's AUC of the top-10 curve, validity,
generator samples per second and wall time (1 torch thread). Published references: MOSES
CharRNN (Polykovskiy et al. 2020, Table 2) and PMO REINVENT (Gao et al. 2022, Table 3: AUC
top-10 0.713 on celecoxib rediscovery). Each job resumes from its checkpoint under ``--runs``.
Writes ``benchmarks/results/molecules.json`` and ``molecules.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = {
    "moses_charrnn": {"validity": 0.975, "unique@10k": 0.999, "novelty": 0.842, "intdiv": 0.856},
    "pmo_reinvent_celecoxib_auc_top10": 0.713,
}


def _run(argv: list[str]) -> float:
    from stochgrad.cli import main

    start = time.perf_counter()
    rc = main(argv)
    if rc != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {rc}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="prior (default: the shipped one)")
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--sigma", type=float, default=60.0, help="REINVENT sigma (PMO: 500)")
    parser.add_argument("--runs", type=Path, default=Path("runs/molecules/bench"))
    parser.add_argument(
        "--skip", default="", help="comma list of jobs to skip: sample,celecoxib,qed"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    model = ["--model", args.model] if args.model else []
    record: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, 1 torch thread",
        "budget": args.budget,
        "seed": args.seed,
        "reference": REFERENCE,
    }
    if "sample" not in skip:
        out = args.runs / "sample"
        wall = _run(
            [
                "molecules",
                "sample",
                *model,
                "--n",
                str(args.samples),
                "--seed",
                str(args.seed),
                "--out",
                str(out),
            ]
        )
        record["prior"] = json.loads((out / "sample_metrics.json").read_text()) | {"wall_s": wall}
    suffix = "" if args.sigma == 60.0 else f"_sigma{args.sigma:g}"
    for job, extra in (
        ("celecoxib", ["--objective", "similarity"]),
        ("qed", ["--objective", "qed"]),
    ):
        if job in skip:
            continue
        out = args.runs / (job + suffix)
        argv = ["molecules", "optimize", *model, *extra, "--budget", str(args.budget)]
        argv += ["--sigma", str(args.sigma), "--seed", str(args.seed), "--out", str(out)]
        wall = _run(argv)
        summary = json.loads((out / "summary.json").read_text())
        summary.pop("config", None)
        record[job + suffix] = summary | {"sigma": args.sigma, "wall_s_this_call": wall}
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / "molecules.json"
    if previous.exists():  # keep jobs run in other calls (--skip, --sigma)
        record = json.loads(previous.read_text()) | record
    (RESULTS / "molecules.json").write_text(json.dumps(record, indent=2))
    (RESULTS / "molecules.md").write_text(markdown(record))
    print(markdown(record))


def markdown(r: dict) -> str:
    """The results as markdown tables."""
    lines = [f"# Molecular design benchmark ({r['date']}, {r['machine']})", ""]
    if "prior" in r:
        p, ref = r["prior"], r["reference"]["moses_charrnn"]
        lines += [
            f"## Prior: {p['n']} samples (seed {p['seed']}); novelty vs its {p['train']['n']} training SMILES",
            "",
            "| metric | this prior | MOSES CharRNN |",
            "| --- | ---: | ---: |",
            f"| validity | {p['validity']:.4f} | {ref['validity']} |",
            f"| unique@{p['unique_at']} | {p['uniqueness']:.4f} | {ref['unique@10k']} |",
            f"| novelty | {p['novelty']:.4f} | {ref['novelty']} |",
            f"| IntDiv (Morgan r2 2048) | {p['internal_diversity']:.4f} | {ref['intdiv']} |",
            f"| samples / s (batch 500) | {p['samples_per_second']:.0f} | |",
            "",
        ]
    rows = sorted(j for j in r if j.startswith(("celecoxib", "qed")))
    if rows:
        lines += [
            f"## Optimisation within {r['budget']} oracle calls (unique valid molecules)",
            "",
            "| task | method | sigma | calls | top-1 | top-10 | top-100 | AUC top-10 | validity (last 10 steps) | samples/s | wall (s) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for j in rows:
            s = r[j]
            lines.append(
                f"| {j} | {s['method']} | {s['sigma']:g} | {s['calls']} | {s['top1']:.4f} | {s['top10_mean']:.4f} | "
                f"{s['top100_mean']:.4f} | {s['auc_top10']:.4f} | {s['validity_last10_steps']:.3f} | "
                f"{s['samples_per_second']:.1f} | {s['seconds']:.0f} |"
            )
        lines += [
            "",
            f"PMO REINVENT, celecoxib rediscovery, AUC top-10: {r['reference']['pmo_reinvent_celecoxib_auc_top10']}",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
