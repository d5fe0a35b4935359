"""Tiny model builders for the ``shatterkit probe`` tests, named as ``_cli_models:<function>``."""

from __future__ import annotations

from torch import nn

from shatterkit import models


def tiny_model(seed: int = 0) -> nn.Module:
    """A 3-layer feedforward net with batch norm, 16 units wide, one input, one output."""
    return models.feedforward(3, 16, batchnorm=True, seed=seed)


def two_outputs(seed: int = 0) -> nn.Module:
    """A net with two outputs per sample: the probe needs ``--output``."""
    return models.feedforward(2, 8, out_features=2, seed=seed)


def not_a_model() -> int:
    return 3


#: an image model: its input shape cannot be read off its first layer
conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
