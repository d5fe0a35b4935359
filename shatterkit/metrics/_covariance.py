"""Covariance of gradients between pairs of samples, and its decay with input distance."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import xarray as xr

from shatterkit._dims import MODEL, SAMPLE, SAMPLE_OTHER, feature_dims, param_error
from shatterkit.metrics._common import (
    check_bool,
    gradients,
    is_lazy,
    require_finite,
    stack_layers,
)

__all__ = ["correlation_by_distance", "gradient_covariance"]

_OVER = ("model", "features")


def _other_side(da: xr.DataArray) -> xr.DataArray:
    """``da`` with ``sample`` renamed ``sample_other`` and its coords ``c`` renamed ``c_other``."""
    names = {SAMPLE: SAMPLE_OTHER}
    names.update(
        {str(c): f"{c}_other" for c, v in da.coords.items() if v.dims == (SAMPLE,) and c != SAMPLE}
    )
    return da.rename(names)


def _pair_matrix(
    da: xr.DataArray, over: str, normalize: bool, skipna: bool, caller: str
) -> xr.DataArray:
    fdims = feature_dims(da)
    g = da.astype(np.float64)
    if skipna:
        finite = cast(xr.DataArray, np.isfinite(g))
        g = g.where(finite.all(fdims) if fdims else finite)
    ensemble = over == "model" and MODEL in g.dims
    if ensemble and skipna:
        # each pair averages over the models where both samples are finite
        cov = _dot(g, _other_side(g), fdims).mean(MODEL, skipna=True)
        if normalize:
            norm2 = _dot(g, g, fdims).mean(MODEL, skipna=True)
            _warn_zero(norm2, da, caller)
            denom = (norm2 * _other_side(norm2)) ** 0.5
            cov = cov / denom.where(denom > 0)
        return cov.transpose(..., SAMPLE, SAMPLE_OTHER)
    # E over the ensemble folded into the contraction: no (model, sample, sample) temporary
    dims = [*fdims, MODEL] if ensemble else list(fdims)
    if normalize:  # scale every gradient to norm 1 first: one n x n pass (the product)
        norm = _dot(g, g, dims) ** 0.5
        _warn_zero(norm, da, caller)
        g = g / norm.where(norm > 0)
        cov = _dot(g, _other_side(g), dims)
    else:
        cov = _dot(g, _other_side(g), dims) / (g.sizes[MODEL] if ensemble else 1)
    return cov.transpose(..., SAMPLE, SAMPLE_OTHER)


def _dot(a: xr.DataArray, b: xr.DataArray, dims: Sequence[Any]) -> xr.DataArray:
    """``xr.dot`` through BLAS (``einsum(optimize=True)``): 2-3x the speed of the plain einsum."""
    return xr.dot(a, b, dim=dims, optimize=True)


def _warn_zero(norm: xr.DataArray, da: xr.DataArray, caller: str) -> None:
    if not is_lazy(norm) and bool((norm == 0).any()):
        warnings.warn(
            f"{caller}: {int((norm == 0).sum())} zero gradient(s) in {str(da.name)!r} have no "
            "correlation; their rows and columns are NaN.",
            RuntimeWarning,
            stacklevel=4,
        )


def gradient_covariance(
    ds: xr.Dataset, *, over: str = "model", normalize: bool = True, skipna: bool = False
) -> xr.DataArray:
    r"""Covariance (or correlation) of the gradients at every pair of samples.

    With :math:`\langle g_i, g_j \rangle` the inner product over the gradient's feature dims,

    - ``over="model"``: :math:`C(i, j) = \mathbb{E}_{\text{model}} \langle g_i, g_j \rangle`,
      the expectation over the ensemble, uncentred as in the paper's theorems (PAPER.md,
      "Theorems: covariance of gradients at two inputs"); a Dataset without ``model`` dim is an
      ensemble of one.
    - ``over="features"``: :math:`C(i, j) = \langle g_i, g_j \rangle` for each model.

    With ``normalize`` the result is the correlation
    :math:`\rho(i, j) = C(i, j) / \sqrt{C(i, i) C(j, j)}` (for ``over="features"``, the cosine
    similarity of the two gradient vectors). The paper's covariance figure is this matrix over
    the 256 points of its line (PAPER.md, "The paper's basic experiment").

    Parameters
    ----------
    ds : xarray.Dataset
        A gradient Dataset.
    over : {"model", "features"}
        Average over the ensemble, or keep one matrix per model.
    normalize : bool
        Return correlations instead of covariances.
    skipna : bool
        Give NaN rows and columns for samples whose gradient holds NaN or inf (and average over
        the models where both samples are finite) instead of raising.

    Returns
    -------
    xarray.DataArray
        ``gradient_correlation`` (or ``gradient_covariance``) with dims
        ``(model,) (layer,) sample, sample_other`` (``model`` for ``over="features"`` only);
        coords ``t`` and ``t_other`` when ``ds`` has ``t``.

    Raises
    ------
    ValueError
        If ``over`` is not one of the two choices, or the gradients hold NaN or inf and
        ``skipna`` is False.

    Warns
    -----
    RuntimeWarning
        When a zero gradient has no correlation: its row and column are NaN (numpy-backed input
        only).

    See Also
    --------
    correlation_by_distance : Correlations binned by input distance.
    autocorrelation : Correlations along a path, by lag.

    Notes
    -----
    A zero gradient has no correlation: its row is NaN. Memory grows as ``n**2`` per model (per
    layer). Lazy with dask.

    Examples
    --------
    >>> from shatterkit import metrics, noise
    >>> corr = metrics.gradient_covariance(noise.white(100, n_models=50, seed=0))
    >>> corr.dims, round(float(corr[0, 0]), 6), bool(abs(corr[0, 1]) < 0.5)
    (('sample', 'sample_other'), 1.0, True)
    """
    caller = "gradient_covariance"
    grads = gradients(ds, caller)
    if over not in _OVER:
        raise param_error("over", caller, f"one of {_OVER}", over)
    normalize = check_bool(normalize, "normalize", caller)
    skipna = check_bool(skipna, "skipna", caller)
    results = {}
    for name, da in grads.items():  # a loop, not a comprehension: warnings point at the caller
        results[name] = _pair_matrix(
            require_finite(da, caller, skipna), over, normalize, skipna, caller
        )
    out = stack_layers(results, grads)
    out = out.transpose(MODEL, ..., SAMPLE, SAMPLE_OTHER, missing_dims="ignore")
    if normalize:
        out.name = "gradient_correlation"
        out.attrs = {"long_name": "gradient correlation", "units": "1", "over": over}
    else:
        out.name = "gradient_covariance"
        out.attrs = {"long_name": "gradient covariance", "units": "gradient**2", "over": over}
    return out


def _input_rows(inputs: Any, ds: xr.Dataset, n: int, caller: str) -> np.ndarray:
    expected = f"a DataArray with a 'sample' dim or an array with {n} rows, one per sample of ds"
    if isinstance(inputs, xr.DataArray):
        if SAMPLE not in inputs.dims:
            raise param_error("inputs", caller, expected, inputs)
        if SAMPLE in inputs.indexes and SAMPLE in ds.indexes:
            try:
                inputs = inputs.sel({SAMPLE: ds[SAMPLE].values})
            except KeyError:
                raise param_error(
                    "inputs", caller, "a DataArray holding every sample of ds", inputs
                ) from None
        x = np.asarray(inputs.transpose(SAMPLE, ...).values)
    elif isinstance(inputs, (np.ndarray, list, tuple)):
        x = np.asarray(inputs)
    else:
        raise param_error("inputs", caller, expected, inputs, exc=TypeError)
    if x.ndim == 0 or x.shape[0] != n or x.dtype.kind not in "fiu":
        raise param_error("inputs", caller, expected, x)
    x = x.reshape(n, -1).astype(np.float64)
    if not np.isfinite(x).all():
        raise param_error("inputs", caller, "finite", "NaN or inf")
    return x


def _bin_edges(bins: Any, distances: np.ndarray, caller: str) -> np.ndarray:
    expected = "an int >= 1 or a 1-D array of at least 2 increasing bin edges"
    if isinstance(bins, (bool, np.bool_)):
        raise param_error("bins", caller, expected, bins, exc=TypeError)
    if isinstance(bins, (int, np.integer)):
        if bins < 1:
            raise param_error("bins", caller, expected, bins)
        return np.linspace(distances.min(), distances.max(), int(bins) + 1)
    try:
        edges = np.asarray(bins, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error("bins", caller, expected, bins, exc=TypeError) from None
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
        raise param_error("bins", caller, expected, bins)
    return edges


def correlation_by_distance(
    ds: xr.Dataset, bins: int | Any = 10, *, inputs: Any, skipna: bool = False
) -> xr.DataArray:
    r"""Mean gradient correlation of sample pairs, binned by the distance between their inputs.

    For unordered input sets (no path needed): for each model the correlation
    :math:`\rho(i, j) = \langle g_i, g_j \rangle / (\lVert g_i \rVert \lVert g_j \rVert)` of every
    pair :math:`i < j` (as :func:`gradient_covariance` with ``over="features"``), averaged over the
    pairs whose Euclidean input distance :math:`\lVert x_i - x_j \rVert` falls in each bin and over
    the models. Shattered gradients decorrelate already at small distances (PAPER.md, "The
    phenomenon", "Where the library goes beyond the paper").

    Parameters
    ----------
    ds : xarray.Dataset
        A gradient Dataset.
    bins : int or array-like
        Number of equal-width bins between the smallest and largest pair distance, or the bin
        edges (increasing; pairs outside them are left out). Bins are closed on the left, the
        last one on both sides.
    inputs : xarray.DataArray or numpy.ndarray
        The inputs the gradients were taken at: a DataArray with a ``sample`` dim (matched to
        ``ds`` by its ``sample`` coord) or an array whose rows are the samples of ``ds`` in order.
    skipna : bool
        Leave out pairs with a sample whose gradient holds NaN or inf instead of raising.
        Pairs whose correlation is undefined (a zero gradient) are always left out.

    Returns
    -------
    xarray.DataArray
        ``gradient_correlation`` with dims ``(layer,) distance``; coords ``distance`` (bin
        centre), ``distance_low``, ``distance_high`` and ``n_pairs`` (pairs per bin; empty bins
        give NaN).

    Raises
    ------
    ValueError
        If ``inputs`` does not match the samples of ``ds``, or the gradients hold NaN or inf and
        ``skipna`` is False.

    See Also
    --------
    gradient_covariance : The full matrix over sample pairs.

    Notes
    -----
    Computed eagerly (dask-backed gradients are computed), with memory ``n**2`` per model.

    Examples
    --------
    >>> import numpy as np
    >>> from shatterkit import metrics, noise
    >>> ds = noise.brown(200, seed=0)
    >>> c = metrics.correlation_by_distance(ds, 4, inputs=ds["t"].values[:, None])
    >>> c.dims, bool(c[0] > c[-1])
    (('distance',), True)
    """
    caller = "correlation_by_distance"
    grads = gradients(ds, caller, min_samples=2)
    skipna = check_bool(skipna, "skipna", caller)
    n = next(iter(grads.values())).sizes[SAMPLE]
    x = _input_rows(inputs, ds, n, caller)
    iu, ju = np.triu_indices(n, k=1)
    dist = np.sqrt(((x[iu] - x[ju]) ** 2).sum(-1))
    edges = _bin_edges(bins, dist, caller)
    which = np.searchsorted(edges, dist, side="right") - 1
    which[dist == edges[-1]] = edges.size - 2
    inside = (which >= 0) & (which < edges.size - 1)
    n_bins = edges.size - 1
    n_pairs = np.bincount(which[inside], minlength=n_bins)
    results = {}
    for name, da in grads.items():
        corr = _pair_matrix(require_finite(da, caller, skipna), "features", True, skipna, caller)
        values = np.asarray(corr.values)[..., iu, ju][..., inside]  # (models, pairs)
        values = values.reshape(-1, values.shape[-1])
        finite = np.isfinite(values)
        sums = np.zeros(n_bins)
        counts = np.zeros(n_bins)
        np.add.at(sums, which[inside], np.where(finite, values, 0.0).sum(0))
        np.add.at(counts, which[inside], finite.sum(0))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / counts, np.nan)
        results[name] = xr.DataArray(mean, dims=("distance",))
    out = stack_layers(results, grads)
    out = out.assign_coords(
        distance=(
            "distance",
            (edges[:-1] + edges[1:]) / 2,
            {"long_name": "input distance", "units": "input"},
        ),
        distance_low=("distance", edges[:-1], {"long_name": "bin lower edge", "units": "input"}),
        distance_high=("distance", edges[1:], {"long_name": "bin upper edge", "units": "input"}),
        n_pairs=(
            "distance",
            n_pairs.astype(np.int64),
            {"long_name": "pairs per bin", "units": "1"},
        ),
    )
    out.name = "gradient_correlation"
    out.attrs = {"long_name": "mean gradient correlation", "units": "1"}
    return out
