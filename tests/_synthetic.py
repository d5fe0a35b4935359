"""Synthetic gradient and pattern Datasets in the probes' schema, built from numpy arrays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr


def gradient_dataset(
    grad: np.ndarray,
    *,
    layers: Mapping[str, np.ndarray] | None = None,
    t: np.ndarray | None = None,
) -> xr.Dataset:
    """A gradient Dataset from ``grad`` of shape ``(n, F)`` or ``(models, n, F)``.

    ``layers`` maps a layer name to its gradient ``(n, F_l)`` or ``(models, n, F_l)``; depths
    follow the mapping's order. ``t`` defaults to the paper's line, [-2, 2].
    """
    grad = np.asarray(grad)
    lead = ("model",) if grad.ndim == 3 else ()
    n = grad.shape[-2]
    ds = xr.Dataset(
        {"gradient": ((*lead, "sample", "feature"), grad, {"layer": "input", "depth": 0})},
        coords={
            "sample": np.arange(n),
            "t": ("sample", np.linspace(-2, 2, n) if t is None else np.asarray(t)),
        },
    )
    for depth, (name, g) in enumerate((layers or {}).items(), start=1):
        ds[f"gradient:{name}"] = (
            (*lead, "sample", f"{name}:feature"),
            np.asarray(g),
            {"layer": name, "depth": depth},
        )
    if lead:
        ds = ds.assign_coords(model=np.arange(grad.shape[0]))
    return ds


def pattern_dataset(
    bits: np.ndarray,
    layer_sizes: Sequence[int],
    *,
    names: Sequence[str] | None = None,
    packed: bool = False,
    t: np.ndarray | None = None,
) -> xr.Dataset:
    """A pattern Dataset from bool ``bits`` ``(n, U)`` or ``(models, n, U)``.

    Units are split into consecutive layers of ``layer_sizes`` units, named ``names`` (default
    ``l1``, ``l2``, ...; depths 1, 2, ...); ``packed`` stores them with ``numpy.packbits`` as the
    probe does.
    """
    bits = np.asarray(bits, dtype=bool)
    assert sum(layer_sizes) == bits.shape[-1]
    lead = ("model",) if bits.ndim == 3 else ()
    n = bits.shape[-2]
    names = [f"l{k + 1}" for k in range(len(layer_sizes))] if names is None else names
    unit_names = np.repeat(names, layer_sizes)
    depths = np.repeat(np.arange(1, len(layer_sizes) + 1), layer_sizes)
    if packed:
        var = ((*lead, "sample", "byte"), np.packbits(bits, axis=-1), {"packed": 1})
    else:
        var = ((*lead, "sample", "unit"), bits, {})
    ds = xr.Dataset(
        {"pattern": var},
        coords={
            "sample": np.arange(n),
            "t": ("sample", np.linspace(-2, 2, n) if t is None else np.asarray(t)),
            "layer": ("unit", unit_names),
            "depth": ("unit", depths),
        },
    )
    if lead:
        ds = ds.assign_coords(model=np.arange(bits.shape[0]))
    return ds
