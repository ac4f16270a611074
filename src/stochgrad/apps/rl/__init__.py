"""Reinforcement learning: policy gradients on small MDPs where the exact answer is known."""
