"""Closed-form predictions of the shattered-gradients theorems, as functions of depth.

Each function returns what PAPER.md, "Theorems: covariance of gradients at two inputs,
expectation over random initializations" and "Activation patterns", state; the formulas are the
paper's headline shapes, with constants still to be verified against the paper itself. The
theorems hold under their independence model: every rectifier is on with probability 1/2 on each
input, independently on two distinct inputs (co-active with probability 1/4).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from shatterkit._dims import DEPTH, param_error

__all__ = [
    "coactivation_bn",
    "coactivation_feedforward",
    "feedforward_correlation",
    "resnet_bn_correlation",
    "resnet_correlation",
]

_REFERENCE = (
    "PAPER.md, 'Theorems: covariance of gradients at two inputs, expectation over random "
    "initializations' (Balduzzi et al. 2017, arXiv 1702.08591)"
)


def _depths(depth: Any, caller: str) -> np.ndarray:
    expected = "a non-negative int or a 1-D sequence of them"
    values = np.atleast_1d(np.asarray(depth))
    if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "iu":
        raise param_error("depth", caller, expected, depth, exc=TypeError)
    if (values < 0).any():
        raise param_error("depth", caller, expected, depth)
    return values.astype(np.int64)


def _beta(beta: Any, caller: str) -> float:
    if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, (int, float, np.number)):
        raise param_error("beta", caller, "a finite float >= 0", beta, exc=TypeError)
    if not (np.isfinite(beta) and beta >= 0):
        raise param_error("beta", caller, "a finite float >= 0", beta)
    return float(beta)


def _prediction(values: np.ndarray, depth: np.ndarray, formula: str, **attrs: Any) -> xr.DataArray:
    return xr.DataArray(
        values,
        dims=(DEPTH,),
        coords={DEPTH: depth},
        name="gradient_correlation",
        attrs={
            "long_name": "predicted gradient correlation",
            "units": "1",
            "formula": formula,
            "reference": _REFERENCE,
            **attrs,
        },
    )


def feedforward_correlation(depth: Any) -> xr.DataArray:
    r"""Correlation of the gradients at two inputs of a feedforward rectifier net: :math:`2^{-L}`.

    With He initialization the gradient's variance is preserved, :math:`C(i) = 1`, while each
    layer halves the covariance of two inputs whose units are co-active with probability 1/4:
    :math:`C(i, j) = 2^{-L}`, so :math:`\rho = 2^{-L}`, exponential decay (PAPER.md, "Theorems").

    Parameters
    ----------
    depth : int or sequence of int
        Number of hidden layers :math:`L \ge 0`.

    Returns
    -------
    xarray.DataArray
        ``gradient_correlation`` over ``depth``; attrs ``formula``, ``reference``,
        ``architecture``.

    See Also
    --------
    resnet_correlation : The slower decay of a resnet.
    shatterkit.metrics.fit_covariance_decay : Fit measured decays.

    Examples
    --------
    >>> from shatterkit import theory
    >>> theory.feedforward_correlation([0, 1, 2, 10]).values.tolist()
    [1.0, 0.5, 0.25, 0.0009765625]
    """
    depth = _depths(depth, "feedforward_correlation")
    return _prediction(2.0 ** -depth.astype(np.float64), depth, "2**-L", architecture="feedforward")


def resnet_correlation(depth: Any, beta: float = 1.0) -> xr.DataArray:
    r"""Gradient correlation of a resnet without BN: :math:`((1 + \beta^2/2) / (1 + \beta^2))^L`.

    Each block (identity skip plus a rectifier branch scaled by :math:`\beta`) multiplies the
    gradient's variance by :math:`1 + \beta^2` and the covariance of two inputs by
    :math:`1 + \beta^2/2`; at :math:`\beta = 1` the correlation is :math:`(3/4)^L`, still
    exponential but slower than :func:`feedforward_correlation` (PAPER.md, "Theorems").

    Parameters
    ----------
    depth : int or sequence of int
        Number of residual blocks :math:`L \ge 0`.
    beta : float
        Scale of the residual branch, :math:`\beta \ge 0`.

    Returns
    -------
    xarray.DataArray
        ``gradient_correlation`` over ``depth``; attrs ``formula``, ``reference``,
        ``architecture``, ``beta``.

    See Also
    --------
    feedforward_correlation : Without skip connections.
    resnet_bn_correlation : With BN.

    Examples
    --------
    >>> from shatterkit import theory
    >>> theory.resnet_correlation([0, 1, 2]).values.tolist()
    [1.0, 0.75, 0.5625]
    """
    depth = _depths(depth, "resnet_correlation")
    beta = _beta(beta, "resnet_correlation")
    rate = (1 + beta**2 / 2) / (1 + beta**2)
    return _prediction(
        rate ** depth.astype(np.float64),
        depth,
        "((1 + beta**2 / 2) / (1 + beta**2))**L",
        architecture="resnet",
        beta=beta,
    )


def resnet_bn_correlation(depth: Any, beta: float = 1.0) -> xr.DataArray:
    r"""Gradient correlation of a resnet with BN: :math:`1 / \sqrt{1 + \beta^2 L}`.

    BN rescales each branch by the growing norm of the skip path (variance
    :math:`\sim 1 + l \beta^2` at block :math:`l`), so the per-block factors approach 1 with
    depth and the decay is sublinear: :math:`\sim L^{-1/2}` at :math:`\beta = 1`, and bounded
    away from 0 when :math:`\beta \sim 1/\sqrt{L}`. This is the form PAPER.md states ("Theorems");
    it gives the paper's shape, not a derivation of its exact constants.

    Parameters
    ----------
    depth : int or sequence of int
        Number of residual blocks :math:`L \ge 0`.
    beta : float
        Scale of the residual branch, :math:`\beta \ge 0`.

    Returns
    -------
    xarray.DataArray
        ``gradient_correlation`` over ``depth``; attrs ``formula``, ``reference``,
        ``architecture``, ``beta``.

    See Also
    --------
    resnet_correlation : Without BN.
    shatterkit.metrics.fit_covariance_decay : Fit measured decays.

    Examples
    --------
    >>> from shatterkit import theory
    >>> theory.resnet_bn_correlation([0, 3, 8]).values.tolist()
    [1.0, 0.5, 0.3333333333333333]
    """
    depth = _depths(depth, "resnet_bn_correlation")
    beta = _beta(beta, "resnet_bn_correlation")
    return _prediction(
        1 / np.sqrt(1 + beta**2 * depth),
        depth,
        "1 / sqrt(1 + beta**2 * L)",
        architecture="resnet_bn",
        beta=beta,
    )


def coactivation_bn() -> float:
    """Co-activation rate with BN: 1/4.

    BN keeps each unit on for about half the batch and the patterns of distinct inputs
    independent, so a unit is on for both inputs of a pair with probability
    :math:`1/2 \\cdot 1/2` (PAPER.md, "Activation patterns").

    Returns
    -------
    float
        0.25, to compare with :func:`shatterkit.metrics.coactivation_rate`.

    See Also
    --------
    coactivation_feedforward : Without BN.
    shatterkit.metrics.coactivation_rate : The measured rate.

    Examples
    --------
    >>> from shatterkit import theory
    >>> theory.coactivation_bn()
    0.25
    """
    return 0.25


def coactivation_feedforward() -> float:
    """Co-activation rate of a deep feedforward net without BN: 1/2.

    Without BN the units drift towards being on (or off) for nearly all inputs; with half of
    them always on, a unit is on for both inputs of a pair with probability 1/2 (PAPER.md,
    "Activation patterns").

    Returns
    -------
    float
        0.5, to compare with :func:`shatterkit.metrics.coactivation_rate`.

    See Also
    --------
    coactivation_bn : With BN.
    shatterkit.metrics.coactivation_rate : The measured rate.

    Examples
    --------
    >>> from shatterkit import theory
    >>> theory.coactivation_feedforward()
    0.5
    """
    return 0.5
