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

from shatterkit.probes._engine import BATCHNORM_MODES, iterate_models, unwrap_model


def resolve_layers(model: nn.Module, layers: Any, caller: str) -> list[str]:
    """Module names selected by ``layers`` (``None``, ``"all"`` or a list of names)."""
    if layers is None:
        return []
    names = [n for n, _ in model.named_modules() if n]
    if isinstance(layers, str):
        if layers == "all":
            leaves = [n for n, m in model.named_modules() if n and not any(m.children())]
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
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            hint = f"; close matches: {', '.join(map(repr, close))}" if close else ""
            raise ValueError(f"layer {name!r} not found in {type(model).__name__}{hint}.")
        selected.append(name)
    return selected


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
        self.layers_ = self._resolve_layers(self.models_[0])
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
            With ``store``: compute only the batches an interrupted run did not finish.

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
