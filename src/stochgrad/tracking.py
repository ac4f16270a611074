"""Dependency tracking for :class:`~stochgrad.graph.StochasticGraph`: a tensor subclass whose
results remember which recorded nodes they were computed from.

Every sample a graph records comes back as a :class:`TrackedTensor`; torch operations on it
return tracked results carrying the union of their inputs' node keys. Values that leave torch
(``.item()``, ``.tolist()``, numpy, Python control flow) cannot be followed: the graph is told
(:func:`_escape`) and stays unbiased by crediting later costs to every escaped node.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

if TYPE_CHECKING:
    from stochgrad.graph import StochasticGraph

_disabled = torch._C.DisableTorchFunctionSubclass


class _Key:
    """Identity of one recorded node; hashable by identity, points back to its graph."""

    __slots__ = ("graph_ref", "name", "index")

    def __init__(self, graph: StochasticGraph, name: str, index: int):
        self.graph_ref = weakref.ref(graph)
        self.name = name
        self.index = index

    def __repr__(self) -> str:
        return f"<node {self.name!r}>"

    # A copied tensor keeps pointing at the same node (keys are compared by identity).
    def __copy__(self) -> _Key:
        return self

    def __deepcopy__(self, memo) -> _Key:
        return self


_EMPTY: frozenset = frozenset()
_NOWRAP = torch.overrides.get_default_nowrap_functions()
_PRINT = {Tensor.__repr__, Tensor.__str__, Tensor.__format__}
# Functions whose non-tensor result describes the tensor (shape, layout), not its values.
_META = frozenset(
    {
        "__get__",
        "__len__",
        "__hash__",
        "__repr__",
        "__str__",
        "__format__",
        "__reduce_ex__",
        "__deepcopy__",
        "__dir__",
        "__sizeof__",
        "dim",
        "ndimension",
        "size",
        "numel",
        "nelement",
        "stride",
        "storage_offset",
        "element_size",
        "get_device",
        "data_ptr",
        "is_contiguous",
        "is_floating_point",
        "is_complex",
        "is_signed",
        "is_inference",
        "is_pinned",
        "is_shared",
        "is_conj",
        "is_neg",
        "is_set_to",
        "is_same_size",
        "_is_view",
        "register_hook",
        "untyped_storage",
        "storage",
    }
)
_INPLACE_DUNDER = frozenset(
    f"__i{op}__"
    for op in ("add sub mul truediv floordiv div mod pow matmul and or xor lshift rshift".split())
)
_VALUE_TYPES = (bool, int, float, complex, list, np.ndarray, np.generic)
# Frames to look through when asking who converted a value to Python (torch's dispatch shims).
_SHIMS = frozenset({"torch.overrides", "torch._tensor"})
#: Code whose conversions to Python are the graph's own bookkeeping, not the user's.
_OWN_MODULES = frozenset({__name__, "stochgrad.graph"})


def _tags_in(objs: Iterable[Any]) -> frozenset:
    tags = _EMPTY
    for o in objs:
        if isinstance(o, TrackedTensor):
            t = o.__dict__.get("_sg_tags", _EMPTY)
            if t:
                tags = tags | t
        elif isinstance(o, (list, tuple)) and o:
            t = _tags_in(o)
            if t:
                tags = tags | t
    return tags


def _plain(t: Tensor) -> Tensor:
    """The same tensor (autograd history included) as a plain ``torch.Tensor``."""
    if type(t) is Tensor:
        return t
    with _disabled():
        return t.as_subclass(Tensor)


def _wrap(ret: Any, tags: frozenset) -> Any:
    if isinstance(ret, TrackedTensor):  # an input handed back (in-place op, no-op ``.to``)
        ret._sg_tags = ret.__dict__.get("_sg_tags", _EMPTY) | tags
        return ret
    if isinstance(ret, Tensor):
        with _disabled():
            out = ret.as_subclass(TrackedTensor)
        out._sg_tags = tags
        return out
    if isinstance(ret, (tuple, list)):
        return type(ret)(_wrap(r, tags) for r in ret)
    return ret


def _exempt_caller() -> bool:
    """True when a value is converted to Python inside ``torch.distributions``, this module or
    the graph's own code.

    Distributions check their arguments with ``if not valid.all(): raise``; that decision does
    not carry a sample's value into the user's computation, so it is not an escape.
    """
    frame = sys._getframe(3)  # _exempt_caller <- _escape <- __torch_function__ <- caller
    while frame is not None and frame.f_globals.get("__name__", "") in _SHIMS:
        frame = frame.f_back
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    return module.startswith("torch.distributions") or module in _OWN_MODULES


def _escape(tags: frozenset) -> None:
    if _exempt_caller():
        return
    for key in tags:
        graph = key.graph_ref()
        if graph is not None:
            graph._note_escape(key)


class TrackedTensor(Tensor):
    """A tensor that remembers which stochastic nodes of a :class:`StochasticGraph` it came from.

    :meth:`StochasticGraph.sample` returns these; every torch operation on them returns another
    one whose tag set is the union of its inputs' tags. It behaves as an ordinary tensor in all
    other respects (autograd included). Converting its values to Python or numpy, or writing
    them into a plain tensor in place, is noted as an *escape*, after which the graph credits
    later costs to the escaped nodes (see :class:`StochasticGraph`). Reading metadata (shape,
    dtype) and printing are not escapes; neither are the argument checks inside
    ``torch.distributions``.

    >>> import torch
    >>> from torch.distributions import Bernoulli
    >>> from stochgrad import StochasticGraph
    >>> with StochasticGraph(num_samples=3, seed=0) as graph:
    ...     z = graph.sample("z", Bernoulli(probs=torch.tensor(0.5)))
    ...     y = 2 * z + 1
    >>> isinstance(y, TrackedTensor), graph.depends(y)
    (True, ('z',))
    """

    def __deepcopy__(self, memo):
        if id(self) not in memo:
            memo[id(self)] = _wrap(_plain(self).__deepcopy__(memo), _tags(self))
        return memo[id(self)]

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = {} if kwargs is None else kwargs
        tags = _tags_in(args)
        if kwargs:
            tags = tags | _tags_in(kwargs.values())
        if func in _PRINT:
            args = tuple(_plain(a) if isinstance(a, Tensor) else a for a in args)
            return func(*args, **kwargs)
        with _disabled():
            ret = func(*args, **kwargs)
        if tags:
            name = getattr(func, "__name__", "")
            inplace = (
                "out" in kwargs
                or name == "__setitem__"
                or name in _INPLACE_DUNDER
                or (name.endswith("_") and not name.endswith("__"))
            )
            if inplace:
                target = kwargs.get("out", args[0] if args else None)
                targets = target if isinstance(target, (tuple, list)) else (target,)
                for t in targets:
                    if isinstance(t, TrackedTensor):
                        t._sg_tags = t.__dict__.get("_sg_tags", _EMPTY) | tags
                    elif isinstance(t, Tensor):
                        _escape(tags)  # values written into a plain tensor: lost from view
            elif name not in _META and isinstance(ret, _VALUE_TYPES):
                _escape(tags)
        if func in _NOWRAP:
            return ret
        return _wrap(ret, tags)


def _tags(value: Any) -> frozenset:
    if isinstance(value, TrackedTensor):
        return value.__dict__.get("_sg_tags", _EMPTY)
    return _EMPTY


def _dist_tags(d: Any, depth: int = 0, seen: set | None = None) -> frozenset:
    """Tags of every tracked tensor stored in a distribution (nested distributions too)."""
    seen = set() if seen is None else seen
    if depth > 4 or id(d) in seen:
        return _EMPTY
    seen.add(id(d))
    tags = _EMPTY
    values = d.values() if isinstance(d, dict) else getattr(d, "__dict__", {}).values()
    for v in values:
        if isinstance(v, TrackedTensor):
            tags = tags | _tags(v)
        elif isinstance(v, (list, tuple)):
            for item in v:
                if isinstance(item, TrackedTensor):
                    tags = tags | _tags(item)
                elif hasattr(item, "__dict__"):
                    tags = tags | _dist_tags(item, depth + 1, seen)
        elif isinstance(v, (Distribution, torch.distributions.transforms.Transform, dict)):
            tags = tags | _dist_tags(v, depth + 1, seen)
    return tags
