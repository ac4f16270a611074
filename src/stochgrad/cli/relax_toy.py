"""``stochgrad relax-toy`` (transitional: forwards to the old implementation)."""

import importlib


def add_arguments(p):
    importlib.import_module("stochgrad.cli._legacy")._relax_toy_arguments(p)


def run(args, console):
    return importlib.import_module("stochgrad.cli._legacy").run_relax_toy(args, console)
