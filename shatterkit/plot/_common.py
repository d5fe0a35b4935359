"""Helpers shared by the plotting functions: labels from attrs, hue splitting, line drawing."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.axes import Axes

#: one labelled object, or several under their labels
SeriesLike = xr.DataArray | xr.Dataset | Mapping[str, xr.DataArray | xr.Dataset]


def label(obj: xr.DataArray, default: Hashable | None = None) -> str:
    """``"long_name [units]"`` from ``obj.attrs``, falling back to ``default`` or the name.

    Dimensionless units (``""`` or ``"1"``) are left out.
    """
    name = obj.attrs.get("long_name", default if default is not None else obj.name)
    units = obj.attrs.get("units", "")
    return f"{name} [{units}]" if units not in ("", "1") else str(name)


def x_values(da: xr.DataArray, dim: str, x: str | None) -> tuple[np.ndarray, str]:
    """Values and label of the x axis: coord ``x`` on ``dim`` if present, else coord ``dim``."""
    for name in (x, dim):
        if name is not None and name in da.coords and da[name].dims == (dim,):
            return da[name].values, label(da[name], name)
    return np.arange(da.sizes[dim]), dim


def variable(data: xr.DataArray | xr.Dataset, var: str, caller: str) -> xr.DataArray:
    """``data[var]`` for a Dataset, ``data`` itself for a DataArray."""
    if isinstance(data, xr.DataArray):
        return data
    if var not in data:
        raise KeyError(
            f"{caller} needs a variable {var!r}. Got a Dataset with {sorted(map(str, data))}."
        )
    return data[var]


def split(
    data: SeriesLike, *, var: str, dim: str, hue: str | None, caller: str
) -> tuple[dict[str | None, xr.DataArray], str | None]:
    """Normalise ``data`` to ``{label: 1-D DataArray over dim}`` and a legend title.

    A Mapping gives one series per key; a DataArray or Dataset (variable ``var``) is split along
    ``hue``, which defaults to its only dim other than ``dim``. The label of an unsplit series is
    None.
    """
    if not isinstance(data, (xr.DataArray, xr.Dataset)):
        series: dict[str | None, xr.DataArray] = {
            str(key): variable(value, var, caller) for key, value in data.items()
        }
        for key, da in series.items():
            _check_1d(da, dim, caller, f"entry {key!r}")
        return series, None
    da = variable(data, var, caller)
    extra = [str(d) for d in da.dims if d != dim]
    if hue is None and len(extra) == 1:
        hue = extra[0]
    if hue is None:
        _check_1d(da, dim, caller, "the data")
        return {None: da}, None
    if hue not in extra:
        raise ValueError(
            f"The 'hue' parameter of {caller} must be one of the dims {tuple(extra)}. "
            f"Got {hue!r} instead."
        )
    levels = da[hue].values if hue in da.coords else np.arange(da.sizes[hue])
    split_series: dict[str | None, xr.DataArray] = {
        str(level): da.isel({hue: i}) for i, level in enumerate(levels)
    }
    for key, one in split_series.items():
        _check_1d(one, dim, caller, f"{hue}={key}")
    return split_series, hue


def _check_1d(da: xr.DataArray, dim: str, caller: str, what: str) -> None:
    if da.dims != (dim,):
        raise ValueError(
            f"{caller} draws one line per series over {dim!r}. Got {what} with dims {da.dims}; "
            f"select the other dims first, e.g. with .sel() or .isel()."
        )


def lines(
    ax: Axes,
    series: Mapping[str | None, xr.DataArray],
    *,
    dim: str,
    x: str | None = None,
    errors: Mapping[str | None, xr.DataArray] | None = None,
    palette: Any = None,
    set_labels: bool = True,
    **kwargs: Any,
) -> Axes:
    """Draw each series as a line (with a shaded ± error band) in its own colour.

    Unless ``set_labels`` is False, label the axes from the x coord and the first series.
    """
    colors = sns.color_palette(palette, len(series))
    xlabel = dim
    for (key, da), color in zip(series.items(), colors, strict=True):
        xs, xlabel = x_values(da, dim, x)
        (line,) = ax.plot(xs, da.values, **{"color": color, "label": key, **kwargs})
        if errors is not None and key in errors:
            err = errors[key].values
            ax.fill_between(
                xs, da.values - err, da.values + err, color=line.get_color(), alpha=0.2, lw=0
            )
    if set_labels:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label(next(iter(series.values()))))
    return ax


def legend(ax: Axes, title: str | None = None) -> None:
    """Add a legend when something drawn carries a label."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title=title)


def get_ax(ax: Axes | None) -> Axes:
    """``ax`` or the current Axes."""
    return ax if ax is not None else plt.gca()
