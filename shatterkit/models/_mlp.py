"""The paper's fully connected rectifier networks: feedforward nets and residual MLPs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from shatterkit._functional import center
from shatterkit.models._init import DEFAULT_BIAS_STD, check_int, linear, make_generator

#: variance gain of He initialisation, N(0, 2 / fan_in), for layers that feed or follow a rectifier
HE_GAIN = 2.0
#: variance gain of the linear readout, N(0, 1 / fan_in)
READOUT_GAIN = 1.0


class Centering(nn.Module):
    """Subtract each unit's mean: batch norm's centring without its rescaling.

    In training mode the mean is taken over the batch (and over any spatial dims), so, like
    :class:`torch.nn.BatchNorm1d` in training mode, it couples the samples of a batch: each
    output depends on every input of the batch. In evaluation mode it subtracts ``running_mean``,
    an exponential moving average of the batch means seen in training mode.

    It calls :func:`shatterkit._functional.center`, which dispatches through
    ``__torch_function__``, so the probes can replace its batch mean with the mean over the probed
    set, as they do for batch norm. A training-mode batch of one sample centres to zero.

    Parameters
    ----------
    num_features : int
        Number of units (size of dim 1 of the input).
    momentum : float, default 0.1
        Weight of the newest batch mean in ``running_mean``, as in batch norm.
    dtype : torch.dtype, default torch.float32
        Dtype of ``running_mean``.

    See Also
    --------
    feedforward : Builds nets with ``centering=True``.
    torch.nn.BatchNorm1d : Centring and rescaling.

    Examples
    --------
    >>> import torch
    >>> centre = Centering(3)
    >>> out = centre(torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]))
    >>> out
    tensor([[-1., -1., -1.],
            [ 1.,  1.,  1.]])
    >>> centre.running_mean
    tensor([0.2000, 0.3000, 0.4000])
    """

    running_mean: torch.Tensor

    def __init__(
        self, num_features: int, *, momentum: float = 0.1, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return center(x, self.running_mean, training=self.training, momentum=self.momentum)

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}"


class ResidualBlock(nn.Sequential):
    """A residual block ``x + beta * branch(x)``, whose branch is the block's own layers in order.

    Being a :class:`torch.nn.Sequential`, its layers are named children (``blocks.3.norm``,
    ``blocks.3.relu``, ``blocks.3.linear``), so probes name the block's rectifier after it.

    Parameters
    ----------
    layers : OrderedDict of str to Module
        The branch's layers, applied in order.
    beta : float, default 1.0
        Scale of the branch.

    See Also
    --------
    resnet : Residual MLPs made of these blocks.
    convnet : Convolutional ones, with ``residual=True``.

    Examples
    --------
    >>> from collections import OrderedDict
    >>> import torch
    >>> block = ResidualBlock(OrderedDict(relu=torch.nn.ReLU()), beta=0.5)
    >>> block(torch.tensor([-2.0, 2.0]))
    tensor([-2., 3.])
    """

    def __init__(self, layers: OrderedDict[str, nn.Module], *, beta: float = 1.0) -> None:
        super().__init__(layers)
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.beta * super().forward(x)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


def hidden_layers(
    depth: int,
    in_size: int,
    width: int,
    *,
    kind: str,
    make_layer: Callable[[int, int], nn.Module],
    make_norm: Callable[[], nn.Module] | None,
) -> nn.Sequential:
    """``depth`` layers ``{kind} -> [norm] -> relu``; the first reads ``in_size`` units."""
    hidden = []
    for index in range(depth):
        layer: OrderedDict[str, nn.Module] = OrderedDict()
        layer[kind] = make_layer(width if index else in_size, width)
        if make_norm is not None:
            layer["norm"] = make_norm()
        layer["relu"] = nn.ReLU()
        hidden.append(nn.Sequential(layer))
    return nn.Sequential(*hidden)


def residual_blocks(
    blocks: int,
    width: int,
    *,
    beta: float,
    kind: str,
    make_layer: Callable[[int, int], nn.Module],
    make_norm: Callable[[], nn.Module] | None,
) -> nn.Sequential:
    """``blocks`` pre-activation blocks ``x + beta * {kind}(relu([norm](x)))``."""
    body = []
    for _ in range(blocks):
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if make_norm is not None:
            layers["norm"] = make_norm()
        layers["relu"] = nn.ReLU()
        layers[kind] = make_layer(width, width)
        body.append(ResidualBlock(layers, beta=beta))
    return nn.Sequential(*body)


def feedforward(
    depth: int,
    width: int = 200,
    *,
    in_features: int = 1,
    out_features: int = 1,
    batchnorm: bool = False,
    centering: bool = False,
    bias: bool | float = False,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A feedforward rectifier net with He initialisation, as in the paper's first figure.

    ``depth`` hidden layers, each ``Linear -> [BatchNorm1d | Centering] -> ReLU``, then a linear
    readout. Hidden weights are drawn from N(0, 2 / fan_in) (He), readout weights from
    N(0, 1 / fan_in).

    Parameters
    ----------
    depth : int
        Number of hidden layers (0 gives the readout alone).
    width : int, default 200
        Units per hidden layer.
    in_features, out_features : int, default 1
        Input and output sizes.
    batchnorm : bool, default False
        Put a :class:`torch.nn.BatchNorm1d` (affine, initialised to the identity) before each ReLU.
    centering : bool, default False
        Put a :class:`Centering` (subtract each unit's batch mean, no rescaling) before each ReLU.
        Exclusive with ``batchnorm``.
    bias : bool or float, default False
        Biases of the hidden layers. False: none. True: drawn from N(0, 1). A float: their standard
        deviation. The readout never has a bias (it would not change any gradient).
    seed : int or None, default None
        Seed of the local generator that draws every weight; None draws fresh OS entropy. The
        global torch RNG is never used.
    dtype : torch.dtype, default torch.float32
        Dtype of the parameters and buffers.

    Returns
    -------
    torch.nn.Sequential
        Children ``layers`` (a Sequential of hidden layers, each with children ``linear``,
        optionally ``norm``, and ``relu``) and ``readout``.

    See Also
    --------
    resnet : The residual counterpart.
    looks_linear : A CReLU net initialised to compute a linear map.

    Notes
    -----
    A bias-free ReLU net with a 1-D input is positively homogeneous, so its input gradient takes
    only two values (for x < 0 and x > 0) whatever its depth: to shatter along a 1-D grid it needs
    ``batchnorm``, ``centering`` or ``bias``. Biases ~ N(0, 1) put the first layer's kinks, at
    -b / w, across a grid on [-2, 2]; much smaller biases crowd them near 0.

    Balduzzi et al., "The Shattered Gradients Problem", ICML 2017, arXiv:1702.08591.

    Examples
    --------
    >>> import torch
    >>> net = feedforward(3, width=8, centering=True, seed=0)
    >>> net(torch.linspace(-2, 2, 5).unsqueeze(1)).shape
    torch.Size([5, 1])
    >>> [name for name, m in net.named_modules() if isinstance(m, torch.nn.ReLU)]
    ['layers.0.relu', 'layers.1.relu', 'layers.2.relu']
    """
    check_int(depth, "depth", "feedforward", 0)
    check_int(width, "width", "feedforward", 1)
    if batchnorm and centering:
        raise ValueError(
            "The 'batchnorm' and 'centering' parameters of feedforward are exclusive. "
            "Got batchnorm=True and centering=True; pick one."
        )
    bias_std = DEFAULT_BIAS_STD * bias if isinstance(bias, bool) else bias
    if not bias_std >= 0:
        raise ValueError(
            "The 'bias' parameter of feedforward must be a bool or a float >= 0. "
            f"Got {bias!r} instead."
        )
    gen = make_generator(seed)

    def make_layer(fan_in: int, fan_out: int) -> nn.Module:
        return linear(fan_in, fan_out, gain=HE_GAIN, gen=gen, dtype=dtype, bias_std=bias_std)

    norm = nn.BatchNorm1d if batchnorm else Centering if centering else None
    layers = hidden_layers(
        depth,
        in_features,
        width,
        kind="linear",
        make_layer=make_layer,
        make_norm=None if norm is None else lambda: norm(width, dtype=dtype),
    )
    readout = linear(
        width if depth else in_features, out_features, gain=READOUT_GAIN, gen=gen, dtype=dtype
    )
    return nn.Sequential(OrderedDict(layers=layers, readout=readout))


def resnet(
    blocks: int,
    width: int = 200,
    *,
    in_features: int = 1,
    out_features: int = 1,
    batchnorm: bool = False,
    beta: float = 1.0,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """The paper's residual MLP: ``x <- x + beta * Linear(ReLU([BN](x)))`` per block.

    A linear ``stem`` maps the input to ``width`` units, then ``blocks`` pre-activation residual
    blocks (:class:`ResidualBlock`), each with one rectifier, then a linear ``readout``. Stem and
    branch weights are drawn from N(0, 2 / fan_in) (He), readout weights from N(0, 1 / fan_in).
    No layer has a bias.

    Parameters
    ----------
    blocks : int
        Number of residual blocks.
    width : int, default 200
        Width of the skip path and of every branch.
    in_features, out_features : int, default 1
        Input and output sizes.
    batchnorm : bool, default False
        Start each branch with a :class:`torch.nn.BatchNorm1d` (affine, initialised to the
        identity), before its ReLU; the skip path is never normalised.
    beta : float, default 1.0
        Scale of every residual branch. ``beta=0`` gives ``readout(stem(x))``.
    seed : int or None, default None
        Seed of the local generator that draws every weight; None draws fresh OS entropy.
    dtype : torch.dtype, default torch.float32
        Dtype of the parameters and buffers.

    Returns
    -------
    torch.nn.Sequential
        Children ``stem``, ``blocks`` (a Sequential of :class:`ResidualBlock`, each with children
        optionally ``norm``, then ``relu`` and ``linear``) and ``readout``.

    See Also
    --------
    feedforward : The same network without skip connections.

    Notes
    -----
    Without BN the variance grows by (1 + beta²) per block and the gradient correlation of two
    inputs decays as ((1 + beta²/2) / (1 + beta²))^L; BN at the start of the branch rescales it by
    the growing norm of the skip path, so the decay becomes sublinear, ~ 1 / sqrt(1 + beta² L)
    (Balduzzi et al., ICML 2017, arXiv:1702.08591).

    Examples
    --------
    >>> import torch
    >>> net = resnet(4, width=8, batchnorm=True, seed=0)
    >>> net(torch.linspace(-2, 2, 5).unsqueeze(1)).shape
    torch.Size([5, 1])
    >>> [name for name, _ in net.blocks[0].named_children()]
    ['norm', 'relu', 'linear']
    """
    check_int(blocks, "blocks", "resnet", 0)
    check_int(width, "width", "resnet", 1)
    gen = make_generator(seed)

    def make_layer(fan_in: int, fan_out: int) -> nn.Module:
        return linear(fan_in, fan_out, gain=HE_GAIN, gen=gen, dtype=dtype)

    stem = make_layer(in_features, width)
    body = residual_blocks(
        blocks,
        width,
        beta=beta,
        kind="linear",
        make_layer=make_layer,
        make_norm=(lambda: nn.BatchNorm1d(width, dtype=dtype)) if batchnorm else None,
    )
    readout = linear(width, out_features, gain=READOUT_GAIN, gen=gen, dtype=dtype)
    return nn.Sequential(OrderedDict(stem=stem, blocks=body, readout=readout))
