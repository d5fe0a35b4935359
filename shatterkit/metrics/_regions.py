"""Linear regions crossed by a path: runs of identical activation patterns, optionally refined."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from shatterkit._dims import LAYER, MODEL, PATTERN, SAMPLE, param_error
from shatterkit.metrics._common import check_bool, sort_by_t
from shatterkit.metrics._patterns import Layout, as_packed, read_patterns

__all__ = ["linear_regions"]

#: bisection depth: an interval between two samples is split at most this many times
MAX_BISECTIONS = 40


def _model_patterns(model: Any, x: np.ndarray, layers: list[str]) -> np.ndarray:
    """Bool patterns ``(n, U)`` of ``model`` at inputs ``x``, each sample on its own."""
    import torch

    from shatterkit.probes import activation_patterns

    ds = activation_patterns(
        model, torch.from_numpy(x), layers=layers, batchnorm="eval", progress=False
    )
    return np.asarray(ds[PATTERN].values, dtype=bool)


def _bisect(
    model: Any, xa: np.ndarray, xb: np.ndarray, pa: np.ndarray, pb: np.ndarray, layout: Layout
) -> tuple[int, np.ndarray]:
    """Count the pattern changes between each ``xa[k]`` and ``xb[k]`` by bisection.

    An interval whose end patterns differ in one unit holds one change; one whose ends agree holds
    none; otherwise it is halved. After :data:`MAX_BISECTIONS` halvings what is left counts as one
    change (units switching together). Returns the number of changes and, per layer, the number
    of changes that touch it.
    """
    onehot = layout.onehot
    total, per_layer = 0, np.zeros(len(layout.layers), dtype=np.int64)
    for level in range(MAX_BISECTIONS + 1):
        differ = pa != pb
        n_differ = differ.sum(-1)
        final = (n_differ == 1) | ((n_differ > 1) & (level == MAX_BISECTIONS))
        total += int(final.sum())
        per_layer += ((differ[final].astype(np.int64) @ onehot) > 0).sum(0)
        split = n_differ > 1
        if not split.any() or level == MAX_BISECTIONS:
            break
        xa, xb, pa, pb = xa[split], xb[split], pa[split], pb[split]
        xm = (xa + xb) / 2
        pm = _model_patterns(model, xm, layout.layers)
        xa, xb = np.concatenate([xa, xm]), np.concatenate([xm, xb])
        pa, pb = np.concatenate([pa, pm]), np.concatenate([pm, pb])
    return total, per_layer


def _path_inputs(inputs: Any, pat: xr.Dataset, caller: str) -> np.ndarray:
    expected = (
        "the path's inputs: a DataArray with a 'sample' dim matching pat (in path order by 't')"
    )
    if not isinstance(inputs, xr.DataArray) or SAMPLE not in inputs.dims:
        raise param_error("inputs", caller, expected, inputs, exc=TypeError)
    ordered = sort_by_t(pat)
    if inputs.sizes[SAMPLE] != ordered.sizes[SAMPLE]:
        raise param_error("inputs", caller, expected, inputs)
    inputs = sort_by_t(inputs)
    if SAMPLE in inputs.indexes and SAMPLE in ordered.indexes:
        try:
            inputs = inputs.sel({SAMPLE: ordered[SAMPLE].values})
        except KeyError:
            raise param_error("inputs", caller, expected, inputs) from None
    return np.asarray(inputs.transpose(SAMPLE, ...).values, dtype=np.float64)


def _models(model: Any, ensemble: bool, n_models: int, caller: str) -> list[Any]:
    import torch

    members = list(model) if isinstance(model, (list, tuple, torch.nn.ModuleList)) else [model]
    if not all(isinstance(m, torch.nn.Module) for m in members) or (
        len(members) != n_models or (not ensemble and not isinstance(model, torch.nn.Module))
    ):
        expected = (
            f"a sequence of {n_models} torch.nn.Module (one per model of pat)"
            if ensemble
            else "the torch.nn.Module that made pat"
        )
        raise param_error("model", caller, expected, model, exc=TypeError)
    return members


def linear_regions(
    pat: xr.Dataset, *, model: Any = None, inputs: xr.DataArray | None = None, refine: bool = False
) -> xr.Dataset:
    r"""Number of linear regions a path crosses: runs of identical activation patterns.

    A piecewise-linear network is linear where its activation pattern is constant, and its
    gradient changes only where the pattern does (PAPER.md, "Activation patterns"). With samples
    in path order (sorted by ``t``), the count is :math:`1 + \#\{i : p_i \ne p_{i+1}\}`, for the
    whole network's pattern and for each layer's part of it.

    Sampled, the count misses changes that fall between the same two samples. With ``refine``,
    each interval between consecutive samples whose patterns differ is bisected (on the straight
    segment between the two inputs) until each piece holds a single unit's change, so the count
    no longer depends on the sampling density.

    Parameters
    ----------
    pat : xarray.Dataset
        A pattern Dataset (bool or packed) along a path.
    model : torch.nn.Module or sequence of torch.nn.Module, optional
        With ``refine``: the network (or the ensemble, one per ``model`` of ``pat``) that made
        ``pat``.
    inputs : xarray.DataArray, optional
        With ``refine``: the path's inputs (dim ``sample``, path order by ``t``), as given to
        the probe.
    refine : bool
        Bisect the changes between samples.

    Returns
    -------
    xarray.Dataset
        ``n_regions`` (scalar, or dim ``model``) and ``n_regions_layer`` (dims ``(model,)
        layer``, coord ``depth``), int; attr ``refined`` (0 or 1).

    Raises
    ------
    ValueError
        With ``refine``, if ``model`` or ``inputs`` is missing, or the model's patterns at the
        samples (recomputed sample by sample, BatchNorm in eval mode) differ from ``pat``.

    See Also
    --------
    pattern_dispersion : How far apart the patterns of two inputs are.
    activation_rate : How often each unit is on.

    Notes
    -----
    Refinement assumes each unit changes at most once between two consecutive samples whose
    patterns differ, and none changes between two samples whose patterns agree (true on a line
    through a one-hidden-layer net); patterns made with batch statistics (BN in training mode or
    ``batchnorm="population"`` with BN layers) cannot be refined. Computed eagerly.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from shatterkit import metrics
    >>> bits = np.array([[0, 0], [1, 0], [1, 0], [1, 1]], dtype=bool)
    >>> pat = xr.Dataset({"pattern": (("sample", "unit"), bits)},
    ...                  coords={"layer": ("unit", ["a", "b"]), "depth": ("unit", [1, 2])})
    >>> out = metrics.linear_regions(pat)
    >>> int(out["n_regions"]), out["n_regions_layer"].values.tolist()
    (3, [2, 2])
    """
    caller = "linear_regions"
    refine = check_bool(refine, "refine", caller)
    da, packed, layout = read_patterns(pat, caller)
    ensemble = MODEL in da.dims
    bits_packed = np.asarray(as_packed(da, packed).values)
    if not ensemble:
        bits_packed = bits_packed[None]
    changes = bits_packed[:, 1:] ^ bits_packed[:, :-1]  # (models, n - 1, bytes)
    byte, mask, layer = layout.byte_masks()
    pair_onehot = (layer[:, None] == np.arange(len(layout.layers))).astype(np.int64)
    layer_changed = (((changes[..., byte] & mask) != 0).astype(np.int64) @ pair_onehot) > 0
    n_changes = changes.any(-1).sum(-1)
    n_changes_layer = layer_changed.sum(-2)

    if refine:
        if model is None:
            raise param_error("model", caller, "the torch model that made pat (refine=True)", model)
        if inputs is None:
            raise param_error("inputs", caller, "the path's inputs (refine=True)", inputs)
        members = _models(model, ensemble, bits_packed.shape[0], caller)
        x = _path_inputs(inputs, pat, caller)
        n_units = layout.unit_layer.size
        for m, member in enumerate(members):
            at_samples = _model_patterns(member, x, layout.layers)
            expected = np.unpackbits(bits_packed[m], axis=-1, count=n_units).astype(bool)
            if at_samples.shape != expected.shape or not np.array_equal(at_samples, expected):
                mismatch = (
                    int((at_samples != expected).any(-1).sum())
                    if at_samples.shape == expected.shape
                    else f"shape {at_samples.shape} vs {expected.shape}"
                )
                raise ValueError(
                    f"The 'model' parameter of {caller} must be the model that made pat: its "
                    "patterns, recomputed sample by sample with BatchNorm in eval mode, must "
                    f"equal pat's. Got patterns that differ at {mismatch} sample(s) instead."
                )
            idx = np.flatnonzero(changes[m].any(-1))
            n_changes[m], n_changes_layer[m] = _bisect(
                member, x[idx], x[idx + 1], at_samples[idx], at_samples[idx + 1], layout
            )

    n_regions = 1 + n_changes
    n_regions_layer = 1 + n_changes_layer
    lead = (MODEL,) if ensemble else ()
    if not ensemble:
        n_regions, n_regions_layer = n_regions[0], n_regions_layer[0]
    out = xr.Dataset(
        {
            "n_regions": (
                lead,
                np.asarray(n_regions, dtype=np.int64),
                {"long_name": "linear regions along the path", "units": "1"},
            ),
            "n_regions_layer": (
                (*lead, LAYER),
                np.asarray(n_regions_layer, dtype=np.int64),
                {"long_name": "regions of the layer's pattern along the path", "units": "1"},
            ),
        },
        coords=layout.coords(),
    )
    if MODEL in da.coords:
        out = out.assign_coords({MODEL: da[MODEL].values})
    out.attrs = {"refined": int(refine)}
    return out
