"""Policies and value networks of the policy-gradient trainer: small MLPs over flat observations.

* :class:`CategoricalPolicy`: a softmax over ``Discrete`` actions;
* :class:`GaussianPolicy`: a diagonal Gaussian over flat ``Box`` actions, state-free log-sd;
* :func:`make_policy`: the one that fits a gymnasium environment's spaces.

Each policy has ``dist(obs)`` (a ``torch.distributions`` object for log-probabilities and
entropies), ``sample(obs, generator)`` (explicit randomness) and ``mode(obs)``.

>>> import torch
>>> pi = CategoricalPolicy(obs_dim=4, n_actions=2, hidden=8)
>>> pi.sample(torch.zeros(3, 4), torch.Generator().manual_seed(0)).shape
torch.Size([3])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CategoricalPolicy", "GaussianPolicy", "make_policy", "mlp"]


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """A fully connected network ``sizes[0] -> ... -> sizes[-1]``, ``activation`` between."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class CategoricalPolicy(nn.Module):
    """:math:`\\pi(a|s) = \\mathrm{softmax}(f_\\theta(s))_a` over ``n_actions`` actions."""

    discrete = True

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64):
        super().__init__()
        self.net = mlp([obs_dim, hidden, hidden, n_actions])

    def dist(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.Categorical(logits=self.net(obs))

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(self.net(obs), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).argmax(-1)


class GaussianPolicy(nn.Module):
    """:math:`\\pi(a|s) = \\mathcal N(\\mu_\\theta(s), \\mathrm{diag}\\, e^{2\\ell})`, a state-free
    log-sd."""

    discrete = False

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 64, log_std: float = 0.0):
        super().__init__()
        self.net = mlp([obs_dim, hidden, hidden, act_dim])
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std)))

    def dist(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        mean = self.net(obs)
        return torch.distributions.Independent(
            torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean)), 1
        )

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean = self.net(obs)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + self.log_std.exp() * noise

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def make_policy(env, hidden: int) -> nn.Module:
    """A categorical policy for ``Discrete`` actions, a Gaussian one for ``Box`` actions."""
    import gymnasium as gym

    obs_space, act_space = env.single_observation_space, env.single_action_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"env_id: expected a flat Box observation space, got {obs_space}")
    obs_dim = int(obs_space.shape[0])
    if isinstance(act_space, gym.spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(act_space.n), hidden)
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        return GaussianPolicy(obs_dim, int(act_space.shape[0]), hidden)
    raise ValueError(f"env_id: expected Discrete or flat Box actions, got {act_space}")
