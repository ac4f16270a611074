"""Names that moved keep working for one release, with a :class:`DeprecationWarning`.

Two kinds of move:

- a module moved (``stochgrad.studies_discrete`` is now ``stochgrad.studies.relax_toy``):
  :data:`MOVED_MODULES` maps the old dotted name to the new one, and a finder on
  ``sys.meta_path`` answers an import of the old name with the new module, after a warning.
  The finder holds only strings, so it imports nothing until asked.
- a name inside a module moved or was renamed: the module's ``__getattr__`` calls
  :func:`moved_attribute` with a table of ``old name -> (new module, new name)``.

``stochgrad.estimate`` is the function :func:`stochgrad.estimate`; the module that held
:class:`~stochgrad.gradient_estimate.GradientEstimate` under that name is now
``stochgrad.gradient_estimate``, and ``from stochgrad.estimate import GradientEstimate`` keeps
working for a release through an alias entry in ``sys.modules`` that is not bound on the package
(binding it would shadow the function again). The estimator modules named like their functions
(``stochgrad.estimators.arm``, ``.pathwise``, ``.measure_valued``) moved the same way.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

#: old module name -> new module name (removed in the next release)
MOVED_MODULES: dict[str, str] = {
    "stochgrad.apps.molecules.cli": "stochgrad.cli.molecules",
    "stochgrad.argtypes": "stochgrad.cli.argtypes",
    "stochgrad.studies_discrete": "stochgrad.studies.relax_toy",
}

#: modules whose alias must not be bound on the parent package (a function holds the name)
_UNBOUND_ALIASES: dict[str, str] = {
    "stochgrad.estimate": "stochgrad.gradient_estimate",
    "stochgrad.estimators.arm": "stochgrad.estimators.discrete",
    "stochgrad.estimators.pathwise": "stochgrad.estimators.reparameterization",
    "stochgrad.estimators.measure_valued": "stochgrad.estimators.weak_derivative",
}


def _warn(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(
        f"{old} has moved to {new}; the old name will be removed in the next release",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        _warn(self.old, self.new, stacklevel=8)
        return importlib.import_module(self.new)

    def exec_module(self, module: types.ModuleType) -> None:  # already executed as `new`
        return None


class _MovedFinder(importlib.abc.MetaPathFinder):
    """Answers imports of :data:`MOVED_MODULES` keys with the module under its new name."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(fullname, new))


class _UnboundAlias(types.ModuleType):
    """A module object whose attributes come, with a warning, from the module that moved."""

    def __init__(self, old: str, new: str):
        super().__init__(old)
        self.__dict__["_stochgrad_new"] = new

    def __getattr__(self, name: str) -> Any:
        new = self.__dict__["_stochgrad_new"]
        if name.startswith("__"):
            raise AttributeError(name)
        _warn(self.__name__, new)
        return getattr(importlib.import_module(new), name)


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once) and the unbound aliases in ``sys.modules``."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
    for old, new in _UNBOUND_ALIASES.items():
        sys.modules.setdefault(old, _UnboundAlias(old, new))


def moved_attribute(module: str, name: str, table: dict[str, tuple[str, str]]) -> Any:
    """For a module's ``__getattr__``: the renamed attribute, after a warning.

    Args:
        module: the module's ``__name__``.
        name: the attribute asked for.
        table: ``old name -> (module now holding it, its name there)``.

    Raises:
        AttributeError: ``name`` is not in ``table``.
    """
    if name not in table:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new_module, new_name = table[name]
    _warn(f"{module}.{name}", f"{new_module}.{new_name}", stacklevel=4)
    return getattr(importlib.import_module(new_module), new_name)
