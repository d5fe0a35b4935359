"""Input sets: the paper's 1-D line, paths between inputs, rays and neighbourhoods.

Every builder returns an :class:`xarray.DataArray` whose first dim is ``sample``; the other dims
name the input's own axes (``feature`` for vectors; ``channel``, ``height``, ``width`` for images).
Path-like sets carry the path parameter as a coord ``t`` on ``sample``. The probes accept these,
plain tensors or numpy arrays, and carry the coords through to their results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from shatterkit._dims import FEATURE, SAMPLE, T, check_int, input_dims

__all__ = ["line", "segment", "ray", "neighbourhood", "as_point"]


def as_point(x: Any, name: str = "x", caller: str = "as_point") -> xr.DataArray:
    """Return one input (no ``sample`` dim) as a float64 DataArray with named dims.

    Parameters
    ----------
    x : array-like, torch.Tensor or xarray.DataArray
        A single input: a vector, an image ``(channel, height, width)``, or a DataArray whose dims
        are kept. A DataArray with a ``sample`` dim of size 1 is squeezed.
    name, caller : str
        Used in error messages.

    Returns
    -------
    xarray.DataArray
        The point, dims named by :func:`shatterkit._dims.input_dims` unless given.

    Examples
    --------
    >>> from shatterkit.inputs import as_point
    >>> as_point([0.0, 1.0]).dims
    ('feature',)
    """
    if isinstance(x, xr.DataArray):
        if SAMPLE in x.dims:
            if x.sizes[SAMPLE] != 1:
                raise ValueError(
                    f"The {name!r} parameter of {caller} must be a single input. "
                    f"Got a DataArray with {x.sizes[SAMPLE]} samples instead."
                )
            x = x.isel({SAMPLE: 0}, drop=True)
        # coords along the point's own dims only: scalar ones (a selected sample) do not apply
        coords = {k: v for k, v in x.coords.items() if v.dims and set(v.dims) <= set(x.dims)}
        return xr.DataArray(np.asarray(x.values, dtype=np.float64), dims=x.dims, coords=coords)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"The {name!r} parameter of {caller} must be a real array-like input. "
            f"Got {type(x).__name__} instead."
        ) from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return xr.DataArray(arr, dims=input_dims(arr.ndim))


def _stack_path(points: np.ndarray, t: np.ndarray, template: xr.DataArray) -> xr.DataArray:
    coords: dict[Any, Any] = {SAMPLE: np.arange(len(t)), T: (SAMPLE, t)}
    coords.update(template.coords.items())
    return xr.DataArray(points, dims=(SAMPLE, *template.dims), coords=coords)


def line(start: float = -2.0, stop: float = 2.0, n: int = 256) -> xr.DataArray:
    """The paper's 1-D input grid: ``n`` equally spaced points on ``[start, stop]``.

    Parameters
    ----------
    start, stop : float
        Ends of the interval (the paper uses ``[-2, 2]``).
    n : int
        Number of points (the paper uses 256).

    Returns
    -------
    xarray.DataArray
        Shape ``(n, 1)``, dims ``(sample, feature)``, coord ``t`` equal to the input value.

    Examples
    --------
    >>> from shatterkit import inputs
    >>> x = inputs.line(n=5)
    >>> x.dims, x.shape, x["t"].values.tolist()
    (('sample', 'feature'), (5, 1), [-2.0, -1.0, 0.0, 1.0, 2.0])
    """
    n = check_int(n, "n", "line", 2)
    t = np.linspace(float(start), float(stop), n)
    return xr.DataArray(
        t[:, None],
        dims=(SAMPLE, FEATURE),
        coords={SAMPLE: np.arange(n), T: (SAMPLE, t)},
        name="input",
    )


def segment(a: Any, b: Any, n: int = 256) -> xr.DataArray:
    """The straight path from input ``a`` to input ``b`` in ``n`` equally spaced steps.

    Parameters
    ----------
    a, b : array-like, torch.Tensor or xarray.DataArray
        Two inputs of the same shape (e.g. two images ``(channel, height, width)``).
    n : int
        Number of points, ends included.

    Returns
    -------
    xarray.DataArray
        ``x(t) = (1 - t) a + t b`` for ``t`` in ``[0, 1]``; dims ``(sample, *input dims)``, coord ``t``.

    Examples
    --------
    >>> from shatterkit import inputs
    >>> path = inputs.segment([0.0, 0.0], [1.0, 2.0], n=3)
    >>> path.values.tolist()
    [[0.0, 0.0], [0.5, 1.0], [1.0, 2.0]]
    """
    n = check_int(n, "n", "segment", 2)
    pa, pb = as_point(a, "a", "segment"), as_point(b, "b", "segment")
    if pa.shape != pb.shape:
        raise ValueError(
            "The 'b' parameter of segment must have the shape of 'a' "
            f"{tuple(pa.shape)}. Got shape {tuple(pb.shape)} instead."
        )
    t = np.linspace(0.0, 1.0, n)
    shape = (n,) + (1,) * pa.ndim
    points = (1 - t.reshape(shape)) * pa.values + t.reshape(shape) * pb.values
    return _stack_path(points, t, pa).rename("input")


def _unit_direction(shape: tuple[int, ...], direction: Any, seed: Any, caller: str) -> np.ndarray:
    if direction is None:
        d = np.random.default_rng(seed).standard_normal(shape)
    else:
        d = as_point(direction, "direction", caller).values
        if d.shape != shape:
            raise ValueError(
                f"The 'direction' parameter of {caller} must have the shape of 'x' {shape}. "
                f"Got shape {d.shape} instead."
            )
    norm = np.linalg.norm(d)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(
            f"The 'direction' parameter of {caller} must be a finite non-zero array. "
            "Got a zero or non-finite direction instead."
        )
    return d / norm


def ray(
    x: Any,
    radius: float = 1.0,
    n: int = 256,
    direction: Any = None,
    seed: Any = None,
) -> xr.DataArray:
    """A line through ``x`` along a unit direction, from ``x - radius·u`` to ``x + radius·u``.

    Parameters
    ----------
    x : array-like, torch.Tensor or xarray.DataArray
        The centre input.
    radius : float
        Half-length of the line in input units.
    n : int
        Number of points.
    direction : array-like, optional
        Direction of the line (normalised to unit length). Random (Gaussian) when omitted.
    seed : int or numpy.random.Generator, optional
        Seeds the random direction.

    Returns
    -------
    xarray.DataArray
        Dims ``(sample, *input dims)``, coord ``t`` in ``[-radius, radius]``.

    Examples
    --------
    >>> from shatterkit import inputs
    >>> r = inputs.ray([1.0, 1.0], radius=2.0, n=3, direction=[1.0, 0.0])
    >>> r.values.tolist(), r["t"].values.tolist()
    ([[-1.0, 1.0], [1.0, 1.0], [3.0, 1.0]], [-2.0, 0.0, 2.0])
    """
    n = check_int(n, "n", "ray", 2)
    p = as_point(x, "x", "ray")
    u = _unit_direction(p.shape, direction, seed, "ray")
    t = np.linspace(-float(radius), float(radius), n)
    points = p.values + t.reshape((n,) + (1,) * p.ndim) * u
    return _stack_path(points, t, p).rename("input")


def neighbourhood(x: Any, radius: float = 0.1, n: int = 256, seed: Any = None) -> xr.DataArray:
    """A Gaussian cloud of ``n`` inputs around ``x`` with standard deviation ``radius`` per coordinate.

    Parameters
    ----------
    x : array-like, torch.Tensor or xarray.DataArray
        The centre input.
    radius : float
        Standard deviation of the perturbation of each coordinate.
    n : int
        Number of inputs.
    seed : int or numpy.random.Generator, optional
        Seeds the cloud.

    Returns
    -------
    xarray.DataArray
        Dims ``(sample, *input dims)``; no ``t`` coord (the set is not a path).

    Examples
    --------
    >>> from shatterkit import inputs
    >>> inputs.neighbourhood([0.0, 0.0, 0.0], radius=0.1, n=4, seed=0).shape
    (4, 3)
    """
    n = check_int(n, "n", "neighbourhood", 1)
    p = as_point(x, "x", "neighbourhood")
    noise = np.random.default_rng(seed).standard_normal((n, *p.shape)) * float(radius)
    coords = {SAMPLE: np.arange(n), **{k: v for k, v in p.coords.items()}}
    return xr.DataArray(p.values + noise, dims=(SAMPLE, *p.dims), coords=coords, name="input")
