"""What every gradient metric shares: validation, layer handling, path order, finiteness.

A gradient metric is a kernel applied to one gradient DataArray (the input gradient or one layer's
gradient), once per gradient variable; :func:`stack_layers` then stacks the results along
``layer`` (coord ``depth``) when the Dataset holds layer gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from shatterkit._dims import (
    DEPTH,
    LAYER,
    LAYER_GRADIENT_PREFIX,
    MODEL,
    SAMPLE,
    T,
    gradient_variables,
    param_error,
)

XrObj = TypeVar("XrObj", xr.DataArray, xr.Dataset)

#: deviations from the mean below this many ulps (relative RMS) count as a constant gradient
CONSTANT_ULPS = 64


def is_lazy(obj: xr.DataArray) -> bool:
    """True when ``obj`` is backed by a dask array."""
    return obj.chunks is not None


def check_bool(value: Any, name: str, caller: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise param_error(name, caller, "a bool", value, exc=TypeError)
    return bool(value)


def check_max_lag(max_lag: Any, n: int, caller: str) -> int | None:
    """Validate ``max_lag`` (``None`` or a lag in ``[1, n - 1]`` for ``n`` samples)."""
    if max_lag is None:
        return None
    if isinstance(max_lag, (bool, np.bool_)) or not isinstance(max_lag, (int, np.integer)):
        raise param_error("max_lag", caller, "None or an int", max_lag, exc=TypeError)
    if not 1 <= max_lag <= n - 1:
        raise param_error("max_lag", caller, f"an int in the range [1, {n - 1}]", max_lag)
    return int(max_lag)


def default_max_lag(n: int) -> int:
    """``n // 4`` lags (at least 1): beyond that the sums average too few pairs to be stable."""
    return max(1, min(n - 1, n // 4))


def sort_by_t(obj: XrObj) -> XrObj:
    """``obj`` with its samples in path order, when it has a ``t`` coord on ``sample``."""
    if T in obj.coords and obj[T].dims == (SAMPLE,):
        t = np.asarray(obj[T].values)
        if not np.all(t[1:] >= t[:-1]):
            return obj.sortby(T)
    return obj


def gradients(ds: Any, caller: str, *, min_samples: int = 1) -> dict[str, xr.DataArray]:
    """The gradient variables of ``ds`` (``"input"`` first, then layers by depth), validated."""
    if not isinstance(ds, xr.Dataset):
        raise param_error("ds", caller, "an xarray.Dataset of gradients", ds, exc=TypeError)
    grads = gradient_variables(ds)
    if not grads:
        raise param_error(
            "ds",
            caller,
            f"a Dataset with a 'gradient' or '{LAYER_GRADIENT_PREFIX}<layer>' variable",
            ds,
        )
    for name, da in grads.items():
        if SAMPLE not in da.dims:
            raise param_error(
                "ds", caller, f"a Dataset whose {name!r} gradient has a 'sample' dim", da
            )
        if da.dtype.kind not in "fiu":
            raise param_error(
                "ds",
                caller,
                f"a Dataset of real-valued gradients ({name!r} has dtype {da.dtype})",
                ds,
                exc=TypeError,
            )
        if da.sizes[SAMPLE] < min_samples:
            raise param_error(
                "ds", caller, f"a Dataset with at least {min_samples} samples", da.sizes[SAMPLE]
            )
    return grads


def _nonfinite_error(caller: str, name: str, count: int | None) -> ValueError:
    found = "non-finite values" if count is None else f"{count} non-finite value(s)"
    return ValueError(
        f"The 'ds' parameter of {caller} must hold finite gradients (or pass skipna=True to "
        f"leave out the samples that hold NaN or inf). Got {found} in {name!r} instead."
    )


def _checked_block(block: np.ndarray, caller: str, name: str) -> np.ndarray:
    if not np.isfinite(block).all():
        raise _nonfinite_error(caller, name, None)
    return block


def require_finite(da: xr.DataArray, caller: str, skipna: bool) -> xr.DataArray:
    """Refuse non-finite gradients (of the variable ``da.name``) unless ``skipna``.

    numpy-backed data are checked now; dask-backed data get the check inside each chunk, so
    it raises when the result is computed and the metric stays lazy.
    """
    if skipna or da.dtype.kind in "iu":
        return da
    name = str(da.name)
    if is_lazy(da):
        data = da.data.map_blocks(partial(_checked_block, caller=caller, name=name), dtype=da.dtype)
        return da.copy(data=data)
    count = int(np.count_nonzero(~np.isfinite(da.values)))
    if count:
        raise _nonfinite_error(caller, name, count)
    return da


def constant_rtol(dtype: np.dtype) -> float:
    """Relative RMS deviation below which a gradient of ``dtype`` counts as constant."""
    return CONSTANT_ULPS * float(np.finfo(dtype if dtype.kind == "f" else np.float64).eps)


def flat_features(x: np.ndarray, n_feature_dims: int) -> np.ndarray:
    """``(..., n, *features)`` as float64 ``(..., n, F)``."""
    x = np.asarray(x, dtype=np.float64)
    if n_feature_dims == 0:
        return x[..., None]
    return x.reshape(*x.shape[: x.ndim - n_feature_dims], -1)


def deviations(x: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """Deviations ``g_i - m`` from the mean over valid samples, and the valid-sample mask.

    ``x`` has shape ``(..., n, F)``. Samples with a non-finite value are invalid: they are left
    out of the mean and get zero deviation. A gradient whose deviations are within ``rtol``
    (relative RMS) of its magnitude is constant up to rounding, and gets exactly zero deviations.
    """
    valid = np.isfinite(x).all(-1)
    x = np.where(valid[..., None], x, 0.0)
    count = valid.sum(-1)[..., None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(-2, keepdims=True) / count
    d = np.where(valid[..., None], x - mean, 0.0)
    spread = np.einsum("...nf,...nf->...", d, d)
    scale = np.einsum("...nf,...nf->...", x, x)
    constant = spread <= rtol**2 * scale
    return np.where(constant[..., None, None], 0.0, d), valid


def gradient_kernel(
    da: xr.DataArray,
    kernel: Callable[..., np.ndarray],
    out_dim: str,
    out_size: int,
    **kwargs: Any,
) -> xr.DataArray:
    """Apply ``kernel(x (..., n, F) float64, **kwargs) -> (..., out_size)`` to ``da`` by sample.

    The kernel sees the feature dims flattened; with dask the call is ``parallelized`` (chunks
    along ``sample`` and the feature dims are merged first), so the result stays lazy.
    """
    fdims = [d for d in da.dims if d not in (MODEL, SAMPLE)]
    rtol = constant_rtol(da.dtype)

    def flat_kernel(x: np.ndarray) -> np.ndarray:
        return kernel(flat_features(x, len(fdims)), rtol=rtol, **kwargs)

    return xr.apply_ufunc(
        flat_kernel,
        da,
        input_core_dims=[[SAMPLE, *fdims]],
        output_core_dims=[[out_dim]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {out_dim: out_size}, "allow_rechunk": True},
    )


def stack_layers(
    results: Mapping[str, XrObj], grads: Mapping[str, xr.DataArray], *, always: bool = False
) -> XrObj:
    """Stack per-gradient results along ``layer`` (coord ``depth``).

    A Dataset with only the input gradient gives the input's result unchanged, unless ``always``.
    """
    names = list(results)
    if names == ["input"] and not always:
        return results["input"]
    depths = [int(grads[k].attrs.get(DEPTH, 0)) if k != "input" else 0 for k in names]
    out = xr.concat(
        list(results.values()),
        dim=xr.DataArray(np.asarray(names, dtype=object), dims=(LAYER,), name=LAYER),
        data_vars="all",
        coords="minimal",
        compat="override",
        join="outer",
        combine_attrs="override",
    )
    return out.assign_coords({DEPTH: (LAYER, np.asarray(depths, dtype=np.int64))})


def set_attrs(obj: XrObj, **attrs: Any) -> XrObj:
    """``obj`` with its attrs replaced by ``attrs`` (xarray ops may carry over the input's)."""
    obj = obj.copy(deep=False)
    obj.attrs = attrs
    return obj


def model_mean(da: XrObj) -> XrObj:
    """Mean over ``model`` when present (NaN propagates: a failed model is not dropped)."""
    return da.mean(MODEL, skipna=False) if MODEL in da.dims else da


def model_mean_std(da: xr.DataArray, name: str, attrs: dict[str, str]) -> xr.Dataset:
    """``name`` (mean over ``model``) and ``name_std`` (population std: 0 for one model)."""
    mean = model_mean(da)
    std = da.std(MODEL, ddof=0, skipna=False) if MODEL in da.dims else xr.zeros_like(da)
    std_attrs = {**attrs, "long_name": f"{attrs['long_name']}, std over models"}
    return xr.Dataset({name: set_attrs(mean, **attrs), f"{name}_std": set_attrs(std, **std_attrs)})
