"""Activation-pattern metrics: how often units fire, together, and how patterns spread.

Bool and packed patterns give identical results. Packed patterns are never unpacked to floats:
per-unit counts shift the bits out of each byte, and pair statistics along a path take the
popcount (``numpy.bitwise_count``) of AND / XOR of whole bytes, masked per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from shatterkit._dims import BYTE, DEPTH, LAG, LAYER, MODEL, PATTERN, SAMPLE, UNIT, param_error
from shatterkit.metrics._common import check_max_lag, model_mean, set_attrs, sort_by_t

__all__ = ["activation_rate", "coactivation_rate", "pattern_dispersion"]


@dataclass(frozen=True)
class Layout:
    """Which layer each unit belongs to, with the layers in depth order."""

    layers: list[str]
    depths: np.ndarray  # (L,) int
    unit_layer: np.ndarray  # (U,) index into layers
    sizes: np.ndarray  # (L,) units per layer

    @property
    def onehot(self) -> np.ndarray:
        """``(U, L)`` int64 membership matrix."""
        return (self.unit_layer[:, None] == np.arange(len(self.layers))).astype(np.int64)

    def byte_masks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The non-zero per-layer bit masks of the packed layout: ``(byte, mask, layer)``.

        A byte may hold units of several layers; each (byte, layer) pair with units gets the mask
        of that layer's bits in that byte.
        """
        masks = np.packbits(self.onehot.T.astype(bool), axis=-1)  # (L, B)
        layer, byte = np.nonzero(masks)
        return byte, masks[layer, byte], layer

    def coords(self) -> dict[str, Any]:
        # object strings: zarr v3 has a specification for them, not for fixed-width unicode
        return {LAYER: np.array(self.layers, dtype=object), DEPTH: (LAYER, self.depths)}

    def layer_sizes(self) -> xr.DataArray:
        return xr.DataArray(self.sizes, dims=(LAYER,), coords=self.coords())


def read_patterns(pat: Any, caller: str) -> tuple[xr.DataArray, bool, Layout]:
    """Validate a pattern Dataset; return its ``pattern`` (in path order), packed?, and layout."""
    expected = "a pattern Dataset (a bool 'pattern' with dims (model,) sample, unit, or a packed uint8 one with dim byte, and coords 'layer' and 'depth' on 'unit')"
    if not isinstance(pat, xr.Dataset):
        raise param_error("pat", caller, expected, pat, exc=TypeError)
    if PATTERN not in pat or LAYER not in pat.coords or DEPTH not in pat.coords:
        raise param_error("pat", caller, expected, pat)
    if pat[LAYER].dims != (UNIT,) or pat[DEPTH].dims != (UNIT,):
        raise param_error("pat", caller, expected, pat)
    da = sort_by_t(pat)[PATTERN]
    packed = BYTE in da.dims
    last = BYTE if packed else UNIT
    if set(da.dims) - {MODEL} != {SAMPLE, last}:
        raise param_error("pat", caller, expected, da)
    n_units = pat.sizes[UNIT]
    if packed and (da.dtype != np.uint8 or da.sizes[BYTE] != -(-n_units // 8)):
        raise param_error(
            "pat",
            caller,
            f"a packed pattern of dtype uint8 with {-(-n_units // 8)} bytes for {n_units} units",
            da,
        )
    if not packed and da.dtype != bool:
        raise param_error(
            "pat", caller, "a pattern of dtype bool (or packed uint8)", da, exc=TypeError
        )
    if da.sizes[SAMPLE] < 2:
        raise param_error("pat", caller, "a pattern Dataset with at least 2 samples", da)
    names = np.asarray(pat[LAYER].values).astype(str)
    depth = np.asarray(pat[DEPTH].values, dtype=np.int64)
    first: dict[str, int] = {}
    for name, d in zip(names.tolist(), depth.tolist(), strict=True):
        first[name] = min(d, first.get(name, d))
    layers = sorted(first, key=lambda k: first[k])
    index = {name: i for i, name in enumerate(layers)}
    unit_layer = np.array([index[name] for name in names], dtype=np.int64)
    layout = Layout(
        layers=layers,
        depths=np.array([first[k] for k in layers], dtype=np.int64),
        unit_layer=unit_layer,
        sizes=np.bincount(unit_layer, minlength=len(layers)),
    )
    return da.transpose(..., SAMPLE, last), packed, layout


def _bit_counts(x: np.ndarray, *, n_units: int) -> np.ndarray:
    """Per-unit on-counts over samples of packed ``x`` ``(..., n, B)``: ``(..., n_units)``."""
    counts = np.stack(
        [((x >> (7 - b)) & 1).sum(-2, dtype=np.int64) for b in range(8)], axis=-1
    )  # (..., B, 8) in packbits' big bit order
    return counts.reshape(*counts.shape[:-2], -1)[..., :n_units]


def unit_counts(da: xr.DataArray, packed: bool, layout: Layout) -> xr.DataArray:
    """How many samples each unit is on for: int64, dims ``(model,) unit``."""
    if not packed:
        return da.sum(SAMPLE, dtype=np.int64).drop_vars([LAYER, DEPTH])
    n_units = layout.unit_layer.size
    return xr.apply_ufunc(
        _bit_counts,
        da,
        input_core_dims=[[SAMPLE, BYTE]],
        output_core_dims=[[UNIT]],
        kwargs={"n_units": n_units},
        dask="parallelized",
        output_dtypes=[np.int64],
        dask_gufunc_kwargs={"output_sizes": {UNIT: n_units}, "allow_rechunk": True},
    )


def as_packed(da: xr.DataArray, packed: bool) -> xr.DataArray:
    """The pattern in packed form (``numpy.packbits`` along ``unit``), dims ``(model,) sample, byte``."""
    if packed:
        return da
    n_bytes = -(-da.sizes[UNIT] // 8)
    return xr.apply_ufunc(
        np.packbits,
        da,
        input_core_dims=[[UNIT]],
        output_core_dims=[[BYTE]],
        kwargs={"axis": -1},
        dask="parallelized",
        output_dtypes=[np.uint8],
        dask_gufunc_kwargs={"output_sizes": {BYTE: n_bytes}, "allow_rechunk": True},
    )


def _by_layer(per_unit: xr.DataArray, layout: Layout) -> xr.DataArray:
    """Sum ``per_unit`` (dim ``unit``) over the units of each layer."""
    onehot = xr.DataArray(layout.onehot, dims=(UNIT, LAYER))
    out = xr.dot(per_unit.astype(np.int64), onehot, dim=UNIT)
    return out.assign_coords(layout.coords())


def _lagged_kernel(
    x: np.ndarray,
    *,
    op: np.ufunc,
    max_lag: int,
    byte: np.ndarray,
    mask: np.ndarray,
    onehot: np.ndarray,
) -> np.ndarray:
    """``sum_i popcount(op(p_i, p_{i+k}) & mask_layer)`` for each layer and lag ``k``."""
    n = x.shape[-2]
    out = np.empty((*x.shape[:-2], onehot.shape[1], max_lag + 1))
    for k in range(max_lag + 1):
        pairs = op(x[..., : n - k, :], x[..., k:, :])[..., byte] & mask
        out[..., k] = np.bitwise_count(pairs).sum(-2, dtype=np.int64) @ onehot
    return out


def _lagged_rate(
    da: xr.DataArray, packed: bool, layout: Layout, op: np.ufunc, max_lag: int
) -> xr.DataArray:
    """Fraction of a layer's units for which ``op`` of a pair ``k`` apart is 1, mean over pairs."""
    byte, mask, layer = layout.byte_masks()
    onehot = (layer[:, None] == np.arange(len(layout.layers))).astype(np.int64)
    counts = xr.apply_ufunc(
        _lagged_kernel,
        as_packed(da, packed),
        input_core_dims=[[SAMPLE, BYTE]],
        output_core_dims=[[LAYER, LAG]],
        kwargs={"op": op, "max_lag": max_lag, "byte": byte, "mask": mask, "onehot": onehot},
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={
            "output_sizes": {LAYER: len(layout.layers), LAG: max_lag + 1},
            "allow_rechunk": True,
        },
    )
    n = da.sizes[SAMPLE]
    lags = np.arange(max_lag + 1)
    pairs = xr.DataArray(np.outer(layout.sizes, n - lags), dims=(LAYER, LAG))
    return (counts / pairs).assign_coords({**layout.coords(), LAG: lags})


def _pair_statistic(
    pat: Any, max_lag: Any, caller: str, name: str, attrs: dict[str, str]
) -> xr.DataArray:
    da, packed, layout = read_patterns(pat, caller)
    n = da.sizes[SAMPLE]
    max_lag = check_max_lag(max_lag, n, caller)
    if max_lag is None:
        c = unit_counts(da, packed, layout)
        # ordered pairs i != j: both on c (c - 1) times, different 2 c (n - c) times
        per_unit = c * (c - 1) if name == "coactivation" else 2 * c * (n - c)
        out = _by_layer(per_unit, layout) / (layout.layer_sizes() * n * (n - 1))
    else:
        op = np.bitwise_and if name == "coactivation" else np.bitwise_xor
        out = _lagged_rate(da, packed, layout, op, max_lag)
        out[LAG].attrs = {"long_name": "lag", "units": "samples"}
    out = set_attrs(model_mean(out.astype(np.float64)), **attrs)
    out.name = name
    return out


def activation_rate(pat: xr.Dataset) -> xr.Dataset:
    r"""How often each unit, and each layer on average, is on; dead and always-on units.

    For unit :math:`u` on for :math:`c_u` of the :math:`n` samples, its rate is :math:`c_u / n`;
    a layer's rate is the mean over its units (and over ``model``). A unit never on is dead; a
    unit always on is linear on the data. With BN units are on for about half the inputs;
    without it deep nets drift to units that are always on or off (PAPER.md, "Activation
    patterns").

    Parameters
    ----------
    pat : xarray.Dataset
        A pattern Dataset, bool or packed.

    Returns
    -------
    xarray.Dataset
        ``rate`` (``layer``, mean over ``model``), ``dead_units`` and ``linear_units`` (dims
        ``(model,) layer``: counts of units never / always on), ``unit_rate`` (dims
        ``(model,) unit``, with the units' layers and depths as coords ``unit_layer`` and
        ``unit_depth``). ``layer`` carries coord ``depth``.

    See Also
    --------
    coactivation_rate : How often units are on together.
    linear_regions : How often the whole pattern changes along a path.

    Notes
    -----
    Lazy with dask.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from shatterkit import metrics
    >>> bits = np.array([[1, 0, 1], [1, 0, 0], [1, 0, 1], [1, 0, 0]], dtype=bool)
    >>> pat = xr.Dataset({"pattern": (("sample", "unit"), bits)},
    ...                  coords={"layer": ("unit", ["a", "a", "b"]), "depth": ("unit", [1, 1, 2])})
    >>> out = metrics.activation_rate(pat)
    >>> out["rate"].values.tolist(), out["dead_units"].values.tolist()
    ([0.5, 0.5], [1, 0])
    """
    caller = "activation_rate"
    da, packed, layout = read_patterns(pat, caller)
    n = da.sizes[SAMPLE]
    c = unit_counts(da, packed, layout)
    sizes = layout.layer_sizes()
    rate = model_mean(_by_layer(c, layout) / (sizes * n))
    unit_coords = {
        "unit_layer": (UNIT, np.asarray(layout.layers, dtype=object)[layout.unit_layer]),
        "unit_depth": (UNIT, layout.depths[layout.unit_layer]),
    }
    return xr.Dataset(
        {
            "rate": set_attrs(rate, long_name="fraction of units on", units="1"),
            "dead_units": set_attrs(
                _by_layer(c == 0, layout), long_name="units never on", units="1"
            ),
            "linear_units": set_attrs(
                _by_layer(c == n, layout), long_name="units always on", units="1"
            ),
            "unit_rate": set_attrs(
                (c / n).assign_coords(unit_coords),
                long_name="fraction of samples the unit is on for",
                units="1",
            ),
        }
    )


def coactivation_rate(pat: xr.Dataset, *, max_lag: int | None = None) -> xr.DataArray:
    r"""Probability that a unit is on for both inputs of a pair (per layer).

    Over all ordered pairs :math:`i \ne j` of the :math:`n` samples, for a layer of :math:`U`
    units where unit :math:`u` is on for :math:`c_u` samples,

    .. math:: \frac{1}{U n (n - 1)} \sum_u c_u (c_u - 1);

    with ``max_lag``, over the pairs :math:`(i, i + k)` along the path instead,
    :math:`\frac{1}{U (n - k)} \sum_i \sum_u p_{i,u} p_{i+k,u}` for each lag :math:`k` (lag 0 is
    the activation rate). Averaged over ``model``. The theorems' independence model, which BN
    maintains, gives 1/4; units always on or off (deep nets without BN) give about 1/2
    (PAPER.md, "Activation patterns"; :func:`shatterkit.theory.coactivation_bn`).

    Parameters
    ----------
    pat : xarray.Dataset
        A pattern Dataset, bool or packed; samples along a path (sorted by ``t``) for
        ``max_lag``.
    max_lag : int, optional
        Largest lag in ``[1, n - 1]``; ``None`` averages over all pairs instead.

    Returns
    -------
    xarray.DataArray
        ``coactivation`` with dims ``layer`` (coord ``depth``), plus ``lag`` with ``max_lag``.

    See Also
    --------
    pattern_dispersion : How often units differ between two inputs.
    shatterkit.theory.coactivation_bn : The value under BN, 1/4.

    Notes
    -----
    Lazy with dask.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from shatterkit import metrics
    >>> bits = np.random.default_rng(0).random((400, 64)) < 0.5
    >>> pat = xr.Dataset({"pattern": (("sample", "unit"), bits)},
    ...                  coords={"layer": ("unit", ["fc"] * 64), "depth": ("unit", [1] * 64)})
    >>> round(float(metrics.coactivation_rate(pat).sel(layer="fc")), 2)
    0.25
    """
    return _pair_statistic(
        pat,
        max_lag,
        "coactivation_rate",
        "coactivation",
        {"long_name": "co-activation rate", "units": "1"},
    )


def pattern_dispersion(pat: xr.Dataset, *, max_lag: int | None = None) -> xr.DataArray:
    r"""Mean normalized Hamming distance between the patterns of pairs of inputs (per layer).

    Over all ordered pairs :math:`i \ne j`, the fraction of a layer's :math:`U` units on for one
    input and off for the other,

    .. math:: \frac{1}{U n (n - 1)} \sum_u 2 c_u (n - c_u);

    with ``max_lag``, over the pairs :math:`(i, i + k)` along the path,
    :math:`\frac{1}{U (n - k)} \sum_i \lVert p_i \oplus p_{i+k} \rVert_1` for each lag. Averaged
    over ``model``. Nearby inputs sharing patterns while distant ones differ is good behaviour;
    patterns that change at every step along a path are shattering (PAPER.md, "Activation
    patterns").

    Parameters
    ----------
    pat : xarray.Dataset
        A pattern Dataset, bool or packed; samples along a path for ``max_lag``.
    max_lag : int, optional
        Largest lag in ``[1, n - 1]``; ``None`` averages over all pairs instead.

    Returns
    -------
    xarray.DataArray
        ``dispersion`` with dims ``layer`` (coord ``depth``), plus ``lag`` with ``max_lag``.

    See Also
    --------
    coactivation_rate : How often units are on together.
    linear_regions : Count the pattern changes along a path.

    Notes
    -----
    Lazy with dask.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from shatterkit import metrics
    >>> bits = np.array([[1, 1], [1, 0], [0, 0]], dtype=bool)
    >>> pat = xr.Dataset({"pattern": (("sample", "unit"), bits)},
    ...                  coords={"layer": ("unit", ["fc", "fc"]), "depth": ("unit", [1, 1])})
    >>> metrics.pattern_dispersion(pat, max_lag=2).values.tolist()
    [[0.0, 0.5, 1.0]]
    """
    return _pair_statistic(
        pat,
        max_lag,
        "pattern_dispersion",
        "dispersion",
        {"long_name": "pattern dispersion (normalized Hamming distance)", "units": "1"},
    )
