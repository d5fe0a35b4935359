"""Non-finite gradients are counted, named in a warning, and refused by the metrics unless skipped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from shatterkit import input_gradients, inputs, metrics

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning")


class SqrtAbs(nn.Module):
    """y = sqrt(|x|) + linear: at x = 0 the gradient is 0 * inf = NaN (abs' is 0 there)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 3)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(3, 1, generator=g))
            self.lin.bias.copy_(torch.randn(3, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x.abs()).sum(1) + self.lin(x).sum(1)


class SqrtRelu(nn.Module):
    """y = sum sqrt(relu(lin(x))): the gradient w.r.t. the ReLU's output is inf where it is 0,
    while the input gradient stays finite (ReLU's backward puts exact zeros there)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 2)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.lin.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self.relu(self.lin(x))).sum(1)


@pytest.fixture
def line() -> xr.DataArray:
    return inputs.line(n=21)  # t from -2 to 2 in steps of 0.2: sample 10 is exactly 0


def test_nan_gradient_is_counted_and_its_sample_named(line):
    with pytest.warns(
        RuntimeWarning,
        match=r"input_gradients: 1 non-finite gradient value\(s\): gradient at samples \[10\]\. "
        r"Recorded in attrs\['n_nonfinite'\]; the metrics refuse them unless skipna=True",
    ):
        ds = input_gradients(SqrtAbs().double(), line)
    assert ds.attrs["n_nonfinite"] == 1
    assert np.isnan(ds["gradient"].values[10]).all()
    assert np.isfinite(np.delete(ds["gradient"].values, 10, axis=0)).all()


def test_ensemble_counts_every_member(line):
    with pytest.warns(RuntimeWarning, match=r"2 non-finite gradient value\(s\)"):
        ds = input_gradients([SqrtAbs(0).double(), SqrtAbs(1).double()], line)
    assert ds.attrs["n_nonfinite"] == 2


def test_layer_gradient_with_inf_is_named_by_layer(line):
    with pytest.warns(RuntimeWarning, match=r"gradient:relu at samples \[0, 1, 2, 3, 4\]"):
        ds = input_gradients(SqrtRelu().double(), line, layers=["relu"])
    # one unit at relu(..) = 0 in each sample, both at x = 0: 22 inf values, none at the input
    assert ds.attrs["n_nonfinite"] == 22
    assert np.isfinite(ds["gradient"].values).all()
    assert np.isinf(ds["gradient:relu"].values).sum() == 22


def test_store_counts_and_names_the_batches(tmp_path, line):
    pytest.importorskip("zarr", reason="needs the io extra")
    with pytest.warns(RuntimeWarning, match=r"1 non-finite .* in the batches of samples 8-11\."):
        ds = input_gradients(SqrtAbs().double(), line, batch_size=4, store=tmp_path / "g.zarr")
    assert ds.attrs["n_nonfinite"] == 1
    with pytest.warns(RuntimeWarning):
        xr.testing.assert_identical(ds.load(), input_gradients(SqrtAbs().double(), line))


GRADIENT_METRICS = {
    "autocorrelation": lambda ds, **kw: metrics.autocorrelation(ds, **kw),
    "shattering_index": lambda ds, **kw: metrics.shattering_index(ds, **kw),
    "shattering_profile": lambda ds, **kw: metrics.shattering_profile(ds, **kw),
    "power_spectrum": lambda ds, **kw: metrics.power_spectrum(ds, **kw),
    "spectral_exponent": lambda ds, **kw: metrics.spectral_exponent(ds, band=(0.1, 0.5), **kw),
    "gradient_covariance": lambda ds, **kw: metrics.gradient_covariance(ds, **kw),
    "correlation_by_distance": lambda ds, **kw: metrics.correlation_by_distance(
        ds, 4, inputs=inputs.line(n=21), **kw
    ),
}


@pytest.fixture(params=["memory", "store"])
def nonfinite(request, tmp_path, line) -> xr.Dataset:
    """Gradients with one NaN sample, in memory or lazily opened from a zarr store."""
    with pytest.warns(RuntimeWarning, match="non-finite"):
        if request.param == "memory":
            return input_gradients(SqrtAbs().double(), line, layers=["lin"])
        pytest.importorskip("zarr", reason="needs the io extra")
        return input_gradients(
            SqrtAbs().double(), line, layers=["lin"], batch_size=8, store=tmp_path / "g.zarr"
        )


# the gradient w.r.t. the output of `lin` is constant: its spectral exponent is undefined
@pytest.mark.filterwarnings("ignore:spectral_exponent. the exponent is undefined")
@pytest.mark.parametrize("name", list(GRADIENT_METRICS))
def test_metrics_refuse_nonfinite_gradients_unless_skipna(nonfinite, name):
    metric = GRADIENT_METRICS[name]
    with pytest.raises(
        ValueError,
        match=rf"The 'ds' parameter of {name} must hold finite gradients \(or pass skipna=True",
    ):
        out = metric(nonfinite)
        out.compute()  # a lazy input raises when the result is computed
    with np.errstate(all="ignore"):
        skipped = metric(nonfinite, skipna=True).compute()
    values = skipped.to_array() if isinstance(skipped, xr.Dataset) else skipped
    assert np.isfinite(values.values).any(), f"{name} skipped everything"
