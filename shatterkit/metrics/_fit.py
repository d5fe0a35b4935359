"""Fit how gradient correlations decay with depth: exponential or power law?"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from shatterkit._dims import DEPTH, param_error, safe_attrs
from shatterkit.metrics._common import set_attrs

__all__ = ["fit_covariance_decay"]


def _ols(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least squares ``y = b0 + b1 x``: coefficients, slope standard error, R², AIC."""
    m = x.size
    dx = x - x.mean()
    sxx = float(dx @ dx)
    b1 = float(dx @ (y - y.mean())) / sxx
    b0 = float(y.mean() - b1 * x.mean())
    ssr = float(((y - b0 - b1 * x) ** 2).sum())
    sst = float(((y - y.mean()) ** 2).sum())
    stderr = np.sqrt(ssr / (m - 2) / sxx) if m > 2 else np.nan
    r2 = 1 - ssr / sst if sst > 0 else np.nan
    # Gaussian errors on the log scale with the variance profiled out, k = 2 coefficients;
    # the floor keeps a perfect fit finite (and preferred) instead of -inf
    aic = m * np.log(max(ssr / m, np.finfo(np.float64).tiny)) + 2 * 2
    return {"b0": b0, "b1": b1, "stderr": float(stderr), "r2": float(r2), "aic": float(aic)}


def _depth_coord(da: xr.DataArray, dim: str, caller: str) -> xr.DataArray:
    """The depths along ``dim``: its own numeric coord, else a ``depth`` coord on it."""
    for name in (dim, DEPTH):
        if name in da.coords and da[name].dims == (dim,) and da[name].dtype.kind in "fiu":
            return da[name]
    raise param_error(
        "da",
        caller,
        f"a DataArray with numeric coordinate values along {dim!r} (or a 'depth' coord on it)",
        da,
    )


def _theory_values(theory: Any, da: xr.DataArray, dim: str, caller: str) -> np.ndarray:
    """``theory`` at the depths of ``da``, NaN where it has none."""
    names = " or ".join(repr(d) for d in dict.fromkeys((dim, DEPTH)))
    expected = f"None or a DataArray with one indexed dim, {names}"
    if not isinstance(theory, xr.DataArray) or theory.ndim != 1:
        raise param_error("theory", caller, expected, theory, exc=TypeError)
    (tdim,) = theory.dims
    if tdim not in (dim, DEPTH) or tdim not in theory.indexes:
        raise param_error("theory", caller, expected, theory)
    labels = (da[dim] if tdim == dim else _depth_coord(da, dim, caller)).values
    return np.asarray(theory.reindex({tdim: labels}).values, dtype=np.float64)


def fit_covariance_decay(
    da: xr.DataArray, *, dim: str = "depth", theory: xr.DataArray | None = None
) -> xr.Dataset:
    r"""Fit correlations measured at several depths to an exponential and to a power law.

    The paper's theorems predict exponential decay :math:`\rho = 2^{-L}` for feedforward nets
    and :math:`((1 + \beta^2/2) / (1 + \beta^2))^L` for resnets without BN, but sublinear
    decay :math:`\sim L^{-1/2}` for resnets with BN (PAPER.md, "Theorems: covariance of gradients
    at two inputs"). This fits both shapes to measurements and says which fits better:

    - exponential :math:`\rho = a r^L`: least squares of :math:`\log \rho` on :math:`L`;
    - power law :math:`\rho = a L^{-\alpha}`: least squares of :math:`\log \rho` on
      :math:`\log L`.

    Both are fitted to the same points (the mean correlation at each depth), so their AIC
    compare: :math:`\mathrm{AIC} = m \log(\mathrm{SSR} / m) + 2k` with :math:`m` points,
    :math:`k = 2` coefficients and SSR the residual sum of squares on the log scale (Gaussian
    errors on :math:`\log \rho`). ``preferred`` is the model with the lower AIC.

    Parameters
    ----------
    da : xarray.DataArray
        Correlations with dim ``dim``; every other dim holds replicates (models, sample pairs,
        seeds), averaged before the fit.
    dim : str
        The depth dim. Its coordinate values are the depths :math:`L`; a non-numeric dim (e.g.
        ``layer``) uses its ``depth`` coord.
    theory : xarray.DataArray, optional
        A prediction over ``dim``, or over ``depth`` when ``dim`` is e.g. ``layer`` (as from
        :mod:`shatterkit.theory`), stored as variable ``theory`` (NaN where it lacks a depth).

    Returns
    -------
    xarray.Dataset
        Over ``dim``: ``measured`` (mean over replicates), ``measured_std`` (population std over
        replicates, 0 without any), ``exponential`` and ``power_law`` (the fitted curves; the
        power law is NaN at depth <= 0), optionally ``theory``; scalars ``exp_a``, ``exp_r``,
        ``exp_r_stderr`` (delta method: :math:`r` times the standard error of :math:`\log r`),
        ``exp_r2``, ``exp_aic``, ``pow_a``, ``pow_alpha``, ``pow_alpha_stderr``, ``pow_r2``,
        ``pow_aic`` (R² and AIC on the log scale); attrs ``preferred`` (``"exponential"`` or
        ``"power_law"``) and ``n_points``.

    Raises
    ------
    ValueError
        If fewer than two depths have a positive depth and a positive mean correlation.

    Warns
    -----
    RuntimeWarning
        Naming the depths left out of both fits: non-positive mean correlations (no logarithm)
        and depths <= 0 (no power law). Standard errors need three points (NaN with two).

    See Also
    --------
    shatterkit.theory.feedforward_correlation : The prediction 2**-L.
    shatterkit.theory.resnet_bn_correlation : The prediction 1 / sqrt(1 + beta**2 L).

    Notes
    -----
    Computed eagerly.

    Examples
    --------
    >>> from shatterkit import metrics, theory
    >>> rho = theory.resnet_correlation([1, 2, 4, 8, 16], beta=1.0)
    >>> fit = metrics.fit_covariance_decay(rho)
    >>> round(float(fit["exp_r"]), 4), fit.attrs["preferred"]
    (0.75, 'exponential')
    """
    caller = "fit_covariance_decay"
    if not isinstance(da, xr.DataArray):
        raise param_error("da", caller, "an xarray.DataArray of correlations", da, exc=TypeError)
    if not isinstance(dim, str) or dim not in da.dims:
        raise param_error("dim", caller, f"one of the dims of da {tuple(map(str, da.dims))}", dim)
    labels = np.asarray(_depth_coord(da, dim, caller).values)
    depth = labels.astype(np.float64)
    reps = [d for d in da.dims if d != dim]
    values = da.astype(np.float64)
    measured = values.mean(reps) if reps else values
    spread = values.std(reps, ddof=0) if reps else xr.zeros_like(values)
    y_all = np.asarray(measured.values)

    positive = np.isfinite(y_all) & (y_all > 0)
    keep = positive & (depth > 0)
    if not positive.all():
        warnings.warn(
            f"{caller}: left out {dim} {labels[~positive].tolist()} whose mean correlation is not "
            f"positive ({y_all[~positive].tolist()}): its logarithm is undefined.",
            RuntimeWarning,
            stacklevel=2,
        )
    if not (depth[positive] > 0).all():
        warnings.warn(
            f"{caller}: left out {dim} {labels[positive & (depth <= 0)].tolist()} from both fits: "
            "a power law L**-alpha is undefined at depth <= 0.",
            RuntimeWarning,
            stacklevel=2,
        )
    if keep.sum() < 2:
        raise param_error(
            "da", caller, "correlations at two or more positive depths with positive mean", da
        )
    x, y = depth[keep], np.log(y_all[keep])
    exp, pw = _ols(x, y), _ols(np.log(x), y)
    exp_a, exp_r = np.exp(exp["b0"]), np.exp(exp["b1"])
    pow_a, pow_alpha = np.exp(pw["b0"]), -pw["b1"]
    with np.errstate(divide="ignore"):
        power_curve = np.where(depth > 0, pow_a * np.abs(depth) ** -pow_alpha, np.nan)

    coords = {k: v for k, v in measured.coords.items() if dim in v.dims}
    curve_attrs = {"units": "1"}
    out = xr.Dataset(
        {
            "measured": set_attrs(measured, long_name="measured correlation", units="1"),
            "measured_std": set_attrs(
                spread, long_name="measured correlation, std over replicates", units="1"
            ),
            "exponential": (
                (dim,),
                exp_a * exp_r**depth,
                {"long_name": "exponential fit a r**L", **curve_attrs},
            ),
            "power_law": (
                (dim,),
                power_curve,
                {"long_name": "power-law fit a L**-alpha", **curve_attrs},
            ),
            "exp_a": ((), exp_a, {"long_name": "exponential fit prefactor a", "units": "1"}),
            "exp_r": ((), exp_r, {"long_name": "exponential fit rate r per layer", "units": "1"}),
            "exp_r_stderr": (
                (),
                exp_r * exp["stderr"],
                {"long_name": "standard error of r", "units": "1"},
            ),
            "exp_r2": (
                (),
                exp["r2"],
                {"long_name": "R**2 of the exponential fit (log scale)", "units": "1"},
            ),
            "exp_aic": (
                (),
                exp["aic"],
                {"long_name": "AIC of the exponential fit (log scale)", "units": "1"},
            ),
            "pow_a": ((), pow_a, {"long_name": "power-law fit prefactor a", "units": "1"}),
            "pow_alpha": (
                (),
                pow_alpha,
                {"long_name": "power-law fit exponent alpha", "units": "1"},
            ),
            "pow_alpha_stderr": (
                (),
                pw["stderr"],
                {"long_name": "standard error of alpha", "units": "1"},
            ),
            "pow_r2": (
                (),
                pw["r2"],
                {"long_name": "R**2 of the power-law fit (log scale)", "units": "1"},
            ),
            "pow_aic": (
                (),
                pw["aic"],
                {"long_name": "AIC of the power-law fit (log scale)", "units": "1"},
            ),
        },
        coords=coords,
    )
    if theory is not None:
        out["theory"] = ((dim,), _theory_values(theory, da, dim, caller), safe_attrs(theory.attrs))
    out.attrs = {
        "preferred": "exponential" if exp["aic"] <= pw["aic"] else "power_law",
        "n_points": int(keep.sum()),
    }
    return out
