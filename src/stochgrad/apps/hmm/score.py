"""Deprecated module: the HMM's likelihood gradient is in :mod:`stochgrad.apps.hmm.gradient`.

Its names resolve, with a :class:`DeprecationWarning`, to their replacements there (computed by
:func:`stochgrad.fisher_gradient`); the module will be removed in the next release.
"""

from __future__ import annotations

from typing import Any

from stochgrad import _compat

_MOVED = {
    "fisher_gradient": ("stochgrad.apps.hmm.gradient", "likelihood_gradient"),
    "monte_carlo_gradient": ("stochgrad.apps.hmm.gradient", "sampled_likelihood_gradient"),
}


def __getattr__(name: str) -> Any:
    if name == "complete_data_score":
        from stochgrad.apps.hmm.gradient import _deprecated_complete_data_score

        return _deprecated_complete_data_score(__name__)
    return _compat.moved_attribute(__name__, name, _MOVED)
