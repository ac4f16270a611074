"""``stochgrad discrete-vae`` (transitional: forwards to the old implementation)."""

import importlib


def add_arguments(p):
    importlib.import_module("stochgrad.cli._legacy")._discrete_vae_arguments(p)


def run(args, console):
    return importlib.import_module("stochgrad.cli._legacy").run_discrete_vae(args, console)
