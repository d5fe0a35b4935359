"""Metrics against lag or depth: autocorrelation, covariance decay, shattering profiles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import xarray as xr
from matplotlib.axes import Axes

from shatterkit._dims import DEPTH, LAG, LAYER
from shatterkit.plot._common import SeriesLike, get_ax, label, legend, lines, split

_REFERENCE_STYLE = {"brown": {"color": "saddlebrown"}, "white": {"color": "0.6"}}


def autocorrelation(
    data: xr.DataArray | Mapping[str, xr.DataArray],
    *,
    hue: str | None = None,
    reference: Mapping[str, xr.DataArray] | None = None,
    palette: Any = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Plot gradient autocorrelation functions against lag, one line per series.

    Brown noise keeps a slowly decaying autocorrelation; white noise drops to 0 after lag 0.
    Shattered gradients move from the first towards the second as depth grows.

    Parameters
    ----------
    data : xarray.DataArray or dict of str to xarray.DataArray
        An ``autocorrelation`` DataArray (``shatterkit.metrics.autocorrelation``) over ``lag``,
        with at most one other dim, drawn as hue (e.g. ``layer``, ``depth`` or an
        ``architecture`` dim made with :func:`xarray.concat`); or a dict of label to 1-D
        autocorrelations.
    hue : str, optional
        The dim drawn as separate lines; by default the only dim other than ``lag``.
    reference : dict of str to xarray.DataArray, optional
        Reference autocorrelations over ``lag`` drawn as dashed lines under their keys, typically
        ``{"brown": ..., "white": ...}`` computed from ``shatterkit.noise`` gradients. Keys
        ``"brown"`` and ``"white"`` get brown and grey lines.
    palette : seaborn palette, optional
        Colours of the lines.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; the current Axes by default.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.plot` for the data's lines.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.

    See Also
    --------
    profile : A per-layer summary against depth.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> import xarray as xr
    >>> lag = np.arange(5)
    >>> acf = xr.DataArray([0.5 ** lag, 0.1 ** lag], dims=("depth", "lag"),
    ...                    coords={"depth": [1, 8], "lag": lag}, name="autocorrelation")
    >>> white = xr.DataArray(1.0 * (lag == 0), dims="lag", coords={"lag": lag})
    >>> fig, ax = plt.subplots()
    >>> ax = autocorrelation(acf, reference={"white": white}, ax=ax)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['1', '8', 'white']
    """
    ax = get_ax(ax)
    series, title = split(data, var="autocorrelation", dim=LAG, hue=hue, caller="autocorrelation")
    lines(ax, series, dim=LAG, palette=palette, **kwargs)
    for key, da in (reference or {}).items():
        split(da, var="autocorrelation", dim=LAG, hue=None, caller="autocorrelation")
        style: dict[str, Any] = {
            "ls": "--",
            "lw": 1.0,
            "color": "k",
            **_REFERENCE_STYLE.get(key, {}),
        }
        lines(ax, {key: da}, dim=LAG, set_labels=False, **style)
    legend(ax, title)
    return ax


def decay(fit: xr.Dataset, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Plot a gradient correlation against depth with its fitted decays, on a log y axis.

    The measured points carry ± ``measured_std`` error bars; the preferred fit is solid, the
    other dashed, and the theory dotted. On a log axis an exponential decay is a straight line.

    Parameters
    ----------
    fit : xarray.Dataset
        The result of ``shatterkit.metrics.fit_covariance_decay``: ``measured``,
        ``measured_std``, ``exponential`` and ``power_law`` over ``depth``, optionally
        ``theory`` (e.g. from ``shatterkit.theory``); the scalars ``exp_r`` and ``pow_alpha``
        and the attr ``preferred`` label the fits when present.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; the current Axes by default.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.errorbar` for the measured points.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.

    See Also
    --------
    profile : A per-layer metric against depth for one network.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> import xarray as xr
    >>> depth = np.array([1, 2, 4, 8])
    >>> fit = xr.Dataset(
    ...     {"measured": ("depth", 0.5 ** depth), "measured_std": ("depth", 0.01 * depth),
    ...      "exponential": ("depth", 0.5 ** depth), "power_law": ("depth", 0.5 / depth),
    ...      "exp_r": 0.5, "pow_alpha": 1.0},
    ...     coords={"depth": depth}, attrs={"preferred": "exponential"})
    >>> fig, ax = plt.subplots()
    >>> ax = decay(fit, ax=ax)
    >>> ax.get_yscale(), [t.get_text() for t in ax.get_legend().get_texts()]
    ('log', ['exponential, r = 0.5 (preferred)', 'power law, alpha = 1', 'measured'])
    """
    ax = get_ax(ax)
    for name in ("measured", "exponential", "power_law"):
        split(fit, var=name, dim=DEPTH, hue=None, caller="decay")
    x = fit[DEPTH].values
    preferred = fit.attrs.get("preferred")
    curves = {
        "exponential": ("exponential", "exp_r", "r"),
        "power_law": ("power law", "pow_alpha", "alpha"),
    }
    for name, (title, parameter, symbol) in curves.items():
        text = title
        if parameter in fit:
            text += f", {symbol} = {float(fit[parameter]):.3g}"
        if name == preferred:
            text += " (preferred)"
        ax.plot(x, fit[name].values, ls="-" if name == preferred else "--", label=text)
    if "theory" in fit:
        ax.plot(x, fit["theory"].values, ls=":", color="k", label="theory")
    std = fit["measured_std"].values if "measured_std" in fit else None
    ax.errorbar(
        x,
        fit["measured"].values,
        yerr=std,
        **{"fmt": "o", "color": "k", "label": "measured", **kwargs},
    )
    ax.set_yscale("log")
    ax.set_xlabel(label(fit[DEPTH]))
    ax.set_ylabel(label(fit["measured"], "gradient correlation"))
    legend(ax)
    return ax


def profile(
    data: xr.Dataset | Mapping[str, xr.Dataset],
    *,
    y: str = "shattering_index",
    hue: str | None = None,
    palette: Any = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Plot a per-layer metric against layer depth, with a ± std band where one is given.

    The x axis is the ``depth`` coord (1-based call order; the input is depth 0), so profiles of
    networks with different layer names line up.

    Parameters
    ----------
    data : xarray.Dataset or dict of str to xarray.Dataset
        A ``shatterkit.metrics.shattering_profile`` result (variables over ``layer`` with coord
        ``depth``), optionally with one more dim drawn as hue; or a dict of label to such
        Datasets, one line each. DataArrays are accepted too.
    y : str, default "shattering_index"
        The variable to plot; ``<y>_std``, when present, is drawn as a band.
    hue : str, optional
        Dim drawn as separate lines; by default the only dim other than ``layer``.
    palette : seaborn palette, optional
        Colours of the lines.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; the current Axes by default.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.plot`.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.

    See Also
    --------
    decay : A gradient correlation against depth with fitted decays.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import xarray as xr
    >>> ds = xr.Dataset({"shattering_index": ("layer", [0.1, 0.5, 0.9])},
    ...                 coords={"layer": ["input", "fc1", "fc2"], "depth": ("layer", [0, 1, 2])})
    >>> fig, ax = plt.subplots()
    >>> ax = profile({"plain": ds}, ax=ax)
    >>> ax.lines[0].get_xydata().tolist()
    [[0.0, 0.1], [1.0, 0.5], [2.0, 0.9]]
    """
    ax = get_ax(ax)
    series, title = split(data, var=y, dim=LAYER, hue=hue, caller="profile")
    std = _errors(data, f"{y}_std", hue)
    lines(ax, series, dim=LAYER, x=DEPTH, errors=std, palette=palette, **kwargs)
    legend(ax, title)
    return ax


def _errors(data: SeriesLike, var: str, hue: str | None) -> dict[str | None, xr.DataArray] | None:
    """The ``var`` series of ``data`` split like its values, or None if some entry lacks it."""
    if isinstance(data, xr.DataArray):
        return None
    entries = [data] if isinstance(data, xr.Dataset) else list(data.values())
    if not all(isinstance(entry, xr.Dataset) and var in entry for entry in entries):
        return None
    return split(data, var=var, dim=LAYER, hue=hue, caller="profile")[0]
