"""Autocorrelation of the gradient along a path, and the shattering index built on it."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from shatterkit._dims import LAG, SAMPLE
from shatterkit.metrics._common import (
    check_bool,
    check_max_lag,
    default_max_lag,
    deviations,
    gradient_kernel,
    gradients,
    model_mean,
    model_mean_std,
    require_finite,
    set_attrs,
    sort_by_t,
    stack_layers,
)

__all__ = ["autocorrelation", "shattering_index", "shattering_profile"]

#: up to this many lags the sums are taken directly (exact); beyond, through the FFT
_DIRECT_MAX_LAG = 64

_INDEX_ATTRS = {"long_name": "shattering index 1 - rho(1)", "units": "1"}


def _acf_kernel(x: np.ndarray, *, rtol: float, max_lag: int) -> np.ndarray:
    d, valid = deviations(x, rtol)
    n = d.shape[-2]
    if max_lag > _DIRECT_MAX_LAG:
        # sum_i <d_i, d_{i+k}> for every k at once: O(n log n) instead of O(n * max_lag)
        spectrum = np.fft.rfft(d, n=2 * n, axis=-2)
        power = (spectrum * spectrum.conj()).real.sum(-1)
        sums = np.fft.irfft(power, n=2 * n, axis=-1)[..., : max_lag + 1]
    else:
        sums = np.stack(
            [
                np.einsum("...nf,...nf->...", d[..., : n - k, :], d[..., k:, :])
                for k in range(max_lag + 1)
            ],
            axis=-1,
        )
    denom = sums[..., :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(denom > 0, sums / denom, 1.0)
    return np.where((valid.sum(-1) >= 2)[..., None], rho, np.nan)


def _per_model_acf(da: xr.DataArray, caller: str, skipna: bool, max_lag: int) -> xr.DataArray:
    da = require_finite(sort_by_t(da), caller, skipna)
    out = gradient_kernel(da, _acf_kernel, LAG, max_lag + 1, max_lag=max_lag)
    return out.assign_coords({LAG: np.arange(max_lag + 1)})


def _lag1_per_layer(ds: Any, caller: str, skipna: bool) -> tuple[dict[str, xr.DataArray], dict]:
    grads = gradients(ds, caller, min_samples=2)
    skipna = check_bool(skipna, "skipna", caller)
    rho1 = {
        name: _per_model_acf(da, caller, skipna, 1).sel({LAG: 1}, drop=True)
        for name, da in grads.items()
    }
    return rho1, grads


def autocorrelation(
    ds: xr.Dataset, *, max_lag: int | None = None, skipna: bool = False
) -> xr.DataArray:
    r"""Autocorrelation of the gradient along a path, as a function of the lag.

    For each model, with samples in path order (sorted by ``t`` when present) and
    :math:`m = \frac1n \sum_i g_i` the mean gradient,

    .. math:: \rho(k) = \frac{\sum_{i=0}^{n-1-k} \langle g_i - m, g_{i+k} - m \rangle}
              {\sum_{i=0}^{n-1} \lVert g_i - m \rVert^2},

    the inner product running over the gradient's feature dims; then the mean over ``model``.
    Brown noise gives :math:`\rho(k)` close to 1 at small lags; white noise gives
    :math:`\rho(k) \approx 0` for :math:`k \ge 1` (PAPER.md, "The phenomenon").

    Parameters
    ----------
    ds : xarray.Dataset
        A gradient Dataset (``gradient`` and optionally ``gradient:<layer>`` variables, dims
        ``(model,) sample, *features``), samples along a path.
    max_lag : int, optional
        Largest lag, in samples, in ``[1, n - 1]``. Default ``n // 4``: longer lags average too
        few pairs to be stable.
    skipna : bool
        Leave out samples whose gradient holds NaN or inf (they contribute nothing to the sums)
        instead of raising.

    Returns
    -------
    xarray.DataArray
        ``autocorrelation`` with dims ``(layer,) lag``; ``layer`` (coord ``depth``) only when
        ``ds`` holds layer gradients.

    Raises
    ------
    ValueError
        If the gradients hold NaN or inf and ``skipna`` is False (with dask: when computed).

    See Also
    --------
    shattering_index : One minus the lag-1 autocorrelation.
    power_spectrum : The same information over frequency.

    Notes
    -----
    A gradient that is constant along the path (a linear model) has zero denominator; its
    autocorrelation is 1 at every lag by definition: it is as smooth as a gradient can be. A
    gradient whose deviations from its mean are within 64 ulps of its magnitude (relative RMS)
    counts as constant, so rounding noise is not read as white noise. Lazy with dask.

    Examples
    --------
    >>> from shatterkit import metrics, noise
    >>> rho = metrics.autocorrelation(noise.brown(1024, seed=0), max_lag=4)
    >>> rho.dims, bool(rho.sel(lag=1) > 0.99)
    (('lag',), True)
    """
    caller = "autocorrelation"
    grads = gradients(ds, caller, min_samples=2)
    skipna = check_bool(skipna, "skipna", caller)
    n = next(iter(grads.values())).sizes[SAMPLE]
    max_lag = check_max_lag(max_lag, n, caller) or default_max_lag(n)
    results = {}
    for name, da in grads.items():
        rho = _per_model_acf(da, caller, skipna, max_lag)
        results[name] = model_mean(rho)
    out = stack_layers(results, grads)
    out.name = "autocorrelation"
    out.attrs = {"long_name": "gradient autocorrelation", "units": "1"}
    out[LAG].attrs = {"long_name": "lag", "units": "samples"}
    return out


def shattering_index(ds: xr.Dataset, *, skipna: bool = False) -> xr.Dataset:
    r"""Shattering index :math:`1 - \rho(1)`: 0 for a smooth gradient, 1 for white noise.

    :math:`\rho(1)` is the lag-1 :func:`autocorrelation` of the gradient along the path, per
    model. The index lies in :math:`[0, 2]`; brown noise gives about :math:`3/n`, white noise
    about 1, anticorrelated steps more than 1 (PAPER.md, "The phenomenon").

    Parameters
    ----------
    ds : xarray.Dataset
        A gradient Dataset, samples along a path (sorted by ``t`` when present).
    skipna : bool
        Leave out samples whose gradient holds NaN or inf instead of raising.

    Returns
    -------
    xarray.Dataset
        ``shattering_index`` (mean over ``model``) and ``shattering_index_std`` (population
        standard deviation over ``model``; 0 for one model), dims ``(layer,)``.

    Raises
    ------
    ValueError
        If the gradients hold NaN or inf and ``skipna`` is False.

    See Also
    --------
    autocorrelation : The autocorrelation at every lag.
    shattering_profile : The index of every layer's gradient.

    Notes
    -----
    Invariant to the scale of the gradient; a constant gradient has index 0 (see
    :func:`autocorrelation`). Lazy with dask.

    Examples
    --------
    >>> from shatterkit import metrics, noise
    >>> si = metrics.shattering_index(noise.white(1024, n_models=3, seed=0))
    >>> round(float(si["shattering_index"]), 1), bool(si["shattering_index_std"] < 0.1)
    (1.0, True)
    """
    rho1, grads = _lag1_per_layer(ds, "shattering_index", skipna)
    per_layer = {
        k: model_mean_std(1 - v, "shattering_index", _INDEX_ATTRS) for k, v in rho1.items()
    }
    return stack_layers(per_layer, grads)


def shattering_profile(ds: xr.Dataset, *, skipna: bool = False) -> xr.Dataset:
    r"""Shattering index and lag-1 autocorrelation of every layer's gradient: a profile in depth.

    Combines :func:`shattering_index` and :math:`\rho(1)` from :func:`autocorrelation` for the
    input gradient (``layer="input"``, ``depth=0``) and each ``gradient:<layer>`` variable; how
    fast the index rises with depth is the paper's shattering (PAPER.md, "Theorems" and "Where
    the library goes beyond the paper").

    Parameters
    ----------
    ds : xarray.Dataset
        A gradient Dataset, samples along a path.
    skipna : bool
        Leave out samples whose gradient holds NaN or inf instead of raising.

    Returns
    -------
    xarray.Dataset
        Over ``layer`` (coord ``depth``), always, even for the input gradient alone:
        ``shattering_index``, ``shattering_index_std`` (over ``model``) and
        ``autocorrelation_lag1`` (mean over ``model``).

    Raises
    ------
    ValueError
        If the gradients hold NaN or inf and ``skipna`` is False.

    See Also
    --------
    shattering_index : The index alone.
    fit_covariance_decay : Fit the decay of a correlation with depth.

    Notes
    -----
    Lazy with dask.

    Examples
    --------
    >>> from shatterkit import metrics, noise
    >>> prof = metrics.shattering_profile(noise.brown(512, seed=1))
    >>> prof["layer"].values.tolist(), bool(prof["shattering_index"].item() < 0.05)
    (['input'], True)
    """
    rho1, grads = _lag1_per_layer(ds, "shattering_profile", skipna)
    per_layer = {}
    for name, r in rho1.items():
        out = model_mean_std(1 - r, "shattering_index", _INDEX_ATTRS)
        lag1 = model_mean(r)
        out["autocorrelation_lag1"] = set_attrs(
            lag1, long_name="lag-1 gradient autocorrelation", units="1"
        )
        per_layer[name] = out
    return stack_layers(per_layer, grads, always=True)
