"""``stochgrad offpolicy`` (transitional: forwards to the old implementation)."""

import importlib


def add_arguments(p):
    importlib.import_module("stochgrad.apps.offpolicy").add_arguments(p)


def run(args, console):
    return importlib.import_module("stochgrad.apps.offpolicy").run(args, console)
