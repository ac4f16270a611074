r"""Stochastic computation graphs: record sampling nodes and costs, differentiate with DiCE.

A stochastic computation graph (Schulman et al., 2015) is a program that draws random variables
:math:`w` from distributions :math:`p(w \mid \text{parents}; \theta)` and adds up costs :math:`c`
computed from them. :class:`StochasticGraph` records such a program and builds the DiCE
surrogate (Foerster et al., 2018), a scalar whose value is the sampled total cost and whose
derivatives of *every* order are unbiased estimates of the derivatives of
:math:`\mathbb{E}[\sum_c c]`:

.. math::

    \mathcal{L} = \frac{1}{n} \sum_{i=1}^{n} \Big[ \sum_c \boxdot\Big(\sum_{w \in W_c}
    \log p(w_i)\Big)\, c_i + \sum_w \big(1 - \boxdot(\log p(w_i))\big)\,
    \boxdot\Big(\sum_{v \in A_w} \log p(v_i)\Big)\, b_{w,i} \Big],
    \qquad \boxdot(\tau) = e^{\tau - \bot(\tau)},

where :math:`\bot` stops gradients, :math:`W_c` are the stochastic nodes that cost :math:`c`
depends on (causality: a cost is credited only to nodes upstream of it), :math:`A_w` the
stochastic ancestors of node :math:`w`, and :math:`b_w` an optional baseline for node
:math:`w` (Mao et al., 2019) that lowers the variance and keeps every order unbiased.
Reparameterised nodes (``reparam=True``) contribute no score term: gradients flow through
the sample itself.

Dependencies are tracked automatically: every sample comes back as a :class:`TrackedTensor`,
a thin tensor subclass whose results remember which nodes they were computed from. Values that
leave torch (``.item()``, ``.tolist()``, ``numpy``, ``if z == 1:``, writing into a plain tensor
in place) cannot be followed; the graph notices this and, to stay unbiased, credits every later
cost and node to the nodes whose values escaped. ``depends_on=`` states dependencies by hand;
``depends_on="all"`` credits a cost to every node recorded before it (unbiased, more variance).

References:
    Schulman, Heess, Weber, Abbeel (2015), "Gradient estimation using stochastic computation
    graphs". Foerster, Farquhar, Al-Shedivat, Rocktäschel, Xing, Whiteson (ICML 2018), "DiCE:
    The infinitely differentiable Monte Carlo estimator". Mao, Foerster, Rocktäschel,
    Al-Shedivat, Farquhar, Whiteson (ICML 2019), "A baseline for any order gradient estimation
    in stochastic computation graphs".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from stochgrad import _core, _dists
from stochgrad._checks import check_bool, check_device, check_int
from stochgrad.baselines import Baseline, resolve_baseline
from stochgrad.tracking import (
    TrackedTensor,
    _disabled,
    _dist_tags,
    _Key,
    _plain,
    _tags,
    _wrap,
)

__all__ = ["StochasticGraph", "TrackedTensor", "magic_box"]

#: Largest number of joint configurations :meth:`StochasticGraph.enumerate` will build.
MAX_CONFIGURATIONS = 2**20


def magic_box(tau: Tensor) -> Tensor:
    r"""DiCE's magic box :math:`\boxdot(\tau) = \exp(\tau - \bot(\tau))`.

    Its value is 1 and its derivative is itself times the derivative of :math:`\tau`,
    :math:`\nabla \boxdot(\tau) = \boxdot(\tau) \nabla\tau`, so multiplying a cost by
    :math:`\boxdot(\sum \log p)` produces the score-function terms of every order under
    repeated differentiation (Foerster et al., ICML 2018, Eq. 3).

    Args:
        tau: a tensor, typically a sum of log-probabilities.

    Returns:
        A tensor of ones with the shape of ``tau`` that carries ``tau``'s gradient.

    >>> import torch
    >>> tau = torch.tensor(0.3, requires_grad=True)
    >>> box = magic_box(tau)
    >>> (g,) = torch.autograd.grad(box, tau, create_graph=True)
    >>> (h,) = torch.autograd.grad(g, tau)
    >>> box.item(), g.item(), h.item()
    (1.0, 1.0, 1.0)
    """
    if not isinstance(tau, Tensor):
        raise TypeError(
            f"tau must be a torch.Tensor (a sum of log-probabilities), got {type(tau).__name__}"
        )
    if not tau.is_floating_point():
        raise TypeError(f"tau must be a floating-point tensor, got dtype {tau.dtype}")
    # exp(tau - tau) is NaN at an infinite tau (a log-probability of -inf: an impossible draw);
    # a meta tensor has no values to check, only the shape the result keeps
    if not tau.is_meta and not _core._all_finite(tau):
        raise ValueError(
            f"tau must be finite (a log-probability of -inf is a draw of probability 0), got {tau}"
        )
    return _magic_box(tau)


def _magic_box(tau: Tensor) -> Tensor:
    """:func:`magic_box` without the checks (the graph's own log-probabilities)."""
    return torch.exp(tau - tau.detach())


def _check_dist_device(name: str, dist: Distribution) -> None:
    """Refuse a distribution whose stored parameters are meta tensors (shapes without data)."""
    base = _dists.unwrap(dist)
    try:
        names = list(base.arg_constraints)
    except NotImplementedError:  # distributions that declare no constraints
        return
    for param in names:
        value = base.__dict__.get(param)
        if isinstance(value, Tensor) and value.is_meta:
            raise ValueError(
                f"sample({name!r}): dist must hold its parameters on a real device, got "
                f"{type(base).__name__}.{param} on the 'meta' device (a shape without data)"
            )


# ---------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------
class _Node:
    __slots__ = (
        "key",
        "value",
        "log_prob",
        "ancestors",
        "reparam",
        "baseline",
        "deferred",
        "support",
        "dist_type",
    )

    def __init__(self, key, value, log_prob, ancestors, reparam, baseline, deferred, support, dt):
        self.key = key
        self.value = value
        self.log_prob = log_prob  # [n] plain, with graph to the parameters; None if reparam
        self.ancestors = ancestors  # frozenset of keys, closed, without the node itself
        self.reparam = reparam
        self.baseline = baseline  # [n] detached tensor, or None
        self.deferred = deferred  # Baseline object or callable evaluated in surrogate()
        self.support = support  # (K, M) for enumeration
        self.dist_type = dt


class _Cost:
    __slots__ = ("name", "value", "deps")

    def __init__(self, name, value, deps):
        self.name = name
        self.value = value  # [n] or [] plain
        self.deps = deps  # frozenset of keys, closed


# ---------------------------------------------------------------------------------------------
# the graph
# ---------------------------------------------------------------------------------------------
class StochasticGraph:
    r"""Record a stochastic computation graph and build its DiCE surrogate loss.

    Use it as a context: sample nodes with :meth:`sample`, register costs with :meth:`cost`,
    then call :meth:`surrogate`. Every node draws ``num_samples`` independent samples (the
    leading dimension of every sample and cost); the surrogate averages over them. Its value is
    the mean total cost and its derivatives of every order are unbiased estimates of the
    derivatives of :math:`\mathbb{E}[\sum_c c]`
    (``loss.backward(create_graph=True)`` and differentiate again for Hessians):

    .. math::

        \mathcal{L} = \frac{1}{n}\sum_i \Big[\sum_c \boxdot\Big(\sum_{w\in W_c}\log p(w_i)\Big)
        c_i + \sum_w \big(1-\boxdot(\log p(w_i))\big)\boxdot\Big(\sum_{v\in A_w}\log p(v_i)
        \Big) b_{w,i}\Big].

    :meth:`enumerate` replaces sampling by the full support of every (discrete) node, weighted
    by the joint probability; then the surrogate's value and derivatives are exact.

    Which nodes a cost depends on (:math:`W_c`) is found automatically: samples are
    :class:`TrackedTensor` objects whose results carry the names of the nodes they came from,
    closed under ancestry (a cost of :math:`z_2 \sim p(\cdot \mid z_1)` also depends on
    :math:`z_1`). When a sample's value leaves torch (``.item()``, ``.tolist()``, numpy, Python
    ``if``, an in-place write into a plain tensor), later costs and nodes are also credited to
    that node: crediting a cost to a node it does not depend on keeps every order unbiased and
    only adds variance, while the opposite mistake would bias the estimate.

    Args:
        num_samples: independent samples drawn per node (the leading dimension).
        generator: a ``torch.Generator`` for reproducible samples.
        seed: shorthand for a fresh generator seeded with this value.
        depends_on: the default dependency rule for costs and nodes: ``"auto"`` (tracked, as
            above) or ``"all"`` (every node recorded so far).

    >>> import torch
    >>> from torch.distributions import Bernoulli, Categorical
    >>> theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    >>> w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    >>> def model(graph):
    ...     z1 = graph.sample("z1", Categorical(logits=theta))
    ...     z2 = graph.sample("z2", Bernoulli(logits=w[z1]))
    ...     graph.cost("c1", z1.double())             # depends on z1
    ...     graph.cost("c2", 3.0 * z2)                # depends on z2, hence on z1
    >>> exact = StochasticGraph.enumerate(model)
    >>> loss = exact.surrogate()                      # = E[c1 + c2] = 1 + 1.5
    >>> (g_theta, g_w) = torch.autograd.grad(loss, (theta, w), create_graph=True)
    >>> round(loss.item(), 6), g_w.tolist()
    (2.5, [0.25, 0.25, 0.25])
    >>> with StochasticGraph(num_samples=1000, seed=0) as graph:
    ...     model(graph)
    >>> graph.dependencies
    {'c1': ('z1',), 'c2': ('z1', 'z2')}
    >>> graph.surrogate().shape
    torch.Size([])

    References:
        Foerster et al. (ICML 2018), "DiCE: The infinitely differentiable Monte Carlo
        estimator"; Schulman et al. (2015), "Gradient estimation using stochastic computation
        graphs"; Mao et al. (ICML 2019), "A baseline for any order gradient estimation in
        stochastic computation graphs".
    """

    def __init__(
        self,
        num_samples: int = 1,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        depends_on: str = "auto",
    ):
        self._n = _core.check_num_samples(num_samples)
        self._generator = _core.make_generator(generator, seed)
        if depends_on not in ("auto", "all"):
            raise ValueError(f"depends_on must be 'auto' or 'all', got {depends_on!r}")
        self._default = depends_on
        self._state = "new"
        self._mode = "sample"  # or "discover" / "enumerate" (see enumerate())
        self._plan: list[tuple[str, int, int]] | None = None
        self._stride: list[int] = []
        self._nodes: list[_Node] = []
        self._by_name: dict[str, _Node] = {}
        self._costs: list[_Cost] = []
        self._cost_names: set[str] = set()
        self._escaped: set[_Key] = set()
        self._weights: Tensor | None = None
        self._deferred_cache: dict[str, Tensor] | None = None

    # -- context -------------------------------------------------------------------------------
    def __enter__(self) -> StochasticGraph:
        if self._state != "new":
            raise RuntimeError(
                "a StochasticGraph records once; create a new StochasticGraph for a new draw"
            )
        self._state = "recording"
        return self

    def __exit__(self, *exc) -> None:
        self._state = "done"

    def __repr__(self) -> str:
        nodes = [n.key.name for n in self._nodes]
        costs = [c.name for c in self._costs]
        return f"StochasticGraph(num_samples={self._n}, nodes={nodes}, costs={costs})"

    def _check_recording(self, what: str) -> None:
        if self._state != "recording":
            raise RuntimeError(
                f"{what}() must be called inside `with StochasticGraph(...) as graph:` "
                f"(this graph is {'finished' if self._state == 'done' else 'not entered yet'})"
            )

    def _check_name(self, name: Any, kind: str) -> str:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name of a {kind} must be a non-empty string, got {name!r}")
        if name in self._by_name or name in self._cost_names:
            raise ValueError(f"name {name!r} is already used in this graph")
        return name

    def _note_escape(self, key: _Key) -> None:
        if self._state == "recording":
            self._escaped.add(key)

    # -- dependencies --------------------------------------------------------------------------
    def _closure(self, keys: Iterable[_Key]) -> frozenset:
        out: set[_Key] = set()
        for k in keys:
            out.add(k)
            out |= self._nodes[k.index].ancestors
        return frozenset(out)

    def _resolve(self, what: str, tags: frozenset, depends_on: Any) -> frozenset:
        foreign = [k for k in tags if k.graph_ref() is not self]
        if foreign:
            raise ValueError(
                f"{what} is computed from samples of another StochasticGraph "
                f"({sorted(k.name for k in foreign)}); sample them in this graph"
            )
        rule = self._default if depends_on is None else depends_on
        if isinstance(rule, str):
            if rule == "auto":
                return self._closure(tags | frozenset(self._escaped))
            if rule == "all":
                return frozenset(n.key for n in self._nodes)
            raise ValueError(
                f"depends_on for {what} must be 'auto', 'all' or a list of node names, got {rule!r}"
            )
        try:
            names = list(rule)
        except TypeError:
            raise TypeError(
                f"depends_on for {what} must be 'auto', 'all' or a list of node names, "
                f"got {type(rule).__name__}"
            ) from None
        unknown = [m for m in names if m not in self._by_name]
        if unknown:
            raise ValueError(
                f"depends_on for {what}: unknown node(s) {unknown}; nodes recorded so far: "
                f"{[n.key.name for n in self._nodes]}"
            )
        deps = self._closure(self._by_name[m].key for m in names)
        missing = sorted((k.name for k in tags - deps), key=lambda m: self._by_name[m].key.index)
        if missing:
            raise ValueError(
                f"depends_on for {what} omits node(s) {missing} that it is computed from; "
                "leaving them out would bias the gradient"
            )
        return deps

    def _names(self, keys: Iterable[_Key]) -> tuple[str, ...]:
        return tuple(k.name for k in sorted(keys, key=lambda k: k.index))

    # -- recording -----------------------------------------------------------------------------
    def sample(
        self,
        name: str,
        dist: Distribution,
        *,
        reparam: bool = False,
        baseline: Any = None,
        per_sample: bool | None = None,
        depends_on: Any = None,
    ) -> Tensor:
        r"""Draw a stochastic node and record its log-probability.

        The node contributes :math:`\log p(w_i)` to the magic box of every cost downstream of
        it. With ``reparam=True`` the sample is ``dist.rsample`` (pathwise gradients) and the
        node adds no score term.

        Args:
            name: a name unique in this graph.
            dist: a ``torch.distributions.Distribution``; its parameters may be computed from
                earlier samples (then its batch shape must start with ``num_samples``).
            reparam: draw a reparameterised sample (needs ``dist.has_rsample``).
            baseline: a baseline :math:`b_w` for this node's score term, either a number or a
                tensor of shape ``[]`` or ``[num_samples]`` (detached; it may be computed from
                earlier samples, e.g. a value estimate), or a rule evaluated in
                :meth:`surrogate` on the detached per-sample sum of the costs downstream of
                this node: ``"loo"``, a :class:`~stochgrad.baselines.Baseline` object, or a
                callable ``downstream_cost -> b``. A rule must not use sample ``i``'s own cost
                for :math:`b_i` (leave-one-out is fine), or the estimate is biased.
                :meth:`enumerate` ignores rules (baselines cannot change an exact value).
            per_sample: whether ``dist`` already holds one batch entry per sample (leading
                batch dimension ``num_samples``). ``None`` infers it: true exactly when the
                parameters were computed from this graph's samples. Pass ``True`` for
                per-sample parameters made some other way.
            depends_on: ``"auto"``, ``"all"`` or a list of node names the *distribution*
                depends on (its ancestors); defaults to the graph's rule.

        Returns:
            The sample, ``[num_samples, *batch_shape, *event_shape]`` (``[*batch_shape,
            *event_shape]`` for a per-sample distribution), as a :class:`TrackedTensor`.

        >>> import torch
        >>> from torch.distributions import Normal
        >>> mu = torch.tensor(1.0, requires_grad=True)
        >>> with StochasticGraph(num_samples=4, seed=0) as graph:
        ...     x = graph.sample("x", Normal(mu, 1.0), reparam=True)
        ...     graph.cost("c", x**2)
        >>> x.shape, x.requires_grad
        (torch.Size([4]), True)
        """
        self._check_recording("sample")
        name = self._check_name(name, "node")
        if not isinstance(dist, Distribution):
            raise TypeError(
                f"sample({name!r}): dist must be a torch.distributions.Distribution, "
                f"got {type(dist).__name__}"
            )
        reparam = check_bool("reparam", reparam)
        if per_sample is not None:
            per_sample = check_bool("per_sample", per_sample)
        _check_dist_device(name, dist)
        with _disabled():
            _core.check_constraints(dist)
        dist_tags = _dist_tags(dist)
        n = self._n
        own = frozenset(k for k in dist_tags if k.graph_ref() is self)
        if per_sample is None:
            per_sample = bool(own)
        elif per_sample is False and own:
            raise ValueError(
                f"sample({name!r}): per_sample=False, but the distribution's parameters are "
                f"computed from samples {list(self._names(own))}"
            )
        batch = tuple(dist.batch_shape)
        if per_sample and (not batch or batch[0] != n):
            raise ValueError(
                f"sample({name!r}): the distribution is per-sample ("
                f"{'parameters computed from earlier samples' if own else 'per_sample=True'}), "
                f"so its batch_shape must start with num_samples={n}; got batch_shape "
                f"{list(batch)}"
            )
        support = None
        if self._mode != "sample":
            if reparam:
                raise ValueError(
                    f"sample({name!r}): enumeration needs finite support; a reparameterised "
                    "node cannot be enumerated"
                )
            x, support = self._enumerated_value(name, dist, per_sample)
        elif reparam:
            if not dist.has_rsample:
                raise ValueError(
                    f"sample({name!r}): reparam=True needs a distribution with rsample; "
                    f"{type(dist).__name__} has none (leave reparam=False for a score term)"
                )
            x = self._rsample(dist, per_sample)
        else:
            with _disabled():
                if per_sample:  # one draw per sample: the batch already has the sample axis
                    x = _dists.sample(dist, 1, self._generator)[0]
                else:
                    x = _dists.sample(dist, n, self._generator)
                x = _plain(x).detach()
        tags = dist_tags
        log_prob = None
        if reparam:
            tags = tags | _tags(x)
            x = _plain(x)
        else:
            lp = dist.log_prob(x)  # torch functions on: tracked parameters tag the result
            tags = tags | _tags(lp)
            lp = _plain(lp)
            if lp.dim() == 0 or lp.shape[0] != n:
                raise ValueError(
                    f"sample({name!r}): log_prob has shape {list(lp.shape)}, expected a leading "
                    f"dimension of num_samples={n}"
                )
            log_prob = lp.reshape(n, -1).sum(1)
        ancestors = self._resolve(f"node {name!r}", tags, depends_on)
        fixed, deferred = self._baseline(name, baseline, reparam, log_prob)
        key = _Key(self, name, len(self._nodes))
        node = _Node(key, x, log_prob, ancestors, reparam, fixed, deferred, support, type(dist))
        self._nodes.append(node)
        self._by_name[name] = node
        self._deferred_cache = None
        out = _wrap(x, ancestors | {key})
        node.value = out
        return out

    def _rsample(self, dist: Distribution, per_sample: bool) -> Tensor:
        n = self._n
        shape = () if per_sample else (n,)
        base = _dists.unwrap(dist)
        if type(base) is torch.distributions.Normal:
            with _disabled():
                eps = _dists.normal_noise(dist, 1 if per_sample else n, self._generator)
                eps = eps[0] if per_sample else eps
            return base.loc + base.scale * eps
        with _core.seeded_global_rng(self._generator, _dists._device_of(dist)):
            return dist.rsample(shape)

    def _baseline(self, name: str, spec: Any, reparam: bool, like: Tensor | None):
        if spec is None:
            return None, None
        if reparam:
            raise ValueError(
                f"sample({name!r}): baseline given for a reparameterised node, which has no "
                "score term for a baseline to act on"
            )
        if isinstance(spec, (str, Baseline)):
            rule = resolve_baseline(spec)
            if not rule.unbiased:
                raise ValueError(
                    f"sample({name!r}): baseline {rule.name!r} uses each sample's own cost and "
                    "biases the gradient; use 'loo' (leave-one-out) instead"
                )
            if self._mode == "sample" and self._n < rule.min_samples:
                raise ValueError(
                    f"sample({name!r}): baseline {rule.name!r} needs num_samples >= "
                    f"{rule.min_samples}, got {self._n}"
                )
            return None, rule
        if isinstance(spec, bool):
            raise TypeError(f"sample({name!r}): baseline must not be a bool")
        if isinstance(spec, (int, float, np.ndarray, np.generic, Tensor)):
            b = _plain(torch.as_tensor(spec)).detach() if not isinstance(spec, Tensor) else None
            if b is None:
                b = _plain(spec).detach()
            return self._check_b(name, b, like), None
        if callable(spec):
            return None, spec
        raise TypeError(
            f"sample({name!r}): baseline must be a number, a tensor, 'loo', a Baseline or a "
            f"callable, got {type(spec).__name__}"
        )

    def _check_b(self, name: str, b: Tensor, like: Tensor) -> Tensor:
        n = self._n
        b = b.to(device=like.device, dtype=like.dtype)
        if b.shape not in ((), (n,)):
            raise ValueError(
                f"baseline of node {name!r} must have shape [] or [{n}] (one value per sample), "
                f"got {list(b.shape)}"
            )
        if not bool(torch.isfinite(b).all()):
            raise ValueError(f"baseline of node {name!r} must be finite, got {b}")
        return b.expand(n)

    def cost(self, name: str, value: Any, *, depends_on: Any = None) -> None:
        r"""Register a cost: one value per sample, shape ``[num_samples]``.

        The surrogate multiplies it by :math:`\boxdot(\sum_{w \in W_c} \log p(w_i))` over the
        nodes :math:`W_c` it depends on. A cost may also depend on parameters directly or
        through reparameterised samples; those gradients flow as usual.

        Args:
            name: a name unique in this graph.
            value: the per-sample cost (a tensor; numpy arrays and lists are converted; a
                plain number is refused: it carries no gradient). A 0-d tensor is allowed only
                for a cost computed from no samples (broadcast).
            depends_on: ``"auto"`` (tracked), ``"all"`` (every node recorded so far) or a list
                of node names (their ancestors are added); defaults to the graph's rule. A list
                that omits a node the cost is visibly computed from is refused.

        >>> import torch
        >>> from torch.distributions import Bernoulli
        >>> with StochasticGraph(num_samples=2, seed=0) as graph:
        ...     a = graph.sample("a", Bernoulli(probs=torch.tensor(0.5)))
        ...     b = graph.sample("b", Bernoulli(probs=torch.tensor(0.5)))
        ...     graph.cost("c", a + 1.0)
        ...     graph.cost("d", torch.ones(2), depends_on=["b"])
        >>> graph.dependencies
        {'c': ('a',), 'd': ('b',)}
        """
        self._check_recording("cost")
        name = self._check_name(name, "cost")
        if not isinstance(value, (Tensor, np.ndarray, list, tuple)):
            raise TypeError(
                f"cost {name!r}: value must be a tensor of shape [{self._n}] (or an array or "
                f"list of {self._n} numbers), got {type(value).__name__}"
            )
        if not isinstance(value, Tensor):
            try:
                value = torch.as_tensor(np.asarray(value))
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"cost {name!r}: value must be a tensor of shape [{self._n}], got "
                    f"{type(value).__name__} that is not an array of numbers"
                ) from exc
        if value.is_complex():
            raise TypeError(f"cost {name!r}: value must hold real numbers, got {value.dtype}")
        check_device(f"cost {name!r}: value", value)
        tags = _tags(value)
        value = _plain(value)
        n = self._n
        if value.shape != (n,) and not (value.dim() == 0 and not tags):
            hint = (
                " (the surrogate averages over samples itself: do not reduce the cost)"
                if value.dim() == 0
                else ""
            )
            raise ValueError(
                f"cost {name!r}: value must have one value per sample, shape [{n}]; got shape "
                f"{list(value.shape)}{hint}"
            )
        if not value.is_floating_point():
            value = value.to(torch.get_default_dtype())
        with _disabled():
            if not _core._all_finite(value):
                raise ValueError(f"cost {name!r}: value must be finite, got {value.detach()}")
        deps = self._resolve(f"cost {name!r}", tags, depends_on)
        self._costs.append(_Cost(name, value, deps))
        self._cost_names.add(name)
        self._deferred_cache = None

    # -- enumeration ---------------------------------------------------------------------------
    @classmethod
    def enumerate(
        cls,
        model: Callable[[StochasticGraph], Any],
        *,
        depends_on: str = "auto",
        max_configurations: int = MAX_CONFIGURATIONS,
    ) -> StochasticGraph:
        r"""Run ``model(graph)`` over every joint configuration of its discrete nodes.

        Each configuration is one "sample", weighted by its detached joint probability
        :math:`\bot P(z)`; then :meth:`surrogate` returns
        :math:`\sum_z \bot P(z) \,[\sum_c \boxdot(\cdot)\, c(z) + \dots]`, whose value *and
        derivatives of every order* equal those of :math:`\mathbb{E}[\sum_c c]` exactly.

        The model runs twice: once with one configuration to find every node's support size,
        then with all of them batched (the product of the support sizes). Its structure (which
        nodes, their order and support sizes) must not depend on the sampled values. Every
        node must have finite support (``enumerate_support``); baseline rules are ignored.

        Args:
            model: a function that samples nodes and registers costs on the graph it receives.
            depends_on: the graph's default dependency rule (``"auto"`` or ``"all"``).
            max_configurations: refuse to build more joint configurations than this.

        Returns:
            The recorded graph (already closed).

        >>> import torch
        >>> from torch.distributions import Bernoulli
        >>> p = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        >>> def model(graph):
        ...     z = graph.sample("z", Bernoulli(probs=p.expand(2)))   # two coins: 4 configurations
        ...     graph.cost("c", z.sum(-1) ** 2)
        >>> exact = StochasticGraph.enumerate(model)
        >>> (g,) = torch.autograd.grad(exact.surrogate(), p)          # d/dp (2p(1-p) + 4p^2)
        >>> exact.num_samples, round(g.item(), 6)
        (4, 3.2)
        """
        if not callable(model):
            raise TypeError(f"model must be callable (graph -> None), got {model!r}")
        max_configurations = check_int("max_configurations", max_configurations, minimum=1)
        probe = cls(1, depends_on=depends_on)
        probe._mode = "discover"
        with probe:
            model(probe)
        plan = [(nd.key.name, *nd.support) for nd in probe._nodes]
        sizes = [k**m for _, k, m in plan]
        total = math.prod(sizes)
        if total > max_configurations:
            raise ValueError(
                f"enumeration needs {total} joint configurations (support sizes "
                f"{dict((p[0], s) for p, s in zip(plan, sizes, strict=True))}), more than "
                f"max_configurations={max_configurations}"
            )
        graph = cls(total, depends_on=depends_on)
        graph._mode = "enumerate"
        graph._plan = plan
        graph._stride = [math.prod(sizes[i + 1 :]) for i in range(len(sizes))]
        with graph:
            model(graph)
        if len(graph._nodes) != len(plan):
            raise ValueError(
                "the model's structure changed between runs: it sampled "
                f"{[nd.key.name for nd in graph._nodes]} after {[p[0] for p in plan]}; "
                "enumeration needs the same nodes every run"
            )
        scores = [nd.log_prob.detach() for nd in graph._nodes]
        graph._weights = sum(scores[1:], scores[0]).exp() if scores else None
        return graph

    def _enumerated_value(self, name: str, dist: Distribution, per_sample: bool):
        base = _dists.unwrap(dist)
        if not getattr(base, "has_enumerate_support", False):
            raise ValueError(
                f"sample({name!r}): enumeration needs finite support; {type(dist).__name__} "
                "has no enumerate_support"
            )
        with _disabled():
            try:
                sup = base.enumerate_support(expand=False)
            except NotImplementedError as exc:
                raise ValueError(
                    f"sample({name!r}): {type(base).__name__} cannot enumerate its support ({exc})"
                ) from exc
            sup = _plain(sup).detach()
        k = sup.shape[0]
        event = tuple(base.event_shape)
        var_shape = tuple(base.batch_shape)[1:] if per_sample else tuple(base.batch_shape)
        m = math.prod(var_shape)
        n = self._n
        if self._mode == "discover":  # one configuration: the first support value everywhere
            digits = torch.zeros(n, m, dtype=torch.long, device=sup.device)
        else:
            i = len(self._nodes)
            if i >= len(self._plan) or self._plan[i] != (name, k, m):
                expected = self._plan[i] if i < len(self._plan) else None
                raise ValueError(
                    "the model's structure changed between runs: node "
                    f"{(name, k, m)} (name, support size, variables) where the first run had "
                    f"{expected}; enumeration needs the same nodes every run"
                )
            local = (torch.arange(n, device=sup.device) // self._stride[i]) % (k**m)
            powers = k ** torch.arange(m, device=sup.device)
            digits = (local.unsqueeze(1) // powers) % k  # [n, m]
        values = sup.reshape(k, *event)[digits]  # [n, m, *event]
        return values.reshape(n, *var_shape, *event), (k, m)

    # -- the surrogate -------------------------------------------------------------------------
    def _deferred_values(self) -> dict[str, Tensor]:
        if self._deferred_cache is not None:
            return self._deferred_cache
        out: dict[str, Tensor] = {}
        for node in self._nodes:
            if node.deferred is None or self._mode != "sample":
                continue
            down = [c.value.detach().expand(self._n) for c in self._costs if node.key in c.deps]
            ret = (
                sum(down[1:], down[0])
                if down
                else torch.zeros(self._n, dtype=node.log_prob.dtype, device=node.log_prob.device)
            )
            rule = node.deferred
            if isinstance(rule, Baseline):
                b = rule(ret, ret.new_zeros(self._n, 1), ret.new_zeros(1))
            else:
                b = rule(ret)
            b = torch.as_tensor(b, dtype=ret.dtype) if not isinstance(b, Tensor) else _plain(b)
            b = b.detach()
            if b.numel() == self._n:
                b = b.reshape(self._n)
            out[node.key.name] = self._check_b(node.key.name, b, node.log_prob)
        self._deferred_cache = out
        return out

    def surrogate(self, reduction: str = "mean") -> Tensor:
        r"""The DiCE surrogate loss (see the class docstring for the formula).

        Its value is the mean total cost (the magic boxes are 1 and the baseline terms 0); its
        gradient, and the gradient of that gradient, and so on, are unbiased estimates of the
        derivatives of :math:`\mathbb{E}[\sum_c c]` (exact after :meth:`enumerate`).

        Args:
            reduction: ``"mean"`` for the scalar loss, ``"none"`` for the ``[num_samples]``
                per-sample terms whose mean is that loss.

        Returns:
            A plain tensor with autograd history to every parameter involved.

        >>> import torch
        >>> from torch.distributions import Bernoulli
        >>> logit = torch.tensor(0.0, requires_grad=True)
        >>> with StochasticGraph(num_samples=4, seed=0) as graph:
        ...     z = graph.sample("z", Bernoulli(logits=logit), baseline="loo")
        ...     graph.cost("c", 2.0 * z)
        >>> graph.surrogate(reduction="none").shape
        torch.Size([4])
        >>> loss = graph.surrogate()
        >>> bool(loss == graph.costs["c"].mean())
        True
        """
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        if self._state == "new":
            raise RuntimeError("nothing recorded: use `with StochasticGraph(...) as graph:` first")
        if not self._costs:
            raise ValueError("surrogate(): no costs recorded; register them with graph.cost()")
        n = self._n
        lps = {nd.key: nd.log_prob for nd in self._nodes if nd.log_prob is not None}
        cache: dict[frozenset, Tensor | None] = {}

        def box(keys: frozenset) -> Tensor | None:
            if keys not in cache:
                parts = [lps[k] for k in sorted(keys, key=lambda k: k.index) if k in lps]
                cache[keys] = _magic_box(sum(parts[1:], parts[0])) if parts else None
            return cache[keys]

        total: Tensor | None = None
        for c in self._costs:
            b = box(c.deps)
            term = c.value if b is None else b * c.value
            total = term if total is None else total + term
        deferred = self._deferred_values()
        for nd in self._nodes:
            b = nd.baseline if nd.baseline is not None else deferred.get(nd.key.name)
            if b is None:
                continue
            own = 1.0 - _magic_box(lps[nd.key])
            up = box(nd.ancestors)
            term = own * b if up is None else up * own * b
            total = total + term
        total = total.expand(n)
        if self._weights is not None:
            total = total * (self._weights * n)
        return total if reduction == "none" else total.mean()

    # -- inspection ----------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        """Samples per node (after :meth:`enumerate`: the number of joint configurations)."""
        return self._n

    @property
    def samples(self) -> dict[str, Tensor]:
        """Node name -> its sample, in recording order."""
        return {nd.key.name: nd.value for nd in self._nodes}

    @property
    def log_probs(self) -> dict[str, Tensor]:
        """Node name -> per-sample :math:`\\log p(w_i)` ``[num_samples]`` (score nodes only)."""
        return {nd.key.name: nd.log_prob for nd in self._nodes if nd.log_prob is not None}

    @property
    def costs(self) -> dict[str, Tensor]:
        """Cost name -> its per-sample values, in recording order."""
        return {c.name: c.value for c in self._costs}

    @property
    def dependencies(self) -> dict[str, tuple[str, ...]]:
        """Cost name -> the nodes it is credited to (:math:`W_c`), in recording order."""
        return {c.name: self._names(c.deps) for c in self._costs}

    @property
    def ancestors(self) -> dict[str, tuple[str, ...]]:
        """Node name -> the nodes its distribution depends on (:math:`A_w`)."""
        return {nd.key.name: self._names(nd.ancestors) for nd in self._nodes}

    @property
    def escaped(self) -> tuple[str, ...]:
        """Nodes whose values left torch while recording (later costs are credited to them)."""
        return self._names(self._escaped)

    @property
    def weights(self) -> Tensor | None:
        """After :meth:`enumerate`: each configuration's joint probability; else ``None``."""
        return self._weights

    def depends(self, value: Any) -> tuple[str, ...]:
        """The nodes of this graph that a tracked tensor was computed from (tracked only)."""
        return self._names(k for k in _tags(value) if k.graph_ref() is self)
