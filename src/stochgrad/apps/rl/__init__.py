"""Reinforcement learning: policy gradients on small MDPs where the exact answer is known.

- :mod:`~stochgrad.apps.rl.tabular`: a finite MDP, its exact policy gradient, batched REINFORCE;
- :mod:`~stochgrad.apps.rl.policy_gradient`: REINFORCE and TRPO on gymnasium environments
  (:mod:`~stochgrad.apps.rl.networks`, :mod:`~stochgrad.apps.rl.gym_envs`,
  :mod:`~stochgrad.apps.rl.gym_trainer` hold its pieces; :mod:`~stochgrad.apps.rl.returns`
  keeps the deprecated names of the returns, GAE and loss it had before the engine);
- :mod:`~stochgrad.apps.rl.fourrooms` and :mod:`~stochgrad.apps.rl.option_critic`: the
  four-rooms MDP, its exact solution, tabular option-critic;
- :mod:`~stochgrad.apps.rl.deep_sea` and :mod:`~stochgrad.apps.rl.multi_objective`: Deep Sea
  Treasure, its exact Pareto front, REINFORCE over scalarisation weights.

Every policy gradient here is the engine's: :func:`stochgrad.surrogate.surrogate_loss` with the
returns, advantages and baselines of :mod:`stochgrad.baselines` (``reward_to_go``, ``gae``, the
rules). The experiments over seeds are in :mod:`stochgrad.studies.fourrooms` and
:mod:`stochgrad.studies.pareto`; the command is ``stochgrad rl``.
"""
