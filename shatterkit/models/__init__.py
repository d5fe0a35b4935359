"""The paper's networks: feedforward and residual rectifier nets, CReLU nets, convnets, ensembles.

Every builder draws its weights from a local generator seeded by ``seed`` and leaves the global
torch RNG untouched.
"""

from shatterkit.models._conv import convnet
from shatterkit.models._crelu import CReLU, looks_linear
from shatterkit.models._ensemble import ensemble
from shatterkit.models._mlp import Centering, ResidualBlock, feedforward, resnet

__all__ = [
    # builders
    "feedforward",
    "resnet",
    "looks_linear",
    "convnet",
    "ensemble",
    # modules
    "CReLU",
    "Centering",
    "ResidualBlock",
]
