"""Shared fixtures: a seeded rng, tiny models of each family, figure cleanup."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _init(module: nn.Module, seed: int) -> nn.Module:
    g = _seeded(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.7)
    return module


class ResidualMLP(nn.Module):
    def __init__(self, width: int = 6, blocks: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(2, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.relu = nn.ReLU()
        self.out = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(self.relu(h))  # one ReLU module called once per block
        return self.out(h)


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = torch.nn.functional.relu(self.conv2(h))
        return self.head(h.mean((2, 3)))


def make_model(kind: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Module:
    """Tiny models of each family, deterministic and in ``dtype``."""
    if kind == "mlp":
        net: nn.Module = nn.Sequential(
            nn.Linear(2, 7), nn.ReLU(), nn.Linear(7, 5), nn.LeakyReLU(0.1), nn.Linear(5, 1)
        )
    elif kind == "conv":
        net = ConvNet()
    elif kind == "residual":
        net = ResidualMLP()
    elif kind == "batchnorm":
        net = nn.Sequential(
            nn.Linear(2, 6),
            nn.BatchNorm1d(6),
            nn.ReLU(inplace=True),
            nn.Linear(6, 6),
            nn.BatchNorm1d(6),
            nn.ReLU(),
            nn.Linear(6, 1),
        )
    else:  # pragma: no cover - test typo
        raise KeyError(kind)
    return _init(net, seed).to(dtype)


def model_inputs(kind: str, n: int = 20, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = _seeded(seed + 100)
    shape = (n, 2, 5, 5) if kind == "conv" else (n, 2)
    return torch.randn(shape, generator=g, dtype=dtype)


def snapshot(model: nn.Module) -> dict:
    """Everything a probe must leave as it found it."""
    return {
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in model.modules()
        ),
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    for kind in ("params", "buffers"):
        assert before[kind].keys() == after[kind].keys()
        for name, value in before[kind].items():
            assert torch.equal(value, after[kind][name]), f"{kind} {name} changed"


def function_mode_per_batch(probe, model, x, **kwargs) -> list[bool]:
    """Whether each batch of ``probe(model, x, **kwargs)`` ran under the probe's function mode.

    Read from the probe's own decision (the engine's ``forward`` wrapped), not from a hook on
    the model: a hook of the user's own keeps the mode on by design.
    """
    from shatterkit.probes import _activations, _engine, _gradients

    seen: list[bool] = []
    original = _engine.forward

    def spy(model_, mode, *args, **kw):
        seen.append(not mode.passthrough)
        return original(model_, mode, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_activations, "forward", spy)
        mp.setattr(_gradients, "forward", spy)
        probe(model, x, **kwargs)
    return seen
