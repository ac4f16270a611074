"""Fault table: every resumable command killed, spoilt, doubled; workers crashed and stuck.

For every command that resumes from a checkpoint (each one calling ``Output.resumed``), with
settings that take seconds:

- **SIGKILL mid-run**: the command runs in a child process whose progress hook, at the first
  progress step after the checkpoint file appeared (so at least one unit of work is saved),
  lists the processes below it and sends itself SIGKILL. Then the same command is rerun: it must
  print "resumed from ..." and write results equal to those of an uninterrupted run (JSON and
  CSV files compared, timings left out), and no process of the killed run may be left 5 s on.
- **Two writers**: while the child holds the output folder (before the kill), the same command
  is started on the same ``--out``: it must stop at once with one line ``error: ...`` (exit 2).
- **Corrupt checkpoints**: the killed run's checkpoint truncated to half, replaced by random
  bytes, or emptied: one line ``error: ...`` naming the file, exit 2.

Then parallel faults, with ``--chunk-timeout``: ``telegraph fit`` on the process and the Ray
backends with one chunk of genes whose worker crashes (``os._exit``) or hangs, and
``molecules optimize --score`` with a score function that crashes or hangs in its worker
processes: one line ``error: ...`` naming the chunk, exit 2, no process left behind, the finished
chunks kept (the rerun says "resumed from ..." and ends with the uninterrupted run's results).

Reruns, uninterrupted references and spoilt-checkpoint runs call ``stochgrad.cli.main`` in this
process (one import of torch); the killed and the faulty runs are child processes. Writes
``benchmarks/results/fault_table.{json,md}``; each row: command, fault, expected, observed,
pass/fail. Takes about 4 minutes on 2 cores (``--only NAME`` runs some commands,
``--no-ray`` leaves Ray out).

Run: ``.venv/bin/python benchmarks/fault_table.py``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"

Argv = Callable[[Path, Path], list]


def _counts(work: Path, genes: int = 6, cells: int = 150) -> Path:
    """A counts table with genes of clearly different largest counts (so chunks differ)."""
    path = work / "counts.csv"
    if not path.exists():
        rng = np.random.default_rng(0)
        rows = ["gene," + ",".join(f"cell{j}" for j in range(cells))]
        for i in range(genes):
            x = rng.negative_binomial(1, 1 / (1 + 2.0 * (i + 1)), cells)
            rows.append(f"gene{i}," + ",".join(map(str, x)))
        path.write_text("\n".join(rows) + "\n")
    return path


def _log(work: Path) -> Path:
    import csv

    from stochgrad.apps.offpolicy import SyntheticBandit
    from stochgrad.apps.offpolicy.logfile import log_columns

    path = work / "log.csv"
    if not path.exists():
        cols = log_columns(SyntheticBandit().sample(300, generator=np.random.default_rng(0)))
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            w.writerows(zip(*(c.tolist() for c in cols.values()), strict=True))
    return path


# name -> (argv given the work and the output folders, the checkpoint file[, the writes of it
# to wait for before the kill, default 1]); settings with at least two units of work (runs,
# cells, chunks, steps, epochs) that take seconds
COMMANDS: dict[str, tuple] = {
    "demo": (lambda w, o: ["demo", "--samples", "2000", "--deltas", "0,1", "--sigmas", "1,2",
                           "--out", o], "demo_checkpoint.pt"),
    "compare": (lambda w, o: ["compare", "--samples", "600", "--points", "3", "--out", o],
                "compare_checkpoint.pt"),
    "relax-toy": (lambda w, o: ["relax-toy", "--iterations", "30", "--seeds", "2",
                                "--estimators", "exact,reinforce", "--out", o],
                  "relax_toy_checkpoint.pt"),
    "discrete-vae": (lambda w, o: ["discrete-vae", "--steps", "6", "--seeds", "2", "--samples",
                                   "6", "--latents", "4", "--hidden", "8", "--eval-every", "3",
                                   "--probe-every", "3", "--probe-calls", "2", "--iwae-k", "2",
                                   "--estimators", "reinforce,rebar", "--out", o],
                     "discrete_vae_checkpoint.pt"),
    "rl train": (lambda w, o: ["rl", "train", "--steps", "256", "--num-envs", "2", "--n-steps",
                               "16", "--checkpoint-every", "2", "--out", o],
                 "CartPole-v1_reinforce_s0.pt"),
    "rl pareto": (lambda w, o: ["rl", "pareto", "--weights", "0,0.5,1", "--iterations", "2",
                                "--batch", "2", "--restarts", "1", "--seeds", "1", "--out", o],
                  "pareto_checkpoint.pt"),
    "rl options": (lambda w, o: ["rl", "options", "--episodes", "3", "--seeds", "2",
                                 "--checkpoint-every", "2", "--out", o],
                   "fourrooms_checkpoint.pt"),
    "hmm fit": (lambda w, o: ["hmm", "fit", "--restarts", "3", "--max-iter", "20", "--out", o],
                "hmm_checkpoint.pt"),
    "telegraph fit": (lambda w, o: ["telegraph", "fit", _counts(w), "--backend", "serial",
                                    "--chunk-size", "2", "--no-ci", "--out", o],
                      "fit_checkpoint.pt"),
    "telegraph fit --backend process": (
        lambda w, o: ["telegraph", "fit", _counts(w), "--backend", "process", "--workers", "2",
                      "--chunk-size", "2", "--no-ci", "--out", o], "fit_checkpoint.pt"),
    "telegraph fit --backend ray": (
        lambda w, o: ["telegraph", "fit", _counts(w), "--backend", "ray", "--workers", "2",
                      "--chunk-size", "2", "--no-ci", "--out", o], "fit_checkpoint.pt"),
    "telegraph recover": (lambda w, o: ["telegraph", "recover", "--grid", "2", "--cells", "60",
                                        "--replicates", "1", "--method", "exact", "--backend",
                                        "serial", "--out", o], "recover_checkpoint.pt"),
    "rbm": (lambda w, o: ["rbm", "--hidden", "4", "--epochs", "3", "--batch", "200",
                          "--out", o], "rbm_checkpoint.pt"),
    "bbvi": (lambda w, o: ["bbvi", "--steps", "4", "--samples", "3", "--estimators",
                           "loo,pathwise", "--eval-every", "2", "--checkpoint-every", "2",
                           "--variance-repeats", "2", "--nodes", "64", "--out", o],
             "bbvi_checkpoint.pt", 2),  # its first file holds no work yet
    "greeks": (lambda w, o: ["greeks", "--payoff", "put", "--paths", "3000", "--chunk", "1000",
                             "--out", o], "greeks_checkpoint.pt"),
    "design eig": (lambda w, o: ["design", "eig", "--model", "linear", "--outer", "20",
                                 "--inner", "8", "--replicates", "3", "--out", o],
                   "design_eig_linear_checkpoint.pt"),
    "design optimize": (lambda w, o: ["design", "optimize", "--model", "linear", "--steps", "6",
                                      "--outer", "8", "--inner", "8", "--checkpoint-every", "2",
                                      "--out", o], "design_linear_checkpoint.pt"),
    "offpolicy": (lambda w, o: ["offpolicy", "--rounds", "200", "--test-rounds", "100",
                                "--seeds", "2", "--out", o], "offpolicy_checkpoint.pt"),
    "offpolicy learn": (lambda w, o: ["offpolicy", "learn", "--log", _log(w), "--iterations",
                                      "120", "--out", o], "offpolicy_learn_checkpoint.pt"),
    "molecules pretrain": (lambda w, o: ["molecules", "pretrain", "--corpus", "nci", "--smiles",
                                         "64", "--hidden", "8", "--layers", "1", "--embedding",
                                         "4", "--epochs", "3", "--batch-size", "16",
                                         "--checkpoint-every", "1", "--device", "cpu",
                                         "--out", o],
                           "prior.pt"),
    "molecules optimize": (lambda w, o: ["molecules", "optimize", "--objective", "qed",
                                         "--budget", "48", "--batch-size", "8", "--replay", "2",
                                         "--max-steps", "5", "--checkpoint-every", "1",
                                         "--out", o], "agent.pt"),
}  # fmt: skip

# Keys of result files that change from run to run (wall time, resume notes).
VOLATILE = re.compile(r"second|time|elapsed|wall|resumed|date|machine|host|load", re.I)

# Run inside a child process: kill ourselves (SIGKILL) at the first progress step after the
# checkpoint appeared, once the parent says "go" (meanwhile it tries a second writer).
KILLER = """
import json, os, signal, sys, time
from pathlib import Path
from stochgrad.cli import _kit, main

ckpt, ready, go, pids = map(Path, sys.argv[1:5])
writes, seen = int(sys.argv[5]), set()

def tree(root):
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                text = open(f"/proc/{name}/stat").read()
            except OSError:
                continue
            rest = text[text.rindex(")") + 2 :].split()
            kids.setdefault(int(rest[1]), []).append((int(name), rest[19]))
    out, todo = {}, [root]
    while todo:
        for pid, start in kids.get(todo.pop(), []):
            out[pid] = start
            todo.append(pid)
    return out

def hook():
    if ckpt.exists() and ckpt.stat().st_size > 0:  # each atomic write is a new file
        seen.add((ckpt.stat().st_ino, ckpt.stat().st_mtime_ns))
    if len(seen) >= writes:
        ready.touch()
        deadline = time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        pids.write_text(json.dumps({"driver": os.getpid(), "below": tree(os.getpid())}))
        os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":  # spawned workers import this file again
    _kit.PROGRESS_HOOKS.append(hook)
    sys.exit(main(sys.argv[6:]))
"""

# Faults for the parallel runs, imported by name by the workers (process or Ray).
FAULTS = '''
import os, time
import numpy as np
from stochgrad.apps.telegraph import chunked

_fit_chunk = chunked._fit_chunk

def _fault():
    if os.environ.get("FAULT") == "stuck":
        time.sleep(3600)
    os._exit(9)

def fit_chunk(payload):
    """The real job, except for the chunk holding the table's largest count."""
    counts = payload[0]
    counts = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
    if float(np.nanmax(counts)) >= float(os.environ.get("FAULT_MAX", "inf")):
        _fault()
    return _fit_chunk(payload)

def score(smiles):
    """One number per molecule; from the FAULT_AFTER-th call on (counted in a file), a fault."""
    path = os.environ.get("FAULT_COUNTER")
    if path:
        with open(path, "a") as fh:
            fh.write(".")
        if os.path.getsize(path) > int(os.environ.get("FAULT_AFTER", "1000000")):
            _fault()
    return [len(s) / 100.0 for s in smiles]
'''

CLI_DRIVER = "import sys; from stochgrad.cli import main; sys.exit(main(sys.argv[1:]))"
TELEGRAPH_DRIVER = (
    "import sys, stochgrad_faults, stochgrad.apps.telegraph.chunked as c; "
    "c._fit_chunk = stochgrad_faults.fit_chunk; from stochgrad.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def run_here(argv: list) -> tuple[int, str, str]:
    """``stochgrad argv`` in this process: exit status, stdout, stderr."""
    from stochgrad.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines at 100 columns


def one_error_line(code: int, err: str) -> str | None:
    """The error line when ``err`` is exactly one line ``error: ...`` and the status 2."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if code == 2 and len(lines) == 1 and lines[0].startswith("error: "):
        return lines[0]
    return None


def short(text: str, limit: int = 160) -> str:
    text = flat(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stat(pid: int) -> tuple[str, int, str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return rest[0], int(rest[1]), rest[19]


def descendants(root: int) -> dict[int, str]:
    kids: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (s := stat(int(entry))):
            kids.setdefault(s[1], []).append((int(entry), s[2]))
    out, todo = {}, [root]
    while todo:
        for pid, start in kids.get(todo.pop(), []):
            out[pid] = start
            todo.append(pid)
    return out


def survivors(seen: dict[int, str], wait: float = 5.0) -> list[str]:
    """Processes of ``seen`` still running after ``wait`` seconds (zombies count as gone);
    killed here so that they do not disturb the next row."""

    def running(pid: int, start: str) -> bool:
        s = stat(pid)
        return s is not None and s[2] == start and s[0] != "Z"

    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(running(p, s) for p, s in seen.items()):
        time.sleep(0.1)
    left = []
    for pid, start in seen.items():
        if running(pid, start):
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                left.append(f"{pid} {cmd.decode(errors='replace')[:60]}")
                os.kill(pid, signal.SIGKILL)
    return left


def results_of(folder: Path, checkpoint: str) -> dict[str, Any]:
    """The JSON and CSV files a run wrote, timings left out."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if not VOLATILE.search(str(k))}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    out: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name == checkpoint or path.name.startswith("."):
            continue
        if path.suffix not in (".json", ".csv"):
            continue
        text = path.read_text().replace(str(folder), "OUT")  # where it was written
        if path.suffix == ".json":
            out[str(path.relative_to(folder))] = clean(json.loads(text))
        elif path.suffix == ".csv":
            out[str(path.relative_to(folder))] = text
    return out


def difference(a: dict, b: dict) -> str:
    if a == b:
        return ""
    if set(a) != set(b):
        return f"files differ: {sorted(set(a) ^ set(b))}"
    return "differs in " + ", ".join(k for k in a if a[k] != b[k])


class Table:
    def __init__(self, root: Path) -> None:
        self.rows: list[dict[str, str]] = []
        self.root = f"{root}{os.sep}"

    def add(self, command: str, fault: str, expected: str, observed: str, ok: bool) -> None:
        observed = observed.replace(self.root, "")  # paths relative to the scratch folder
        row = dict(command=command, fault=fault, expected=expected, observed=observed)
        row["result"] = "pass" if ok else "FAIL"
        self.rows.append(row)
        print(f"[{row['result']}] {command}: {fault}: {short(observed, 200)}", flush=True)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="100", **(extra or {}))
    env.pop("RAY_ADDRESS", None)
    return env


# ---------------------------------------------------------------------------------------------
# one resumable command: kill, second writer, resume, spoilt checkpoints
# ---------------------------------------------------------------------------------------------
def check_command(name: str, root: Path, table: Table) -> None:
    argv_of, ckpt_name, *more = COMMANDS[name]
    writes = more[0] if more else 1
    work = root / re.sub(r"\W+", "_", name).strip("_")
    work.mkdir()
    ref, run = work / "ref", work / "run"
    code, _, err = run_here(argv_of(work, ref))
    if code != 0:
        table.add(
            name, "uninterrupted reference run", "exit 0", f"exit {code}: {short(err)}", False
        )
        return
    ready, go, pids = work / "ready", work / "go", work / "pids.json"
    killer = root / "killer.py"
    cmd = [sys.executable, killer, run / ckpt_name, ready, go, pids, writes, *argv_of(work, run)]
    child = subprocess.Popen(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env(),
        cwd=work,
    )
    deadline = time.monotonic() + 300
    while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if not ready.exists():
        child.kill()
        text = child.communicate()[0].decode(errors="replace")
        table.add(
            name,
            "SIGKILL after a checkpoint, then rerun",
            "killed mid-run",
            f"no checkpoint before the end (exit {child.returncode}): {short(text)}",
            False,
        )
        return
    # a second writer on the folder the child holds
    code, _, err = run_here(argv_of(work, run))
    line = one_error_line(code, err)
    ok = line is not None and "another stochgrad run is writing to" in line
    table.add(
        name,
        "second writer on the same --out",
        "exit 2, one line: another run is writing there",
        short(line or f"exit {code}: {err}"),
        ok,
    )
    go.touch()
    child.wait(timeout=120)
    killed = json.loads(pids.read_text()) if pids.exists() else {"below": {}}
    left = survivors({int(p): s for p, s in killed["below"].items()})
    saved = (run / ckpt_name).read_bytes()
    code, out, err = run_here(argv_of(work, run))
    said = re.search(r"resumed from \S+( \([^)]*\))?", flat(out))
    diff = difference(results_of(ref, ckpt_name), results_of(run, ckpt_name)) if code == 0 else ""
    ok = child.returncode == -signal.SIGKILL and code == 0 and said and not diff and not left
    observed = (
        f"killed (status {child.returncode}, {len(killed['below'])} processes below it"
        f"{', left: ' + '; '.join(left) if left else ', none left'}); rerun exit {code}: "
        f"{said.group(0) if said else 'no resume line'}; "
        f"{'results equal' if code == 0 and not diff else diff or short(err)}"
    )
    table.add(
        name,
        "SIGKILL after a checkpoint, then rerun",
        "resumed from ..., results equal to an uninterrupted run, no process left",
        observed,
        bool(ok),
    )
    if "--backend" in name:  # the same checkpoint as the serial run's: spoilt there
        return
    spoilt = {
        "checkpoint truncated to half": saved[: len(saved) // 2],
        "checkpoint of random bytes": random.Random(0).randbytes(len(saved)),
        "checkpoint empty": b"",
    }
    for fault, data in spoilt.items():
        folder = work / f"spoilt_{len(data)}_{fault.split()[-1]}"
        folder.mkdir()
        (folder / ckpt_name).write_bytes(data)
        code, _, err = run_here(argv_of(work, folder))
        line = one_error_line(code, err)
        table.add(
            name,
            fault,
            "exit 2, one line naming the file",
            short(line or f"exit {code}: {err}"),
            line is not None and ckpt_name in line and "Traceback" not in err,
        )


# ---------------------------------------------------------------------------------------------
# parallel faults
# ---------------------------------------------------------------------------------------------
def run_faulty(
    argv: list, work: Path, env: dict[str, str], driver: list[str]
) -> tuple[int, str, list[str], float]:
    """A child running ``argv`` with faults: exit status, output, survivors, seconds."""
    start = time.monotonic()
    child = subprocess.Popen(
        [*driver, *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(env),
        cwd=work,
    )
    seen: dict[int, str] = {}
    while child.poll() is None and time.monotonic() - start < 300:
        seen.update(descendants(child.pid))
        time.sleep(0.1)
    if child.poll() is None:
        child.kill()
    out, err = (s.decode(errors="replace") for s in child.communicate())
    return child.returncode, out + err, survivors(seen), time.monotonic() - start


def check_telegraph_faults(root: Path, table: Table, backends: list[str]) -> None:
    work = root / "telegraph_faults"
    work.mkdir()
    (work / "stochgrad_faults.py").write_text(FAULTS)
    counts = _counts(work)
    top = max(float(v) for line in counts.read_text().splitlines()[1:] for v in line.split(",")[1:])
    base = ["telegraph", "fit", counts, "--chunk-size", "2", "--no-ci", "--workers", "2"]
    ref = work / "ref"
    code, _, err = run_here([*base, "--backend", "serial", "--out", ref])
    assert code == 0, err
    want = results_of(ref, "fit_checkpoint.pt")
    driver = [sys.executable, "-c", TELEGRAPH_DRIVER]
    for backend in backends:
        for fault in ("crash", "stuck"):
            out = work / f"{backend}_{fault}"
            argv = [*base, "--backend", backend, "--chunk-timeout", "10", "--out", out]
            env = {"FAULT": fault, "FAULT_MAX": str(top), "PYTHONPATH": str(work)}
            code, text, left, secs = run_faulty(argv, work, env, driver)
            line = next((ln for ln in text.splitlines() if ln.startswith("error: ")), "")
            named = "chunk 2 of 3 (2 genes)" in line
            what = "its worker process died" if backend == "process" else "its Ray worker died"
            sign = what if fault == "crash" else "ran past the timeout of 10 s"
            kept = "finished work is kept in" in line
            # the rerun (no faults; Ray's rerun on the serial backend: the checkpoint is the same)
            again = [*base, "--backend", "serial" if backend == "ray" else backend, "--out", out]
            rcode, rout, rerr = run_here(again)
            said = re.search(r"resumed from \S+ \([^)]*\)", flat(rout))
            diff = difference(want, results_of(out, "fit_checkpoint.pt")) if rcode == 0 else rerr
            ok = code == 2 and named and sign in line and kept and not left and said and not diff
            table.add(
                f"telegraph fit --backend {backend}",
                "worker crashes (os._exit) in chunk 2 of 3"
                if fault == "crash"
                else "worker stuck in chunk 2 of 3, --chunk-timeout 10",
                "exit 2, one line naming the chunk; no process left; rerun resumes, equal results",
                f"exit {code} after {secs:.0f} s: {short(line, 300)} | "
                f"{'no process left' if not left else 'left: ' + '; '.join(left)} | rerun exit "
                f"{rcode}: {said.group(0) if said else 'no resume line'}; "
                f"{'results equal' if not diff else short(diff)}",
                bool(ok),
            )


def check_score_faults(root: Path, table: Table) -> None:
    work = root / "score_faults"
    work.mkdir()
    (work / "stochgrad_faults.py").write_text(FAULTS)
    base = ["molecules", "optimize", "--score", "stochgrad_faults:score", "--score-workers", "2",
            "--budget", "48", "--batch-size", "8", "--replay", "2", "--max-steps", "5",
            "--checkpoint-every", "1"]  # fmt: skip
    ref = work / "ref"
    here = os.getcwd()
    os.chdir(work)  # --score imports from the current folder
    try:
        code, _, err = run_here([*base, "--out", ref])
        assert code == 0, err
        want = results_of(ref, "agent.pt")
        for fault in ("crash", "stuck"):
            out = work / fault
            counter = work / f"{fault}.calls"
            env = {"FAULT": fault, "FAULT_AFTER": "4", "FAULT_COUNTER": str(counter)}
            argv = [*base, "--chunk-timeout", "10", "--out", out]
            driver = [sys.executable, "-c", CLI_DRIVER]
            code, text, left, secs = run_faulty(argv, work, env, driver)
            line = next((ln for ln in text.splitlines() if ln.startswith("error: ")), "")
            sign = "its worker process died" if fault == "crash" else "ran past the timeout of 10"
            named = re.search(r"chunk \d of \d", line) is not None
            rcode, rout, rerr = run_here([*base, "--out", out])
            said = re.search(r"resumed from \S+ \([^)]*\)", flat(rout))
            diff = difference(want, results_of(out, "agent.pt")) if rcode == 0 else rerr
            ok = code == 2 and named and sign in line and not left and said and not diff
            table.add(
                "molecules optimize --score --score-workers 2",
                "score function crashes (os._exit) at its 5th call"
                if fault == "crash"
                else "score function stuck at its 5th call, --chunk-timeout 10",
                "exit 2, one line naming the chunk; no process left; rerun resumes, equal results",
                f"exit {code} after {secs:.0f} s: {short(line, 300)} | "
                f"{'no process left' if not left else 'left: ' + '; '.join(left)} | rerun exit "
                f"{rcode}: {said.group(0) if said else 'no resume line'}; "
                f"{'results equal' if not diff else short(diff)}",
                bool(ok),
            )
    finally:
        os.chdir(here)


# ---------------------------------------------------------------------------------------------
def markdown(table: Table, meta: dict[str, Any]) -> str:
    passed = sum(r["result"] == "pass" for r in table.rows)
    lines = [
        "# Fault table",
        "",
        f"`benchmarks/fault_table.py`: {passed} of {len(table.rows)} rows pass, "
        f"{meta['seconds']:.0f} s on {meta['cpus']} CPUs (load average {meta['load']}); "
        f"Python {meta['python']}, Ray {meta['ray']}.",
        "",
        "Every resumable command is killed with SIGKILL after its first checkpoint and rerun, "
        "started twice on one output folder, and given a truncated, random or empty "
        "checkpoint; parallel runs get a worker that crashes or hangs (`--chunk-timeout`).",
        "",
        "| command | fault | expected | observed | result |",
        "|---|---|---|---|---|",
    ]
    for r in table.rows:
        cells = [r[k].replace("|", "\\|") for k in ("command", "fault", "expected", "observed")]
        lines.append("| " + " | ".join([*cells, r["result"]]) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="commands to run (default: all)")
    parser.add_argument("--no-ray", action="store_true", help="leave the Ray backend out")
    parser.add_argument("--no-parallel", action="store_true", help="leave the worker faults out")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        parser.error("reads /proc: Linux only")
    start = time.monotonic()
    names = args.only if args.only is not None else list(COMMANDS)
    unknown = sorted(set(names) - set(COMMANDS))
    if unknown:
        parser.error(f"unknown commands {unknown}; known: {list(COMMANDS)}")
    if args.no_ray:
        names = [n for n in names if "ray" not in n]
    root = Path(tempfile.mkdtemp(prefix="stochgrad-faults-"))
    table = Table(root)
    try:
        (root / "killer.py").write_text(textwrap.dedent(KILLER))
        for name in names:
            check_command(name, root, table)
        if not args.no_parallel:
            backends = ["process"]
            try:
                import ray  # noqa: F401

                if not args.no_ray:
                    backends.append("ray")
            except ImportError:
                print("Ray is not installed: its rows are left out")
            check_telegraph_faults(root, table, backends)
            check_score_faults(root, table)
    finally:
        if args.keep:
            print(f"scratch folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = "not installed"
    meta = {
        "seconds": time.monotonic() - start,
        "cpus": os.cpu_count(),
        "load": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        "python": platform.python_version(),
        "ray": ray_version,
        "platform": platform.platform(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fault_table.json").write_text(json.dumps({**meta, "rows": table.rows}, indent=1))
    (args.out / "fault_table.md").write_text(markdown(table, meta))
    failed = [r for r in table.rows if r["result"] != "pass"]
    print(f"{len(table.rows) - len(failed)} of {len(table.rows)} rows pass; "
          f"{args.out / 'fault_table.md'}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
