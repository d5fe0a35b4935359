"""GradientProbe against independent references: torch.func, captum, hand-built BN replacements."""

from __future__ import annotations

import copy
import itertools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from conftest import (
    assert_same_state,
    function_mode_per_batch,
    make_model,
    model_inputs,
    snapshot,
)
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn
from torch.func import grad, vmap

from shatterkit import GradientProbe, activation_patterns, input_gradients, inputs

# float64 throughout: the probe and the references differ only by summation order.
TOL = {"rtol": 1e-6, "atol": 1e-9}


def func_per_sample(model: nn.Module, x: torch.Tensor, unit: int | None = None) -> torch.Tensor:
    """Per-sample input gradients by torch.func (vmap over grad of a one-sample forward)."""

    def f(xi: torch.Tensor) -> torch.Tensor:
        out = model(xi.unsqueeze(0)).reshape(-1)
        return out[0] if unit is None else out[unit]

    return vmap(grad(f))(x).detach()


class FixedAffine(nn.Module):
    def __init__(self, mean, var, weight, bias, eps):
        super().__init__()
        self.scale = weight / torch.sqrt(var + eps)
        self.shift = bias - mean * self.scale

    def forward(self, x):
        return x * self.scale + self.shift


def replace_bn_with_population_affine(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose BatchNorms are the fixed affine maps of the set's statistics."""
    ref = copy.deepcopy(model).train()
    stats = {}

    def keep(name):
        def hook(_m, args, _out):
            stats[name] = (args[0].mean(0), args[0].var(0, unbiased=False))

        return hook

    bns = {n: m for n, m in ref.named_modules() if isinstance(m, nn.BatchNorm1d)}
    handles = [m.register_forward_hook(keep(n)) for n, m in bns.items()]
    with torch.no_grad():
        ref(x)  # train mode on the whole set: each BN sees the population input
    for h in handles:
        h.remove()
    for name, bn in bns.items():
        mean, var = stats[name]
        affine = FixedAffine(mean, var, bn.weight.detach(), bn.bias.detach(), bn.eps)
        parent = ref.get_submodule(name.rpartition(".")[0]) if "." in name else ref
        setattr(parent, name.rpartition(".")[2], affine)
    return ref.eval()


@pytest.mark.parametrize("kind", ["mlp", "conv", "residual", "batchnorm"])
@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_gradients_equal_torch_func(kind, batch_size):
    model = make_model(kind)
    x = model_inputs(kind)
    unit = 1 if kind == "conv" else None
    ds = input_gradients(model, x, batch_size=batch_size, output=unit)
    ref_model = replace_bn_with_population_affine(model, x) if kind == "batchnorm" else model
    expected = func_per_sample(ref_model.eval(), x, unit).numpy()
    np.testing.assert_allclose(ds["gradient"].values, expected, **TOL)


@pytest.mark.parametrize("memory_bound", [False, True])
def test_population_mode_is_independent_of_batch_size(monkeypatch, memory_bound):
    from shatterkit.probes import _engine

    if memory_bound:  # statistics gathered over several chunks, one pass per batch-norm call
        monkeypatch.setattr(_engine, "free_memory", lambda device: 0)
    model = make_model("batchnorm").train()
    x = model_inputs("batchnorm", n=33)
    whole = input_gradients(model, x, batch_size=64)
    for bs in (1, 5, 32):
        part = input_gradients(model, x, batch_size=bs)
        np.testing.assert_allclose(part["gradient"].values, whole["gradient"].values, **TOL)


@pytest.mark.parametrize("shape", [(1000, 3), (40, 3, 5, 5)])
def test_population_statistics_merged_over_chunks_equal_numpy_float64(shape):
    """Per-chunk two-pass statistics in float32, merged in float64, against numpy in float64 on
    data far from zero: a sum of squares loses the variance there (in float64 it kept 5 digits,
    in float32 none)."""
    from shatterkit.probes._engine import _Stat

    rng = np.random.default_rng(0)
    scale = np.array([1.0, 1e-2, 3.0]).reshape(1, 3, *[1] * (len(shape) - 2))
    data = (1e4 + rng.standard_normal(shape) * scale).astype(np.float32)
    dims = (0, *range(2, len(shape)))
    for sizes in ([shape[0]], [1, 7, shape[0] - 8]):
        stat = _Stat()
        for part in np.split(data, np.cumsum(sizes)[:-1]):
            stat.add(torch.from_numpy(part))
        stat.finalize(torch.float64)
        exact = data.astype(np.float64)
        np.testing.assert_allclose(stat.mean.numpy(), exact.mean(dims), rtol=1e-12)
        np.testing.assert_allclose(stat.var.numpy(), exact.var(dims), rtol=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_gradients_equal_captum_saliency(kind):
    from captum.attr import Saliency

    model = make_model(kind).eval()
    x = model_inputs(kind)
    target = 2 if kind == "conv" else None
    expected = Saliency(model).attribute(x.clone(), target=target, abs=False)
    ds = input_gradients(model, x, output=target)
    np.testing.assert_allclose(ds["gradient"].values, expected.detach().numpy(), **TOL)


def test_coupled_mode_is_gradient_of_summed_output():
    model = make_model("batchnorm")
    x = model_inputs("batchnorm")
    ref = copy.deepcopy(model).train()
    xr_ = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(ref(xr_).sum(), xr_)
    ds = input_gradients(model, x, batchnorm="coupled", batch_size=4)
    np.testing.assert_allclose(ds["gradient"].values, expected.numpy(), **TOL)


def test_eval_mode_uses_running_statistics():
    model = make_model("batchnorm")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    x = model_inputs("batchnorm")
    ds = input_gradients(model, x, batchnorm="eval")
    expected = func_per_sample(copy.deepcopy(model).eval(), x).numpy()
    np.testing.assert_allclose(ds["gradient"].values, expected, **TOL)


def test_layer_gradients_equal_torch_func_on_the_rest_of_the_network():
    model = make_model("mlp")
    x = model_inputs("mlp")
    ds = input_gradients(model, x, layers=["0", "2"])
    for name, cut in (("0", 1), ("2", 3)):
        h = model[:cut](x).detach()
        expected = func_per_sample(model[cut:], h).numpy()
        got = ds[f"gradient:{name}"]
        assert got.dims == ("sample", f"{name}:feature")
        assert got.attrs["depth"] == {"0": 1, "2": 2}[name]
        np.testing.assert_allclose(got.values, expected, **TOL)


def test_layer_gradient_of_output_before_inplace_relu():
    """BN output followed by ReLU(inplace=True): the gradient is w.r.t. the BN output."""
    model = make_model("batchnorm")
    x = model_inputs("batchnorm")
    ds = input_gradients(model, x, layers=["1", "2"])
    ref = replace_bn_with_population_affine(model, x)
    ref[
        2
    ].inplace = False  # the reference differentiates w.r.t. a leaf, which must not be rewritten
    h_bn = ref[:2](x).detach()
    np.testing.assert_allclose(
        ds["gradient:1"].values, func_per_sample(ref[2:], h_bn).numpy(), **TOL
    )
    h_relu = ref[:3](x).detach()
    np.testing.assert_allclose(
        ds["gradient:2"].values, func_per_sample(ref[3:], h_relu).numpy(), **TOL
    )


def test_all_layers_and_repeated_module_calls():
    model = make_model("residual")
    ds = input_gradients(model, model_inputs("residual"), layers="all")
    names = [v for v in ds.data_vars if v.startswith("gradient:")]
    assert {"gradient:relu", "gradient:relu#1", "gradient:relu#2", "gradient:out"} <= set(names)
    depths = sorted(int(ds[v].attrs["depth"]) for v in names)
    assert depths == list(range(1, len(names) + 1))


def test_callable_output_and_ensemble_dim():
    models = [make_model("conv", seed=s) for s in range(3)]
    x = model_inputs("conv", n=6)
    ds = input_gradients(models, x, output=lambda out: out[:, 0] - out[:, 1])
    assert ds["gradient"].dims == ("model", "sample", "channel", "height", "width")
    for k, m in enumerate(models):
        e0 = func_per_sample(m, x, 0)
        e1 = func_per_sample(m, x, 1)
        np.testing.assert_allclose(ds["gradient"].isel(model=k).values, (e0 - e1).numpy(), **TOL)


def test_coords_of_input_sets_are_carried_through():
    net = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    line = inputs.line(n=9)
    ds = input_gradients(net, line)
    xr.testing.assert_equal(ds["t"], line["t"])
    assert ds["output"].dims == ("sample",)
    np.testing.assert_allclose(
        ds["output"].values, net(torch.tensor(line.values)).detach().numpy().ravel()
    )


def test_float32_model_casts_numpy_inputs():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    ds = input_gradients(net, np.random.default_rng(0).normal(size=(5, 2)))
    assert ds["gradient"].dtype == np.float32 and ds.attrs["dtype"] == "float32"


@pytest.mark.parametrize("kind", ["batchnorm", "residual"])
@pytest.mark.parametrize("train", [True, False])
def test_model_state_is_unchanged(kind, train):
    model = make_model(kind).train(train)
    for p in list(model.parameters())[:1]:
        p.requires_grad_(False)
    before = snapshot(model)
    input_gradients(model, model_inputs(kind), layers="all", batch_size=3)
    assert_same_state(before, snapshot(model))


def test_model_state_is_unchanged_after_exception_in_forward():
    model = make_model("batchnorm").train()
    before = snapshot(model)

    def boom(_m, _a, _o):
        raise RuntimeError("boom inside forward")

    handle = model[4].register_forward_hook(boom)
    before["hooks"] += 1
    with pytest.raises(RuntimeError, match="boom inside forward"):
        input_gradients(model, model_inputs("batchnorm"), layers="all", batch_size=4)
    assert_same_state(before, snapshot(model))
    handle.remove()


def test_probe_works_inside_no_grad_and_inference_mode():
    model = make_model("mlp")
    x = model_inputs("mlp")
    expected = func_per_sample(model, x).numpy()
    with torch.no_grad():
        a = input_gradients(model, x)
    with torch.inference_mode():
        x_inf = x.clone()
        b = input_gradients(model, x_inf)
    np.testing.assert_allclose(a["gradient"].values, expected, **TOL)
    np.testing.assert_allclose(b["gradient"].values, expected, **TOL)


def test_inputs_are_not_modified():
    model = make_model("batchnorm")
    x = model_inputs("batchnorm")
    x0 = x.clone()
    input_gradients(model, x)
    assert torch.equal(x, x0) and not x.requires_grad


def test_dropout_is_off():
    net = nn.Sequential(nn.Linear(2, 50), nn.Dropout(0.5), nn.ReLU(), nn.Linear(50, 1)).double()
    net.train()
    x = model_inputs("mlp")
    ds = input_gradients(net, x)
    expected = func_per_sample(copy.deepcopy(net).eval(), x).numpy()
    np.testing.assert_allclose(ds["gradient"].values, expected, **TOL)


# -- the estimator contract ----------------------------------------------------------------------


def test_estimator_contract():
    model = make_model("mlp")
    probe = GradientProbe(model, batch_size=5)
    assert probe.get_params()["batch_size"] == 5
    with pytest.raises(NotFittedError):
        probe.transform(model_inputs("mlp"))
    assert probe.fit() is probe
    assert probe.n_models_ == 0 and probe.layers_ == []
    twin = clone(probe)
    assert twin.model is model  # clone shares the model, it does not copy the weights
    assert not hasattr(twin, "models_")
    twin.set_params(layers=["0"])
    out = twin.fit_transform(model_inputs("mlp"))
    assert "gradient:0" in out and twin.layers_ == ["0"]


def test_invalid_parameters_are_reported_in_fit():
    probe = GradientProbe(make_model("mlp"), batch_size=0)  # __init__ stores, does not validate
    with pytest.raises(ValueError, match=r"The 'batch_size' parameter of GradientProbe must be"):
        probe.fit()
    with pytest.raises(ValueError, match=r"The 'batchnorm' parameter of GradientProbe"):
        GradientProbe(make_model("mlp"), batchnorm="train").fit()


def test_layer_name_typo_lists_close_matches():
    model = make_model("residual")
    with pytest.raises(
        ValueError, match=r"layer 'blocks.7' not found.*close matches: 'blocks.2', 'blocks.1'"
    ):
        GradientProbe(model, layers=["blocks.7"]).fit()


def test_a_layer_whose_shape_changes_between_batches_raises():
    class Cut(nn.Module):
        def forward(self, h):
            return h[:, :4] if h[0, 0] > 0 else h[:, :2]  # data-dependent width

    class Total(nn.Module):
        def forward(self, h):
            return h.sum(1, keepdim=True)

    net = nn.Sequential(nn.Linear(2, 4), Cut(), Total()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1], [1, -1]]))
        net[0].bias.zero_()
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    before = snapshot(net)
    with pytest.raises(RuntimeError, match=r"batch 1 gave .* the same layout for every input"):
        input_gradients(net, x, batch_size=1, layers=["1"])
    assert_same_state(before, snapshot(net))


def test_later_batches_skip_the_function_mode_only_when_it_has_nothing_to_do():
    """torch's own modules with no batch norm and no dropout leave the mode idle: batches after
    the first run without it (cheaper per torch call). A model's own forward keeps it on every
    batch, since it could make another call for other inputs: here a functional dropout
    hard-wired to training=True, which the mode turns off in every batch."""

    class Noisy(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.dropout(self.inner[1](self.inner[0](x)), 0.5, training=True)
            return self.inner[2](h)

    x = model_inputs("mlp", n=6)
    plain = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    expected = func_per_sample(plain, x, None).numpy()
    for model, modes in ((plain, [True, False, False]), (Noisy(plain), [True, True, True])):
        assert function_mode_per_batch(input_gradients, model, x, batch_size=2) == modes
        ds = input_gradients(model, x, batch_size=2)
        np.testing.assert_allclose(ds["gradient"].values, expected, **TOL)


@pytest.mark.parametrize("kind", ["read-only", "big-endian", "reversed", "xarray"])
def test_inputs_numpy_can_share_or_not_give_the_same_gradients(kind):
    """Inputs are shared with the caller where torch can (no copy of the whole set) and copied
    where it cannot; neither changes the result nor the caller's array, even under a model that
    rewrites its input in place."""
    net = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(2, 1)).double()
    base = model_inputs("mlp", n=9).numpy()
    expected = input_gradients(net, base.copy(), batch_size=4)["gradient"].values
    if kind == "read-only":
        X = base.copy()
        X.setflags(write=False)
    elif kind == "big-endian":
        X = base.astype(">f8")
    elif kind == "reversed":
        X = base[::-1].copy()[::-1]
    else:
        X = xr.DataArray(base.copy(), dims=("sample", "feature"))
    before = np.array(X, copy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's warning on non-writable arrays
        got = input_gradients(net, X, batch_size=4)["gradient"].values
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.asarray(X), before)


@pytest.mark.parametrize("lazy", [False, True])
def test_returned_variables_never_share_memory(lazy):
    """Autograd hands back one tensor for the input and the output of an Identity (or a Flatten,
    or a dropout, which the probe turns off); the Dataset's variables must still be independent
    arrays, whether or not the batch was copied."""
    net = nn.Sequential(
        nn.Identity(), nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.1), nn.Linear(5, 1)
    ).double()
    X = xr.DataArray(model_inputs("mlp", n=24).reshape(8, 2, 3).numpy(), dims=("sample", "c", "w"))
    if lazy:
        X = X.chunk({"sample": 8})
    ds = input_gradients(net, X, layers="all").load()
    arrays = {name: ds[name].values for name in ds.data_vars}
    for a, b in itertools.combinations(arrays, 2):
        assert not np.shares_memory(arrays[a], arrays[b]), (a, b)
    before = ds["gradient:0"].values.copy()
    ds["gradient"].values[...] = 0.0
    np.testing.assert_array_equal(ds["gradient:0"].values, before)


def test_a_model_with_batch_norm_keeps_the_mode_on_every_batch():
    """A batch norm that only later inputs reach is still given the population statistics (here:
    refused, since the one-sample check never saw it), never silently its running statistics."""

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 3)
            self.bn = nn.BatchNorm1d(3)

        def forward(self, x):
            h = self.lin(x)
            if x[0, 0] > 10:  # only the second batch takes this branch
                h = self.bn(h)
            return h.sum(1, keepdim=True)

    x = model_inputs("mlp", n=6)
    x[3:, 0] = 20.0
    net = Branchy().double()
    before = snapshot(net)
    with pytest.raises(RuntimeError, match=r"population statistics are missing for batch-norm"):
        input_gradients(net, x, batch_size=3)
    assert_same_state(before, snapshot(net))


def test_a_field_of_a_structured_array_is_copied_not_refused():
    rec = np.zeros(9, dtype=[("a", "f8", (2,)), ("b", "f4")])
    rec["a"] = model_inputs("mlp", n=9).numpy()
    net = make_model("mlp")
    got = input_gradients(net, rec["a"], batch_size=4)["gradient"].values
    expected = input_gradients(net, rec["a"].copy(), batch_size=4)["gradient"].values
    np.testing.assert_array_equal(got, expected)


class _FunctionalBatchNorm(nn.Module):
    """Batch norm as a functional call, with no module and no running statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.out = nn.Linear(2, 4), nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.batch_norm(self.lin(x), None, None, training=True)
        return self.out(torch.relu(h))


@pytest.mark.parametrize("kind", ["mlp", "batchnorm", "functional"])
def test_population_statistics_are_gathered_only_when_a_batch_norm_call_is_met(monkeypatch, kind):
    """The statistics pass runs once for a model that makes batch-norm calls (a BN module or a
    functional call), after which the batch that met the call runs again; never for one without.
    The gradients equal torch.func on the model with the whole set's statistics frozen in."""
    from shatterkit.probes import _engine

    gathered = []
    original = _engine.population_statistics

    def counted(*args, **kwargs):
        gathered.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_engine, "population_statistics", counted)
    torch.manual_seed(0)
    model = _FunctionalBatchNorm().double() if kind == "functional" else make_model(kind)
    x = model_inputs("mlp", n=10)
    ds = input_gradients(model, x, batch_size=3)
    assert len(gathered) == (0 if kind == "mlp" else 1)
    if kind == "functional":
        with torch.no_grad():
            h = model.lin(x)
        mean, var = h.mean(0), h.var(0, unbiased=False)

        def frozen(xi: torch.Tensor) -> torch.Tensor:
            z = (model.lin(xi) - mean) / torch.sqrt(var + 1e-5)
            return model.out(torch.relu(z)).squeeze(-1)

        expected = func_per_sample(frozen, x).numpy()
    else:
        ref = replace_bn_with_population_affine(model, x) if kind == "batchnorm" else model
        expected = func_per_sample(ref.eval(), x).numpy()
    np.testing.assert_allclose(ds["gradient"].values, expected, **TOL)
    patterns = activation_patterns(model, x, batch_size=3)["pattern"].values
    assert len(gathered) == (0 if kind == "mlp" else 2)
    if kind == "functional":
        with torch.no_grad():
            np.testing.assert_array_equal(patterns, ((model.lin(x) - mean) > 0).numpy())


def test_a_models_own_forward_keeps_the_mode_so_a_later_functional_dropout_is_turned_off():
    """A model's own code could call ``F.dropout`` (``training=True`` by default) for some inputs
    only, so the function mode stays on for every batch and turns that call off."""

    class LaterDropout(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.out = nn.Linear(2, 4), nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.lin(x)
            if x[0, 0] > 10:  # only the second batch takes this branch
                h = F.dropout(h, 0.5)
            return self.out(torch.relu(h))

    torch.manual_seed(0)
    model = LaterDropout().double()
    x = model_inputs("mlp", n=6)
    x[3:, 0] = 20.0
    ds = input_gradients(model, x, batch_size=3)
    expected = func_per_sample(lambda xi: model.out(torch.relu(model.lin(xi))), x)
    np.testing.assert_allclose(ds["gradient"].values, expected.numpy(), **TOL)


@pytest.mark.parametrize("batchnorm", ["population", "coupled", "eval"])
def test_activation_checkpointing_is_refused_where_it_would_change_the_statistics(batchnorm):
    """``torch.utils.checkpoint`` recomputes the block during the backward pass, outside the
    probe's function mode: with the set's or the batch's statistics the recomputed batch norm
    would use the running ones, so the probe refuses; with ``"eval"`` it is the same call and the
    gradients equal torch.func on the model without checkpointing."""
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.bn, self.out = nn.Linear(2, 6), nn.BatchNorm1d(6), nn.Linear(6, 1)

        def block(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.bn(self.lin(x)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(checkpoint(self.block, x, use_reentrant=False))

    torch.manual_seed(0)
    model = Checkpointed().double()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2.0)
    x = model_inputs("mlp", n=10)
    before = snapshot(model)
    if batchnorm != "eval":
        with pytest.raises(RuntimeError, match=r"recomputes its BatchNorm1d call during the back"):
            input_gradients(model, x, batch_size=4, batchnorm=batchnorm)
        assert_same_state(before, snapshot(model))
        return
    ds = input_gradients(model, x, batch_size=4, batchnorm=batchnorm)
    assert_same_state(before, snapshot(model))
    model.eval()
    expected = func_per_sample(lambda xi: model.out(model.block(xi)), x)
    np.testing.assert_allclose(ds["gradient"].values, expected.numpy(), **TOL)
