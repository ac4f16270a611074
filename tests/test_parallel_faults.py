"""Faults in parallel evaluation end in a clear error, never a hang or a leftover process.

A job past its ``timeout`` raises ChunkTimeout naming it (finished results stay delivered); a
worker that dies raises WorkerCrashed naming its job; a driver killed with SIGKILL leaves no
worker behind. Jobs here sleep a second or two at most before the fault is seen.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stochgrad.parallel import ChunkTimeout, ParallelMap, WorkerCrashed, map_items

LINUX = sys.platform.startswith("linux")


# Module level, so spawned workers import them by name.
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def exit_on_negative(v: float) -> float:
    """A job whose worker dies: os._exit(7) for -1, a SIGKILL (as the out-of-memory killer
    sends) for -9."""
    if v == -1:
        os._exit(7)
    if v == -9:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(v)
    return v


def nap_rows(x: torch.Tensor) -> torch.Tensor:
    """ParallelMap objective: sleeps as long as its chunk's first value says; os._exit on -1."""
    if float(x[0, 0]) == -1:
        os._exit(3)
    time.sleep(float(x[0, 0]))
    return x[:, 0] * 2


def _pool_children(before: set) -> list:
    # the pool's own thread may be the one that reaps a terminated worker: give it a moment
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        left = [p for p in set(multiprocessing.active_children()) - before if p.is_alive()]
        if not left:
            return []
        time.sleep(0.05)
    return left


# --- timeouts ----------------------------------------------------------------------------------
def test_process_timeout_names_the_item_stops_every_worker_and_keeps_finished_results():
    before = set(multiprocessing.active_children())
    delivered = {}
    start = time.monotonic()
    with pytest.raises(ChunkTimeout) as info:
        map_items(
            nap,
            [0.0, 30.0, 0.2, 0.1],
            backend="process",
            num_workers=2,
            timeout=1.5,
            callback=lambda i, r: delivered.setdefault(i, r),
            labels=["a", "the slow one", "c", "d"],
        )
    elapsed = time.monotonic() - start
    err = info.value
    assert isinstance(err, TimeoutError)
    assert (err.index, err.limit) == (1, 1.5)
    assert "the slow one" in str(err) and "1.5 s" in str(err)
    assert delivered == {0: 0.0, 2: 0.2, 3: 0.1}  # the others finished and were handed over
    assert elapsed < 20.0  # far from the 30 s job (the pool's start-up is most of it)
    assert _pool_children(before) == []


def test_serial_timeout_interrupts_the_job_on_the_main_thread():
    assert threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGALRM)
    start = time.monotonic()
    with pytest.raises(ChunkTimeout, match=r"item 1 of 2 ran past the timeout of 0.5 s") as info:
        map_items(nap, [0.0, 30.0], backend="serial", timeout=0.5)
    assert time.monotonic() - start < 5.0 and info.value.index == 1
    assert signal.getsignal(signal.SIGALRM) is handler  # left as it was
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    # a job within its time is untouched, and no alarm rings later
    assert map_items(nap, [0.05], backend="serial", timeout=5.0) == [0.05]


def test_serial_timeout_off_the_main_thread_is_checked_when_the_job_returns():
    caught = []

    def run() -> None:
        try:
            map_items(nap, [0.3], backend="serial", timeout=0.1)
        except ChunkTimeout as exc:
            caught.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert len(caught) == 1 and "checked when it returned" in str(caught[0])


def test_serial_timeout_leaves_a_callers_own_sigalrm_handler_alone():
    rang = []
    before = signal.signal(signal.SIGALRM, lambda *_: rang.append(1))
    try:
        with pytest.raises(ChunkTimeout, match="checked when it returned"):
            map_items(nap, [0.3], backend="serial", timeout=0.1)
        assert rang == [] and signal.getsignal(signal.SIGALRM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGALRM, before)


def test_parallel_map_timeout_then_a_fresh_pool_and_a_crash_named_by_chunk():
    before = set(multiprocessing.active_children())
    x_fast = torch.tensor([[0.0], [0.1], [0.2]])
    with ParallelMap(nap_rows, backend="process", num_workers=1, chunk_size=1, timeout=1.5) as pf:
        assert torch.equal(pf(x_fast), x_fast[:, 0] * 2)
        with pytest.raises(ChunkTimeout, match=r"chunk 1 of 3 \(samples 1 to 1 of the batch\)"):
            pf(torch.tensor([[0.0], [30.0], [0.0]]))
        assert pf._pool is None  # stopped; the next call starts a fresh pool
        assert torch.equal(pf(x_fast), x_fast[:, 0] * 2)
        with pytest.raises(WorkerCrashed, match=r"chunk 2 of 3 .*exit status 3") as info:
            pf(torch.tensor([[0.0], [0.1], [-1.0]]))
        assert (info.value.index, info.value.exitcode) == (2, 3)
    assert _pool_children(before) == []


# --- dead workers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "said", "code", "workers"), [(-1, "exit status 7", 7, 2), (-9, "SIGKILL", -9, 1)]
)
def test_a_dead_worker_is_named_not_a_hang_nor_broken_process_pool(value, said, code, workers):
    before = set(multiprocessing.active_children())
    with pytest.raises(WorkerCrashed) as info:
        map_items(exit_on_negative, [0.2, value, 3.0], backend="process", num_workers=workers)
    err = info.value
    assert (err.index, err.exitcode) == (1, code)
    assert str(err).startswith("item 1 of 3: its worker process died") and said in str(err)
    assert err.__cause__ is None and err.__suppress_context__  # no BrokenProcessPool chain
    assert _pool_children(before) == []


# --- bad arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("timeout", "error"),
    [(0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), (float("inf"), ValueError)]
    + [("5", TypeError), (True, TypeError)],
)
def test_bad_timeout_raises_naming_it(timeout, error):
    with pytest.raises(error, match="timeout"):
        map_items(abs, [1], backend="serial", timeout=timeout)
    with pytest.raises(error, match="timeout"):
        ParallelMap(np.abs, backend="serial", timeout=timeout)


def test_labels_must_name_every_item():
    with pytest.raises(ValueError, match="labels must name the 2 items, got 1"):
        map_items(abs, [1, 2], backend="serial", labels=["one"])


# --- the command line: --chunk-timeout ---------------------------------------------------------
def test_chunk_timeout_in_the_cli_is_one_error_line_and_the_rerun_resumes(
    tmp_path, capsys, monkeypatch, one_thread
):
    from stochgrad.apps.telegraph import chunked
    from stochgrad.cli import main

    rng = np.random.default_rng(0)
    counts = tmp_path / "counts.csv"
    rows = ["gene," + ",".join(f"cell{j}" for j in range(60))]
    rows += [f"gene{i}," + ",".join(map(str, rng.poisson(2 + 3 * i, 60))) for i in range(4)]
    counts.write_text("\n".join(rows) + "\n")
    argv = ["telegraph", "fit", str(counts), "--backend", "serial", "--chunk-size", "2", "--no-ci"]
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    real = chunked._fit_chunk
    calls = []

    def second_chunk_hangs(payload):
        calls.append(1)
        if len(calls) == 2:
            time.sleep(30)
        return real(payload)

    monkeypatch.setattr(chunked, "_fit_chunk", second_chunk_hangs)
    out = tmp_path / "run"
    capsys.readouterr()
    start = time.monotonic()
    assert main([*argv, "--chunk-timeout", "1", "--out", str(out)]) == 2
    assert time.monotonic() - start < 20
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: chunk 1 of 2 (2 genes)")
    flat = " ".join(err.split())
    assert "ran past the timeout of 1 s" in flat and "(--chunk-timeout 1)" in flat
    assert f"finished work is kept in {out / 'fit_checkpoint.pt'}" in flat
    assert "a larger --chunk-timeout or a smaller --chunk-size to resume" in flat
    monkeypatch.setattr(chunked, "_fit_chunk", real)
    assert main([*argv, "--out", str(out)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "resumed from" in text and "(1 of 2 chunks of genes finished)" in text
    assert (out / "kinetics.csv").read_text() == (tmp_path / "ref" / "kinetics.csv").read_text()
    # bad values are refused by the parser, in one line
    assert main([*argv, "--chunk-timeout", "0", "--out", str(out)]) == 2
    assert "--chunk-timeout" in capsys.readouterr().err


# --- no worker outlives its driver -------------------------------------------------------------
DRIVER = """
import json, os, sys, threading, time
from stochgrad.parallel import ChunkTimeout, WorkerCrashed, map_items

def nap(seconds):
    open(os.path.join(os.environ["MARK"], f"{os.getpid()}-{seconds}"), "w").close()
    time.sleep(seconds)
    return seconds

def report(**kw):
    print(json.dumps(kw), flush=True)

if __name__ == "__main__":
    backend = sys.argv[1]
    if backend == "ray":  # the Ray faults here, on the instance the kill will leave behind
        import ray
        ray.cloudpickle.register_pickle_by_value(sys.modules["__main__"])
        try:
            map_items(nap, [0.0, 30.0], backend="ray", num_workers=2, timeout=4.0)
        except ChunkTimeout as exc:
            report(timeout=str(exc), index=exc.index)
        try:
            map_items(lambda v: v if v >= 0 else os._exit(5), [0, -1], backend="ray")
        except WorkerCrashed as exc:
            report(crashed=str(exc), index=exc.index)
        map_items(nap, [60.0, 60.0], backend="ray", num_workers=2, callback=print)
    else:  # one pool started on the main thread (PR_SET_PDEATHSIG), one on another (watchdog)
        other = threading.Thread(
            target=map_items, args=(nap, [60.0]), kwargs={"num_workers": 1}, daemon=True
        )
        other.start()
        map_items(nap, [60.0], backend="process", num_workers=1, callback=print)
"""


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every process below ``root`` (from /proc)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                children.setdefault(stat[1], []).append((int(entry), stat[2]))
    out, todo = {}, [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            out[pid] = start
            todo.append(pid)
    return out


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time) of a process, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return rest[0], int(rest[1]), rest[19]


def _running(pid: int, start: str) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == start and stat[0] != "Z"


def _kill_driver_and_watch(tmp_path: Path, backend: str, workers: int) -> list[dict]:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    marks = tmp_path / "started"  # each job leaves a file there when it starts
    marks.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1", MARK=str(marks))
    driver = subprocess.Popen(
        [sys.executable, str(script), backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    reports: list[dict] = []
    try:
        deadline = time.monotonic() + 120.0
        while len(list(marks.glob("*-60.0"))) < workers:  # until every worker runs its job
            if driver.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the driver ended or stalled: {driver.poll()}")
            time.sleep(0.3)
        seen = _descendants(driver.pid)
    finally:
        driver.kill()
        driver.wait()
    out = driver.stdout.read()
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    gone_by = time.monotonic() + 5.0
    while time.monotonic() < gone_by and any(_running(p, s) for p, s in seen.items()):
        time.sleep(0.1)
    left = {p: _cmdline(p) for p, s in seen.items() if _running(p, s)}
    for pid in left:  # do not leave them to the next test
        with _suppress():
            os.kill(pid, signal.SIGKILL)
    assert len(seen) >= workers and not left, f"outlived the driver: {left}"
    return reports


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_process_workers_die_with_a_killed_driver(tmp_path):
    _kill_driver_and_watch(tmp_path, "process", workers=2)


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_ray_faults_and_nothing_of_a_local_ray_outlives_a_killed_driver(tmp_path):
    pytest.importorskip("ray")
    reports = _kill_driver_and_watch(tmp_path, "ray", workers=2)
    timeout = next(r for r in reports if "timeout" in r)
    crashed = next(r for r in reports if "crashed" in r)
    assert timeout["index"] == 1 and "item 1 of 2 ran past the timeout of 4 s" in timeout["timeout"]
    assert crashed["index"] == 1 and crashed["crashed"].startswith("item 1 of 2: its Ray worker")
