"""Canonical dim, coord and attr names shared by every Dataset shatterkit makes.

One vocabulary for the probes, the metrics, the noise references and the plots. The schema itself
is documented in ``docs/schema.md``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

SAMPLE = "sample"
SAMPLE_OTHER = "sample_other"
MODEL = "model"
FEATURE = "feature"
UNIT = "unit"
BYTE = "byte"
LAYER = "layer"
DEPTH = "depth"
LAG = "lag"
T = "t"
T_OTHER = "t_other"
FREQUENCY = "frequency"

GRADIENT = "gradient"
OUTPUT = "output"
PATTERN = "pattern"
#: prefix of the variables that hold gradients w.r.t. a layer's output: ``"gradient:layer1.0.conv1"``
LAYER_GRADIENT_PREFIX = "gradient:"

#: dims that index inputs or ensemble members, never features
NON_FEATURE_DIMS = (MODEL, SAMPLE)


def input_dims(ndim: int) -> tuple[str, ...]:
    """Default names of the dims of one input (the dims after ``sample``)."""
    if ndim == 1:
        return (FEATURE,)
    if ndim == 2:
        return ("height", "width")
    if ndim == 3:
        return ("channel", "height", "width")
    return tuple(f"dim_{k}" for k in range(ndim))


def feature_dims(da: xr.DataArray) -> tuple[str, ...]:
    """The dims of ``da`` that are neither ``model`` nor ``sample`` (the gradient's own dims)."""
    return tuple(str(d) for d in da.dims if d not in NON_FEATURE_DIMS)


def gradient_variables(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    """Map layer name to gradient DataArray: ``"input"`` first, then each layer in depth order.

    The input gradient is ``ds["gradient"]`` (depth 0); layer gradients are the variables named
    ``"gradient:<layer>"`` with attrs ``layer`` and ``depth``.
    """
    out: dict[str, xr.DataArray] = {}
    if GRADIENT in ds:
        out["input"] = ds[GRADIENT]
    layers = [v for v in ds.data_vars if str(v).startswith(LAYER_GRADIENT_PREFIX)]
    layers.sort(key=lambda v: int(ds[v].attrs.get(DEPTH, 0)))
    for v in layers:
        out[str(v)[len(LAYER_GRADIENT_PREFIX) :]] = ds[v]
    return out


def safe_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Return ``attrs`` with every value made netCDF-safe (str, number or 1-D array).

    ``None`` becomes ``"none"``, booleans become ints, dicts and other objects become JSON or ``str``.
    """
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            value = "none"
        elif isinstance(value, (bool, np.bool_)):
            value = int(value)
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True, default=str)
        elif isinstance(value, (list, tuple)):
            if all(isinstance(v, str) for v in value):
                value = json.dumps(list(value))
            else:
                value = np.asarray(value)
        elif isinstance(value, str):
            value = str(value)  # str subclasses (torch.__version__) are not writable by h5netcdf
        elif not isinstance(value, (int, float, np.integer, np.floating, np.ndarray)):
            value = str(value)
        out[key] = value
    return out


def param_error(
    name: str, caller: str, expected: str, value: Any, *, exc: type[Exception] = ValueError
) -> Exception:
    """The uniform parameter error: ``The 'name' parameter of caller must be ... Got ... instead.``

    xarray objects and arrays are shown by their dims or shape, not their full repr.
    """
    if isinstance(value, xr.Dataset):
        shown = f"a Dataset with variables {[str(v) for v in value.data_vars]}"
    elif isinstance(value, xr.DataArray):
        shown = f"a DataArray with dims {tuple(str(d) for d in value.dims)}"
    elif isinstance(value, np.ndarray):
        shown = f"an array of shape {value.shape} and dtype {value.dtype}"
    else:
        shown = repr(value)
    return exc(f"The {name!r} parameter of {caller} must be {expected}. Got {shown} instead.")


def check_int(
    value: Any, name: str, caller: str, minimum: int, *, wrong_type: type[Exception] = TypeError
) -> int:
    """``value`` as an int if it is one (numpy ints too, not bool) ``>= minimum``; else the uniform
    parameter error: ``wrong_type`` for a non-int, ValueError for one that is too small."""
    expected = f"an int >= {minimum}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise param_error(name, caller, expected, value, exc=wrong_type)
    if value < minimum:
        raise param_error(name, caller, expected, value)
    return int(value)
