"""shatterkit: measure the shattered gradients problem in any PyTorch model.

Balduzzi et al., *The Shattered Gradients Problem: If resnets are the answer, then what is the
question?*, ICML 2017 (arXiv:1702.08591).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from shatterkit import inputs, metrics, models, noise, theory
from shatterkit._packing import unpack_patterns
from shatterkit.probes import (
    ActivationProbe,
    GradientProbe,
    activation_patterns,
    input_gradients,
)

#: subpackages imported on first use (matplotlib, torchvision and training code are heavy)
_LAZY = ("plot", "vision", "experiments", "reproduce")

__all__ = [
    "__version__",
    # probes
    "GradientProbe",
    "ActivationProbe",
    "input_gradients",
    "activation_patterns",
    "unpack_patterns",
    # subpackages
    "inputs",
    "metrics",
    "models",
    "noise",
    "theory",
    "plot",
    "vision",
    "experiments",
    "reproduce",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"shatterkit.{name}")
    raise AttributeError(f"module 'shatterkit' has no attribute {name!r}")
