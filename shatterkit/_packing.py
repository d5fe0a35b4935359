"""Bit packing of activation patterns (``numpy.packbits`` layout, big bit order)."""

from __future__ import annotations

import functools

import numpy as np
import torch
import xarray as xr

from shatterkit._dims import BYTE, PATTERN, UNIT

_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


@functools.lru_cache(maxsize=8)
def _bit_weights(device: torch.device) -> torch.Tensor:
    """Made once per device: a tensor from a list is a blocking host-to-device copy on CUDA."""
    return torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=device)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Pack a bool tensor ``(..., n)`` along its last dim into uint8 ``(..., ceil(n / 8))``.

    Same layout as ``numpy.packbits(bits, axis=-1)``, computed on the tensor's own device.
    """
    n = bits.shape[-1]
    pad = (-n) % 8
    if pad:
        bits = torch.nn.functional.pad(bits, (0, pad))
    weights = _bit_weights(bits.device)
    grouped = bits.reshape(*bits.shape[:-1], -1, 8).to(torch.uint8)
    return (grouped * weights).sum(-1, dtype=torch.uint8)


def unpack_patterns(ds: xr.Dataset) -> xr.Dataset:
    """Return ``ds`` with a packed ``pattern`` (dim ``byte``) unpacked to bool (dim ``unit``).

    A Dataset whose patterns are already bool is returned unchanged.

    Parameters
    ----------
    ds : xarray.Dataset
        An :class:`~shatterkit.ActivationProbe` result made with ``packed=True``.

    Returns
    -------
    xarray.Dataset
        The same Dataset with ``pattern`` of dtype bool and dims ``(..., sample, unit)``.

    Examples
    --------
    >>> import torch
    >>> from shatterkit import ActivationProbe, inputs, unpack_patterns
    >>> net = torch.nn.Sequential(torch.nn.Linear(1, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    >>> packed = ActivationProbe(net, packed=True).fit_transform(inputs.line(n=16))
    >>> unpack_patterns(packed)["pattern"].shape
    (16, 5)
    """
    if BYTE not in ds[PATTERN].dims:
        return ds
    n_units = ds.sizes[UNIT]
    da = ds[PATTERN]
    bits = xr.apply_ufunc(
        lambda a: np.unpackbits(a, axis=-1, count=n_units).astype(bool),
        da,
        input_core_dims=[[BYTE]],
        output_core_dims=[[UNIT]],
        dask="parallelized",
        output_dtypes=[bool],
        dask_gufunc_kwargs={"output_sizes": {UNIT: n_units}},
    )
    attrs = {k: v for k, v in da.attrs.items() if k != "packed"}
    bits.attrs = attrs
    out = ds.drop_vars(PATTERN).assign({PATTERN: bits.transpose(*da.dims[:-1], UNIT)})
    return out.drop_dims(BYTE, errors="ignore") if BYTE in out.dims else out
