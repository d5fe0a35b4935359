"""Tests of shatterkit.models: shapes, initialisation statistics, looks-linear exactness, seeding."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap
from torch.overrides import TorchFunctionMode

from shatterkit._functional import center
from shatterkit.models import (
    Centering,
    CReLU,
    ResidualBlock,
    convnet,
    ensemble,
    feedforward,
    looks_linear,
    resnet,
)

BUILDERS = {
    "feedforward": partial(feedforward, 3, 16, in_features=2, out_features=3),
    "feedforward-bn": partial(feedforward, 3, 16, in_features=2, out_features=3, batchnorm=True),
    "feedforward-centering": partial(
        feedforward, 3, 16, in_features=2, out_features=3, centering=True
    ),
    "feedforward-bias": partial(feedforward, 3, 16, in_features=2, out_features=3, bias=True),
    "resnet": partial(resnet, 3, 16, in_features=2, out_features=3),
    "resnet-bn": partial(resnet, 3, 16, in_features=2, out_features=3, batchnorm=True),
    "looks_linear": partial(looks_linear, 3, 16, in_features=2, out_features=3),
    "convnet": partial(convnet, 2, 4, in_channels=2, num_classes=3),
    "convnet-residual-bn": partial(
        convnet, 2, 4, in_channels=2, num_classes=3, residual=True, batchnorm=True
    ),
}
IMAGE_BUILDERS = {"convnet", "convnet-residual-bn"}


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded generator for test inputs (the global RNG is under test, so it is never used)."""
    return torch.Generator().manual_seed(0)


def _inputs(name: str, gen: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    shape = (5, 2, 6, 6) if name in IMAGE_BUILDERS else (5, 2)
    return torch.randn(shape, generator=gen, dtype=dtype)


def _input_gradients(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-sample d f / d x of a scalar-output net, each sample on its own (no batch coupling)."""
    return vmap(jacrev(lambda xi: net(xi.unsqueeze(0)).squeeze()))(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_output_shape_and_dtype(name, dtype, gen):
    net = BUILDERS[name](seed=0, dtype=dtype)
    out = net(_inputs(name, gen, dtype))
    assert out.shape == (5, 3)
    assert out.dtype == dtype
    assert all(p.dtype == dtype for p in net.parameters())
    assert all(b.dtype == dtype for b in net.buffers() if b.is_floating_point())


@pytest.mark.parametrize("name", list(BUILDERS))
def test_global_rng_untouched(name):
    state = torch.get_rng_state()
    BUILDERS[name](seed=None)
    BUILDERS[name](seed=3)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_same_seed_same_weights_other_seed_differs(name):
    first, again, other = (BUILDERS[name](seed=s).state_dict() for s in (7, 7, 8))
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    weights = [k for k in first if k.endswith("weight") and first[k].dim() > 1]
    assert all(not torch.equal(first[k], other[k]) for k in weights)


def test_seed_none_draws_fresh_weights():
    assert not torch.equal(feedforward(1, 8).readout.weight, feedforward(1, 8).readout.weight)


def test_module_names_follow_the_structure():
    def relus(net):
        return [n for n, m in net.named_modules() if isinstance(m, (nn.ReLU, CReLU))]

    assert relus(feedforward(2, 4)) == ["layers.0.relu", "layers.1.relu"]
    assert relus(resnet(4, 4))[3] == "blocks.3.relu"
    assert isinstance(resnet(4, 4).blocks[3], ResidualBlock)
    assert relus(looks_linear(2, 4)) == ["layers.0.crelu", "layers.1.crelu"]
    assert relus(convnet(2, 4)) == ["layers.0.relu", "layers.1.relu"]
    assert [n for n, _ in feedforward(1, 4, batchnorm=True).layers[0].named_children()] == [
        "linear",
        "norm",
        "relu",
    ]


# --- initialisation statistics --------------------------------------------------------------


def test_he_init_variance():
    net = feedforward(3, width=200, out_features=50, bias=0.5, seed=0)
    # 40 000 weights: the variance estimate has a relative std of sqrt(2 / 40 000) = 0.7%
    hidden = net.layers[1].linear.weight
    assert hidden.var().item() == pytest.approx(2 / 200, rel=0.04)
    assert hidden.mean().item() == pytest.approx(0, abs=4 * (2 / 200 / hidden.numel()) ** 0.5)
    # 10 000 readout weights: relative std 1.4%
    assert net.readout.weight.var().item() == pytest.approx(1 / 200, rel=0.06)
    assert net.readout.bias is None
    # 600 biases: relative std of the variance 6%
    biases = torch.cat([layer.linear.bias for layer in net.layers])
    assert biases.var().item() == pytest.approx(0.25, rel=0.25)


def test_he_init_variance_conv():
    net = convnet(3, channels=32, seed=0)
    # 9 216 weights, fan_in = 9 * 32: relative std of the variance estimate 1.5%
    assert net.layers[1].conv.weight.var().item() == pytest.approx(2 / (9 * 32), rel=0.06)
    assert net.layers[1].conv.bias is None


def test_resnet_init_variance():
    net = resnet(2, width=200, in_features=100, seed=0)
    assert net.stem.weight.var().item() == pytest.approx(2 / 100, rel=0.06)
    assert net.blocks[1].linear.weight.var().item() == pytest.approx(2 / 200, rel=0.04)


def _linear_second_moments(net: nn.Sequential, x: torch.Tensor) -> list[float]:
    """Mean square of each hidden ``linear`` output (the pre-activations)."""
    moments: list[float] = []
    hooks = [
        layer.linear.register_forward_hook(lambda m, i, o: moments.append(o.pow(2).mean().item()))
        for layer in net.layers
    ]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    return moments


def test_he_init_preserves_forward_variance(gen):
    x = torch.randn(1000, 50, generator=gen)
    moments = _linear_second_moments(feedforward(10, 200, in_features=50, seed=1), x)
    # He: E[y²] stays at 2 E[x²] = 2 for every layer; the product of 10 random weight matrices
    # lets it drift by a few tens of percent, while a gain of 1 would divide it by 2^9 = 512
    assert moments[0] == pytest.approx(2, rel=0.1)
    assert 0.5 < moments[-1] / moments[0] < 2


def test_he_init_with_batchnorm_gives_unit_preactivations(gen):
    x = torch.randn(1000, 50, generator=gen)
    moments = _linear_second_moments(feedforward(10, 200, in_features=50, batchnorm=True), x)
    # BN makes each ReLU input N(0, 1)-like, so E[relu²] = 1/2 and He's factor 2 gives 1
    assert moments[1:] == pytest.approx([1.0] * 9, rel=0.15)


# --- feedforward: why a 1-D net needs BN, centring or biases ------------------------------------


def test_bias_free_1d_net_has_two_gradient_values():
    net = feedforward(6, 50, seed=0, dtype=torch.float64)
    x = torch.linspace(-2, 2, 64, dtype=torch.float64).unsqueeze(1)
    grads = _input_gradients(net, x).squeeze()
    # positive homogeneity: one linear piece on each side of 0, whatever the depth
    torch.testing.assert_close(grads[x.squeeze() < 0], grads[0].expand(32), rtol=1e-12, atol=0)
    torch.testing.assert_close(grads[x.squeeze() > 0], grads[-1].expand(32), rtol=1e-12, atol=0)


def test_biases_break_homogeneity():
    net = feedforward(6, 50, bias=True, seed=0, dtype=torch.float64)
    x = torch.linspace(-2, 2, 64, dtype=torch.float64).unsqueeze(1)
    grads = _input_gradients(net, x).squeeze()
    assert len(torch.unique(grads.round(decimals=9))) > 10


# --- centring -------------------------------------------------------------------------------


def test_centering_train_and_eval(gen):
    x = torch.randn(16, 4, 3, 3, generator=gen, dtype=torch.float64) + 5
    centre = Centering(4, momentum=0.3, dtype=torch.float64)
    reference = nn.BatchNorm2d(4, momentum=0.3, affine=False, dtype=torch.float64)
    out = centre(x)
    reference(x)
    torch.testing.assert_close(out, x - x.mean((0, 2, 3), keepdim=True), rtol=0, atol=1e-12)
    # the running mean follows batch norm's update rule
    torch.testing.assert_close(centre.running_mean, reference.running_mean, rtol=1e-12, atol=0)
    centre.eval()
    torch.testing.assert_close(centre(x), x - centre.running_mean.view(1, 4, 1, 1))


def test_centering_goes_through_the_probeable_center(gen):
    class CountCenter(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.calls += func is center
            return func(*args, **(kwargs or {}))

    with CountCenter() as mode:
        feedforward(2, 4, centering=True)(torch.randn(3, 1, generator=gen))
    assert mode.calls == 2


def test_centering_eval_leaves_running_mean(gen):
    centre = Centering(3).eval()
    centre(torch.randn(4, 3, generator=gen))
    assert torch.equal(centre.running_mean, torch.zeros(3))


# --- resnet -------------------------------------------------------------------------------


@pytest.mark.parametrize("batchnorm", [False, True])
def test_resnet_beta_zero_is_stem_then_readout(batchnorm, gen):
    net = resnet(5, 16, in_features=2, batchnorm=batchnorm, beta=0.0, seed=0)
    x = torch.randn(8, 2, generator=gen)
    assert torch.equal(net(x), net.readout(net.stem(x)))


def test_resnet_output_is_affine_in_beta_for_one_block(gen):
    x = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    out = {
        b: resnet(1, 16, in_features=2, beta=b, seed=0, dtype=torch.float64)(x) for b in (0, 1, 0.3)
    }
    torch.testing.assert_close(out[0.3], out[0] + 0.3 * (out[1] - out[0]), rtol=1e-12, atol=1e-12)


# --- CReLU and looks-linear -----------------------------------------------------------------


class _CountRelu(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += func is nn.functional.relu
        return func(*args, **(kwargs or {}))


def test_crelu_calls_functional_relu_once(gen):
    x = torch.randn(3, 4, 2, generator=gen)
    with _CountRelu() as mode:
        out = CReLU(dim=1)(x)
    assert mode.calls == 1
    torch.testing.assert_close(out, torch.cat([x.clamp(min=0), (-x).clamp(min=0)], 1))


def test_looks_linear_weights_are_mirrored_orthogonal():
    net = looks_linear(3, 8, in_features=2, out_features=3, seed=0, dtype=torch.float64)
    first = net.layers[0].linear.weight
    torch.testing.assert_close(first.T @ first, torch.eye(2, dtype=torch.float64))
    for layer in [net.layers[1].linear, net.layers[2].linear, net.readout]:
        half, other = layer.weight.chunk(2, dim=1)
        assert torch.equal(other, -half)
        rows = half.shape[0]
        torch.testing.assert_close(half @ half.T, torch.eye(rows, dtype=torch.float64))


@pytest.mark.parametrize("depth", [0, 1, 20])
def test_looks_linear_is_exactly_linear(depth, gen):
    net = looks_linear(depth, 32, in_features=3, out_features=2, seed=0, dtype=torch.float64)
    line = torch.linspace(-2, 2, 50, dtype=torch.float64).unsqueeze(1) * torch.tensor(
        [[1.0, -0.5, 2.0]], dtype=torch.float64
    )
    x = torch.cat([torch.randn(50, 3, generator=gen, dtype=torch.float64), line])
    jac = vmap(jacrev(lambda xi: net(xi.unsqueeze(0)).squeeze(0)))(x)
    # each pre-activation h enters the backward pass once, through relu(h) or relu(-h), so the
    # input gradient is bitwise the same at every input
    assert torch.equal(jac, jac[:1].expand_as(jac))
    # and it is the product of the orthogonal halves (an independent reference)
    matrices = [m.weight for m in net.modules() if isinstance(m, nn.Linear)]
    expected = matrices[0]
    for weight in matrices[1:]:
        expected = weight[:, : weight.shape[1] // 2] @ expected
    torch.testing.assert_close(jac[0], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net(x), x @ expected.T, rtol=1e-10, atol=1e-12)


# --- ensembles ------------------------------------------------------------------------------


def test_ensemble_members_are_seeded_and_independent():
    factory = partial(feedforward, 2, 8)
    first, again, other = (ensemble(factory, 3, seed=s) for s in (0, 0, 1))
    assert len(first) == 3
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    weights = [m.readout.weight for m in first + other]
    assert all(not torch.equal(weights[i], weights[j]) for i in range(6) for j in range(i + 1, 6))


def test_ensemble_leaves_global_rng():
    state = torch.get_rng_state()
    ensemble(partial(resnet, 2, 8), 2)
    assert torch.equal(torch.get_rng_state(), state)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: feedforward(-1),
            "The 'depth' parameter of feedforward must be an int >= 0. Got -1",
        ),
        (
            lambda: feedforward(2, 0),
            "The 'width' parameter of feedforward must be an int >= 1. Got 0",
        ),
        (lambda: resnet(2.0), "The 'blocks' parameter of resnet must be an int >= 0. Got 2.0"),
        (lambda: looks_linear(True), "The 'depth' parameter of looks_linear must be an int >= 0"),
        (lambda: convnet(1, 0), "The 'channels' parameter of convnet must be an int >= 1. Got 0"),
        (lambda: ensemble(feedforward, 0), "The 'n' parameter of ensemble must be an int >= 1"),
        (
            lambda: feedforward(2, batchnorm=True, centering=True),
            "'batchnorm' and 'centering' parameters of feedforward are exclusive",
        ),
        (
            lambda: feedforward(2, bias=-1.0),
            "The 'bias' parameter of feedforward must be a bool or a float >= 0. Got -1.0",
        ),
    ],
)
def test_invalid_parameters(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()
