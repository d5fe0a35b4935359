"""Probes: scikit-learn estimators over functional cores that return labeled Datasets."""

from shatterkit._packing import unpack_patterns
from shatterkit.probes._activations import ActivationProbe, activation_patterns
from shatterkit.probes._gradients import GradientProbe, input_gradients

__all__ = [
    "ActivationProbe",
    "GradientProbe",
    "activation_patterns",
    "input_gradients",
    "unpack_patterns",
]
