"""``stochgrad telegraph`` (transitional: forwards to the old implementation)."""

import importlib


def add_fit_arguments(p):
    importlib.import_module("stochgrad.apps.telegraph").add_fit_arguments(p)


def run_fit(args, console):
    return importlib.import_module("stochgrad.apps.telegraph").run_fit(args, console)


def add_simulate_arguments(p):
    importlib.import_module("stochgrad.apps.telegraph").add_simulate_arguments(p)


def run_simulate(args, console):
    return importlib.import_module("stochgrad.apps.telegraph").run_simulate(args, console)


def add_recover_arguments(p):
    importlib.import_module("stochgrad.apps.telegraph").add_recover_arguments(p)


def run_recover(args, console):
    return importlib.import_module("stochgrad.apps.telegraph").run_recover(args, console)
