"""Seeded weight initialisation shared by the model builders.

Every builder draws its weights from a local :class:`torch.Generator`, never from the global torch
RNG, and creates its layers with :func:`torch.nn.utils.skip_init` so that PyTorch's own default
initialisation (which would consume the global RNG) never runs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from shatterkit._dims import check_int as dims_check_int

#: standard deviation of the biases when a builder is passed ``bias=True``
DEFAULT_BIAS_STD = 1.0


def check_int(value: Any, name: str, caller: str, minimum: int) -> int:
    """Return ``value`` if it is an int ``>= minimum``, else raise the library's standard message
    (a ValueError either way, as the model builders document)."""
    return dims_check_int(value, name, caller, minimum, wrong_type=ValueError)


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed``, or with fresh OS entropy when ``seed`` is None."""
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


def _fan_in(weight: torch.Tensor) -> int:
    return math.prod(weight.shape[1:])


def linear(
    in_features: int,
    out_features: int,
    *,
    gain: float,
    gen: torch.Generator,
    dtype: torch.dtype,
    bias_std: float = 0.0,
) -> nn.Linear:
    """``nn.Linear`` with weights ~ N(0, gain / fan_in) and biases ~ N(0, bias_std²) (none if 0)."""
    layer = nn.utils.skip_init(nn.Linear, in_features, out_features, bias=bias_std > 0, dtype=dtype)
    _normal_(layer, gain=gain, gen=gen, bias_std=bias_std)
    return layer


def conv3x3(
    in_channels: int, out_channels: int, *, gain: float, gen: torch.Generator, dtype: torch.dtype
) -> nn.Conv2d:
    """Bias-free 3×3 ``nn.Conv2d`` (padding 1) with weights ~ N(0, gain / fan_in)."""
    layer = nn.utils.skip_init(
        nn.Conv2d, in_channels, out_channels, 3, padding=1, bias=False, dtype=dtype
    )
    _normal_(layer, gain=gain, gen=gen)
    return layer


@torch.no_grad()
def _normal_(
    layer: nn.Linear | nn.Conv2d, *, gain: float, gen: torch.Generator, bias_std: float = 0.0
) -> None:
    """Draw ``layer.weight`` ~ N(0, gain / fan_in) and ``layer.bias`` ~ N(0, bias_std²) in place."""
    nn.init.normal_(layer.weight, std=math.sqrt(gain / _fan_in(layer.weight)), generator=gen)
    if layer.bias is not None:
        nn.init.normal_(layer.bias, std=bias_std, generator=gen)
