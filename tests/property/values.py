"""Strategies of bad (and edge) values, as :class:`~tests.property.harness.Case` objects.

Each builder returns a hypothesis strategy mixing fixed cases (``None``, strings, booleans, NaN,
a ``meta``-device tensor standing in for a foreign device, ...) with generated ones (integers
below a minimum, a NaN at a drawn position, a negative entry where the support is positive).
The entries of the tables say, per argument, which builder and what is due.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from tests.property.harness import ACCEPT, EITHER, REFUSE, CallbackError, Case

NAN, INF = float("nan"), float("inf")

#: Values that are no number at all.
NOT_NUMBERS: tuple[tuple[str, Any], ...] = (
    ("str '3'", "3"),
    ("empty str", ""),
    ("list [3]", [3]),
    ("dict", {}),
    ("complex 3+0j", 3 + 0j),
    ("object()", object()),
    ("bytes", b"3"),
)


def c(label: str, value: Any, expect: str = REFUSE, **kw: Any) -> Case:
    """A case of an immutable value."""
    return Case(label, lambda: value, expect, **kw)


def cf(label: str, make: Callable[[], Any], expect: str = REFUSE, **kw: Any) -> Case:
    """A case whose value is made afresh per call."""
    return Case(label, make, expect, **kw)


def one_of(fixed: Sequence[Case], *generated: st.SearchStrategy) -> st.SearchStrategy:
    """The fixed cases and generated ones. The fixed cases are also kept on the strategy
    (:func:`fixed_cases`): the suite runs each of them as an explicit example, so every listed
    bad value is tried in every run, whatever the example count."""
    parts = [st.sampled_from(list(fixed))] if fixed else []
    return _with_fixed(st.one_of(*parts, *generated), fixed)


def _with_fixed(strategy: st.SearchStrategy, fixed: Sequence[Case]) -> st.SearchStrategy:
    strategy._bad_fixed = list(fixed)
    return strategy


def fixed_cases(strategy: st.SearchStrategy) -> list[Case]:
    """The fixed cases of a strategy built here (``[]`` for any other strategy)."""
    return list(getattr(strategy, "_bad_fixed", ()))


def combine(*strategies: st.SearchStrategy) -> st.SearchStrategy:
    """The union of case strategies, fixed cases included."""
    return _with_fixed(st.one_of(*strategies), [c for s in strategies for c in fixed_cases(s)])


def remap(strategy: st.SearchStrategy, fn: Callable[[Case], Case]) -> st.SearchStrategy:
    """``strategy`` with ``fn`` applied to every case, fixed cases included."""
    return _with_fixed(strategy.map(fn), [fn(c) for c in fixed_cases(strategy)])


def keep(strategy: st.SearchStrategy, pred: Callable[[Case], bool]) -> st.SearchStrategy:
    """``strategy`` without the cases ``pred`` refuses, fixed cases included."""
    return _with_fixed(strategy.filter(pred), [c for c in fixed_cases(strategy) if pred(c)])


# ---------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------
def ints(
    minimum: int = 1,
    maximum: int | None = None,
    *,
    optional: bool = False,
    huge: str | None = REFUSE,
    valid: Sequence[int] = (),
    numpy_int: str = ACCEPT,
    names: tuple[str, ...] = (),
) -> st.SearchStrategy:
    """Bad values of an integer argument in ``[minimum, maximum]``.

    ``huge``: what is due for 2**63 and 10**30 (``None``: not tried); ``valid``: edge values
    that must work (the first also serves as ``np.int64``); ``numpy_int``: what is due for
    ``np.int64`` of a valid value.
    """
    good = valid[0] if valid else max(minimum, 1)
    fixed = [c(label, v, names=names) for label, v in NOT_NUMBERS]
    fixed += [
        c("True", True, names=names),
        c("False", False, names=names),
        c("float of a valid int", float(good), names=names),
        c("2.5", 2.5, names=names),
        c("nan", NAN, names=names),
        c("inf", INF, names=names),
        c(f"{minimum - 1} (below minimum)", minimum - 1, names=names),
        c("-2**63", -(2**63), names=names),
    ]
    if not optional:
        fixed.append(c("None", None, names=names))
    else:
        fixed.append(c("None (optional)", None, ACCEPT, names=names))
    if huge is not None and maximum is None:
        fixed += [c("2**63", 2**63, huge, names=names), c("10**30", 10**30, huge, names=names)]
    if maximum is not None:
        fixed.append(c(f"{maximum + 1} (above maximum)", maximum + 1, names=names))
    fixed.append(c("np.int64 of a valid value", np.int64(good), numpy_int, names=names))
    fixed.append(c("0-d int tensor", torch.tensor(good), EITHER, names=names))
    fixed += [c(f"valid edge {v}", v, ACCEPT, names=names) for v in valid]
    below = st.integers(min_value=-(2**70), max_value=minimum - 1).map(
        lambda v: c(f"generated {v} < {minimum}", v, names=names, kind=f"generated int < {minimum}")
    )
    parts = [below]
    if maximum is not None:
        parts.append(
            st.integers(min_value=maximum + 1, max_value=maximum + 2**40).map(
                lambda v: c(
                    f"generated {v} > {maximum}", v, names=names, kind=f"generated int > {maximum}"
                )
            )
        )
    return one_of(fixed, *parts)


def floats(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_min: bool = False,
    open_max: bool = False,
    optional: bool = False,
    huge: str | None = EITHER,
    valid: Sequence[float] = (),
    names: tuple[str, ...] = (),
) -> st.SearchStrategy:
    """Bad values of a real argument in ``[minimum, maximum]`` (ends open on request)."""
    fixed = [c(label, v, names=names) for label, v in NOT_NUMBERS]
    fixed += [
        c("nan", NAN, names=names),
        c("inf", INF, names=names),
        c("-inf", -INF, names=names),
        c("np.nan", np.float64("nan"), names=names),
        c("0-d nan tensor", torch.tensor(NAN), names=names),
        c("True", True, names=names),
        c("meta-device 0-d tensor", torch.tensor(1.0, device="meta"), names=names),
    ]
    fixed.append(
        c("None (optional)", None, ACCEPT, names=names)
        if optional
        else c("None", None, names=names)
    )
    if minimum is not None and open_min:
        fixed.append(c(f"{minimum} (open end)", float(minimum), names=names))
    if maximum is not None and open_max:
        fixed.append(c(f"{maximum} (open end)", float(maximum), names=names))
    if huge is not None and maximum is None:
        fixed += [c("1e300", 1e300, huge, names=names)]
    fixed += [c(f"valid edge {v}", v, ACCEPT, names=names) for v in valid]
    parts = []
    if minimum is not None:
        parts.append(
            st.floats(
                max_value=minimum, exclude_max=not open_min, allow_nan=False, allow_infinity=False
            )
            .filter(lambda v: v >= -1e300)
            .map(
                lambda v: c(
                    f"generated {v!r} below {minimum}",
                    v,
                    names=names,
                    kind=f"generated float below {minimum}",
                )
            )
        )
    if maximum is not None:
        parts.append(
            st.floats(
                min_value=maximum, exclude_min=not open_max, allow_nan=False, allow_infinity=False
            )
            .filter(lambda v: v <= 1e300)
            .map(
                lambda v: c(
                    f"generated {v!r} above {maximum}",
                    v,
                    names=names,
                    kind=f"generated float above {maximum}",
                )
            )
        )
    return one_of(fixed, *parts)


def bools(*, optional: bool = False, names: tuple[str, ...] = ()) -> st.SearchStrategy:
    """Bad values of a flag."""
    fixed = [
        c("'yes'", "yes", names=names),
        c("'no'", "no", names=names),
        c("'False'", "False", names=names),
        c("1", 1, names=names),
        c("0", 0, names=names),
        c("1.0", 1.0, names=names),
        c("[True]", [True], names=names),
        c("np.bool_(True)", np.bool_(True), EITHER, names=names),
    ]
    if not optional:
        fixed.append(c("None", None, names=names))
    return one_of(fixed)


def choices(
    valid: Sequence[str], *, optional: bool = False, names: tuple[str, ...] = ()
) -> st.SearchStrategy:
    """Bad values of an argument naming one of ``valid``."""
    first = valid[0]
    fixed = [
        c("''", "", names=names),
        c("'nonsense'", "nonsense", names=names),
        c("3", 3, names=names),
        c("True", True, names=names),
        c("[valid name]", [first], names=names),
        c("padded name", f" {first} ", names=names),
    ]
    if first.upper() != first:
        fixed.append(c("upper-case name", first.upper(), EITHER, names=names))
    if not optional:
        fixed.append(c("None", None, names=names))
    gen = st.text(alphabet="abcdefgxyz_-", min_size=1, max_size=12).filter(lambda s: s not in valid)
    return one_of(
        fixed, gen.map(lambda s: c(f"generated {s!r}", s, names=names, kind="generated name"))
    )


def seeds(*, optional: bool = True, names: tuple[str, ...] = ()) -> st.SearchStrategy:
    """Bad values of a seed (an int in ``[0, 2**63 - 1]``)."""
    fixed = [
        c("-1", -1, names=names),
        c("2**63", 2**63, names=names),
        c("2**70", 2**70, names=names),
        c("1.5", 1.5, names=names),
        c("1.0", 1.0, names=names),
        c("'0'", "0", names=names),
        c("True", True, names=names),
        c("[0]", [0], names=names),
        c("np.int64(5)", np.int64(5), ACCEPT, names=names),
        c("2**63 - 1", 2**63 - 1, ACCEPT, names=names),
        c("0", 0, ACCEPT, names=names),
    ]
    if optional:
        fixed.append(c("None (optional)", None, ACCEPT, names=names))
    else:
        fixed.append(c("None", None, names=names))
    big = st.integers(min_value=2**63, max_value=2**200).map(
        lambda v: c(f"generated {v}", v, names=names, kind="generated seed >= 2**63")
    )
    neg = st.integers(max_value=-1, min_value=-(2**200)).map(
        lambda v: c(f"generated {v}", v, names=names, kind="generated negative seed")
    )
    return one_of(fixed, big, neg)


def torch_generators(
    *,
    optional: bool = True,
    seed_arg: str | None = "seed",
    numpy: str = REFUSE,
    names: tuple[str, ...] = (),
) -> st.SearchStrategy:
    """Bad values of a ``torch.Generator`` argument; ``seed_arg`` (the seed argument beside
    it) is set to ``None``, except in the case giving both; ``numpy``: what is due for a
    ``numpy.random.Generator``."""
    alone = {seed_arg: None} if seed_arg is not None else {}
    fixed = [
        c("str", "gen", names=names, extra=alone),
        c("int 0", 0, names=names, extra=alone),
        cf("numpy Generator", lambda: np.random.default_rng(0), numpy, names=names, extra=alone),
        cf("random.Random", lambda: random.Random(0), names=names, extra=alone),
        cf(
            "seeded torch.Generator",
            lambda: torch.Generator().manual_seed(3),
            ACCEPT,
            names=names,
            extra=alone,
        ),
    ]
    if seed_arg is not None:
        fixed.append(
            cf(
                "a generator and a seed",
                lambda: torch.Generator().manual_seed(3),
                names=(*names, seed_arg),
                extra={seed_arg: 3},
            )
        )
    if optional:
        fixed.append(c("None (optional)", None, ACCEPT, names=names, extra=alone))
    else:
        fixed.append(c("None", None, names=names, extra=alone))
    return one_of(fixed)


def numpy_generators(*, names: tuple[str, ...] = ()) -> st.SearchStrategy:
    """Bad values of a ``numpy.random.Generator`` argument."""
    return one_of(
        [
            c("None", None, names=names),
            c("int 0", 0, names=names),
            cf("torch.Generator", lambda: torch.Generator().manual_seed(0), names=names),
            cf("RandomState", lambda: np.random.RandomState(0), names=names),
            cf("numpy Generator", lambda: np.random.default_rng(1), ACCEPT, names=names),
        ]
    )


def not_callables(*, optional: bool = False, names: tuple[str, ...] = ()) -> st.SearchStrategy:
    """Values that cannot be called (``None`` too, unless ``optional``)."""
    fixed = [
        c("int 3", 3, names=names),
        c("str", "x ** 2", names=names),
        cf("tensor", lambda: torch.zeros(3), names=names),
        c("list of a callable", [abs], names=names),
    ]
    if not optional:
        fixed.append(c("None", None, names=names))
    return one_of(fixed)


# ---------------------------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------------------------
def _with(t: torch.Tensor, index: int, value: float) -> torch.Tensor:
    out = t.detach().clone()
    if out.numel():
        out.view(-1)[index % out.numel()] = value
    return out


def tensors(
    like: Callable[[], torch.Tensor],
    support: str = "real",
    *,
    shape: str = REFUSE,
    integer: str = EITHER,
    boolean: str = REFUSE,
    numpy: str = EITHER,
    half: str = EITHER,
    huge: str = EITHER,
    grad: str = ACCEPT,
    optional: bool = False,
    empty: str = REFUSE,
    meta: str = REFUSE,
    neg_inf: str = REFUSE,
    pos_inf: str = REFUSE,
    nan: str = REFUSE,
    scalar: str | None = None,
    names: tuple[str, ...] = (),
    size: int | None = None,
) -> st.SearchStrategy:
    """Bad values of a tensor argument shaped and valued like ``like()``.

    Args:
        like: a factory of a valid value.
        support: ``"real"``, ``"positive"``, ``"nonneg"``, ``"prob"`` ([0, 1]), ``"open01"``,
            ``"counts"`` (integers >= 0), ``"binary"`` (0/1), ``"index:K"`` (integers in
            ``[0, K)``), ``"simplex"`` (rows of probabilities), ``"logprob"`` (<= 0).
        shape: what is due for another shape (a leading dimension added, the last dropped).
        integer, boolean, numpy, half: what is due for an int64, bool, numpy or float16 copy.
        huge: what is due for one entry 1e30 (where the support allows it).
        grad: what is due for a copy that requires grad.
        empty: what is due for a tensor with no elements.
        meta: what is due for a copy on the ``meta`` device (standing in for another device
            than the other arguments').
        neg_inf: what is due for one entry ``-inf`` (a log-weight of zero is valid).
        pos_inf: what is due for one entry ``+inf`` (a logit of a sure event).
        nan: what is due for NaN entries (a missing observation, where the function drops
            them).
        scalar: what is due for a 0-d tensor (default: as ``shape``).
        size: how many entries a generated position ranges over (default ``like().numel()``).
    """
    base = like()
    numel = base.numel() if size is None else size
    fl = base.is_floating_point()
    fixed = [
        c("None (optional)", None, ACCEPT, names=names)
        if optional
        else c("None", None, names=names),
        c("str", "tensor", names=names),
        c("float 1.5", 1.5, names=names),
        cf("meta-device tensor (a foreign device)", lambda: like().to("meta"), meta, names=names),
        cf("complex tensor", lambda: like().to(torch.complex64), names=names),
        cf("empty tensor", lambda: like().reshape(-1)[:0], empty, names=names),
        cf("numpy array", lambda: like().numpy(), numpy, names=names),
        cf("bool tensor", lambda: like() != 0, boolean, names=names),
    ]
    if fl:
        fixed += [
            cf("all NaN", lambda: torch.full_like(like(), NAN), nan, names=names),
            cf("int64 tensor", lambda: like().round().long(), integer, names=names),
            cf("float16 tensor", lambda: like().half(), half, names=names),
            cf("requires grad", lambda: like().requires_grad_(True), grad, names=names),
        ]
    else:
        fixed += [cf("float tensor of the values", lambda: like().double(), EITHER, names=names)]
    if base.dim() >= 1:
        fixed += [
            cf("a leading dimension added", lambda: like().unsqueeze(0), shape, names=names),
            cf("last dimension dropped", lambda: like()[..., 0], shape, names=names),
            cf("0-d tensor", lambda: like().reshape(-1)[0], scalar or shape, names=names),
        ]
    else:
        fixed.append(cf("shape [1, 1]", lambda: like().reshape(1, 1), shape, names=names))
    pos = st.integers(min_value=0, max_value=max(numel - 1, 0))
    gen = []
    if fl or support in ("counts", "binary") or support.startswith("index"):
        gen.append(
            st.tuples(pos, st.sampled_from([NAN, INF, -INF])).map(
                lambda a: cf(
                    f"{a[1]} at position {a[0]}",
                    lambda: _with(like().double() if not fl else like(), a[0], a[1]),
                    neg_inf
                    if a[1] == -INF
                    else pos_inf
                    if a[1] == INF
                    else nan
                    if a[1] != a[1]
                    else REFUSE,
                    names=names,
                    kind=f"{a[1]} at a generated position",
                )
            )
        )
    bad_values = _off_support(support)
    if bad_values is not None:
        gen.append(
            st.tuples(pos, bad_values).map(
                lambda a: cf(
                    f"{a[1]!r} at position {a[0]} (off the {support} support)",
                    lambda: (
                        _with(like(), a[0], a[1])
                        if fl or float(a[1]).is_integer()
                        else _with(like().double(), a[0], a[1])
                    ),
                    names=names,
                    kind=f"generated value off the {support} support",
                )
            )
        )
    if support in ("real", "positive", "nonneg", "counts") and fl:
        gen.append(
            pos.map(
                lambda i: cf(
                    f"1e30 at position {i}",
                    lambda: _with(like(), i, 1e30),
                    huge,
                    names=names,
                    kind="1e30 at a generated position",
                )
            )
        )
    return one_of(fixed, *gen)


def _off_support(support: str) -> st.SearchStrategy | None:
    finite = {"allow_nan": False, "allow_infinity": False}
    if support == "positive":
        return st.floats(max_value=0.0, min_value=-1e30, **finite)
    if support == "nonneg":
        return st.floats(max_value=-1e-6, min_value=-1e30, **finite)
    if support == "prob":  # margins representable in float32
        return st.one_of(
            st.floats(max_value=-1e-6, min_value=-1e6, **finite),
            st.floats(min_value=1.0 + 1e-6, max_value=1e6, **finite),
        )
    if support == "open01":
        return st.one_of(
            st.floats(max_value=0.0, min_value=-1e6, **finite),
            st.floats(min_value=1.0, max_value=1e6, **finite),
        )
    if support == "counts":
        return st.one_of(
            st.integers(min_value=-(10**6), max_value=-1),
            st.sampled_from([2.5, 0.5, -0.5]),
        )
    if support == "binary":
        return st.sampled_from([2.0, 0.5, -1.0, 3.0])
    if support.startswith("index:"):
        k = int(support.split(":")[1])
        return st.one_of(st.integers(min_value=k, max_value=k + 10**6), st.integers(-(10**6), -1))
    if support == "logprob":
        return st.floats(min_value=1e-6, max_value=1e6, **finite)
    return None


# ---------------------------------------------------------------------------------------------
# objectives f
# ---------------------------------------------------------------------------------------------
def _raises(x):
    raise CallbackError("f failed on purpose")


def _divides_by_zero(x):
    return 1 / 0


def objectives(
    good: Callable[[torch.Tensor], torch.Tensor],
    *,
    differentiable: bool = True,
    names: tuple[str, ...] = (),
) -> st.SearchStrategy:
    """Bad objectives ``f`` around a good one (values ``[n]`` from samples ``[n, ...]``).

    Cases that may be accepted carry ``exact``: the objective a correct answer refers to
    (a fresh, non-mutating function of the samples), for the entry's reference.
    """

    def nan_at_first(x):
        out = good(x).clone()
        out[0] = NAN
        return out

    def mutates_to_one(x):
        x.mul_(0).add_(1)
        return x.reshape(x.shape[0], -1).sum(1)

    def shifts_input(x):
        x.add_(1.0)
        return good(x)

    def meta(x):
        return good(x).to("meta")

    def as_numpy(x):
        return good(x.detach()).numpy()

    def as_list(x):
        return good(x.detach()).tolist()

    def with_float64(x):
        return good(x).double()

    def ones_of(x):
        return torch.ones(x.shape[0], dtype=x.dtype).reshape(x.shape[0], -1).sum(1)

    def shifted(x):
        return good(x + 1.0)

    def detached(x):
        return good(x.detach())

    fixed = [
        c("f returning NaN everywhere", lambda x: good(x) * NAN, names=names),
        c("f returning NaN at one sample", nan_at_first, names=names),
        c("f returning +inf", lambda x: good(x) + INF, names=names),
        c("f returning -inf", lambda x: good(x) - INF, names=names),
        c("f returning [n, 2]", lambda x: torch.stack([good(x), good(x)], 1), names=names),
        c("f returning [n, 1]", lambda x: good(x)[:, None], names=names),
        c("f returning a scalar", lambda x: good(x).mean(), names=names),
        c("f returning one value too few", lambda x: good(x)[1:], names=names),
        c("f returning None", lambda x: None, names=names),
        c("f returning a str", lambda x: "value", names=names),
        c("f returning a dict", lambda x: {"value": 1}, names=names),
        c("f returning a meta-device tensor", meta, names=names),
        c("f raising its own error", _raises, names=names),
        c("f dividing by zero", _divides_by_zero, names=names),
        c("f mutating its input to ones", mutates_to_one, EITHER, names=names, exact=ones_of),
        c("f adding 1 to its input in place", shifts_input, EITHER, names=names, exact=shifted),
        c("f returning numpy", as_numpy, EITHER, names=names, exact=good),
        c("f returning a list", as_list, EITHER, names=names, exact=good),
        c("f returning float64", with_float64, EITHER, names=names, exact=good),
        c("f detaching its input", detached, EITHER, names=names, exact=good),
    ]
    fixed += [
        c("int 3", 3, names=names),
        c("str", "x ** 2", names=names),
        c("None", None, names=names),
    ]
    return one_of(fixed)


def dist_fns(
    good: Callable[..., torch.distributions.Distribution],
    wrong_family: Callable[..., torch.distributions.Distribution] | None = None,
    *,
    names: tuple[str, ...] = (),
) -> st.SearchStrategy:
    """Bad ``dist_fn`` around a good one: not callable, not returning a distribution, raising,
    the wrong family, parameters off their support, on another device."""

    def on_meta(*p):
        return good(*(t.to("meta") for t in p))

    def returns_tensor(*p):
        return torch.zeros(3)

    fixed = [
        c("int 3", 3, names=names),
        c("None", None, names=names),
        c("str", "Normal", names=names),
        c("dist_fn returning a tensor", returns_tensor, names=names),
        c("dist_fn returning None", lambda *p: None, names=names),
        c("dist_fn raising its own error", _raises, names=names),
        c("dist_fn on the meta device", on_meta, names=names),
    ]
    if wrong_family is not None:
        fixed.append(c("dist_fn of the wrong family", wrong_family, names=names))
    return one_of(fixed)
