"""The rule of the bad-input suite, one call at a time, and the tally of what each call gave.

A function under test is an :class:`Entry`: the callable, a factory of valid baseline keyword
arguments, and for each argument a hypothesis strategy of :class:`Case` objects (a bad value,
whether it must be refused, and what a correct answer is when it may be accepted). One call
replaces one argument of the baseline by the case's value and is judged:

- ``clear``: a ``ValueError``/``TypeError`` whose message names the argument;
- ``passed_through``: an exception raised inside the caller's own callback (``f``, ``dist_fn``,
  a payoff, a score), propagated: the caller's bug, shown where it happened;
- ``correct``: a result, every number in it finite (NaN in an undefined statistic only with a
  warning), and the entry's invariant or closed form holds;
- violations: ``silent_nonfinite`` (NaN/inf returned without a word), ``accepted_invalid``
  (a value that must be refused was accepted), ``wrong`` (a result failing its invariant),
  ``hang`` (past the per-call time limit) and ``raw`` (any other exception, or a
  ``ValueError``/``TypeError`` whose message does not name the argument).

Every call is counted (:data:`TALLY`); a violation fails the test with a description of the call.
A call runs under a hard time limit (``SIGALRM``; hypothesis' ``deadline`` a little above it)
and an address-space limit a few GB above the process's current size, so a hang or a runaway
allocation on a shared machine becomes a reported violation instead of stalling the run; torch's
global switches (gradient mode, default dtype) are restored after each call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import signal
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

REFUSE, ACCEPT, EITHER = "refuse", "accept", "either"

CLEAR, PASSED, CORRECT = "clear", "passed_through", "correct"
SILENT, ACCEPTED, WRONG, HANG, RAW = "silent_nonfinite", "accepted_invalid", "wrong", "hang", "raw"
OUTCOMES = (CLEAR, PASSED, CORRECT, SILENT, ACCEPTED, WRONG, HANG, RAW)
VIOLATIONS = (SILENT, ACCEPTED, WRONG, HANG, RAW)
LABELS = {
    CLEAR: "clear errors (ValueError/TypeError naming the argument)",
    PASSED: "errors of the caller's own callback, passed through",
    CORRECT: "correct results",
    SILENT: "silent NaN/inf",
    ACCEPTED: "accepted invalid values",
    WRONG: "wrong results",
    HANG: "hangs (over the time limit)",
    RAW: "raw internal errors (or messages not naming the argument)",
}

#: Extra address space a call may take above the process's size when it starts (bytes).
MEMORY_HEADROOM = 3 * 2**30

_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _library_dir() -> str:
    import stochgrad

    return os.path.dirname(os.path.abspath(stochgrad.__file__)) + os.sep


_SRC = _library_dir()


class Hang(BaseException):
    """Raised by the alarm: a ``BaseException`` so that ``except Exception`` in the code under
    test does not swallow it."""


class Wrong(AssertionError):
    """Raised by an entry's check when a result is not correct."""


@dataclass(frozen=True)
class Case:
    """One bad (or edge) value of one argument.

    Attributes:
        label: a short description for the report.
        make: a factory of the value (a fresh tensor per call: the code under test may keep it).
        expect: ``REFUSE`` (a clear error is due), ``ACCEPT`` (a correct result is due) or
            ``EITHER``.
        names: other argument names a refusal may name (e.g. ``f`` for parameters that make a
            finite ``f`` overflow).
        extra: other keyword arguments the case sets at the same time (``seed`` with a
            ``generator``).
        exact: for an accepted callback, what a correct answer is, given the call's keyword
            arguments (the entry's check uses it; ``None``: the entry's own reference).
        kind: the group of a generated case in the report (``"generated int below minimum"``).
    """

    label: str
    make: Callable[[], Any]
    expect: str = REFUSE
    names: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    exact: Any = None
    kind: str = ""

    @property
    def group(self) -> str:
        """What the report groups the case under (generated values of one kind together)."""
        return self.kind or self.label

    def __repr__(self) -> str:  # hypothesis prints the failing case
        return f"Case({self.label!r}, expect={self.expect})"


@dataclass(frozen=True)
class Call:
    """One call of the suite: the keyword arguments, which argument was replaced, the case."""

    kwargs: dict[str, Any]
    arg: str
    case: Case

    @property
    def exact(self) -> Any:
        """The case's own reference objective, else the call's ``f``."""
        return self.case.exact if self.case.exact is not None else self.kwargs.get("f")


@dataclass(frozen=True)
class Entry:
    """A function under test.

    Attributes:
        name: how the report names it (``"score_function"``, ``"telegraph.log_pmf"``).
        fn: the callable, called with keyword arguments only.
        baseline: a factory of valid keyword arguments (fresh objects per call).
        bad: argument name -> strategy of :class:`Case`.
        check: ``check(result, call)`` raises :class:`Wrong` when an accepted call's result is
            not correct (beyond finiteness, which is always checked); ``call`` is the
            :class:`Call` made.
        undefined: regular expressions of paths (as :func:`nonfinite_paths` writes them) of
            statistics that may be NaN when the call warned (the variance of a single sample).
        nonfinite_ok: regular expressions of paths that may hold NaN/inf by design (the time of
            a method that failed).
        refusal: for functions that report a refused input inside their result (a comparison
            table's rows), ``refusal(result)`` gives the message, else ``None``.
        probe: ``probe(kwargs)`` calls the caller's callbacks the way the function would
            (``dist_fn(*params)``) and returns the message of the error they raise, if any: a
            message of the library that quotes it shows the caller's own error
            (``passed_through``).
        timeout: seconds one call may take.
    """

    name: str
    fn: Callable[..., Any]
    baseline: Callable[[], dict[str, Any]]
    bad: dict[str, Any]
    check: Callable[[Any, Call], None] | None = None
    undefined: tuple[str, ...] = (r"variance", r"stderr", r"std", r"snr")
    nonfinite_ok: tuple[str, ...] = ()
    refusal: Callable[[Any], str | None] | None = None
    probe: Callable[[dict[str, Any]], str | None] | None = None
    timeout: float = 20.0


@dataclass
class Tally:
    """Outcome counts over the run, per entry, and the violations seen."""

    counts: Counter = field(default_factory=Counter)
    per_entry: dict[str, Counter] = field(default_factory=dict)
    violations: dict[tuple[str, str, str, str], list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    entry_seconds: Counter = field(default_factory=Counter)

    def add(
        self, entry: str, arg: str, case: Case, outcome: str, detail: str, seconds: float = 0.0
    ) -> None:
        self.seconds += seconds
        self.entry_seconds[entry] += seconds
        self.counts["inputs"] += 1
        self.counts[outcome] += 1
        self.per_entry.setdefault(entry, Counter())[outcome] += 1
        if outcome in VIOLATIONS:
            seen = self.violations.setdefault((entry, arg, case.group, outcome), [])
            if len(seen) < 3 and detail not in seen:
                seen.append(detail)

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.counts["inputs"],
            "outcomes": {k: self.counts[k] for k in OUTCOMES},
            "violations_total": sum(self.counts[k] for k in VIOLATIONS),
            "seconds_in_calls": round(self.seconds, 2),
            "slowest_functions": {k: round(v, 2) for k, v in self.entry_seconds.most_common(10)},
            "per_function": {
                name: {k: c[k] for k in OUTCOMES if c[k]}
                for name, c in sorted(self.per_entry.items())
            },
            "violations": [
                {"function": e, "argument": a, "value": v, "outcome": o, "examples": d}
                for (e, a, v, o), d in sorted(self.violations.items())
            ],
        }


TALLY = Tally()


# ---------------------------------------------------------------------------------------------
# the pieces of the rule
# ---------------------------------------------------------------------------------------------
def names_argument(message: str, names: tuple[str, ...]) -> bool:
    """Whether ``message`` names one of ``names`` as a word (``params[0]`` names ``params``)."""
    return any(
        re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", message) for n in names
    )


def _frames(exc: BaseException) -> list[str]:
    return [fr.filename for fr in traceback.extract_tb(exc.__traceback__)]


def from_callback(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) was raised inside a callback the suite passed in: a
    frame of this folder below the first frame of the library."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        files = _frames(exc)
        inside = next((i for i, f in enumerate(files) if f.startswith(_SRC)), None)
        if inside is not None and any(f.startswith(_HERE) for f in files[inside:]):
            return True
        if isinstance(exc, CallbackError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class CallbackError(Exception):
    """What the suite's raising callbacks raise."""


def nonfinite_paths(value: Any, path: str = "", depth: int = 0) -> list[str]:
    """Paths of the NaN/inf numbers inside a result (tensors, arrays, floats, containers,
    dataclasses, modules' parameters)."""
    if depth > 6:
        return []
    if isinstance(value, torch.Tensor):
        if value.is_meta or not (value.is_floating_point() or value.is_complex()):
            return []
        return [path or "."] if not bool(torch.isfinite(value.detach()).all()) else []
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fc":
            return []
        return [path or "."] if not bool(np.isfinite(value).all()) else []
    if isinstance(value, (float, np.floating)):
        return [path or "."] if not math.isfinite(float(value)) else []
    if isinstance(value, (str, bytes, bool, int, type(None))):
        return []
    if isinstance(value, torch.nn.Module):
        return [
            f"{path}.{k}"
            for k, t in value.state_dict().items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())
        ]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = []
        for f in dataclasses.fields(value):
            out += nonfinite_paths(
                getattr(value, f.name), f"{path}.{f.name}".lstrip("."), depth + 1
            )
        return out
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += nonfinite_paths(v, f"{path}[{k!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        out = []
        for i, v in enumerate(value[:10_000]):
            out += nonfinite_paths(v, f"{path}[{i}]", depth + 1)
        return out
    return []


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether one of ``patterns`` (regular expressions) matches whole components of ``path``
    (``stderr`` matches ``stderr``, ``stderr[0]`` and ``estimates[1].stderr``)."""
    return any(re.search(rf"(?:^|[.\]])(?:{p})(?:$|[.\[])", path) for p in patterns)


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`Hang` in the main thread after ``seconds`` (``SIGALRM``)."""
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield  # pragma: no cover - the alarm needs POSIX and the main thread; the deadline stays
        return

    def _alarm(signum, frame):
        raise Hang(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def global_state():
    """Restore torch's global switches after a call (an interrupted call must not leave
    gradients disabled for the next one)."""
    grad, dtype = torch.is_grad_enabled(), torch.get_default_dtype()
    try:
        yield
    finally:
        torch.set_grad_enabled(grad)
        torch.set_default_dtype(dtype)


def _address_space() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # pragma: no cover - not Linux
        return None


@contextlib.contextmanager
def memory_limit(headroom: int = MEMORY_HEADROOM):
    """Refuse allocations beyond the process's current size plus ``headroom`` (``RLIMIT_AS``,
    soft limit only, restored afterwards): a runaway allocation fails at once instead of
    swapping a shared machine."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    size = _address_space()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if size is None:
        yield
        return
    limit = size + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


# ---------------------------------------------------------------------------------------------
# one call
# ---------------------------------------------------------------------------------------------
def judge(entry: Entry, arg: str, case: Case) -> tuple[str, str]:
    """Call ``entry`` with ``arg`` replaced by the case's value; return (outcome, detail)."""
    kwargs = entry.baseline()
    value = case.make()
    kwargs[arg] = value
    kwargs.update(case.extra)
    names = (arg, *case.names)
    where = f"{entry.name}({arg}={_describe(value)}) [{case.label}]"
    try:
        with warnings.catch_warnings(record=True) as caught, global_state():
            warnings.simplefilter("always")
            with memory_limit(), time_limit(entry.timeout):
                result = entry.fn(**kwargs)
    except Hang as exc:
        return HANG, f"{where}: {exc}"
    except (ValueError, TypeError) as exc:
        if names_argument(str(exc), names):
            if case.expect == ACCEPT:
                return RAW, f"{where}: a valid value refused: {type(exc).__name__}: {exc}"
            return CLEAR, ""
        if from_callback(exc) or _quotes_callback(entry, kwargs, str(exc)):
            return PASSED, ""
        return RAW, f"{where}: {type(exc).__name__} not naming {arg!r}: {_short(exc)}"
    except Exception as exc:  # noqa: BLE001 - the suite's subject: what escapes
        if from_callback(exc):
            return PASSED, ""
        return RAW, f"{where}: {type(exc).__name__}: {_short(exc)}"
    reported = entry.refusal(result) if entry.refusal is not None else None
    if reported is not None:
        if names_argument(reported, names) and case.expect != ACCEPT:
            return CLEAR, ""
        if _quotes_callback(entry, kwargs, reported):
            return PASSED, ""
        return RAW, f"{where}: reported {_short(reported)!r}, not naming {arg!r}"
    if case.expect == REFUSE:
        return ACCEPTED, f"{where}: accepted, returned {_describe(result)}"
    warned = any(not issubclass(w.category, DeprecationWarning) for w in caught)
    bad = [
        p
        for p in nonfinite_paths(result)
        if not _matches(p, entry.nonfinite_ok) and not (warned and _matches(p, entry.undefined))
    ]
    if bad:
        return SILENT, f"{where}: non-finite {', '.join(bad[:6])} without a warning"
    if entry.check is not None:
        try:
            entry.check(result, Call(kwargs, arg, case))
        except Wrong as exc:
            return WRONG, f"{where}: {exc}"
    return CORRECT, ""


def _quotes_callback(entry: Entry, kwargs: dict[str, Any], message: str) -> bool:
    """Whether ``message`` quotes the error the caller's own callback raises on these inputs."""
    if entry.probe is None:
        return False
    try:
        with time_limit(entry.timeout):
            own = entry.probe(kwargs)
    except Exception:  # noqa: BLE001 - a probe that cannot run proves nothing
        return False
    return bool(own) and own in message


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def run_case(entry: Entry, arg: str, case: Case) -> tuple[str, str]:
    """Judge one call and count it; return its group and the violation's description (or
    ``""``)."""
    start = time.perf_counter()
    outcome, detail = judge(entry, arg, case)
    TALLY.add(entry.name, arg, case, outcome, detail, time.perf_counter() - start)
    return f"{outcome} [{case.group}]", detail if outcome in VIOLATIONS else ""


def profile() -> str:
    """The hypothesis profile of this run, ``STOCHGRAD_BAD_INPUT_PROFILE`` (default ``ci``).

    The profiles are registered in ``tests/property/conftest.py`` and applied per test
    (:func:`check_argument`), not loaded globally: other hypothesis tests keep their own
    settings. ``ci``: 25 derandomized examples per argument
    and a 5 s limit per call (``make test``); ``bench``: 100 examples and each entry's own
    limit (``benchmarks/bad_input_suite.py``).
    """
    return os.environ.get("STOCHGRAD_BAD_INPUT_PROFILE", "ci")


#: The per-call limit of the ``ci`` profile (seconds): a hang costs at most this much of
#: ``make test``; the ``bench`` profile keeps each entry's own ``timeout``.
CI_TIMEOUT = 5.0


def check_argument(entry: Entry, arg: str, profile: str) -> None:
    """Run hypothesis over the bad values of one argument and fail listing every violation.

    The strategy's fixed cases (:func:`~tests.property.values.fixed_cases`) run as explicit
    examples, every one in every run; the profile's ``max_examples`` are drawn on top.
    Violations are collected rather than raised inside the hypothesis test, so that every
    generated input runs and is counted (no shrinking needed: each case is labelled). The
    per-example limit is the entry's ``timeout`` (the alarm) and, a little above it,
    hypothesis' ``deadline``.
    """
    from datetime import timedelta

    from hypothesis import example, given, settings

    found: dict[str, list[str]] = {}
    if profile != "bench" and entry.timeout > CI_TIMEOUT:
        entry = dataclasses.replace(entry, timeout=CI_TIMEOUT)

    strategy = entry.bad[arg]

    def one(case: Case) -> None:
        group, problem = run_case(entry, arg, case)
        if problem:
            found.setdefault(group, []).append(problem)

    # every listed case as an explicit example, then the profile's count of generated ones
    for case in reversed(getattr(strategy, "_bad_fixed", ())):
        one = example(case=case)(one)
    one = given(case=strategy)(one)
    settings(settings.get_profile(profile), deadline=timedelta(seconds=entry.timeout + 5))(one)()
    lines = [f"{g} ({len(p)}x), e.g. {p[0]}" for g, p in found.items()]
    if found:
        import pytest

        pytest.fail(f"{len(found)} kind(s) of violation:\n" + "\n".join(lines), pytrace=False)


def summary_lines(tally: Tally = TALLY) -> list[str]:
    """The counts as lines of the terminal summary (80 columns)."""
    lines = [f"{'inputs generated':<70}{tally.counts['inputs']:>10}"]
    for k in OUTCOMES:
        lines.append(f"{LABELS[k]:<70}{tally.counts[k]:>10}")
    bad = sum(tally.counts[k] for k in VIOLATIONS)
    lines.append(f"{'violations in all (listed in the failures above)':<70}{bad:>10}")
    return lines
