"""Activation patterns: rasters of units × inputs, co-activation and dispersion against depth."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes

from shatterkit._dims import DEPTH, LAYER, MODEL, PATTERN, SAMPLE, UNIT
from shatterkit._packing import unpack_patterns
from shatterkit.plot._common import get_ax, legend, lines, split

#: co-activation of independent patterns with each unit on half the time (the BN regime), and of
#: units that are on (or off) for all inputs (the near-linear regime)
_COACTIVATION_REFERENCES = {0.25: "1/4: independent patterns", 0.5: "1/2: units always on or off"}


def _against_depth(
    data: xr.DataArray | Mapping[str, xr.DataArray],
    var: str,
    *,
    hue: str | None,
    palette: Any,
    ax: Axes | None,
    references: Mapping[float, str],
    caller: str,
    **kwargs: Any,
) -> Axes:
    ax = get_ax(ax)
    series, title = split(data, var=var, dim=LAYER, hue=hue, caller=caller)
    lines(ax, series, dim=LAYER, x=DEPTH, palette=palette, **{"marker": "o", **kwargs})
    for value, text in references.items():
        ax.axhline(value, ls="--", lw=1.0, color="0.5", label=text)
    legend(ax, title)
    return ax


def coactivation(
    data: xr.DataArray | Mapping[str, xr.DataArray],
    *,
    hue: str | None = None,
    references: bool = True,
    palette: Any = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Plot co-activation rates against layer depth, with the paper's reference levels.

    The co-activation of a unit is the probability that it is on for both inputs of a pair;
    the x axis is the ``depth`` coord of ``layer``.

    Parameters
    ----------
    data : xarray.DataArray or dict of str to xarray.DataArray
        A ``coactivation`` DataArray (``shatterkit.metrics.coactivation_rate``) over ``layer``
        with coord ``depth`` (select a ``lag`` first if it has one), optionally with one more dim
        drawn as hue; or a dict of label to such DataArrays (several models).
    hue : str, optional
        Dim drawn as separate lines; by default the only dim other than ``layer``.
    references : bool, default True
        Draw dashed lines at 1/4 (independent patterns, each unit on half the time: the regime
        batch norm keeps) and 1/2 (units on or off for all inputs: a nearly linear network).
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
    dispersion : How the patterns spread over the inputs.
    patterns : The patterns themselves.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import xarray as xr
    >>> rate = xr.DataArray([0.3, 0.26], dims="layer", name="coactivation",
    ...                     coords={"layer": ["0.relu", "1.relu"], "depth": ("layer", [1, 2])})
    >>> fig, ax = plt.subplots()
    >>> ax = coactivation({"bn": rate}, ax=ax)
    >>> sorted(line.get_ydata()[0] for line in ax.lines[1:])
    [0.25, 0.5]
    """
    return _against_depth(
        data,
        "coactivation",
        hue=hue,
        palette=palette,
        ax=ax,
        references=_COACTIVATION_REFERENCES if references else {},
        caller="coactivation",
        **kwargs,
    )


def dispersion(
    data: xr.DataArray | Mapping[str, xr.DataArray],
    *,
    hue: str | None = None,
    palette: Any = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Plot pattern dispersion against layer depth.

    Dispersion measures how the activation patterns spread over the input set; the x axis is
    the ``depth`` coord of ``layer``.

    Parameters
    ----------
    data : xarray.DataArray or dict of str to xarray.DataArray
        A ``dispersion`` DataArray (``shatterkit.metrics.pattern_dispersion``) over ``layer``
        with coord ``depth`` (select a ``lag`` first if it has one), optionally with one more dim
        drawn as hue; or a dict of label to such DataArrays (several models).
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
    coactivation : How often units are on for both inputs of a pair.
    patterns : The patterns themselves.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import xarray as xr
    >>> disp = xr.DataArray([0.1, 0.4], dims="layer", name="dispersion",
    ...                     coords={"layer": ["0.relu", "1.relu"], "depth": ("layer", [1, 2])})
    >>> fig, ax = plt.subplots()
    >>> dispersion(disp, ax=ax).get_xlabel()
    'depth'
    """
    return _against_depth(
        data,
        "dispersion",
        hue=hue,
        palette=palette,
        ax=ax,
        references={},
        caller="dispersion",
        **kwargs,
    )


def _select_units(pattern: xr.DataArray, layer: str | int | None) -> xr.DataArray:
    if layer is None:
        return pattern
    coord = LAYER if isinstance(layer, str) else DEPTH
    mask = pattern[coord].values == layer
    if not mask.any():
        known = list(dict.fromkeys(pattern[coord].values.tolist()))
        raise KeyError(
            f"The 'layer' parameter of patterns must be a layer name or depth of the Dataset "
            f"({', '.join(map(repr, known))}). Got {layer!r} instead."
        )
    return pattern.isel({UNIT: np.flatnonzero(mask)})


def patterns(
    ds: xr.Dataset,
    *,
    layer: str | int | None = None,
    model: int = 0,
    cmap: str = "gray_r",
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Raster the activation patterns: units (rows) × inputs (columns), on in dark.

    Along a 1-D grid, a network that keeps its patterns locally coherent shows long horizontal
    runs; a shattering one changes pattern almost everywhere.

    Parameters
    ----------
    ds : xarray.Dataset
        An ``ActivationProbe`` result: bool ``pattern`` over (``model``,) ``sample``, ``unit``
        with coords ``layer`` and ``depth`` on ``unit``, or its packed form (dim ``byte``), which
        is unpacked first.
    layer : str or int, optional
        Only the units of this rectifier call, by name (``layer`` coord) or by depth (``depth``
        coord); by default every unit, in call order, with thin lines between layers.
    model : int, default 0
        Index of the ensemble member to draw, when there is a ``model`` dim.
    cmap : str, default "gray_r"
        Colormap: with the default, on is black and off is white.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; the current Axes by default.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.imshow`.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.

    See Also
    --------
    coactivation : Co-activation rates against depth.
    dispersion : Pattern dispersion against depth.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> import xarray as xr
    >>> on = np.array([[True, False], [True, True], [False, True]])
    >>> ds = xr.Dataset({"pattern": (("sample", "unit"), on)},
    ...                 coords={"layer": ("unit", ["a", "b"]), "depth": ("unit", [1, 2])})
    >>> fig, ax = plt.subplots()
    >>> patterns(ds, layer="b", ax=ax).images[0].get_array().tolist()
    [[0, 1, 1]]
    """
    ax = get_ax(ax)
    pattern = unpack_patterns(ds)[PATTERN]
    if MODEL in pattern.dims:
        pattern = pattern.isel({MODEL: model})
    pattern = _select_units(pattern, layer).transpose(UNIT, SAMPLE)
    ax.imshow(
        pattern.values.astype(np.uint8),
        **{
            "cmap": cmap,
            "vmin": 0,
            "vmax": 1,
            "aspect": "auto",
            "interpolation": "nearest",
            **kwargs,
        },
    )
    if layer is None and LAYER in pattern.coords:
        names = pattern[LAYER].values
        for boundary in np.flatnonzero(names[1:] != names[:-1]):
            ax.axhline(boundary + 0.5, color="tab:red", lw=0.5)
    ax.set_xlabel(SAMPLE)
    ax.set_ylabel(
        UNIT
        if layer is None
        else f"{UNIT} ({layer})"
        if isinstance(layer, str)
        else f"{UNIT} (depth {layer})"
    )
    legend(ax)
    return ax
