"""Metrics: pure functions from gradient or pattern Datasets to labeled results.

Gradient metrics take a gradient Dataset (``GradientProbe``, :mod:`shatterkit.noise`) and give
one result per gradient variable, stacked along ``layer`` when the Dataset holds layer gradients.
Pattern metrics take a pattern Dataset (``ActivationProbe``, bool or packed) and give results
over ``layer``. The layouts are documented in ``docs/schema.md``.

All are pure functions. With dask-backed input every metric stays lazy except
:func:`correlation_by_distance`, :func:`fit_covariance_decay` and :func:`linear_regions`, which
compute eagerly.
"""

from shatterkit.metrics._autocorrelation import (
    autocorrelation,
    shattering_index,
    shattering_profile,
)
from shatterkit.metrics._covariance import correlation_by_distance, gradient_covariance
from shatterkit.metrics._fit import fit_covariance_decay
from shatterkit.metrics._patterns import activation_rate, coactivation_rate, pattern_dispersion
from shatterkit.metrics._regions import linear_regions
from shatterkit.metrics._spectrum import power_spectrum, spectral_exponent

__all__ = [
    # gradients along a path
    "autocorrelation",
    "shattering_index",
    "shattering_profile",
    "power_spectrum",
    "spectral_exponent",
    # gradients at pairs of samples
    "gradient_covariance",
    "correlation_by_distance",
    "fit_covariance_decay",
    # activation patterns
    "activation_rate",
    "coactivation_rate",
    "pattern_dispersion",
    "linear_regions",
]
