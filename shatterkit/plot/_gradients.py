"""Gradients along an input set and their covariance matrices (the paper's first figure)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from shatterkit._dims import MODEL, SAMPLE, SAMPLE_OTHER, T, feature_dims, gradient_variables
from shatterkit.plot._common import get_ax, label, legend, lines, split

_MATRIX_VARIABLES = ("gradient_correlation", "gradient_covariance")


def _gradient(ds: xr.Dataset, layer: str) -> xr.DataArray:
    grads = gradient_variables(ds)
    if layer not in grads:
        close = difflib.get_close_matches(layer, list(grads), n=3)
        hint = f"; close matches: {', '.join(map(repr, close))}" if close else ""
        raise KeyError(
            f"The 'layer' parameter of gradients must name a gradient of the Dataset "
            f"({', '.join(map(repr, grads)) or 'none'}). Got {layer!r} instead{hint}."
        )
    return grads[layer]


def gradients(
    ds: xr.Dataset,
    *,
    x: str | None = T,
    hue: str | None = MODEL,
    layer: str = "input",
    feature: int = 0,
    palette: Any = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Plot a gradient against the input set: one line per model (the paper's top row).

    A shallow network's gradient wanders like brown noise; a shattered one jumps like white
    noise. Lines are labelled by the ``hue`` coord and the axes by the data's attrs.

    Parameters
    ----------
    ds : xarray.Dataset
        A gradient Dataset (``GradientProbe`` or ``shatterkit.noise``): variable ``gradient`` and
        optionally ``gradient:<layer>``, over (``model``,) ``sample`` and the input's dims.
    x : str or None, default "t"
        Coord on ``sample`` for the x axis; when the Dataset has no such coord (or None), the
        ``sample`` index.
    hue : str or None, default "model"
        Dim drawn as separate lines; ignored when the gradient has no such dim.
    layer : str, default "input"
        Whose gradient: ``"input"`` for ``gradient``, else the ``<layer>`` of ``gradient:<layer>``.
    feature : int, default 0
        For multi-dimensional gradients, the flat (C-order) index of the component to plot over
        the gradient's own dims; a 1-D input has a single component.
    palette : seaborn palette, optional
        Colours of the lines (a name, a list or a dict understood by
        :func:`seaborn.color_palette`).
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
    covariance : The covariance matrix of the same gradients.
    figure1 : Gradients and covariances side by side.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> import xarray as xr
    >>> t = np.linspace(-2, 2, 8)
    >>> grad = xr.DataArray(np.cumsum(np.ones((2, 8, 1)), 1), dims=("model", "sample", "feature"),
    ...                     coords={"model": [0, 1], "t": ("sample", t)},
    ...                     attrs={"long_name": "input gradient"})
    >>> fig, ax = plt.subplots()
    >>> ax = gradients(xr.Dataset({"gradient": grad}), ax=ax)
    >>> ax.get_xlabel(), ax.get_ylabel(), len(ax.lines)
    ('t', 'input gradient', 2)
    """
    ax = get_ax(ax)
    da = _gradient(ds, layer)
    # the hue dim (e.g. "training" after xr.concat) indexes lines, not gradient components
    own = tuple(d for d in feature_dims(da) if d != hue)
    if own:
        flat = da.stack(_component=own)
        if not -flat.sizes["_component"] <= feature < flat.sizes["_component"]:
            raise IndexError(
                f"The 'feature' parameter of gradients must be an index into the "
                f"{flat.sizes['_component']} components over {own}. Got {feature!r} instead."
            )
        da = flat.isel(_component=feature, drop=True)
    series, title = split(
        da,
        var=str(da.name),
        dim=SAMPLE,
        hue=hue if hue in da.dims else None,
        caller="gradients",
    )
    lines(ax, series, dim=SAMPLE, x=x, palette=palette, **kwargs)
    legend(ax, title)
    return ax


def _matrix(data: xr.DataArray | xr.Dataset) -> xr.DataArray:
    if isinstance(data, xr.Dataset):
        names = [v for v in _MATRIX_VARIABLES if v in data]
        if not names:
            raise KeyError(
                f"covariance needs a variable {' or '.join(map(repr, _MATRIX_VARIABLES))}. "
                f"Got a Dataset with {sorted(map(str, data))}."
            )
        data = data[names[0]]
    if set(data.dims) != {SAMPLE, SAMPLE_OTHER}:
        raise ValueError(
            f"covariance draws a matrix over ('sample', 'sample_other'). Got dims {data.dims}; "
            "select the other dims first, e.g. with .sel(layer='input') or .isel(model=0)."
        )
    return data.transpose(SAMPLE, SAMPLE_OTHER)


def covariance(
    data: xr.DataArray | xr.Dataset,
    *,
    cmap: str = "RdBu_r",
    vmax: float | None = None,
    cbar: bool = True,
    cbar_kws: Mapping[str, Any] | None = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Draw a gradient covariance or correlation matrix as a heatmap (the paper's bottom row).

    Rows are ``sample``, columns ``sample_other``, with sample 0 at the top left; colour limits
    are symmetric about 0.

    Parameters
    ----------
    data : xarray.DataArray or xarray.Dataset
        The ``gradient_correlation`` or ``gradient_covariance`` DataArray of
        ``shatterkit.metrics.gradient_covariance`` with dims ``sample`` and ``sample_other`` only
        (select any ``model`` or ``layer`` first), or a Dataset holding one.
    cmap : str, default "RdBu_r"
        A diverging colormap.
    vmax : float, optional
        Colour limits are ``(-vmax, vmax)``; by default the largest absolute value.
    cbar : bool, default True
        Draw a colorbar labelled from the data's ``long_name`` and ``units``.
    cbar_kws : dict, optional
        Passed to :meth:`matplotlib.figure.Figure.colorbar`.
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
    gradients : The gradients themselves.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> import xarray as xr
    >>> corr = xr.DataArray(np.eye(4), dims=("sample", "sample_other"),
    ...                     name="gradient_correlation")
    >>> fig, ax = plt.subplots()
    >>> ax = covariance(corr, ax=ax)
    >>> ax.images[0].get_clim()
    (-1.0, 1.0)
    """
    ax = get_ax(ax)
    da = _matrix(data)
    values = da.values
    if vmax is None:
        vmax = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    image = ax.imshow(
        values,
        **{
            "cmap": cmap,
            "vmin": -vmax,
            "vmax": vmax,
            "interpolation": "nearest",
            "origin": "upper",
            **kwargs,
        },
    )
    ax.set_xlabel(label(da[SAMPLE_OTHER]) if SAMPLE_OTHER in da.coords else SAMPLE_OTHER)
    ax.set_ylabel(label(da[SAMPLE]) if SAMPLE in da.coords else SAMPLE)
    if cbar:
        kws: dict[str, Any] = (
            {"label": label(da)} if da.name is not None or "long_name" in da.attrs else {}
        )
        kws.update(cbar_kws or {})
        ax.figure.colorbar(image, ax=ax, **kws)
    return ax


def figure1(
    panels: Mapping[str, xr.Dataset],
    covariances: Mapping[str, xr.DataArray],
    *,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """The paper's first figure: gradients (top row) over covariance matrices (bottom row).

    One column per panel, titled with its key. The top row plots the input gradient of the first
    model against the grid index; each covariance matrix has its own symmetric colour limits and
    no colorbar (the figure shows structure, not scale).

    Parameters
    ----------
    panels : dict of str to xarray.Dataset
        Gradient Datasets, e.g. ``{"1 layer": ..., "24 layers": ..., "resnet": ...,
        "brown noise": ..., "white noise": ...}``.
    covariances : dict of str to xarray.DataArray
        For each key of ``panels``, its covariance or correlation matrix over ``sample`` and
        ``sample_other``.
    figsize : tuple of float, optional
        Figure size; 3 × 6 inches per column by default.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with ``2 × len(panels)`` Axes.

    See Also
    --------
    gradients : The top row.
    covariance : The bottom row.

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> white = rng.standard_normal((8, 1))
    >>> ds = {"white": xr.Dataset({"gradient": (("sample", "feature"), white)}),
    ...       "brown": xr.Dataset({"gradient": (("sample", "feature"), white.cumsum(0))})}
    >>> cov = {k: xr.DataArray(np.eye(8), dims=("sample", "sample_other")) for k in ds}
    >>> fig = figure1(ds, cov)
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['white', 'brown']
    """
    if set(panels) != set(covariances):
        raise ValueError(
            "figure1 needs a covariance for each panel. Got panels "
            f"{sorted(panels)} and covariances {sorted(covariances)}."
        )
    n = len(panels)
    fig, axes = plt.subplots(
        2, n, figsize=figsize or (3.0 * n, 6.0), squeeze=False, layout="constrained"
    )
    for column, (key, ds) in enumerate(panels.items()):
        top, bottom = axes[0, column], axes[1, column]
        first = ds.isel({MODEL: 0}) if MODEL in ds.dims else ds
        gradients(first, x=SAMPLE, ax=top, lw=0.8)
        top.set_title(key)
        covariance(covariances[key], cbar=False, ax=bottom)
    return fig
