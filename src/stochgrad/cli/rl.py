"""``stochgrad rl`` (transitional: forwards to the old implementation)."""

import importlib


def add_train_arguments(p):
    importlib.import_module("stochgrad.apps.rl.policy_gradient").add_train_arguments(p)


def run_train(args, console):
    return importlib.import_module("stochgrad.apps.rl.policy_gradient").run_train(args, console)


def add_eval_arguments(p):
    importlib.import_module("stochgrad.apps.rl.policy_gradient").add_eval_arguments(p)


def run_eval(args, console):
    return importlib.import_module("stochgrad.apps.rl.policy_gradient").run_eval(args, console)


def add_pareto_arguments(p):
    importlib.import_module("stochgrad.apps.rl.multi_objective").add_arguments(p)


def run_pareto(args, console):
    return importlib.import_module("stochgrad.apps.rl.multi_objective").run(args, console)


def add_options_arguments(p):
    importlib.import_module("stochgrad.apps.rl.fourrooms").add_arguments(p)


def run_options(args, console):
    return importlib.import_module("stochgrad.apps.rl.fourrooms").run(args, console)
