"""Shared machinery of the estimators: argument checks, seeded sampling, the chain rule to params.

Every estimator follows the same steps: normalise ``params`` to a tuple of leaf tensors, build the
distribution with ``dist_fn(*leaves)``, check it, sample with an explicit generator, evaluate ``f``
and check its output, then map per-sample gradients with respect to the distribution's own
parameter tensors (``loc``, ``scale``, ``logits``, ...) back to ``params`` by the chain rule.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from stochgrad._checks import all_finite as _all_finite
from stochgrad._checks import check_device, check_seed

# Above this many distribution-parameter elements the Jacobian d(phi)/d(params) is not formed;
# per-sample vector-Jacobian products are batched instead (memory O(n * num_params) either way).
_MAX_JACOBIAN_ROWS = 64
_VJP_CHUNK = 4096
#: torch sizes are signed 64-bit integers.
MAX_SIZE = 2**63 - 1


# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------
def as_params(params: Any) -> tuple[tuple[Tensor, ...], bool]:
    """Return ``(tensors, is_tuple)``; raise ``TypeError`` for anything but tensors."""
    if isinstance(params, Tensor):
        tensors: tuple[Tensor, ...] = (params,)
        is_tuple = False
    elif isinstance(params, (tuple, list)) and len(params) > 0:
        tensors = tuple(params)
        is_tuple = True
    else:
        raise TypeError(
            f"params must be a tensor or a non-empty tuple of tensors, got {type(params).__name__}"
        )
    device = None
    for i, p in enumerate(tensors):
        if not isinstance(p, Tensor):
            raise TypeError(f"params[{i}] must be a torch.Tensor, got {type(p).__name__}")
        if not p.is_floating_point():
            raise TypeError(f"params[{i}] must be a floating-point tensor, got dtype {p.dtype}")
        # one device for all: a meta tensor (no data) or a mixture fails deep inside torch
        if p.is_meta or (device is not None and p.device != device):
            check_device(f"params[{i}]", p, device, of="params[0]")
        device = p.device
        if p.numel() == 0:
            raise ValueError(
                f"params[{i}] is empty (shape {list(p.shape)}): there is no parameter to "
                "differentiate with respect to"
            )
        if not _all_finite(p):
            raise ValueError(f"params[{i}] must be finite, got {p}")
    return tensors, is_tuple


def leaves_of(tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Fresh leaf copies that require grad: the estimators differentiate with respect to these."""
    return tuple(p.detach().requires_grad_(True) for p in tensors)


def pack(values: Sequence[Tensor], is_tuple: bool):
    return tuple(values) if is_tuple else values[0]


def check_num_samples(num_samples: Any, minimum: int = 1, why: str = "") -> int:
    """``num_samples`` as an ``int >= minimum``; ``why`` says why the minimum (if not 1).

    >>> check_num_samples(-1)
    Traceback (most recent call last):
    ...
    ValueError: num_samples must be >= 1, got -1
    >>> check_num_samples(1, 2, why="baseline 'loo' needs at least 2 samples")
    Traceback (most recent call last):
    ...
    ValueError: num_samples must be >= 2 (baseline 'loo' needs at least 2 samples), got 1
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise TypeError(
            f"num_samples must be an int, got {type(num_samples).__name__} {num_samples!r}"
        )
    if num_samples < minimum:
        extra = f" ({why})" if why else ""
        raise ValueError(f"num_samples must be >= {minimum}{extra}, got {num_samples}")
    if num_samples > MAX_SIZE:
        raise ValueError(
            f"num_samples must be <= 2**63 - 1 (the largest size of a torch tensor), got "
            f"{num_samples}"
        )
    return int(num_samples)


def check_f(f: Any, name: str = "f") -> Callable:
    """``f`` if it can be called (an objective: a batch of samples -> one value per sample)."""
    if not callable(f):
        raise TypeError(
            f"{name} must be callable (a batch of samples -> one value per sample), got "
            f"{type(f).__name__} {f!r:.80}"
        )
    return f


# ---------------------------------------------------------------------------------------------
# memory: refuse a call that cannot fit before allocating it
# ---------------------------------------------------------------------------------------------
#: The most bytes one estimator call may need (its estimate, below); ``None``: the memory the
#: system has available at the call (``MemAvailable`` on Linux, the free memory of the GPU for
#: CUDA tensors). The environment variable ``STOCHGRAD_MEMORY_LIMIT`` (bytes, or a number with
#: a ``K``, ``M``, ``G`` or ``T`` suffix, powers of 1024) overrides it. Calls estimated below
#: 1 MiB are never refused (and pay for no lookup).
MEMORY_LIMIT: int | None = None
MEMORY_LIMIT_ENV = "STOCHGRAD_MEMORY_LIMIT"
_ALWAYS_ALLOWED = 1 << 20
# Below this many bytes a call is not checked against the system (no system call per call).
_CHECK_ABOVE = 1 << 28
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _format_bytes(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError  # pragma: no cover


def _env_limit() -> int | None:
    raw = os.environ.get(MEMORY_LIMIT_ENV)
    if raw is None or not raw.strip():
        return None
    text = raw.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    try:
        value = float(text[: len(text) - len(unit)])
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"the environment variable {MEMORY_LIMIT_ENV} must be a number of bytes > 0, "
            f"optionally with a K, M, G or T suffix (e.g. 8G), got {raw!r}"
        )
    return int(value * _UNITS[unit])


def available_memory(device: torch.device) -> int | None:
    """Bytes the system can give a new allocation on ``device`` now; ``None`` if unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(cached, 0))
    if device.type != "cpu":
        return None
    try:  # MemAvailable counts reclaimable caches, which MemFree (sysconf) does not
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def sample_size(d: Distribution) -> int:
    """Elements of one sample of ``d`` (its batch and event shapes)."""
    return int(d.batch_shape.numel() * d.event_shape.numel())


def check_memory(
    method: str,
    num_samples: int,
    parts: dict[str, int],
    like: Tensor,
    *,
    batches: bool = False,
) -> None:
    """Refuse a call whose memory, estimated before any allocation, exceeds the limit.

    Args:
        method: the estimator's name, for the message.
        num_samples: the number of samples ``n``.
        parts: what is held per sample, in elements of ``like``'s dtype (``{"samples": S,
            "per-sample terms": 2 P}``); the estimate is ``n * sum(parts) * itemsize``, a lower
            bound (temporaries not counted).
        like: a tensor of the dtype and device the call works in.
        batches: whether the estimator takes ``batches=`` (suggested when the per-sample terms
            are most of it).

    Raises:
        ValueError: naming ``num_samples``, the bytes needed and the limit, and what to do
            (never below 1 MiB).
    """
    per = sum(parts.values())
    nbytes = num_samples * per * like.element_size()
    if nbytes < _ALWAYS_ALLOWED:  # the small calls of a training loop: no lookup at all
        return
    limit = _env_limit()
    source = f"set by {MEMORY_LIMIT_ENV}"
    if limit is None and MEMORY_LIMIT is not None:
        limit, source = int(MEMORY_LIMIT), "set by stochgrad._core.MEMORY_LIMIT"
    if limit is None:
        if nbytes < _CHECK_ABOVE:
            return
        limit = available_memory(like.device)
        source = f"available on {like.device.type} (override with {MEMORY_LIMIT_ENV})"
        if limit is None:
            return
    if nbytes <= limit:
        return
    detail = ", ".join(
        f"{name} {_format_bytes(num_samples * k * like.element_size())}"
        for name, k in parts.items()
        if k
    )
    advice = "use fewer samples per call and average the grads of several calls"
    terms = parts.get("per-sample terms", 0)
    if batches and terms * 2 >= per:
        advice = (
            "pass batches=B to keep B batch means instead of the per-sample terms, or " + advice
        )
    raise ValueError(
        f"num_samples={num_samples:,} needs at least {_format_bytes(nbytes)} of memory in "
        f"{method} ({detail}), more than the {_format_bytes(limit)} {source}; {advice}"
    )


def check_batches(batches: Any, num_samples: int) -> int | None:
    """``batches`` as ``None`` (keep per-sample terms) or an ``int`` in ``[2, num_samples]``."""
    if batches is None:
        return None
    if isinstance(batches, bool) or not isinstance(batches, (int, np.integer)):
        raise TypeError(
            f"batches must be None (keep one term per sample) or an int (the number of batch "
            f"means to keep), got {type(batches).__name__}"
        )
    if not 2 <= batches <= num_samples:
        raise ValueError(
            f"batches must be in [2, num_samples = {num_samples}] (a variance needs at least 2 "
            f"batch means, each of at least one sample), got {batches}"
        )
    return int(batches)


def batch_index(num_samples: int, batches: int, device: torch.device | str) -> Tensor:
    """``[n]`` the batch of each sample: consecutive samples, sizes differing by at most one."""
    return torch.arange(num_samples, device=device) * batches // num_samples


def batch_sums(t: Tensor, index: Tensor, batches: int) -> Tensor:
    """``[batches, *t.shape[1:]]``: the rows of ``t`` summed within each batch of ``index``."""
    out = torch.zeros((batches, *t.shape[1:]), dtype=t.dtype, device=t.device)
    return out.index_add_(0, index, t)


def make_generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device | str | None = None
) -> torch.Generator | None:
    """``seed`` is shorthand for a fresh generator on ``device`` (the parameters' device, so
    that draws for GPU parameters happen on the GPU); giving both is ambiguous."""
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if seed is not None:
        seed = check_seed("seed", seed)
        return torch.Generator(device=device or "cpu").manual_seed(seed)
    return generator


def build_dist(dist_fn: Callable[..., Distribution], leaves: Sequence[Tensor]) -> Distribution:
    """Call ``dist_fn(*leaves)`` and check its type and its parameters' constraints."""
    if not callable(dist_fn):
        raise TypeError(f"dist_fn must be callable (params -> Distribution), got {dist_fn!r}")
    d = dist_fn(*leaves)
    if not isinstance(d, Distribution):
        raise TypeError(
            f"dist_fn must return a torch.distributions.Distribution, got {type(d).__name__}"
        )
    check_constraints(d)
    return d


def check_constraints(d: Distribution) -> None:
    """``ValueError`` naming the parameter when a distribution parameter violates its constraint.

    Only parameters the distribution actually stores are checked (``probs`` of a distribution
    built from ``logits`` is derived and always valid).
    """
    base = d
    while isinstance(base, torch.distributions.Independent):
        base = base.base_dist
    from stochgrad._dists import VALIDATORS  # late: _dists imports this module

    fast = VALIDATORS.get(type(base))
    if fast is not None and fast(base):
        return
    try:
        constraints = base.arg_constraints
    except NotImplementedError:  # distributions that declare none
        return
    for name, constraint in constraints.items():
        if name not in base.__dict__:
            continue
        value = base.__dict__[name]
        if not isinstance(value, Tensor):
            continue
        with torch.no_grad():
            if constraint is torch.distributions.constraints.real:
                ok = _all_finite(value)
            else:
                try:
                    ok = bool(constraint.check(value).all())
                except (RuntimeError, TypeError):  # dependent constraints needing more context
                    continue
        if not ok:
            raise ValueError(
                f"params: {type(base).__name__}.{name} must satisfy {constraint}, got {value}"
            )


# ---------------------------------------------------------------------------------------------
# the objective
# ---------------------------------------------------------------------------------------------
def evaluate_f(
    f: Callable,
    x: Tensor,
    num_samples: int,
    *,
    keep_graph: bool = False,
    shape: Sequence[int] | None = None,
) -> Tensor:
    """Evaluate ``f`` on a batch and check it returned ``num_samples`` finite values.

    ``f`` may return a tensor, a numpy array or a list; black-box results are converted. With
    ``keep_graph`` the result keeps its autograd graph (pathwise); otherwise it is detached.

    Args:
        f: the objective, called once on ``x``.
        x: the batch of samples, ``[num_samples, ...]``.
        num_samples: the number of rows of ``x``.
        keep_graph: keep the autograd graph of the result (else it is detached).
        shape: the expected shape of the result, ``[num_samples, *problem_shape]`` for a
            factorised objective (one value per sample and per independent problem, see
            ``batch_dims`` of the estimators); default ``[num_samples]``.
    """
    expected = (num_samples,) if shape is None else tuple(int(s) for s in shape)
    factorised = expected != (num_samples,)
    out = call_f(f, x)
    if not isinstance(out, Tensor):
        try:
            out = torch.as_tensor(np.asarray(out), dtype=x.dtype if x.is_floating_point() else None)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"f must return a tensor or array of shape {list(expected)}, got "
                f"{type(out).__name__}"
            ) from exc
    if out.shape != expected:
        if factorised:
            raise ValueError(
                f"f must return one value per sample and per problem, shape {list(expected)} "
                f"([num_samples, *problem_shape], the problem shape being the first batch_dims "
                f"dimensions of the distribution's batch shape); got shape {list(out.shape)} "
                f"(f receives the batch of samples, shape [{num_samples}, ...])"
            )
        raise ValueError(
            f"f must return one value per sample, shape [{num_samples}]; got shape "
            f"{list(out.shape)} (f receives the batch of samples, shape [{num_samples}, ...])"
        )
    if out.is_complex():
        raise TypeError(f"f must return real values, got dtype {out.dtype}")
    if out.device != x.device:  # a meta result has a shape and no values
        raise ValueError(
            f"f must return its values on the device of the samples it received ({x.device}), "
            f"got a tensor on {out.device}"
        )
    if not out.is_floating_point():
        out = out.to(torch.get_default_dtype())
    if not keep_graph:
        out = out.detach()
    if not _all_finite(out):
        bad = int((~torch.isfinite(out.detach())).sum())
        raise ValueError(
            f"f returned {bad} non-finite value(s) out of {out.numel()}; f must be finite on the "
            "support of the distribution"
        )
    return out


def inplace_error(detail: str = "") -> ValueError:
    """The error for an ``f`` that changed the samples it was given."""
    extra = f" ({detail})" if detail else ""
    return ValueError(
        f"f modified its input in place{extra}: the estimator reuses the samples after calling "
        "f, so the gradient would be silently wrong. Work on a copy (x = x.clone()) or use "
        "out-of-place operations (x * 0 + 1, not x.mul_(0).add_(1))"
    )


def call_f(f: Callable, x: Tensor) -> Any:
    """``f(x)``, refusing an ``f`` that changed ``x`` in place.

    Every in-place operation on ``x`` or on a view of it bumps ``x``'s version counter, so
    comparing it before and after costs nothing, whatever the size of ``x``.
    """
    try:
        before = x._version
    except RuntimeError:  # inference-mode tensors keep no version counter
        return f(x)
    out = f(x)
    if x._version != before:
        raise inplace_error()
    return out


class BlackBox:
    """A numpy objective wrapped for the estimators (see :func:`black_box`); picklable."""

    black_box = True

    def __init__(self, fn: Callable[[np.ndarray], Any]):
        if not callable(fn):
            raise TypeError(
                f"fn must be callable (a numpy function: array in, array out), got "
                f"{type(fn).__name__} {fn!r:.80}"
            )
        self.__wrapped__ = fn

    def __call__(self, x: Tensor) -> Tensor:
        arr = x.detach().cpu().numpy()
        arr.flags.writeable = False  # shares memory with the samples: in-place writes refused
        try:
            out = np.asarray(self.__wrapped__(arr))
        except ValueError as exc:
            if "read-only" in str(exc):
                raise inplace_error(f"numpy: {exc}") from exc
            raise
        if not out.flags.writeable:  # the input (or a view of it) returned: torch wants a copy
            out = out.copy()
        return torch.as_tensor(out, dtype=x.dtype if x.is_floating_point() else None)

    def __repr__(self) -> str:
        return f"black_box({self.__wrapped__!r})"


def black_box(fn: Callable[[np.ndarray], Any]) -> BlackBox:
    """Wrap a numpy function (array in, array out) as an objective for the estimators.

    The wrapped function receives the samples as a numpy array and may return anything
    ``numpy.asarray`` accepts. It is not differentiable, so only the score-function and
    measure-valued estimators can use it (``pathwise`` refuses it with a clear error).

    >>> import numpy as np, torch
    >>> g = black_box(np.sin)
    >>> g(torch.zeros(3))
    tensor([0., 0., 0.])
    """
    return BlackBox(fn)


# ---------------------------------------------------------------------------------------------
# seeded sampling
# ---------------------------------------------------------------------------------------------
# Random numbers are drawn on the generator's device and then moved to the parameters' device:
# torch refuses a CPU generator for CUDA draws (and the reverse), and drawing where the
# generator lives lets a CPU generator give the same numbers whether the parameters sit on the
# CPU or on a GPU. ``seed=`` makes its generator on the parameters' device (fast), and without
# a generator the draw happens there too.
def _where(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def rand(shape, generator, *, dtype, device) -> Tensor:
    """``U(0, 1)`` of ``shape`` on ``device``, drawn from ``generator`` (see above)."""
    u = torch.rand(shape, generator=generator, dtype=dtype, device=_where(generator, device))
    return u.to(device)


def randn(shape, generator, *, dtype, device) -> Tensor:
    """Standard normals of ``shape`` on ``device``, drawn from ``generator``."""
    z = torch.randn(shape, generator=generator, dtype=dtype, device=_where(generator, device))
    return z.to(device)


def exponential(shape, generator, *, dtype, device) -> Tensor:
    """``Exp(1)`` draws of ``shape`` on ``device``, drawn from ``generator``."""
    e = torch.empty(shape, dtype=dtype, device=_where(generator, device))
    return e.exponential_(generator=generator).to(device)


def with_generator(op: Callable[..., Tensor], *inputs: Any, generator, **kwargs) -> Tensor:
    """``op(*inputs, generator=generator, **kwargs)`` run on the generator's device, the result
    returned on the inputs' device (for ``multinomial``, ``poisson``, ``binomial``)."""
    device = inputs[0].device
    where = _where(generator, device)
    args = (t.to(where) if isinstance(t, Tensor) else t for t in inputs)
    return op(*args, generator=generator, **kwargs).to(device)


def random_seed(generator: torch.Generator | None) -> int:
    """A 62-bit seed drawn from ``generator`` (torch's default generator if ``None``)."""
    source = generator if generator is not None else torch.default_generator
    return int(torch.randint(0, 2**62, (1,), generator=source, device=source.device).item())


@contextlib.contextmanager
def seeded_global_rng(generator: torch.Generator | None, device: torch.device):
    """Run code that uses torch's global RNG, seeded from ``generator`` (if any).

    ``torch.distributions`` samplers take no generator; for distributions without a sampler of
    our own this keeps results reproducible without touching the caller's global RNG state.
    """
    if generator is None:
        yield
        return
    seed = random_seed(generator)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        seed_global(seed, device)
        yield


def seed_global(seed: int, device: torch.device) -> None:
    """Seed torch's global generator of ``device``'s kind. On the CPU only the CPU generator:
    ``torch.manual_seed`` also visits every lazily initialised device, costly per call."""
    if device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def _backward_row(out: Tensor, one: Tensor, leaves: Sequence[Tensor]) -> tuple:
    """``torch.autograd.grad(out, leaves)`` for a scalar ``out``, keeping the graph.

    Calls the autograd engine directly when it is available: the public wrapper's argument
    handling costs about as much as the backward pass itself on these tiny graphs, and the
    Jacobian rows are on the hot path of every small-batch estimate.
    """
    if _ENGINE is not None:
        try:
            return _ENGINE.run_backward((out,), (one,), True, False, tuple(leaves), True, False)
        except (TypeError, AttributeError):
            pass
    return torch.autograd.grad(out, leaves, retain_graph=True, allow_unused=True)


try:
    from torch.autograd.variable import Variable as _Variable

    _ENGINE = _Variable._execution_engine
except (ImportError, AttributeError):  # pragma: no cover - other torch builds
    _ENGINE = None


def _selection_columns(phi: Tensor, offsets: dict[int, int]) -> int | Tensor | None:
    """Columns of the flattened params that ``phi`` selects, if it is a pure selection of a leaf.

    ``Normal(th[0], th[1])`` or ``Normal(loc, scale)`` store parameters that are elements or
    aliases of the user's tensors; their Jacobian is a 0/1 selection, applied without any
    backward pass. Returns the column (an ``int``) for a scalar ``phi``, a ``LongTensor`` of
    columns otherwise, and ``None`` when ``phi`` is anything else (the general path).
    """
    node = phi.grad_fn
    selects: list[tuple[int, int]] = []
    while node is not None and type(node).__name__ != "AccumulateGrad":
        name = type(node).__name__
        if name == "SelectBackward0":
            selects.append((int(node._saved_dim), int(node._saved_index)))
        elif name != "AliasBackward0":
            return None
        parents = [fn for fn, _ in node.next_functions if fn is not None]
        if len(parents) != 1:
            return None
        node = parents[0]
    leaf = phi if node is None else node.variable
    offset = offsets.get(id(leaf))
    if offset is None:
        return None
    shape, strides, base = list(leaf.shape), list(_contiguous_strides(leaf.shape)), offset
    for dim, i in reversed(selects):  # replay the selections on the flat index arithmetic
        dim %= len(shape)
        base += (i % shape[dim]) * strides[dim]
        del shape[dim], strides[dim]
    if tuple(shape) != tuple(phi.shape):
        return None
    if not shape:
        return base
    index = torch.zeros((), dtype=torch.long, device=phi.device) + base
    for size, stride in zip(shape, strides, strict=True):
        index = index.unsqueeze(-1) + torch.arange(size, device=phi.device) * stride
    return index.reshape(-1)


def _contiguous_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for size in reversed(tuple(shape)):
        strides.append(acc)
        acc *= size
    return tuple(reversed(strides))


def _jacobian_rows(phis: Sequence[Tensor], leaves: Sequence[Tensor]) -> Tensor:
    """``d phi / d params`` as an ``[m, P]`` matrix, one backward pass per element of ``phi``."""
    rows = []
    one = torch.ones((), dtype=phis[0].dtype, device=phis[0].device)
    for p in phis:
        flat = p if p.dim() == 0 else p.reshape(-1)
        for k in range(flat.numel()):
            g = _backward_row(flat if p.dim() == 0 else flat[k], one, leaves)
            rows.append(
                torch.cat(
                    [
                        (gi if gi is not None else torch.zeros_like(leaf)).reshape(-1)
                        for gi, leaf in zip(g, leaves, strict=True)
                    ]
                )
            )
    return torch.stack(rows)


def chain_to_params(
    phis: Sequence[Tensor],
    scores: Sequence[Tensor],
    leaves: Sequence[Tensor],
    num_samples: int,
    *,
    max_jacobian_rows: int = _MAX_JACOBIAN_ROWS,
) -> list[Tensor]:
    r"""Per-sample gradients with respect to ``leaves`` from those with respect to ``phis``.

    ``scores[j]`` has shape ``[n, *phis[j].shape]``; the result ``[n, *leaf.shape]`` per leaf is
    :math:`J^\top s_i` with :math:`J = \partial \phi / \partial \theta`. Three routes, cheapest
    first: parameters that merely select elements of ``params`` are scattered into place; for a
    few other parameter elements the Jacobian is formed (one backward pass per element) and
    applied as a matrix product; for many, per-sample vector-Jacobian products are batched in
    chunks. Memory is ``O(n * num_params)`` on every route. ``num_samples`` counts rows: batch
    sums of the scores (``batches=`` of the estimators) chain the same way, ``B`` rows; they
    pass ``max_jacobian_rows=B`` so that the Jacobian (``[m, P]``) is not larger than them.
    """
    n = num_samples
    sizes = [leaf.numel() for leaf in leaves]
    total = sum(sizes)
    dtype, device = leaves[0].dtype, leaves[0].device
    offsets, start = {}, 0
    for leaf, size in zip(leaves, sizes, strict=True):
        offsets[id(leaf)] = start
        start += size
    full: Tensor | None = None
    rest: list[tuple[Tensor, Tensor]] = []
    scalar: dict[int, Tensor] = {}  # column -> scores [n] of scalar selections
    for p, s in zip(phis, scores, strict=True):
        if not p.requires_grad:
            continue
        cols = _selection_columns(p, offsets)
        if cols is None:
            rest.append((p, s))
        elif isinstance(cols, int) and cols not in scalar:
            scalar[cols] = s.reshape(n)
        else:
            if full is None:
                full = torch.zeros(n, total, dtype=dtype, device=device)
            if isinstance(cols, int):
                cols = torch.tensor([cols], device=device)
            full.index_add_(1, cols, s.reshape(n, -1).to(dtype))
    if scalar:
        if full is None and len(scalar) == total:  # every column selected once: just stack
            if total == 1:  # one column: a view, no copy
                full = scalar[0].reshape(n, 1).to(dtype)
            else:
                full = torch.stack([scalar[c] for c in range(total)], dim=1).to(dtype)
        else:
            if full is None:
                full = torch.zeros(n, total, dtype=dtype, device=device)
            cols_t = torch.tensor(list(scalar), device=device)
            full.index_add_(1, cols_t, torch.stack(list(scalar.values()), dim=1).to(dtype))
    if rest:
        flat_scores = torch.cat([s.reshape(n, -1) for _, s in rest], dim=1).to(dtype)
        if flat_scores.shape[1] <= max_jacobian_rows:
            contribution = flat_scores @ _jacobian_rows([p for p, _ in rest], leaves)
        else:
            per_leaf = _batched_vjps([p for p, _ in rest], flat_scores, leaves)
            if full is None:  # the only route: the rows per leaf as they come, no copy
                return per_leaf
            contribution = torch.cat([t.reshape(n, -1) for t in per_leaf], dim=1)
        full = contribution if full is None else full + contribution
    if full is None:
        full = torch.zeros(n, total, dtype=dtype, device=device)
    if len(leaves) == 1:
        return [full.reshape(n, *leaves[0].shape)]
    return [
        part.reshape(n, *leaf.shape)
        for part, leaf in zip(full.split(sizes, dim=1), leaves, strict=True)
    ]


def _batched_vjps(
    phis: Sequence[Tensor], flat_scores: Tensor, leaves: Sequence[Tensor]
) -> list[Tensor]:
    """``[n, *leaf.shape]`` per leaf: per-sample vector-Jacobian products, batched over chunks of
    samples (kept per leaf: concatenating over leaves would copy every row)."""
    n = flat_scores.shape[0]
    offsets = np.cumsum([0] + [p.numel() for p in phis])
    chunks: list[list[Tensor]] = []
    for start in range(0, n, _VJP_CHUNK):
        chunk = flat_scores[start : start + _VJP_CHUNK]
        c = chunk.shape[0]
        cot = [
            chunk[:, offsets[j] : offsets[j + 1]].reshape(c, *p.shape) for j, p in enumerate(phis)
        ]
        g = torch.autograd.grad(
            phis, leaves, cot, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
        chunks.append(
            [
                gi
                if gi is not None
                else torch.zeros(c, *leaf.shape, dtype=chunk.dtype, device=chunk.device)
                for gi, leaf in zip(g, leaves, strict=True)
            ]
        )
    if len(chunks) == 1:
        return chunks[0]
    return [torch.cat(parts, dim=0) for parts in zip(*chunks, strict=True)]


def weighted_grads(outputs: Tensor, leaves: Sequence[Tensor], rows: Tensor) -> list[Tensor]:
    r"""``[R, *leaf.shape]`` per leaf: the gradient of :math:`\sum_i w_{ri}\, o_i` for each row.

    ``outputs`` is ``[n, ...]`` and ``rows`` ``[R, n, ...]`` (the cotangents). One batched
    backward pass (``is_grads_batched``); a loop over the ``R`` rows (never over samples) for
    graphs whose operations have no batching rule. Memory ``O(R * num_params)``.
    """
    try:
        grads = torch.autograd.grad(
            outputs, leaves, rows, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
    except (RuntimeError, NotImplementedError):  # no vmap rule for an operation of the graph
        per_row = [
            torch.autograd.grad(outputs, leaves, row, retain_graph=True, allow_unused=True)
            for row in rows
        ]
        grads = tuple(
            None if parts[0] is None else torch.stack(parts) for parts in zip(*per_row, strict=True)
        )
    r = rows.shape[0]
    return [
        g if g is not None else torch.zeros(r, *leaf.shape, dtype=leaf.dtype, device=leaf.device)
        for g, leaf in zip(grads, leaves, strict=True)
    ]


def sum_event(t: Tensor, num_samples: int) -> Tensor:
    """Sum a per-sample tensor ``[n, ...]`` over everything but the sample axis."""
    return t.reshape(num_samples, -1).sum(1)


def per_sample_log_prob_grads(
    dist_fn: Callable[..., Distribution],
    leaves: Sequence[Tensor],
    x: Tensor,
    weights: Tensor | None = None,
) -> list[Tensor]:
    r"""Per-sample :math:`\nabla_\theta \log p(x_i; \theta)` by forward-mode autograd.

    The general fallback for distributions without a closed-form score: one forward pass of
    ``log_prob`` per scalar parameter (a loop over parameters, never over samples), memory
    ``O(n * num_params)``.

    With ``weights`` ``[R, n, M]`` (``M`` independent problems in the leading batch dimensions of
    the distribution, ``R`` weightings at once) it returns the weighted sums
    :math:`\sum_m w_{rim} \nabla_\theta \log p_m(x_{im};\theta)`, shaped ``[R * n, *leaf]``.
    """
    import torch.autograd.forward_ad as fwad

    n = x.shape[0]
    rows = n if weights is None else weights.shape[0] * n
    outs = []
    base = [leaf.detach() for leaf in leaves]
    for i, leaf in enumerate(base):
        cols = []
        for k in range(leaf.numel()):
            tangent = torch.zeros_like(leaf).reshape(-1)
            tangent[k] = 1.0
            with fwad.dual_level():
                args = list(base)
                args[i] = fwad.make_dual(leaf, tangent.reshape(leaf.shape))
                lp = dist_fn(*args).log_prob(x)
                t = fwad.unpack_dual(lp).tangent
            if t is None:
                cols.append(torch.zeros(rows, dtype=leaf.dtype, device=leaf.device))
            elif weights is None:
                cols.append(sum_event(t, n))
            else:
                per_problem = t.reshape(n, weights.shape[2], -1).sum(-1).to(leaf.dtype)
                cols.append((weights.to(leaf.dtype) * per_problem).sum(-1).reshape(rows))
        outs.append(torch.stack(cols, dim=1).reshape(rows, *leaf.shape))
    return outs
