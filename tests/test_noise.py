"""Brown and white noise references: schema, seeding, and their defining covariances."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from shatterkit import noise

KINDS = [noise.brown, noise.white]


@pytest.mark.parametrize("make", KINDS)
def test_schema_single_model(make) -> None:
    ds = make(32, seed=0)
    assert ds["gradient"].dims == ("sample", "feature")
    assert ds["gradient"].shape == (32, 1)
    assert ds["output"].dims == ("sample",)
    np.testing.assert_array_equal(ds["sample"], np.arange(32))
    np.testing.assert_allclose(ds["t"], np.linspace(-2, 2, 32))  # the paper's line
    assert ds["t"].dims == ("sample",)
    assert "model" not in ds.dims
    assert ds["gradient"].attrs["layer"] == "input" and ds["gradient"].attrs["depth"] == 0
    assert ds.attrs["model_class"] == f"{make.__name__}_noise"
    assert ds.attrs["n_nonfinite"] == 0
    for key in (
        "output",
        "batchnorm",
        "dtype",
        "device",
        "torch_version",
        "shatterkit_version",
        "history",
    ):
        assert key in ds.attrs
    for var in ds.data_vars.values():
        assert {"long_name", "units"} <= set(var.attrs)


@pytest.mark.parametrize("make", KINDS)
def test_schema_ensemble(make) -> None:
    ds = make(16, n_models=3, seed=0)
    assert ds["gradient"].dims == ("model", "sample", "feature")
    assert ds["output"].dims == ("model", "sample")
    np.testing.assert_array_equal(ds["model"], np.arange(3))
    # members are independent draws
    assert not np.allclose(ds["gradient"][0], ds["gradient"][1])


@pytest.mark.parametrize("make", KINDS)
def test_output_integrates_the_gradient(make) -> None:
    ds = make(50, n_models=2, seed=3)
    dt = 4 / 49
    np.testing.assert_allclose(
        ds["output"], np.cumsum(ds["gradient"][..., 0], axis=-1) * dt, rtol=1e-12
    )


@pytest.mark.parametrize("make", KINDS)
def test_seeding(make) -> None:
    xr.testing.assert_identical(make(20, seed=7), make(20, seed=7))
    assert not make(20, seed=7)["gradient"].equals(make(20, seed=8)["gradient"])
    a = make(20, seed=np.random.default_rng(5))
    b = make(20, seed=np.random.default_rng(5))
    xr.testing.assert_identical(a, b)
    assert a.attrs["history"].endswith("seed=Generator)")


def test_white_noise_covariance_is_the_identity() -> None:
    g = noise.white(20, n_models=20000, seed=0)["gradient"].values[..., 0]
    cov = g.T @ g / g.shape[0]
    # 20000 draws: each entry's std is ~ 1 / sqrt(20000) = 0.007
    np.testing.assert_allclose(cov, np.eye(20), atol=0.04)


def test_brown_noise_covariance_is_min() -> None:
    n = 16
    g = noise.brown(n, n_models=20000, seed=0)["gradient"].values[..., 0]
    cov = g.T @ g / g.shape[0]
    i = np.arange(n)
    expected = (np.minimum.outer(i, i) + 1) / n  # steps of variance 1/n
    # relative std of a product-moment estimate from 20000 draws is ~ 0.01 - 0.015
    np.testing.assert_allclose(cov, expected, rtol=0.06, atol=0.01)


def test_netcdf_round_trip(tmp_path) -> None:
    ds = noise.brown(8, n_models=2, seed=0)
    ds.to_netcdf(tmp_path / "brown.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "brown.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)


@pytest.mark.parametrize("make", KINDS)
def test_errors(make) -> None:
    name = make.__name__
    with pytest.raises(
        ValueError, match=rf"The 'n' parameter of {name} must be an int >= 2\. Got 1 instead\."
    ):
        make(1)
    with pytest.raises(
        TypeError, match=rf"The 'n' parameter of {name} must be an int >= 2\. Got 2\.5 instead\."
    ):
        make(2.5)
    with pytest.raises(
        ValueError,
        match=rf"The 'n_models' parameter of {name} must be an int >= 1\. Got 0 instead\.",
    ):
        make(8, n_models=0)
    with pytest.raises(
        TypeError,
        match=rf"The 'n_models' parameter of {name} must be an int >= 1\. Got True instead\.",
    ):
        make(8, n_models=True)
    with pytest.raises(
        TypeError,
        match=rf"The 'seed' parameter of {name} must be None, an int or a numpy\.random\.Generator\. Got 'abc' instead\.",
    ):
        make(8, seed="abc")
