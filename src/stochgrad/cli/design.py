"""``stochgrad design`` (transitional: forwards to the old implementation)."""

import importlib


def add_eig_arguments(p):
    importlib.import_module("stochgrad.apps.design").add_eig_arguments(p)


def run_eig(args, console):
    return importlib.import_module("stochgrad.apps.design").run_eig(args, console)


def add_optimize_arguments(p):
    importlib.import_module("stochgrad.apps.design").add_optimize_arguments(p)


def run_optimize(args, console):
    return importlib.import_module("stochgrad.apps.design").run_optimize(args, console)
