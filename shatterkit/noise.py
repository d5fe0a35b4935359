"""Brown and white noise as gradient Datasets: the two references every gradient is compared to.

A shallow rectifier net's gradient along a line behaves like brown noise, a deep feedforward net's
like white noise (PAPER.md, "The phenomenon" and "Shallow nets are brown noise"). The Datasets
follow the probes' schema (``docs/schema.md``), so every metric and plot takes them as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from shatterkit._dims import FEATURE, GRADIENT, MODEL, OUTPUT, SAMPLE, T, param_error, safe_attrs

__all__ = ["brown", "white"]

#: the paper's line: 256 equally spaced points on [-2, 2]
T_START, T_STOP = -2.0, 2.0


def _check_int(value: Any, name: str, caller: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise param_error(name, caller, f"an int >= {minimum}", value, exc=TypeError)
    if value < minimum:
        raise param_error(name, caller, f"an int >= {minimum}", value)
    return int(value)


def _noise(kind: str, n: Any, n_models: Any, seed: Any) -> xr.Dataset:
    n = _check_int(n, "n", kind, 2)
    members = None if n_models is None else _check_int(n_models, "n_models", kind, 1)
    if not (seed is None or isinstance(seed, (int, np.integer, np.random.Generator))) or isinstance(
        seed, (bool, np.bool_)
    ):
        raise param_error(
            "seed", kind, "None, an int or a numpy.random.Generator", seed, exc=TypeError
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    shape = (members or 1, n)
    if kind == "brown":
        # steps of variance 1/n: the gradient is a Brownian motion B(s) sampled at s = (i + 1) / n
        grad = np.cumsum(rng.normal(0.0, 1.0 / np.sqrt(n), size=shape), axis=-1)
    else:
        grad = rng.normal(0.0, 1.0, size=shape)
    t = np.linspace(T_START, T_STOP, n)
    output = np.cumsum(grad, axis=-1) * (t[1] - t[0])
    lead: tuple[str, ...] = (MODEL,) if members is not None else ()
    if members is None:
        grad, output = grad[0], output[0]
    from shatterkit import __version__

    history = f"shatterkit.noise.{kind}(n={n}, n_models={members}, seed={seed!r})"
    if isinstance(seed, np.random.Generator):
        history = f"shatterkit.noise.{kind}(n={n}, n_models={members}, seed=Generator)"
    ds = xr.Dataset(
        {
            GRADIENT: (
                (*lead, SAMPLE, FEATURE),
                grad[..., None],
                {
                    "layer": "input",
                    "depth": 0,
                    "long_name": f"{kind} noise gradient",
                    "units": "1",
                },
            ),
            OUTPUT: (
                (*lead, SAMPLE),
                output,
                {"long_name": "integrated gradient (output)", "units": "1"},
            ),
        },
        coords={
            SAMPLE: np.arange(n),
            T: (SAMPLE, t, {"long_name": "path parameter", "units": "1"}),
            FEATURE: np.arange(1),
        },
    )
    if members is not None:
        ds = ds.assign_coords({MODEL: np.arange(members)})
    ds.attrs = safe_attrs(
        {
            "model_class": f"{kind}_noise",
            "output": "cumulative sum of the gradient times dt",
            "batchnorm": "none",
            "dtype": "float64",
            "device": "cpu",
            "torch_version": "none",
            "shatterkit_version": __version__,
            "n_nonfinite": 0,
            "history": history,
        }
    )
    return ds


def brown(n: int = 256, *, n_models: int | None = None, seed: Any = None) -> xr.Dataset:
    r"""Brown noise (a random walk) as a gradient Dataset: the shallow-net reference.

    :math:`g_i = \sum_{k \le i} w_k` with :math:`w_k \sim N(0, 1/n)` independent, so that
    :math:`\mathrm{Cov}(g_i, g_j) = \min(i, j) / n` (up to the offset of one step) and the power
    spectrum falls as :math:`1/f^2` (PAPER.md, "The phenomenon"). The variance of the steps makes
    the gradient a standard Brownian motion over the path, of order 1 at its end.

    Parameters
    ----------
    n : int
        Number of samples, on an equally spaced grid ``t`` over [-2, 2] (the paper's line).
    n_models : int, optional
        Draw an ensemble of this many independent walks (leading ``model`` dim). ``None``: one
        walk and no ``model`` dim.
    seed : int or numpy.random.Generator, optional
        Seed or generator for ``numpy.random.default_rng``; ``None`` draws fresh entropy.

    Returns
    -------
    xarray.Dataset
        ``gradient`` with dims ``(model,) sample, feature`` (``feature`` of size 1) and
        ``output``, the cumulative sum of the gradient times the grid step (the integrated
        signal), dims ``(model,) sample``; coord ``t`` on ``sample``; attrs as a
        :class:`~shatterkit.GradientProbe` result, with ``model_class="brown_noise"``.

    See Also
    --------
    white : The deep-net reference.

    Examples
    --------
    >>> from shatterkit import noise
    >>> ds = noise.brown(8, n_models=2, seed=0)
    >>> ds["gradient"].dims, ds.attrs["model_class"]
    (('model', 'sample', 'feature'), 'brown_noise')
    """
    return _noise("brown", n, n_models, seed)


def white(n: int = 256, *, n_models: int | None = None, seed: Any = None) -> xr.Dataset:
    r"""White noise as a gradient Dataset: the deep-net (fully shattered) reference.

    :math:`g_i = w_i \sim N(0, 1)` independent: :math:`\mathrm{Cov}(g_i, g_j) = \delta_{ij}` and
    the power spectrum is flat (PAPER.md, "The phenomenon").

    Parameters
    ----------
    n : int
        Number of samples, on an equally spaced grid ``t`` over [-2, 2] (the paper's line).
    n_models : int, optional
        Draw an ensemble of this many independent series (leading ``model`` dim). ``None``: one
        series and no ``model`` dim.
    seed : int or numpy.random.Generator, optional
        Seed or generator for ``numpy.random.default_rng``; ``None`` draws fresh entropy.

    Returns
    -------
    xarray.Dataset
        Same layout as :func:`brown`, with ``model_class="white_noise"``.

    See Also
    --------
    brown : The shallow-net reference.

    Examples
    --------
    >>> from shatterkit import noise
    >>> ds = noise.white(16, seed=0)
    >>> ds["gradient"].shape, float(ds["t"][0]), float(ds["t"][-1])
    ((16, 1), -2.0, 2.0)
    """
    return _noise("white", n, n_models, seed)
