"""Axes-level plots of shatterkit results, in seaborn's shape.

Each function takes a result Dataset or DataArray (see ``docs/schema.md``), draws on ``ax`` (the
current Axes by default), labels itself from the data's names and attrs, and returns the Axes.
:func:`figure1` lays out the paper's first figure.
"""

from shatterkit.plot._gradients import covariance, figure1, gradients
from shatterkit.plot._patterns import coactivation, dispersion, patterns
from shatterkit.plot._profiles import autocorrelation, decay, profile

__all__ = [
    # gradients
    "gradients",
    "covariance",
    "figure1",
    # metrics against lag or depth
    "autocorrelation",
    "decay",
    "profile",
    # activation patterns
    "patterns",
    "coactivation",
    "dispersion",
]
