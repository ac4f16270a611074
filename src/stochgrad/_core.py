"""Shared machinery of the estimators: argument checks, seeded sampling, the chain rule to params.

Every estimator follows the same steps: normalise ``params`` to a tuple of leaf tensors, build the
distribution with ``dist_fn(*leaves)``, check it, sample with an explicit generator, evaluate ``f``
and check its output, then map per-sample gradients with respect to the distribution's own
parameter tensors (``loc``, ``scale``, ``logits``, ...) back to ``params`` by the chain rule.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

# Above this many distribution-parameter elements the Jacobian d(phi)/d(params) is not formed;
# per-sample vector-Jacobian products are batched instead (memory O(n * num_params) either way).
_MAX_JACOBIAN_ROWS = 64
_VJP_CHUNK = 4096


def _all_finite(t: Tensor) -> bool:
    """Cheap finiteness check: one reduction; the elementwise check only if the sum is not finite."""
    total = float(t.detach().sum()) if t.numel() else 0.0
    if math.isfinite(total):
        return True
    return bool(torch.isfinite(t.detach()).all())


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
    for i, p in enumerate(tensors):
        if not isinstance(p, Tensor):
            raise TypeError(f"params[{i}] must be a torch.Tensor, got {type(p).__name__}")
        if not p.is_floating_point():
            raise TypeError(f"params[{i}] must be a floating-point tensor, got dtype {p.dtype}")
        if not _all_finite(p):
            raise ValueError(f"params[{i}] must be finite, got {p}")
    return tensors, is_tuple


def leaves_of(tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Fresh leaf copies that require grad: the estimators differentiate with respect to these."""
    return tuple(p.detach().requires_grad_(True) for p in tensors)


def pack(values: Sequence[Tensor], is_tuple: bool):
    return tuple(values) if is_tuple else values[0]


def check_num_samples(num_samples: Any, minimum: int = 1, why: str = "") -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise TypeError(f"num_samples must be an int, got {type(num_samples).__name__}")
    if num_samples < minimum:
        extra = f" ({why})" if why else ""
        raise ValueError(f"num_samples must be >= {minimum}{extra}, got {num_samples}")
    return int(num_samples)


def make_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    """``seed`` is shorthand for a fresh generator; giving both is ambiguous."""
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        return torch.Generator().manual_seed(int(seed))
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
def evaluate_f(f: Callable, x: Tensor, num_samples: int, *, keep_graph: bool = False) -> Tensor:
    """Evaluate ``f`` on a batch and check it returned ``num_samples`` finite values.

    ``f`` may return a tensor, a numpy array or a list; black-box results are converted. With
    ``keep_graph`` the result keeps its autograd graph (pathwise); otherwise it is detached.
    """
    out = f(x)
    if not isinstance(out, Tensor):
        try:
            out = torch.as_tensor(np.asarray(out), dtype=x.dtype if x.is_floating_point() else None)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"f must return a tensor or array of shape [{num_samples}], got {type(out).__name__}"
            ) from exc
    if out.shape != (num_samples,):
        raise ValueError(
            f"f must return one value per sample, shape [{num_samples}]; got shape "
            f"{list(out.shape)} (f receives the batch of samples, shape [{num_samples}, ...])"
        )
    if not out.is_floating_point():
        out = out.to(torch.get_default_dtype())
    if not keep_graph:
        out = out.detach()
    if not _all_finite(out):
        bad = int((~torch.isfinite(out.detach())).sum())
        raise ValueError(
            f"f returned {bad} non-finite value(s) out of {num_samples}; f must be finite on the "
            "support of the distribution"
        )
    return out


class BlackBox:
    """A numpy objective wrapped for the estimators (see :func:`black_box`); picklable."""

    black_box = True

    def __init__(self, fn: Callable[[np.ndarray], Any]):
        if not callable(fn):
            raise TypeError(f"black_box needs a callable, got {type(fn).__name__}")
        self.__wrapped__ = fn

    def __call__(self, x: Tensor) -> Tensor:
        out = np.asarray(self.__wrapped__(x.detach().cpu().numpy()))
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
@contextlib.contextmanager
def seeded_global_rng(generator: torch.Generator | None, device: torch.device):
    """Run code that uses torch's global RNG, seeded from ``generator`` (if any).

    ``torch.distributions`` samplers take no generator; for distributions without a sampler of
    our own this keeps results reproducible without touching the caller's global RNG state.
    """
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


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


def chain_to_params(
    phis: Sequence[Tensor],
    scores: Sequence[Tensor],
    leaves: Sequence[Tensor],
    num_samples: int,
) -> list[Tensor]:
    r"""Per-sample gradients with respect to ``leaves`` from those with respect to ``phis``.

    ``scores[j]`` has shape ``[n, *phis[j].shape]``; the result ``[n, *leaf.shape]`` per leaf is
    :math:`J^\top s_i` with :math:`J = \partial \phi / \partial \theta`. For a few distribution
    parameters the Jacobian is formed once (one backward pass per element) and applied as a
    matrix product; otherwise per-sample vector-Jacobian products are batched in chunks.
    """
    pairs = [(p, s) for p, s in zip(phis, scores, strict=True) if p.requires_grad]
    out_shapes = [(num_samples, *leaf.shape) for leaf in leaves]
    if not pairs:
        return [
            torch.zeros(s, dtype=leaf.dtype, device=leaf.device)
            for s, leaf in zip(out_shapes, leaves, strict=True)
        ]
    phis = [p for p, _ in pairs]
    if len(pairs) == 1:
        flat_scores = pairs[0][1].reshape(num_samples, -1)
    else:
        flat_scores = torch.cat([s.reshape(num_samples, -1) for _, s in pairs], dim=1)
    m = flat_scores.shape[1]
    sizes = [leaf.numel() for leaf in leaves]
    if m <= _MAX_JACOBIAN_ROWS:
        rows = []
        one = torch.ones((), dtype=phis[0].dtype, device=phis[0].device)
        for p in phis:
            flat = p if p.dim() == 0 else p.reshape(-1)
            for k in range(flat.numel()):
                out = flat if p.dim() == 0 else flat[k]
                g = _backward_row(out, one, leaves)
                if len(leaves) == 1 and g[0] is not None:
                    rows.append(g[0].reshape(-1))
                else:
                    rows.append(
                        torch.cat(
                            [
                                (gi if gi is not None else torch.zeros_like(leaf)).reshape(-1)
                                for gi, leaf in zip(g, leaves, strict=True)
                            ]
                        )
                    )
        jac = torch.stack(rows)  # [m, P]
        full = flat_scores.to(jac.dtype) @ jac  # [n, P]
        if len(leaves) == 1:
            return [full.reshape(out_shapes[0])]
        parts = torch.split(full, sizes, dim=1)
        return [part.reshape(s) for part, s in zip(parts, out_shapes, strict=True)]
    # Many distribution parameters: batched VJPs over chunks of samples.
    outs: list[list[Tensor]] = [[] for _ in leaves]
    offsets = np.cumsum([0] + [p.numel() for p in phis])
    for start in range(0, num_samples, _VJP_CHUNK):
        chunk = flat_scores[start : start + _VJP_CHUNK]
        cot = [
            chunk[:, offsets[j] : offsets[j + 1]].reshape(chunk.shape[0], *p.shape)
            for j, p in enumerate(phis)
        ]
        g = torch.autograd.grad(
            phis, leaves, cot, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
        for i, (gi, leaf) in enumerate(zip(g, leaves, strict=True)):
            outs[i].append(
                gi
                if gi is not None
                else torch.zeros(chunk.shape[0], *leaf.shape, dtype=leaf.dtype, device=leaf.device)
            )
    return [torch.cat(o, dim=0) for o in outs]


def sum_event(t: Tensor, num_samples: int) -> Tensor:
    """Sum a per-sample tensor ``[n, ...]`` over everything but the sample axis."""
    return t.reshape(num_samples, -1).sum(1)


def per_sample_log_prob_grads(
    dist_fn: Callable[..., Distribution], leaves: Sequence[Tensor], x: Tensor
) -> list[Tensor]:
    r"""Per-sample :math:`\nabla_\theta \log p(x_i; \theta)` by forward-mode autograd.

    The general fallback for distributions without a closed-form score: one forward pass of
    ``log_prob`` per scalar parameter (a loop over parameters, never over samples), memory
    ``O(n * num_params)``.
    """
    import torch.autograd.forward_ad as fwad

    n = x.shape[0]
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
            cols.append(torch.zeros(n, dtype=leaf.dtype) if t is None else sum_event(t, n))
        outs.append(torch.stack(cols, dim=1).reshape(n, *leaf.shape))
    return outs
