"""Every Dataset the probes, metrics and noise references make survives netCDF and zarr unchanged.

docs/schema.md promises netCDF-safe attrs (str, int, float, 1-D arrays) and coords. Each result
here goes through ``to_netcdf(engine="h5netcdf")`` and ``to_zarr`` and must load back identical:
the same names, dims, coords, dtypes (bool patterns included), values and attrs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import xarray as xr
from conftest import make_model, model_inputs

from shatterkit import (
    activation_patterns,
    input_gradients,
    inputs,
    metrics,
    noise,
    unpack_patterns,
)

pytest.importorskip("h5netcdf", reason="needs the io extra: pip install shatterkit[io]")
pytest.importorskip("zarr", reason="needs the io extra: pip install shatterkit[io]")
pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning")

LINE = inputs.line(n=24)
CLOUD = inputs.neighbourhood([0.0, 0.0], n=12, seed=0)


def _ensemble(kind: str, n: int = 2) -> list:
    return [make_model(kind, seed=s) for s in range(n)]


def _line_model(seed: int = 0) -> Any:
    from shatterkit import models

    return models.feedforward(3, width=8, seed=seed)


def _grads() -> xr.Dataset:
    return input_gradients(_line_model(), LINE, layers="all")


def _grads_ensemble() -> xr.Dataset:
    return input_gradients([_line_model(s) for s in range(3)], LINE, layers="all")


def _patterns(**kw: Any) -> xr.Dataset:
    return activation_patterns([_line_model(s) for s in range(2)], LINE, **kw)


PROBES: dict[str, Callable[[], xr.Dataset]] = {
    "gradients": lambda: input_gradients(make_model("mlp"), CLOUD),
    "gradients-line-layers": _grads,
    "gradients-ensemble-layers": _grads_ensemble,
    "gradients-conv-ensemble": lambda: input_gradients(
        _ensemble("conv"), model_inputs("conv", n=4), output=1, layers=["conv1"]
    ),
    "gradients-residual-repeated-calls": lambda: input_gradients(
        make_model("residual"), CLOUD, layers="all"
    ),
    "gradients-batchnorm-coupled": lambda: input_gradients(
        make_model("batchnorm"), CLOUD, batchnorm="coupled", output=lambda out: out[:, 0]
    ),
    "gradients-bfloat16-autocast": lambda: input_gradients(
        make_model("mlp").float(), CLOUD, autocast="bfloat16"
    ),
    "patterns-bool": lambda: activation_patterns(make_model("residual"), CLOUD),
    "patterns-bool-ensemble": _patterns,
    "patterns-packed": lambda: activation_patterns(
        make_model("conv"), model_inputs("conv", 5), packed=True
    ),
    "patterns-packed-ensemble": lambda: _patterns(packed=True),
    "patterns-unpacked": lambda: unpack_patterns(_patterns(packed=True)),
    "noise-brown": lambda: noise.brown(32, seed=0),
    "noise-white-ensemble": lambda: noise.white(32, n_models=3, seed=0),
}

METRICS: dict[str, Callable[[], Any]] = {
    "autocorrelation": lambda: metrics.autocorrelation(_grads_ensemble(), max_lag=5),
    "shattering_index": lambda: metrics.shattering_index(_grads_ensemble()),
    "shattering_profile": lambda: metrics.shattering_profile(_grads()),
    "power_spectrum": lambda: metrics.power_spectrum(noise.brown(32, n_models=2, seed=0)),
    "spectral_exponent": lambda: metrics.spectral_exponent(_grads_ensemble(), band=(0.1, 0.5)),
    "gradient_covariance": lambda: metrics.gradient_covariance(_grads_ensemble()),
    "gradient_covariance-features": lambda: metrics.gradient_covariance(
        _grads(), over="features", normalize=False
    ),
    "correlation_by_distance": lambda: metrics.correlation_by_distance(_grads(), 4, inputs=LINE),
    "fit_covariance_decay": lambda: metrics.fit_covariance_decay(
        xr.DataArray(
            [[0.9, 0.5, 0.26, 0.12], [0.8, 0.45, 0.24, 0.13]],
            dims=("model", "depth"),
            coords={"depth": [1, 2, 3, 4]},
            name="gradient_correlation",
        )
    ),
    "activation_rate": lambda: metrics.activation_rate(_patterns()),
    "coactivation_rate": lambda: metrics.coactivation_rate(_patterns(packed=True), max_lag=3),
    "pattern_dispersion": lambda: metrics.pattern_dispersion(_patterns()),
    "linear_regions": lambda: metrics.linear_regions(_patterns(packed=True)),
}


def as_dataset(obj: xr.Dataset | xr.DataArray) -> xr.Dataset:
    if isinstance(obj, xr.DataArray):
        assert obj.name is not None, "a result DataArray must be named"
        return obj.to_dataset()
    return obj


def round_trip(ds: xr.Dataset, tmp_path: Any) -> None:
    nc = tmp_path / "ds.nc"
    ds.to_netcdf(nc, engine="h5netcdf")
    with xr.open_dataset(nc, engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)
    store = tmp_path / "ds.zarr"
    ds.to_zarr(store, mode="w")
    xr.testing.assert_identical(xr.open_zarr(store).load(), ds)


@pytest.mark.parametrize("name", list(PROBES))
def test_probe_and_noise_results_round_trip(name, tmp_path):
    round_trip(PROBES[name](), tmp_path)


@pytest.mark.parametrize("name", list(METRICS))
def test_metric_results_round_trip(name, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate values warn and give NaN
        result = METRICS[name]()
    round_trip(as_dataset(result), tmp_path)


@pytest.mark.parametrize("packed", [False, True])
def test_streamed_and_lazy_results_round_trip(packed, tmp_path):
    """What ``store=`` and dask-backed inputs give, once loaded, round-trips the same way."""
    streamed = activation_patterns(
        make_model("residual"), CLOUD, packed=packed, batch_size=5, store=tmp_path / "p.zarr"
    ).load()
    (tmp_path / "a").mkdir()
    round_trip(streamed, tmp_path / "a")
    lazy = input_gradients(make_model("residual"), CLOUD.chunk({"sample": 5}), layers="all")
    (tmp_path / "b").mkdir()
    round_trip(lazy.compute(), tmp_path / "b")


def test_attrs_are_netcdf_types_only():
    """No None, bool, dict or str subclass (TorchVersion) hides in the attrs."""
    allowed = (str, int, float, np.integer, np.floating, np.ndarray)
    for name, make in PROBES.items():
        ds = make()
        owners = [("Dataset", ds.attrs)] + [(str(k), v.attrs) for k, v in ds.variables.items()]
        for owner, attrs in owners:
            for key, value in attrs.items():
                where = (name, owner, key, type(value))
                assert isinstance(value, allowed) and not isinstance(value, bool), where
                assert not isinstance(value, str) or type(value) is str, where
