"""Streaming to zarr (with resume), dask-backed inputs and a distributed cluster."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import xarray as xr
from conftest import make_model, model_inputs
from torch import nn

from shatterkit import ActivationProbe, GradientProbe, activation_patterns, input_gradients

pytest.importorskip("zarr", reason="needs the io extra: pip install shatterkit[io]")
da = pytest.importorskip("dask.array", reason="needs the dask extra: pip install shatterkit[dask]")

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning")


@pytest.fixture
def x_bn() -> xr.DataArray:
    return xr.DataArray(model_inputs("batchnorm", n=50).numpy(), dims=("sample", "feature"))


@pytest.mark.parametrize("ensemble", [False, True])
def test_zarr_store_equals_in_memory_result(tmp_path, x_bn, ensemble):
    model = (
        [make_model("batchnorm", seed=s) for s in range(2)] if ensemble else make_model("batchnorm")
    )
    ref = input_gradients(model, x_bn, batch_size=8, layers="all")
    out = (
        GradientProbe(model, batch_size=8, layers="all")
        .fit(x_bn)
        .transform(x_bn, store=tmp_path / "g.zarr")
    )
    assert isinstance(out["gradient"].data, da.Array)  # lazily opened
    xr.testing.assert_identical(ref, out.load())
    pats = activation_patterns(model, x_bn, batch_size=8, packed=True)
    stored = ActivationProbe(model, batch_size=8, packed=True).fit_transform(
        x_bn, store=tmp_path / "p.zarr"
    )
    xr.testing.assert_identical(pats, stored.load())


class Interrupt(nn.Module):
    """Wraps a model; raises KeyboardInterrupt on the forward number ``at`` and counts forwards."""

    def __init__(self, inner: nn.Module, at: int | None) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, x):
        self.calls += 1
        if self.at is not None and self.calls == self.at:
            raise KeyboardInterrupt
        return self.inner(x)


def test_interrupted_store_reopens_and_resumes_without_recomputing(tmp_path):
    inner = make_model("mlp")
    x = model_inputs("mlp", n=40)
    store = tmp_path / "g.zarr"
    broken = Interrupt(inner, at=3)  # forwards 1 and 2 are batches 0 and 1
    with pytest.raises(KeyboardInterrupt):
        input_gradients(broken, x, batch_size=10, store=store)
    partial = xr.open_zarr(store)
    np.testing.assert_array_equal(partial["batch_nonfinite"].values, [0, 0, -1, -1])
    ref = input_gradients(inner, x, batch_size=10)
    np.testing.assert_array_equal(partial["gradient"].values[:20], ref["gradient"].values[:20])
    resumed_model = Interrupt(inner, at=None)
    out = input_gradients(resumed_model, x, batch_size=10, store=store, resume=True)
    assert resumed_model.calls == 2  # only batches 2 and 3 (no batch norm: no statistics)
    xr.testing.assert_identical(ref.drop_attrs(), out.load().drop_attrs())


def test_resume_with_other_batch_size_is_refused(tmp_path):
    x = model_inputs("mlp", n=40)
    input_gradients(make_model("mlp"), x, batch_size=10, store=tmp_path / "g.zarr")
    with pytest.raises(ValueError, match="resume=True needs the batch_size of the interrupted run"):
        input_gradients(make_model("mlp"), x, batch_size=8, store=tmp_path / "g.zarr", resume=True)


def test_dask_inputs_give_lazy_results_equal_to_in_memory(x_bn):
    model = make_model("batchnorm").train()
    ref = input_gradients(model, x_bn, batch_size=8, layers=["1"])
    lazy = input_gradients(model, x_bn.chunk({"sample": 16}), batch_size=8, layers=["1"])
    assert isinstance(lazy["gradient"].data, da.Array)
    xr.testing.assert_allclose(ref, lazy.compute(), rtol=1e-12, atol=1e-14)
    pats = activation_patterns(model, x_bn.chunk({"sample": 7}))
    xr.testing.assert_identical(activation_patterns(model, x_bn), pats.compute())


def test_coupled_mode_refuses_lazy_inputs(x_bn):
    with pytest.raises(ValueError, match="batchnorm='coupled'.*needs the inputs in memory"):
        input_gradients(make_model("batchnorm"), x_bn.chunk({"sample": 10}), batchnorm="coupled")


def test_distributed_local_cluster_matches_in_process(x_bn):
    distributed = pytest.importorskip("distributed", reason="needs the dask extra")
    model = [make_model("batchnorm", seed=s) for s in range(2)]
    ref = input_gradients(model, x_bn, batch_size=8)
    lazy = input_gradients(model, x_bn.chunk({"sample": 13}), batch_size=8)
    in_process = lazy.compute(scheduler="sync")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        out = lazy.compute()
    xr.testing.assert_identical(in_process, out)  # the same blocks give the same bits
    # other batch boundaries change BLAS summation order only
    xr.testing.assert_allclose(ref, out, rtol=1e-12, atol=1e-14)


def test_memory_is_bounded_by_one_batch_when_streaming(tmp_path):
    n_features, batch, n_batches = 512, 64, 16
    net = nn.Sequential(nn.Linear(n_features, 16), nn.ReLU(), nn.Linear(16, 1)).double()
    rng = da.random.default_rng(0)
    x = xr.DataArray(
        rng.standard_normal((batch * n_batches, n_features), chunks=(batch, n_features)),
        dims=("sample", "feature"),
    )
    full_bytes = batch * n_batches * n_features * 8
    tracemalloc.start()
    input_gradients(net, x, batch_size=batch, store=tmp_path / "big.zarr")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # the whole gradient is 4 MiB; streaming holds a few batches (256 KiB each) at a time
    assert peak < full_bytes / 3, (
        f"peak {peak / 2**20:.1f} MiB vs result {full_bytes / 2**20:.1f} MiB"
    )


@pytest.mark.parametrize("gradients", [True, False])
def test_auto_batch_size_fits_a_quarter_of_the_free_memory(monkeypatch, gradients):
    """The mlp's modules output 7 + 7 + 5 + 5 + 1 floats per sample, and the Sequential 1 more:
    26 float64 = 208 bytes per sample, 3x that with gradients. With free memory for 13 such
    samples in a quarter, batches hold 13 samples."""
    from shatterkit import activation_patterns
    from shatterkit.probes import _engine

    per_sample = 26 * 8 * (3 if gradients else 1)
    monkeypatch.setattr(_engine, "free_memory", lambda device: 4 * per_sample * 13 + 5)
    model = make_model("mlp")
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    x = model_inputs("mlp", n=40)
    try:
        probe = input_gradients if gradients else activation_patterns
        ds = probe(model, x, batch_size="auto")
    finally:
        handle.remove()
    assert sizes[-4:] == [13, 13, 13, 1]
    ref = probe(model, x, batch_size=40)
    xr.testing.assert_identical(ds, ref)


def test_auto_batch_size_with_one_sample_and_batch_norm():
    """Sizing runs the probe batch with its own statistics: one sample is enough (batch norm in
    training mode would refuse it)."""
    model = make_model("batchnorm")
    x = model_inputs("batchnorm", n=1)
    for probe in (input_gradients, activation_patterns):
        auto = probe(model, x, batch_size="auto")
        xr.testing.assert_identical(auto, probe(model, x, batch_size=1))
