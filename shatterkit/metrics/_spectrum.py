"""Power spectrum of the gradient along a path, and its log-log slope (brown: 2, white: 0)."""

from __future__ import annotations

import warnings
from typing import Any, cast

import numpy as np
import xarray as xr

from shatterkit._dims import FREQUENCY, SAMPLE, param_error
from shatterkit.metrics._common import (
    check_bool,
    deviations,
    gradient_kernel,
    gradients,
    is_lazy,
    model_mean,
    model_mean_std,
    require_finite,
    sort_by_t,
    stack_layers,
)

__all__ = ["power_spectrum", "spectral_exponent"]

#: default fit band, in cycles per sample: from DEFAULT_LOW_CYCLES / n to DEFAULT_HIGH
DEFAULT_LOW_CYCLES = 4
DEFAULT_HIGH = 0.25


def _periodogram_kernel(x: np.ndarray, *, rtol: float) -> np.ndarray:
    d, _ = deviations(x, rtol)
    n = d.shape[-2]
    spectrum = np.fft.rfft(d, axis=-2)[..., 1 : n // 2 + 1, :]
    return (np.abs(spectrum) ** 2).mean(-1) / n


def _per_model_power(ds: Any, caller: str, skipna: Any) -> tuple[dict[str, xr.DataArray], dict]:
    grads = gradients(ds, caller, min_samples=2)
    skipna = check_bool(skipna, "skipna", caller)
    power = {}
    for name, da in grads.items():
        da = require_finite(sort_by_t(da), caller, skipna)
        n = da.sizes[SAMPLE]
        p = gradient_kernel(da, _periodogram_kernel, FREQUENCY, n // 2)
        freq = np.arange(1, n // 2 + 1) / n
        power[name] = p.assign_coords(
            {FREQUENCY: (FREQUENCY, freq, {"long_name": "frequency", "units": "cycles / sample"})}
        )
    return power, grads


def power_spectrum(ds: xr.Dataset, *, skipna: bool = False) -> xr.DataArray:
    r"""Power spectrum of the gradient along a path (periodogram, mean over features and models).

    With samples in path order (sorted by ``t`` when present), :math:`d_i = g_i - m` the
    de-meaned gradient and :math:`\hat d_k = \sum_i d_i e^{-2\pi i k i / n}` its discrete Fourier
    transform along the path, per feature,

    .. math:: P(f_k) = \frac{1}{n} \left|\hat d_k\right|^2,
              \qquad f_k = k / n,\ k = 1, \dots, \lfloor n/2 \rfloor,

    averaged over the gradient's feature dims and over ``model``. Brown noise gives
    :math:`P \propto f^{-2}`, white noise a flat spectrum (PAPER.md, "The phenomenon").

    Parameters
    ----------
    ds : xarray.Dataset
        A gradient Dataset, samples equally spaced along a path.
    skipna : bool
        Treat samples whose gradient holds NaN or inf as missing (set to the mean gradient)
        instead of raising.

    Returns
    -------
    xarray.DataArray
        ``power`` with dims ``(layer,) frequency`` (cycles per sample; the zero frequency, always
        0 after de-meaning, is left out), averaged over ``model``.

    Raises
    ------
    ValueError
        If the gradients hold NaN or inf and ``skipna`` is False.

    See Also
    --------
    spectral_exponent : The log-log slope of this spectrum.

    Notes
    -----
    No taper (a rectangular window): the jump between the two ends of a random walk leaks power
    as :math:`f^{-2}`, the walk's own law, so a taper gains nothing for exponents up to 2 and costs
    variance; spectra steeper than :math:`f^{-2}` read as about :math:`f^{-2}`. A gradient
    constant up to rounding has zero power (see :func:`autocorrelation`). Lazy with dask.

    Examples
    --------
    >>> from shatterkit import metrics, noise
    >>> p = metrics.power_spectrum(noise.white(64, seed=0))
    >>> p.dims, p.sizes["frequency"], float(p["frequency"][-1])
    (('frequency',), 32, 0.5)
    """
    caller = "power_spectrum"
    power, grads = _per_model_power(ds, caller, skipna)
    out = stack_layers({k: model_mean(v) for k, v in power.items()}, grads)
    out.name = "power"
    out.attrs = {"long_name": "gradient power spectral density", "units": "gradient**2 * sample"}
    return out


def _check_band(band: Any, n: int, caller: str) -> tuple[float, float]:
    freq = np.arange(1, n // 2 + 1) / n
    if band is None:
        low, high = DEFAULT_LOW_CYCLES / n, DEFAULT_HIGH
        if np.count_nonzero((freq >= low) & (freq <= high)) < 2:
            raise param_error(
                "ds",
                caller,
                "a Dataset with at least 20 samples for the default band (4 / n, 1 / 4), or "
                "pass an explicit band",
                n,
            )
        return low, high
    expected = (
        "None or a pair (low, high) of frequencies with 0 < low < high <= 0.5 (cycles / sample)"
    )
    try:
        low, high = (float(b) for b in band)
    except (TypeError, ValueError):
        raise param_error("band", caller, expected, band) from None
    if not 0 < low < high <= 0.5:
        raise param_error("band", caller, expected, band)
    if np.count_nonzero((freq >= low) & (freq <= high)) < 2:
        raise param_error(
            "band",
            caller,
            f"a band holding at least 2 of the {n // 2} frequencies k / {n} of the spectrum",
            band,
        )
    return low, high


def _loglog_slope(power: xr.DataArray, low: float, high: float) -> xr.DataArray:
    """Least-squares slope of log P against log f over the band, per remaining dims."""
    p = power.sel({FREQUENCY: slice(low, high)})
    y = cast(xr.DataArray, np.log(p.where(p > 0)))
    x = cast(xr.DataArray, np.log(p[FREQUENCY])).where(y.notnull())
    dx = x - x.mean(FREQUENCY)
    dy = y - y.mean(FREQUENCY)
    slope = (dx * dy).sum(FREQUENCY) / (dx**2).sum(FREQUENCY)
    return slope.where(y.count(FREQUENCY) >= 2)


def spectral_exponent(
    ds: xr.Dataset, *, band: tuple[float, float] | None = None, skipna: bool = False
) -> xr.Dataset:
    r"""Exponent :math:`\alpha` of a power-law spectrum :math:`P(f) \propto f^{-\alpha}`.

    White noise has :math:`\alpha = 0`, brown noise :math:`\alpha = 2` (PAPER.md, "The
    phenomenon"): the exponent places a gradient between the two references. Per model, the
    spectrum of :func:`power_spectrum` (mean over features) is fitted by ordinary least squares
    of :math:`\log P(f_k)` on :math:`\log f_k` over the frequencies :math:`f_k` in the band;
    :math:`\alpha` is minus the slope.

    Parameters
    ----------
    ds : xarray.Dataset
        A gradient Dataset, samples equally spaced along a path.
    band : (float, float), optional
        Fit band ``(low, high)`` in cycles per sample, ``0 < low < high <= 0.5``. Default
        ``(4 / n, 1 / 4)``: above the lowest frequencies, which a few periodogram values
        dominate, and below the Nyquist region, where a discrete random walk's spectrum
        :math:`1 / (4 \sin^2 \pi f)` bends away from :math:`f^{-2}`. With it white noise gives
        0 and brown noise 2 to within about 0.05 at ``n = 4096`` (0.3 at ``n = 256``).
    skipna : bool
        Treat samples whose gradient holds NaN or inf as missing instead of raising.

    Returns
    -------
    xarray.Dataset
        ``spectral_exponent`` (mean over ``model``) and ``spectral_exponent_std`` (population
        standard deviation over ``model``; 0 for one model), dims ``(layer,)``; attrs
        ``band_low``, ``band_high`` (cycles per sample).

    Raises
    ------
    ValueError
        If ``band`` holds fewer than two frequencies, or the gradients hold NaN or inf and
        ``skipna`` is False.

    Warns
    -----
    RuntimeWarning
        When the exponent is undefined (NaN) because a spectrum has no power in the band, e.g.
        for a constant gradient (numpy-backed input only).

    See Also
    --------
    power_spectrum : The spectrum it fits.
    shattering_index : A lag-1 summary of the same gradients.

    Notes
    -----
    Lazy with dask (the warning is then not given).

    Examples
    --------
    >>> from shatterkit import metrics, noise
    >>> se = metrics.spectral_exponent(noise.brown(4096, seed=0))
    >>> round(float(se["spectral_exponent"]), 1), float(se.attrs["band_high"])
    (2.0, 0.25)
    """
    caller = "spectral_exponent"
    power, grads = _per_model_power(ds, caller, skipna)
    n = next(iter(grads.values())).sizes[SAMPLE]
    low, high = _check_band(band, n, caller)
    attrs = {"long_name": "spectral exponent alpha of P(f) ~ f**-alpha", "units": "1"}
    per_layer = {
        name: model_mean_std(-_loglog_slope(p, low, high), "spectral_exponent", attrs)
        for name, p in power.items()
    }
    out = stack_layers(per_layer, grads)
    out.attrs = {"band_low": low, "band_high": high}
    exponent = out["spectral_exponent"]
    if not is_lazy(exponent) and bool(exponent.isnull().any()):
        warnings.warn(
            f"{caller}: the exponent is undefined (NaN) where a spectrum has no power in the band "
            f"[{low:g}, {high:g}] cycles / sample, e.g. for a gradient that is constant along the "
            "path.",
            RuntimeWarning,
            stacklevel=2,
        )
    return out
