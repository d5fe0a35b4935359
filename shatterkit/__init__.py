"""shatterkit: measure the shattered gradients problem in any PyTorch model.

Balduzzi et al., *The Shattered Gradients Problem: If resnets are the answer, then what is the
question?*, ICML 2017 (arXiv:1702.08591).
"""

__version__ = "0.1.0"

from shatterkit import inputs
from shatterkit._packing import unpack_patterns
from shatterkit.probes import (
    ActivationProbe,
    GradientProbe,
    activation_patterns,
    input_gradients,
)

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
]
