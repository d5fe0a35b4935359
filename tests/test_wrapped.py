"""Wrapped models: ``torch.compile``, ``nn.DataParallel`` and shared submodules probe correctly.

``torch.compile`` with the default inductor backend works on the CPU when a C++ compiler is
present, but one compile takes about 40 s on two cores. The tests use the ``"eager"`` and
``"aot_eager"`` backends instead. Both run dynamo's graph capture, and ``"aot_eager"`` also runs
AOTAutograd's joint forward/backward graph. A probe never runs the compiled graph: it unwraps
``_orig_mod``, and it runs compiled submodules eagerly (``torch.compiler.set_stance``), because
module hooks are not seen inside compiled graphs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import assert_same_state, make_model, model_inputs, snapshot
from torch import nn
from torch.func import grad, vmap

from shatterkit import ActivationProbe, GradientProbe, activation_patterns, input_gradients

TOL = {"rtol": 1e-10, "atol": 1e-12}  # float64; only the summation order differs
BACKENDS = ["eager", "aot_eager"]


def per_sample(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    return vmap(grad(lambda xi: model(xi[None]).reshape(()))).__call__(x).detach().numpy()


def autograd_through(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Input gradient of the summed output: per sample for a model without batch coupling."""
    leaf = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(leaf).sum(), leaf)
    return g.numpy()


# -- torch.compile --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["mlp", "residual"])
def test_compiled_model_gives_the_uncompiled_gradients(kind, backend):
    torch._dynamo.reset()
    model = make_model(kind).eval()
    compiled = torch.compile(model, backend=backend)
    x = model_inputs(kind, n=9)
    through_graph = autograd_through(compiled, x)  # the compiled graph's own backward
    ds = input_gradients(compiled, x, layers="all")
    ref = input_gradients(model, x, layers="all")
    xr.testing.assert_identical(ds, ref)
    np.testing.assert_allclose(ds["gradient"].values, through_graph, **TOL)
    np.testing.assert_allclose(ds["gradient"].values, per_sample(model, x), **TOL)
    # the probe's hooks are gone, so the compiled model still runs as before
    np.testing.assert_allclose(autograd_through(compiled, x), through_graph, **TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_model_patterns_and_estimators(backend):
    torch._dynamo.reset()
    model = make_model("batchnorm").train()
    compiled = torch.compile(model, backend=backend)
    x = model_inputs("batchnorm", n=12)
    before = snapshot(model)
    probe = GradientProbe(compiled, batch_size=5).fit(x)
    assert probe.models_[0] is model  # the estimator probes _orig_mod
    xr.testing.assert_identical(probe.transform(x), input_gradients(model, x, batch_size=5))
    xr.testing.assert_identical(
        ActivationProbe(compiled).fit_transform(x), activation_patterns(model, x)
    )
    assert_same_state(before, snapshot(model))


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_submodule_runs_eagerly_and_is_seen(backend):
    torch._dynamo.reset()
    plain = make_model("mlp")
    wrapped = nn.Sequential(
        plain[0], torch.compile(plain[1], backend=backend), plain[2], plain[3], plain[4]
    )
    x = model_inputs("mlp", n=8)
    wrapped(x)  # compile it once, so the probe meets a warm compiled submodule
    before = snapshot(wrapped)
    ds = input_gradients(wrapped, x, layers="all")
    ref = input_gradients(plain, x, layers="all")
    np.testing.assert_allclose(ds["gradient"].values, ref["gradient"].values, **TOL)
    # the compiled ReLU is named by its real path, through the wrapper
    np.testing.assert_allclose(ds["gradient:1._orig_mod"].values, ref["gradient:1"].values, **TOL)
    pats = activation_patterns(wrapped, x)
    np.testing.assert_array_equal(pats["pattern"].values, activation_patterns(plain, x)["pattern"])
    assert list(dict.fromkeys(pats["layer"].values.tolist())) == ["1._orig_mod", "3"]
    assert_same_state(before, snapshot(wrapped))


# -- DataParallel ---------------------------------------------------------------------------------


def test_data_parallel_is_probed_through_its_module():
    model = make_model("conv")
    parallel = nn.DataParallel(model)  # on the CPU it only wraps
    x = model_inputs("conv", n=6)
    ds = input_gradients(parallel, x, output=1, layers=["conv1"])
    xr.testing.assert_identical(ds, input_gradients(model, x, output=1, layers=["conv1"]))
    assert ds.attrs["model_class"] == "ConvNet"
    probe = ActivationProbe([parallel, model]).fit(x)
    assert probe.models_ == [model, model]
    pats = probe.transform(x)
    np.testing.assert_array_equal(pats["pattern"].values[0], pats["pattern"].values[1])


# -- shared submodules ----------------------------------------------------------------------------


class Shared(nn.Module):
    """One Linear and one ReLU, each used twice; the Linear also sits under a second name."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(2, 4)
        self.hidden = nn.Linear(4, 4)
        self.relu = nn.ReLU()
        self.block = nn.Sequential(self.hidden)  # the same module, registered again
        self.out = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.inp(x))
        h = self.relu(self.hidden(h))
        h = self.block(h)
        return self.out(h)


def _shared() -> Shared:
    torch.manual_seed(0)
    return Shared().double()


def test_shared_submodule_gradients_per_call():
    model = _shared()
    x = model_inputs("mlp", n=10)
    ds = input_gradients(model, x, layers=["hidden", "relu"])
    np.testing.assert_allclose(ds["gradient"].values, per_sample(model, x), **TOL)
    # the two calls of `hidden` are two layers, in call order
    h1 = model.relu(model.inp(x))
    h2 = model.hidden(h1).detach()
    h3 = model.hidden(model.relu(h2)).detach()

    def after_first(h):
        return model.out(model.hidden(model.relu(h)))

    np.testing.assert_allclose(ds["gradient:hidden"].values, per_sample(after_first, h2), **TOL)
    np.testing.assert_allclose(ds["gradient:hidden#1"].values, per_sample(model.out, h3), **TOL)
    depths = {v: ds[v].attrs["depth"] for v in ds.data_vars if v.startswith("gradient:")}
    assert depths == {
        "gradient:relu": 1,
        "gradient:hidden": 2,
        "gradient:relu#1": 3,
        "gradient:hidden#1": 4,
    }


def test_shared_submodule_selected_by_its_second_name():
    model = _shared()
    x = model_inputs("mlp", n=10)
    by_alias = input_gradients(model, x, layers=["block.0"])
    xr.testing.assert_identical(
        by_alias.drop_attrs(), input_gradients(model, x, layers=["hidden"]).drop_attrs()
    )
    assert GradientProbe(model, layers=["block.0", "hidden"]).fit().layers_ == ["hidden"]


def test_shared_rectifier_patterns_per_call():
    model = _shared()
    x = model_inputs("mlp", n=10)
    ds = activation_patterns(model, x)
    h1 = model.inp(x)
    h2 = model.hidden(torch.relu(h1))
    expected = torch.cat([h1 > 0, h2 > 0], dim=1).numpy()
    np.testing.assert_array_equal(ds["pattern"].values, expected)
    assert list(dict.fromkeys(ds["layer"].values.tolist())) == ["relu", "relu#1"]
