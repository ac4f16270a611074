"""``stochgrad molecules`` (transitional: forwards to the old implementation)."""

import importlib


def add_pretrain_arguments(p):
    importlib.import_module("stochgrad.apps.molecules.cli").add_pretrain_arguments(p)


def run_pretrain(args, console):
    return importlib.import_module("stochgrad.apps.molecules.cli").run_pretrain(args, console)


def add_sample_arguments(p):
    importlib.import_module("stochgrad.apps.molecules.cli").add_sample_arguments(p)


def run_sample(args, console):
    return importlib.import_module("stochgrad.apps.molecules.cli").run_sample(args, console)


def add_optimize_arguments(p):
    importlib.import_module("stochgrad.apps.molecules.cli").add_optimize_arguments(p)


def run_optimize(args, console):
    return importlib.import_module("stochgrad.apps.molecules.cli").run_optimize(args, console)
