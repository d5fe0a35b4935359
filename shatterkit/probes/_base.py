"""The estimator shell shared by the probes: scikit-learn conventions over a functional core."""

from __future__ import annotations

import difflib
from numbers import Integral
from typing import Any

import torch
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from shatterkit.probes._engine import (
    BATCHNORM_MODES,
    check_device,
    check_model_tensors,
    iterate_models,
    unwrap_model,
)


def unknown_name_error(what: str, name: Any, available: list[str], model: str) -> ValueError:
    """``<what> 'fc3' not found in Net; close matches: 'fc1', 'fc2'`` (or the first names)."""
    close = difflib.get_close_matches(str(name), available, n=3, cutoff=0.5)
    if close:
        hint = f"; close matches: {', '.join(map(repr, close))}"
    else:
        more = f" and {len(available) - 5} more" if len(available) > 5 else ""
        hint = f"; available: {', '.join(map(repr, available[:5]))}{more}"
    return ValueError(f"{what} {name!r} not found in {model}{hint}.")


def resolve_layers(model: nn.Module, layers: Any, caller: str) -> list[str]:
    """Module names selected by ``layers`` (``None``, ``"all"`` or a list of names).

    A module registered under several names (shared) is known by the first of them, as in
    ``named_modules()``; its other names are accepted and mean the same module.
    """
    if layers is None:
        return []
    every = list(model.named_modules(remove_duplicate=False))  # one walk (~5 us a module)
    canonical: dict[nn.Module, str] = {}
    for n, m in every:
        canonical.setdefault(m, n)  # the first name, as named_modules() gives it
    aliases = {n: canonical[m] for n, m in every if n}
    names = [n for n, m in every if n and canonical[m] == n]
    if isinstance(layers, str):
        if layers == "all":
            leaves = [n for n, m in every if n and canonical[m] == n and not any(m.children())]
            if not leaves:
                raise ValueError(
                    f"layers='all' in {caller} selects the modules without children, but "
                    f"{type(model).__name__} has none."
                )
            return leaves
        layers = [layers]
    selected = []
    for name in layers:
        if not isinstance(name, str):
            raise TypeError(
                f"The 'layers' parameter of {caller} must hold module names (str). "
                f"Got {name!r} instead."
            )
        if name not in aliases:
            raise unknown_name_error("layer", name, names, type(model).__name__)
        selected.append(aliases[name])
    return list(dict.fromkeys(selected))


class BaseProbe(BaseEstimator):
    """Common ``fit``/``transform`` logic; subclasses define ``_transform``.

    ``__init__`` of each subclass only stores its arguments; ``fit`` validates them (through
    ``_parameter_constraints``), resolves the ensemble, the device and the layers, and returns
    ``self``.
    """

    _parameter_constraints: dict[str, Any] = {
        "model": "no_validation",
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "batchnorm": [StrOptions(set(BATCHNORM_MODES))],
        "device": [None, str, torch.device],
        "progress": ["boolean", None],
        "autocast": [None, StrOptions({"bfloat16", "float16"}), torch.dtype],
    }

    #: whether the probe differentiates (then the parameters must be usable by autograd)
    _needs_autograd = True

    def __sklearn_clone__(self) -> BaseProbe:
        # The default clone deep-copies non-estimator parameters, i.e. the model and its weights.
        # A probe never writes its model, so clones share it.
        return type(self)(**self.get_params(deep=False))

    def fit(self, X: Any = None, y: Any = None) -> BaseProbe:
        """Validate the parameters and resolve the model, its layers and the device.

        Parameters
        ----------
        X : array-like, torch.Tensor or xarray.DataArray, optional
            Inputs; only their shape is recorded (``input_shape_``). The probe itself runs in
            :meth:`transform`.
        y : None
            Ignored; present for scikit-learn compatibility.

        Returns
        -------
        self
        """
        self._validate_params()
        name = type(self).__name__
        members, ensemble = iterate_models(self.model, name)
        self.models_ = [unwrap_model(m) for m in members]
        self.n_models_ = len(self.models_) if ensemble else 0
        for model in self.models_:
            check_model_tensors(model, name, gradients=self._needs_autograd)
        self.layers_ = self._resolve_layers(self.models_[0])
        check_device(self.device, name)
        self.input_shape_ = None if X is None else tuple(getattr(X, "shape", ()))[1:]
        return self

    def transform(self, X: Any, store: Any = None, resume: bool = False) -> xr.Dataset:
        """Probe the model on inputs ``X`` and return the labeled result.

        Parameters
        ----------
        X : array-like, torch.Tensor or xarray.DataArray
            Inputs with the samples along the first axis (dim ``sample``); dask-backed
            DataArrays give dask-backed results.
        store : str, os.PathLike or zarr store, optional
            Stream the result batch by batch into this zarr store; returns it lazily opened.
        resume : bool
            With ``store``: compute only the batches an interrupted run did not finish
            (same probe, parameters, inputs, ensemble and ``batch_size``).

        Returns
        -------
        xarray.Dataset
            See ``docs/schema.md``.
        """
        check_is_fitted(self, "models_")
        model: Any = self.models_ if self.n_models_ else self.models_[0]
        return self._transform(model, X, store=store, resume=resume)

    def fit_transform(self, X: Any, y: Any = None, **transform_kw: Any) -> xr.Dataset:
        """``fit(X).transform(X, **transform_kw)``."""
        return self.fit(X, y).transform(X, **transform_kw)

    def _resolve_layers(self, model: nn.Module) -> list[str]:
        return resolve_layers(model, self.layers, type(self).__name__)

    def _transform(self, model: Any, X: Any, **kw: Any) -> xr.Dataset:  # pragma: no cover
        raise NotImplementedError
