r"""The property-based bad-input suite with a larger example count, and its counts as a report.

Runs ``tests/property`` under hypothesis' ``bench`` profile (100 derandomized examples per
argument instead of ``make test``'s 25; every entry's own per-call time limit instead of 5 s)
in a subprocess, and writes what the suite counted: inputs generated, clear errors naming the
argument, the caller's own callback errors passed through, correct results, and the
violations (silent NaN/inf, accepted invalid values, wrong results, hangs, raw internal errors),
per function, with up to three examples of each kind of violation.

Writes ``benchmarks/results/bad_input_suite.json`` and ``bad_input_suite.md``.
Run: ``.venv/bin/python benchmarks/bad_input_suite.py`` (``--profile ci``: the ``make test``
count; ``-k EXPR``: a subset, as pytest's ``-k``; ``--out DIR``: write somewhere else).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stochgrad.checkpoint import write_text

ROOT = Path(__file__).resolve().parents[1]
LABELS = {
    "clear": "clear errors (ValueError/TypeError naming the argument)",
    "passed_through": "errors of the caller's own callback, passed through",
    "correct": "correct results",
    "silent_nonfinite": "silent NaN/inf",
    "accepted_invalid": "accepted invalid values",
    "wrong": "wrong results",
    "hang": "hangs (over the time limit)",
    "raw": "raw internal errors (or messages not naming the argument)",
}
VIOLATIONS = ("silent_nonfinite", "accepted_invalid", "wrong", "hang", "raw")


def run_suite(profile: str, select: str | None) -> tuple[dict, int, float]:
    """Run the suite in a subprocess; return its counts, pytest's exit status and the wall
    time."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "counts.json"
        env = {
            **os.environ,
            "STOCHGRAD_BAD_INPUT_PROFILE": profile,
            "STOCHGRAD_BAD_INPUT_REPORT": str(report),
        }
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/property"]
        if select:
            cmd += ["-k", select]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if not report.exists():
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            raise SystemExit(f"error: the suite wrote no counts (pytest exit {done.returncode})")
        return json.loads(report.read_text()), done.returncode, seconds


def markdown(res: dict) -> str:
    counts = res["counts"]
    out = [
        "# The property-based bad-input suite",
        "",
        f"Profile `{res['profile']}` ({res['examples_per_argument']} derandomized examples per "
        f"argument of every entry); {res['functions']} functions; wall time "
        f"{res['seconds']:.0f} s; pytest exit status {res['pytest_exit']}.",
        "",
        "| outcome | count |",
        "|---|---:|",
        f"| inputs generated | {counts['inputs']} |",
    ]
    out += [f"| {LABELS[k]} | {counts['outcomes'][k]} |" for k in LABELS]
    out += ["", f"Violations in all: {counts['violations_total']}.", ""]
    if counts["violations"]:
        out += ["## Violations (one row per function, argument and kind of value)", ""]
        out += ["| function | argument | value | outcome | example |", "|---|---|---|---|---|"]
        for v in counts["violations"]:
            example = v["examples"][0].replace("|", "\\|").replace("\n", " ")
            if len(example) > 160:
                example = example[:157] + "..."
            out.append(
                f"| {v['function']} | {v['argument']} | {v['value']} | {v['outcome']} | {example} |"
            )
        out.append("")
    out += [f"Load average at the end: {res['machine']['loadavg']}."]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="bench", choices=("bench", "ci"))
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    counts, status, seconds = run_suite(args.profile, args.select)
    res = {
        "profile": args.profile,
        "examples_per_argument": {"bench": 100, "ci": 25}[args.profile],
        "select": args.select,
        "functions": len(counts["per_function"]),
        "seconds": round(seconds, 1),
        "pytest_exit": status,
        "counts": counts,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "date": _dt.datetime.now().isoformat(timespec="seconds"),
        },
    }
    write_text(args.out / "bad_input_suite.json", json.dumps(res, indent=1) + "\n")
    write_text(args.out / "bad_input_suite.md", markdown(res))
    c = counts["outcomes"]
    print(
        f"{counts['inputs']} inputs: {c['clear']} clear errors, {c['passed_through']} callback "
        f"errors passed through, {c['correct']} correct results, "
        f"{counts['violations_total']} violations ({seconds:.0f} s)"
    )
    print(args.out / "bad_input_suite.json")
    print(args.out / "bad_input_suite.md")


if __name__ == "__main__":
    main()
