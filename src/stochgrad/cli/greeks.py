"""``stochgrad greeks`` (transitional: forwards to the old implementation)."""

import importlib


def add_arguments(p):
    importlib.import_module("stochgrad.apps.finance").add_arguments(p)


def run(args, console):
    return importlib.import_module("stochgrad.apps.finance").run(args, console)
