"""ActivationProbe against hand-written forwards with explicit comparisons."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
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

from shatterkit import ActivationProbe, activation_patterns, inputs, unpack_patterns


def test_patterns_equal_hand_written_forward():
    model = make_model("mlp")
    x = model_inputs("mlp", n=30)
    ds = activation_patterns(model, x, batch_size=7)
    h1 = model[0](x)
    h2 = model[2](F.relu(h1))
    expected = torch.cat([h1 > 0, h2 > 0], dim=1).numpy()
    np.testing.assert_array_equal(ds["pattern"].values, expected)
    assert ds["layer"].values.tolist() == ["1"] * 7 + ["3"] * 5
    assert ds["depth"].values.tolist() == [1] * 7 + [2] * 5


def test_conv_units_are_channel_times_position_and_functional_calls_are_seen():
    model = make_model("conv")
    x = model_inputs("conv", n=4)
    ds = activation_patterns(model, x)
    h1 = model.conv1(x)
    h2 = model.conv2(torch.relu(h1))
    expected = torch.cat([(h1 > 0).flatten(1), (h2 > 0).flatten(1)], 1).numpy()
    np.testing.assert_array_equal(ds["pattern"].values, expected)
    assert sorted(set(ds["layer"].values.tolist())) == ["relu()", "relu()#1"]
    assert ds.sizes["unit"] == 3 * 25 + 4 * 25


def test_a_module_called_twice_yields_two_layers():
    model = make_model("residual")
    ds = activation_patterns(model, model_inputs("residual"))
    layers = list(dict.fromkeys(ds["layer"].values.tolist()))
    assert layers == ["relu", "relu#1", "relu#2"]


def test_inplace_relu_after_batchnorm():
    model = make_model("batchnorm").train()
    x = model_inputs("batchnorm", n=16)
    ds = activation_patterns(model, x, batch_size=5)
    ref = model.__class__(*[m for m in model])  # same modules
    with torch.no_grad():
        h = x
        bits = []
        for m in ref:
            if isinstance(m, nn.BatchNorm1d):
                mean, var = h.mean(0), h.var(0, unbiased=False)
                h = (h - mean) / torch.sqrt(var + m.eps) * m.weight + m.bias
            elif isinstance(m, nn.ReLU):
                bits.append(h > 0)
                h = torch.relu(h)
            else:
                h = m(h)
    np.testing.assert_array_equal(ds["pattern"].values, torch.cat(bits, 1).numpy())


@pytest.mark.parametrize(
    "act, name",
    [
        (nn.ReLU6(), "1"),
        (nn.LeakyReLU(0.2), "1"),
        (nn.PReLU(), "1"),
        (nn.GELU(), "1"),
        (nn.SiLU(), "1"),
    ],
)
def test_every_rectifier_type_is_recorded_as_sign_of_preactivation(act, name):
    lin = nn.Linear(2, 5).double()
    net = nn.Sequential(lin, act.double())
    x = model_inputs("mlp", n=12)
    ds = activation_patterns(net, x)
    np.testing.assert_array_equal(ds["pattern"].values, (lin(x) > 0).numpy())
    assert set(ds["layer"].values.tolist()) == {name}


def test_packed_patterns_round_trip_and_match_numpy_packbits():
    model = make_model("residual")
    x = model_inputs("residual", n=11)
    plain = activation_patterns(model, x)
    packed = activation_patterns(model, x, packed=True)
    assert packed["pattern"].dtype == np.uint8
    np.testing.assert_array_equal(
        packed["pattern"].values, np.packbits(plain["pattern"].values, axis=-1)
    )
    np.testing.assert_array_equal(
        unpack_patterns(packed)["pattern"].values, plain["pattern"].values
    )


def test_no_rectifier_raises():
    with pytest.raises(ValueError, match="made no rectifier call"):
        activation_patterns(nn.Linear(2, 1), model_inputs("mlp"))


def test_unseen_rectifier_module_raises():
    class Sneaky(nn.ReLU):
        def forward(self, x):
            return x.clamp(min=0)  # not a functional rectifier: the probe cannot see it

    net = nn.Sequential(nn.Linear(2, 3), Sneaky(), nn.Linear(3, 3), nn.ReLU())
    with pytest.raises(RuntimeError, match=r"rectifier module\(s\) \['1'\] ran but"):
        activation_patterns(net.double(), model_inputs("mlp"))


def test_state_unchanged_after_success_and_failure():
    model = make_model("batchnorm").train()
    before = snapshot(model)
    activation_patterns(model, model_inputs("batchnorm"), batch_size=3)
    assert_same_state(before, snapshot(model))

    class Stop(Exception):
        pass

    def boom(_m, _a):
        raise Stop

    h = model[3].register_forward_pre_hook(boom)
    before["hooks"] += 1
    with pytest.raises(Stop):
        activation_patterns(model, model_inputs("batchnorm"), batch_size=3)
    assert_same_state(before, snapshot(model))
    h.remove()


def test_estimator_contract_and_layer_selection():
    model = make_model("residual")
    probe = ActivationProbe(model, layers=["relu#1"])
    with pytest.raises(NotFittedError):
        probe.transform(model_inputs("residual"))
    ds = clone(probe).fit_transform(model_inputs("residual"))
    assert set(ds["layer"].values.tolist()) == {"relu#1"}
    with pytest.raises(ValueError, match=r"rectifier layer 'relu#5' not found.*close matches"):
        ActivationProbe(model, layers=["relu#5"]).fit_transform(model_inputs("residual"))


def test_ensemble_adds_model_dim():
    models = [make_model("mlp", seed=s) for s in range(2)]
    ds = ActivationProbe(models).fit_transform(inputs.neighbourhood([0.0, 0.0], n=9, seed=0))
    assert ds["pattern"].dims == ("model", "sample", "unit")
    assert ds.sizes["model"] == 2


@pytest.mark.parametrize("kind", ["mlp", "conv", "residual", "batchnorm"])
@pytest.mark.parametrize("layers", ["rectifiers", "last"])
def test_later_batches_named_by_position_equal_one_batch(kind, layers):
    """Batches after the first are recorded by call position, without the module stack hooks:
    every batch size gives the whole-set result (names, depths, units and bits)."""
    model = make_model(kind)
    x = model_inputs(kind, n=11)
    whole = activation_patterns(model, x, batch_size=11, batchnorm="eval")
    if layers == "last":
        layers = [whole["layer"].values[-1]]
        whole = activation_patterns(model, x, batch_size=11, batchnorm="eval", layers=layers)
    for batch_size in (1, 3, 10):
        for packed in (False, True):
            ds = activation_patterns(
                model, x, batch_size=batch_size, batchnorm="eval", layers=layers, packed=packed
            )
            got = unpack_patterns(ds) if packed else ds
            np.testing.assert_array_equal(got["pattern"].values, whole["pattern"].values)
            assert got["layer"].values.tolist() == whole["layer"].values.tolist()
            assert got["depth"].values.tolist() == whole["depth"].values.tolist()


def test_stack_hooks_come_off_after_the_first_batch():
    seen = []

    class Watch(nn.Module):
        def forward(self, x):
            seen.append(len(self._forward_pre_hooks) + len(self._forward_hooks))
            return torch.relu(x)

    net = nn.Sequential(nn.Linear(2, 3), Watch()).double()
    before = snapshot(net)
    activation_patterns(net, model_inputs("mlp", n=9), batch_size=3)
    assert seen[-3] > 0 and seen[-2:] == [0, 0]  # batch 0 with the hooks, batches 1 and 2 without
    assert_same_state(before, snapshot(net))


@pytest.mark.parametrize("later", ["functional", "module", "functional after modules"])
def test_a_forward_with_another_number_of_rectifier_calls_raises(later):
    """A model's own forward keeps the function mode on every batch (it could call a rectifier
    for some inputs only), so the calls of every batch are counted, functional or not."""

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.act = nn.Linear(2, 3), nn.ReLU()

        def forward(self, x):
            act = torch.relu if later == "functional" else self.act
            h = act(self.lin(x))
            if x[0, 0] > 10:  # only the second batch takes this branch
                h = (torch.relu if later.startswith("functional") else act)(h - 1)
            return h

    net = DataDependent().double()
    x = model_inputs("mlp", n=6)
    x[3:, 0] = 20.0
    assert _mode_active_per_batch(net, x[:3], 1) == [True, True, True]
    before = snapshot(net)
    with pytest.raises(RuntimeError, match=r"made 2 rectifier calls on this batch but 1 on the"):
        activation_patterns(net, x, batch_size=3)
    assert_same_state(before, snapshot(net))


def test_a_model_that_folds_another_axis_into_the_batch_raises():
    class Fold(nn.Module):
        def forward(self, x):
            return torch.relu(x.reshape(-1, 1))

    with pytest.raises(ValueError, match=r"called on 8 rows for a batch of 4 samples"):
        activation_patterns(Fold(), model_inputs("mlp", n=4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
def test_sign_of_preactivation_equals_torch_comparison(dtype, layout):
    from shatterkit.probes._engine import positive

    g = torch.Generator().manual_seed(0)
    t = torch.randn(5, 3, 4, 4, generator=g).to(dtype)
    t.view(-1)[:6] = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1e-30, -1e-30])
    if layout == "channels_last":
        t = t.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        t = t.transpose(2, 3)
    expected = (t > 0).flatten(1)
    np.testing.assert_array_equal(positive(t).numpy(), expected.numpy())
    out = torch.zeros(5, 100, dtype=torch.bool)
    positive(t, out=out[:, 20:68])
    np.testing.assert_array_equal(out[:, 20:68].numpy(), expected.numpy())
    assert not out[:, :20].any() and not out[:, 68:].any()


def test_an_empty_layer_list_is_refused():
    with pytest.raises(ValueError, match=r"The 'layers' parameter of activation_patterns must be"):
        activation_patterns(make_model("mlp"), model_inputs("mlp"), layers=[])


def _mode_active_per_batch(
    net: nn.Module, x: torch.Tensor, batch_size: int, batchnorm: str = "eval", probe=None
) -> list[bool]:
    """Whether each of the probe's batches ran under the function mode."""
    probe = probe or activation_patterns
    seen = function_mode_per_batch(probe, net, x, batch_size=batch_size, batchnorm=batchnorm)
    n_batches = -(-len(x) // batch_size)
    return seen[-n_batches:]  # a first batch stopped for the statistics runs twice


def test_a_forward_hook_of_the_users_counts_as_the_models_own_code():
    """A hook could call a rectifier for some inputs only: the mode stays on and counts it."""
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU()).double()

    def hook(_m: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor | None:
        return torch.relu(out) if out.shape[0] and _args[0][0, 0] > 10 else None

    x = model_inputs("mlp", n=6)
    x[3:, 0] = 20.0
    handle = net[0].register_forward_hook(hook)
    try:
        assert _mode_active_per_batch(net, x[:3], 1) == [True, True, True]
        with pytest.raises(RuntimeError, match=r"made 2 rectifier calls on this batch but 1 on"):
            activation_patterns(net, x, batch_size=3)
    finally:
        handle.remove()
    x[3:, 0] = 0.0  # without the hook's call: the pre-hook path, as for torch's own modules
    assert _mode_active_per_batch(net, x, 3) == [True, False]


def test_module_rectifiers_are_recorded_by_pre_hooks_after_the_first_batch():
    """Later batches of a model whose every rectifier call is a rectifier module's call on its own
    input run without the function mode; the patterns still equal the hand-written forward."""
    model = make_model("mlp")
    x = model_inputs("mlp", n=10)
    assert _mode_active_per_batch(model, x, batch_size=3) == [True, False, False, False]
    before = snapshot(model)
    ds = activation_patterns(model, x, batch_size=3)
    assert_same_state(before, snapshot(model))
    with torch.no_grad():
        h1 = model[0](x)
        h2 = model[2](torch.relu(h1))
    np.testing.assert_array_equal(ds["pattern"].values, torch.cat([h1 > 0, h2 > 0], 1).numpy())


class _ShiftedReLU(nn.ReLU):
    """A rectifier module that does not rectify its own input: the pre-hook path must not apply."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x - 0.5)


class _TrainingDropout(nn.Module):
    """Functional dropout with the default ``training=True``: the mode turns it off."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, 0.5)


@pytest.mark.parametrize(
    ("kind", "batchnorm"),
    [
        ("shifted", "eval"),
        ("functional", "eval"),
        ("relu_twice_in_one_module", "eval"),
        ("batchnorm", "population"),
        ("dropout", "population"),
        ("functional_dropout", "eval"),
    ],
)
def test_the_function_mode_stays_where_pre_hooks_would_not_see_the_same_calls(kind, batchnorm):
    lin = nn.Linear(2, 4)

    class Twice(nn.ReLU):
        def forward(self, x):
            return F.relu(F.relu(x) - 0.1)

    tail = {
        "shifted": [_ShiftedReLU()],
        "functional": [nn.ReLU(), nn.Linear(4, 4), nn.Hardtanh(0.0, 6.0)],
        "relu_twice_in_one_module": [Twice()],
        "batchnorm": [nn.BatchNorm1d(4), nn.ReLU()],
        "dropout": [nn.ReLU(), nn.Dropout(0.5)],
        "functional_dropout": [_TrainingDropout(), nn.ReLU()],
    }[kind]
    net = nn.Sequential(lin, *tail).double().eval()
    x = model_inputs("mlp", n=9)
    assert _mode_active_per_batch(net, x, 3, batchnorm) == [True, True, True]
    got = activation_patterns(net, x, batch_size=3, batchnorm=batchnorm)["pattern"].values
    whole = activation_patterns(net, x, batch_size=9, batchnorm=batchnorm)["pattern"].values
    np.testing.assert_array_equal(got, whole)
    if kind == "shifted":
        with torch.no_grad():
            np.testing.assert_array_equal(got, (lin(x) - 0.5 > 0).numpy())
    if kind == "functional_dropout":  # dropout off: the pattern of lin(x) itself
        with torch.no_grad():
            np.testing.assert_array_equal(got, (lin(x) > 0).numpy())


def test_eval_mode_batch_norm_and_dropout_modules_let_later_batches_skip_the_mode():
    """With ``batchnorm="eval"`` the mode would make of an eval-mode BatchNorm or Dropout module's
    call what the module makes of it: after the first batch both probes run without the mode, and
    their results equal the model's own eval forward (torch.func for the gradients)."""
    from torch.func import grad, vmap

    from shatterkit import input_gradients

    torch.manual_seed(0)
    bn = nn.BatchNorm1d(4)
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    net = nn.Sequential(nn.Linear(2, 4), bn, nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 1))
    net = net.double().train()  # the probes put it in eval mode and back
    x = model_inputs("mlp", n=10)
    before = snapshot(net)
    assert _mode_active_per_batch(net, x, 3) == [True, False, False, False]
    assert _mode_active_per_batch(net, x, 3, probe=input_gradients) == [True, False, False, False]
    patterns = activation_patterns(net, x, batch_size=3, batchnorm="eval")["pattern"].values
    gradients = input_gradients(net, x, batch_size=3, batchnorm="eval")["gradient"].values
    assert_same_state(before, snapshot(net))
    ref = copy.deepcopy(net).eval()
    with torch.no_grad():
        np.testing.assert_array_equal(patterns, (ref[1](ref[0](x)) > 0).numpy())
    expected = vmap(grad(lambda xi: ref(xi.unsqueeze(0)).reshape(())))(x)
    np.testing.assert_allclose(gradients, expected.detach().numpy(), rtol=1e-6, atol=1e-9)


def test_models_with_attention_keep_the_mode_and_give_the_same_patterns_for_any_batch_size():
    """``nn.MultiheadAttention`` and the transformer layers take fused kernels (other rounding,
    nested tensors) only without a function mode: the mode stays on, so every batch runs the
    same kernels, and the same is true of input gradients."""
    from shatterkit import input_gradients

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        8, 2, 16, dropout=0.0, activation=nn.ReLU(), batch_first=True
    )
    net = nn.Sequential(layer, nn.Flatten(), nn.Linear(40, 1)).eval()
    x = torch.randn(6, 5, 8)
    assert _mode_active_per_batch(net, x, 2) == [True, True, True]
    assert _mode_active_per_batch(net, x, 2, probe=input_gradients) == [True, True, True]
    whole = activation_patterns(net, x, batch_size=6)["pattern"].values
    np.testing.assert_array_equal(
        activation_patterns(net, x, batch_size=2)["pattern"].values, whole
    )


def test_a_forward_replaced_on_an_instance_counts_as_the_models_own_code():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU()).double()
    linear_forward = net[0].forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        h = linear_forward(x)
        return torch.relu(h) if x[0, 0] > 10 else h  # only the second batch takes this branch

    net[0].forward = forward
    x = model_inputs("mlp", n=6)
    x[3:, 0] = 20.0
    assert _mode_active_per_batch(net, x[:3], 1) == [True, True, True]
    with pytest.raises(RuntimeError, match=r"made 2 rectifier calls on this batch but 1 on the"):
        activation_patterns(net, x, batch_size=3)
