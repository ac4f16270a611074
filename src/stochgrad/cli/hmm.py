"""``stochgrad hmm`` (transitional: forwards to the old implementation)."""

import importlib


def add_fit_arguments(p):
    importlib.import_module("stochgrad.apps.hmm").add_fit_arguments(p)


def run_fit(args, console):
    return importlib.import_module("stochgrad.apps.hmm").run_fit(args, console)
