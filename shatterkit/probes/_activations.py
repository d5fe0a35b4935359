"""Activation patterns: which rectifier units are on, for every call of every rectifier."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
import xarray as xr

from shatterkit._dims import BYTE, DEPTH, LAYER, PATTERN, SAMPLE, UNIT
from shatterkit._packing import pack_bits
from shatterkit.probes._base import BaseProbe, unknown_name_error
from shatterkit.probes._driver import ChunkFn, Variables, run_probe
from shatterkit.probes._engine import (
    Session,
    check_common,
    forward,
    iterate_models,
    prepare_inputs,
    record_by_hooks,
    to_device,
    to_host,
    unwrap_model,
)

__all__ = ["activation_patterns", "ActivationProbe"]

_CALLER = "activation_patterns"


def activation_patterns(
    model: Any,
    X: Any,
    *,
    layers: Any = "rectifiers",
    batchnorm: str = "population",
    batch_size: int | str = 256,
    device: Any = None,
    packed: bool = False,
    progress: bool | None = None,
    store: Any = None,
    resume: bool = False,
    autocast: Any = None,
) -> xr.Dataset:
    """Record which units of every rectifier call are on (pre-activation > 0) for each input.

    Every call is seen, whether made by a module (``nn.ReLU``, in-place too, ``nn.ReLU6``,
    ``nn.LeakyReLU``, ``nn.PReLU``, :class:`shatterkit.models.CReLU`) or functionally
    (``F.relu``, ``torch.relu``, ``Tensor.relu`` inside a ``forward``), because the probe watches
    the functional calls themselves. A module called twice gives two layers (``relu``,
    ``relu#1``); a functional call inside module ``block`` is named ``block.relu()``. For smooth
    activations (GELU, SiLU, ...) the sign of the pre-activation is recorded. The sign is taken
    before the call, so in-place rectifiers are recorded correctly.

    Parameters
    ----------
    model : torch.nn.Module or sequence of torch.nn.Module
        The network, or an ensemble (leading ``model`` dim in the result).
    X : xarray.DataArray, torch.Tensor or array-like
        Inputs, samples first.
    layers : "rectifiers" or list of str
        Every rectifier call, or only the calls with these names.
    batchnorm : {"population", "coupled", "eval"}
        Batch statistics while recording, as in :func:`shatterkit.input_gradients`.
    batch_size : int or "auto"
        Samples per forward pass.
    device : str or torch.device, optional
        Run on a copy of the model on this device.
    packed : bool
        Store the patterns as bits (``numpy.packbits`` layout along ``unit``, dim ``byte``):
        1/8 of the memory of bool. :func:`shatterkit.unpack_patterns` restores bool.
    progress : bool, optional
        Show a progress bar.
    store : str, os.PathLike or zarr store, optional
        Stream the result batch by batch into this zarr store and return it lazily opened.
    resume : bool
        With ``store``: compute only the batches an interrupted run did not finish
        (same probe, parameters, inputs, ensemble and ``batch_size``).
    autocast : {None, "bfloat16", "float16"}
        Run the forward under ``torch.autocast`` with this dtype (``float16`` on CUDA only);
        gradients are returned in the inputs' dtype. ``benchmarks/`` measures the error this
        introduces against float32.

    Returns
    -------
    xarray.Dataset
        ``pattern`` with dims ``(sample, unit)`` (bool) or ``(sample, byte)`` (packed); the
        ``unit`` dim carries coords ``layer`` (call name) and ``depth`` (1-based call order).

    Raises
    ------
    ValueError
        If the model makes no rectifier call, or a requested layer does not exist.
    RuntimeError
        If a rectifier module ran but its activation could not be seen (e.g. a compiled
        submodule), rather than returning partial patterns.

    Examples
    --------
    >>> import torch
    >>> from shatterkit import activation_patterns, inputs
    >>> net = torch.nn.Sequential(torch.nn.Linear(1, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> ds = activation_patterns(net, inputs.line(n=10))
    >>> ds["pattern"].dims, ds["pattern"].shape, sorted(set(ds["layer"].values.tolist()))
    (('sample', 'unit'), (10, 3), ['1'])
    """
    members, ensemble = iterate_models(model, _CALLER)
    inputs = prepare_inputs(X, _CALLER)
    check_common(batchnorm, batch_size, _CALLER)
    return run_probe(
        members,
        inputs,
        partial(_chunk_fn, layers=layers, packed=packed),
        ensemble=ensemble,
        session_kw={
            "batchnorm": batchnorm,
            "batch_size": batch_size,
            "device": device,
            "caller": _CALLER,
            "autocast": autocast,
            "record": True,
            "gradients": False,
        },
        attrs={
            "model_class": type(unwrap_model(members[0])).__name__,
            "batchnorm": batchnorm,
            "autocast": str(autocast).replace("torch.", "") if autocast is not None else "none",
            "packed": int(packed),
            "history": f"shatterkit.activation_patterns(batchnorm={batchnorm!r}, packed={packed})",
        },
        progress=progress,
        store=store,
        resume=resume,
    )


def _chunk_fn(s: Session, *, layers: Any, packed: bool) -> ChunkFn:
    """The per-batch pattern recorder of one model."""
    attrs: dict[str, Any] = {"long_name": "unit on (pre-activation > 0)", "units": "1"}
    if packed:
        attrs.update(packed=1, bit_order="big")
    coords: dict[str, Any] = {}  # set by the first batch
    n_units = 0
    scratch: Any = None  # a numpy array on the CPU, a tensor on an accelerator
    cpu = s.device.type == "cpu"
    mode = s.mode

    def run(x_cpu: torch.Tensor, first: bool) -> tuple[Variables, dict[str, Any]]:
        nonlocal n_units, scratch
        x = to_device(x_cpu, s.device, s.dtype)
        dest = None if packed else s.out.get(PATTERN)
        if dest is not None:  # the calls are known: their patterns go straight into the result
            mode.out = dest
        elif coords:  # or into one buffer for the batch, reused when it is packed right away
            if not packed or scratch is None or scratch.shape[0] < x.shape[0]:
                shape = (x.shape[0], n_units)
                scratch = (
                    np.empty(shape, dtype=bool)
                    if cpu
                    else torch.empty(shape, dtype=torch.bool, device=s.device)
                )
            mode.out = scratch[: x.shape[0]]
        try:
            with torch.no_grad():
                forward(s.model, mode, x, first, _CALLER, s.autocast)
            if s.missed:
                raise RuntimeError(
                    f"rectifier module(s) {sorted(set(s.missed))} ran but their activation was "
                    "not seen (a compiled or non-functional implementation?); refusing to return "
                    "partial patterns."
                )
            mode.check_calls()
            bits: Any = mode.out
        finally:
            mode.out = None
        if bits is None:  # the first batch: name the calls and fix the layout
            keep = _select(mode.patterns, layers, type(s.model).__name__)
            parts = [mode.patterns[k][1] for k in keep]
            names = [mode.patterns[k][0] for k in keep]
            sizes = [int(p.shape[1]) for p in parts]
            for name, p in zip(names, parts, strict=True):
                if p.shape[0] != x.shape[0]:
                    raise ValueError(
                        f"activation patterns need one row per sample at every rectifier call; "
                        f"{name!r} was called on {p.shape[0]} rows for a batch of {x.shape[0]} "
                        "samples (does the model fold another axis into the batch?)"
                    )
            coords[LAYER] = (UNIT, np.repeat(np.array(names, dtype=object), sizes))
            coords[DEPTH] = (UNIT, np.repeat(np.arange(1, len(names) + 1), sizes))
            n_units = sum(sizes)
            mode.fix_layout(keep)
            record_by_hooks(s.model, mode, s.handles)
            bits = _cat_units(parts)
        mode.patterns = []
        data: Any
        if dest is not None:
            data = dest
        elif cpu:  # numpy packs 30x faster than pack_bits on the CPU
            data = np.packbits(bits, axis=-1) if packed else bits
        else:
            data = to_host(pack_bits(bits) if packed else bits)
        return {PATTERN: ((SAMPLE, BYTE if packed else UNIT), data, attrs)}, coords

    return run


def _cat_units(parts: list[torch.Tensor]) -> Any:
    """The parts side by side along the units: a numpy array on the CPU (numpy's join is several
    times faster than torch's for bool), a tensor on an accelerator."""
    if parts[0].device.type == "cpu":
        return np.concatenate([p.numpy() for p in parts], axis=1)
    return torch.cat(parts, dim=1)


def _select(recorded: list[tuple[str, torch.Tensor]], layers: Any, model_name: str) -> list[int]:
    if not recorded:
        raise ValueError(
            f"The 'model' parameter of {_CALLER} must make at least one rectifier call (ReLU, "
            "ReLU6, LeakyReLU, PReLU, CReLU, F.relu, or a smooth activation such as GELU). Got "
            f"{model_name}, which made no rectifier call; there is no activation pattern to record."
        )
    available = [name for name, _ in recorded]
    if layers == "rectifiers":
        return list(range(len(recorded)))
    wanted = [layers] if isinstance(layers, str) else list(layers)
    if not wanted:
        raise ValueError(
            f"The 'layers' parameter of {_CALLER} must be 'rectifiers' or name at least one "
            f"rectifier call. Got {layers!r} instead; available: {available[:8]}."
        )
    for name in wanted:
        if name not in available:
            raise unknown_name_error("rectifier layer", name, available, model_name)
    return [k for k, name in enumerate(available) if name in set(wanted)]


class ActivationProbe(BaseProbe):
    """Activation patterns of every rectifier call, as a scikit-learn estimator.

    A thin shell over :func:`activation_patterns`.

    Parameters
    ----------
    model : torch.nn.Module or sequence of torch.nn.Module
        The network or an ensemble.
    layers : "rectifiers" or list of str
        Which rectifier calls to record.
    batch_size : int or "auto"
        Samples per pass.
    device : str or torch.device, optional
        Run on a copy of the model on this device.
    packed : bool
        Store bits instead of bool.
    progress : bool, optional
        Show a progress bar.
    autocast : {None, "bfloat16", "float16"}
        Run the forward under ``torch.autocast`` with this dtype.
    batchnorm : {"population", "coupled", "eval"}
        Batch statistics while recording.

    Attributes
    ----------
    models_ : list of torch.nn.Module
        The modules that run.
    n_models_ : int
        Ensemble size, 0 for a single model.
    layers_ : list of str
        Empty: rectifier calls are only known once the model runs.
    input_shape_ : tuple or None
        Shape of one input seen in :meth:`fit`.

    Examples
    --------
    >>> import torch
    >>> from shatterkit import ActivationProbe, inputs
    >>> net = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.ReLU(inplace=True))
    >>> ActivationProbe(net).fit_transform(inputs.line(n=8))["pattern"].shape
    (8, 4)
    """

    _parameter_constraints: dict[str, Any] = {
        **BaseProbe._parameter_constraints,
        "layers": [str, list, tuple],
        "packed": ["boolean"],
    }
    _needs_autograd = False

    def __init__(
        self,
        model: Any,
        layers: Any = "rectifiers",
        batch_size: int | str = 256,
        device: Any = None,
        packed: bool = False,
        progress: bool | None = None,
        autocast: Any = None,
        batchnorm: str = "population",
    ) -> None:
        self.model = model
        self.layers = layers
        self.batch_size = batch_size
        self.device = device
        self.packed = packed
        self.progress = progress
        self.autocast = autocast
        self.batchnorm = batchnorm

    def _resolve_layers(self, model: Any) -> list[str]:
        # Rectifier calls are named while the model runs, so their names are checked there.
        return [] if self.layers == "rectifiers" else list(np.atleast_1d(self.layers))

    def _transform(self, model: Any, X: Any, **kw: Any) -> xr.Dataset:
        return activation_patterns(
            model,
            X,
            layers=self.layers,
            batchnorm=self.batchnorm,
            batch_size=self.batch_size,
            device=self.device,
            packed=self.packed,
            progress=self.progress,
            autocast=self.autocast,
            **kw,
        )
